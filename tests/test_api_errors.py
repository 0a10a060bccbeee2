"""One error shape (issue 10): every 4xx of the HTTP API is ``{"code", "errors": [{field,
rule}]}`` — malformed JSON, a wrong encoding, a too-large body, a wrong content type, an
unknown path or method, a bad query parameter, a ticket that does not exist, a step the
run does not wait for — and schemathesis, generating inputs from the app's own OpenAPI
schema, finds no 5xx and no undocumented status or shape. The CLI answers its errors
with exit 2 and one line per problem, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from aftersales.api import create_app
from aftersales.cli import app as cli
from aftersales.errors import CODES

GOOD = {
    "channel": "online",
    "intake_id": "chat-errors-1",
    "customer_name": "李娜",
    "contact": "13987654321",
    "description": "How do I pair the remote?",
}


def shape(resp: Any, status: int, code: str, field: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "errors"} and body["code"] == code, body
    assert CODES[code] == status
    assert body["errors"] and all(set(e) == {"field", "rule"} and e["rule"] for e in body["errors"])
    assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.fixture
def seeded(sqlite_db: str) -> None:
    from aftersales.demo import seed_reference_data

    seed_reference_data()


@pytest.fixture
def api(sqlite_db: str) -> TestClient:
    return TestClient(create_app(send=None))


def test_malformed_json_is_400_invalid_json(api: TestClient) -> None:
    resp = api.post(
        "/intake", content=b'{"channel": "phone",', headers={"content-type": "application/json"}
    )
    body = shape(resp, 400, "invalid_json", "body")
    assert "line 1" in body["errors"][0]["rule"]
    shape(api.post("/intake", content=b"[1, 2]", headers={"content-type": "application/json"}),
          400, "invalid_json", "body")  # fmt: skip


def test_a_body_that_is_not_utf8_is_400_invalid_encoding(api: TestClient) -> None:
    latin1 = json.dumps({**GOOD, "customer_name": "José"}, ensure_ascii=False).encode("latin-1")
    body = shape(api.post("/intake", content=latin1, headers={"content-type": "application/json"}),
                 400, "invalid_encoding", "body")  # fmt: skip
    assert "not UTF-8" in body["errors"][0]["rule"]
    shape(api.post("/intake", content=b'{"customer_name": "\\ud800"}',
                   headers={"content-type": "application/json"}),
          400, "invalid_encoding", "body")  # fmt: skip
    shape(api.post("/intake", json=GOOD, headers={"content-type": "application/json; charset=latin-1"}),
          415, "unsupported_media_type", "content-type")  # fmt: skip


def test_a_wrong_content_type_is_415(api: TestClient) -> None:
    shape(api.post("/intake", content=json.dumps(GOOD), headers={"content-type": "text/plain"}),
          415, "unsupported_media_type", "content-type")  # fmt: skip
    shape(
        api.post("/intake", data={"channel": "phone"}),
        415,
        "unsupported_media_type",
        "content-type",
    )


def test_a_too_large_body_is_413_and_nothing_is_stored(api: TestClient) -> None:
    big = {**GOOD, "description": "x" * 70_000}
    shape(api.post("/intake", json=big), 413, "payload_too_large", "body")
    assert api.get("/queue").json() == []


def test_unknown_paths_methods_parameters_and_tickets_answer_in_the_same_shape(
    api: TestClient,
) -> None:
    shape(api.get("/nope"), 404, "not_found", "path")
    shape(api.delete("/intake"), 405, "method_not_allowed", "method")
    shape(api.get("/queue?state=late"), 422, "invalid_parameter", "state")
    shape(api.get("/queue?role=boss"), 422, "invalid_parameter", "role")
    shape(api.get("/queue?sop=sales"), 422, "invalid_parameter", "sop")
    shape(api.get("/queue?limit=0"), 422, "invalid_parameter", "limit")
    shape(api.get("/tickets/TK-NOPE"), 404, "not_found", "ticket_id")
    shape(api.post("/tickets/TK-NOPE/steps/review", json={}), 404, "not_found", "ticket_id")
    shape(api.post("/intake", json={**GOOD, "channel": "fax"}), 422, "invalid_intake", "channel")


def test_a_step_no_sop_of_the_ticket_has_is_409_not_waiting(api: TestClient) -> None:
    """(A step of the ticket's SOP whose run does not wait yet is queued: 202, see
    tests/test_submissions.py; its form is judged first: 422 naming the field.)"""
    tid = api.post("/intake", json=GOOD).json()["ticket_id"]  # no runner: no run waits
    body = shape(api.post(f"/tickets/{tid}/steps/arrival", json={}), 409, "not_waiting", "step")
    assert "not waiting for a person" in body["errors"][0]["rule"]
    shape(api.post(f"/tickets/{tid}/steps/first-response", json={}), 422, "invalid_form", "agent")


# ---------------------------------------------------------------- schemathesis
# the app reads its settings and database per request, so one app serves every example;
# the test's ``sqlite_db`` fixture gives it a fresh database with the reference data
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(send=None))


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_generated_inputs_get_no_5xx_and_only_documented_statuses_and_shapes(
    seeded: None, case: Any
) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    response = case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"code", "errors"} and body["errors"], body


def test_every_documented_error_answer_is_the_one_shape(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    seen = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status, ref)
                    seen += 1
    assert seen >= 20


# ---------------------------------------------------------------- the CLI
def cli_run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_cli_intake_of_a_latin1_payload_exits_2_with_one_line(
    sqlite_db: str, tmp_path: Path
) -> None:
    f = tmp_path / "latin1.json"
    f.write_bytes(
        json.dumps({**GOOD, "customer_name": "José"}, ensure_ascii=False).encode("latin-1")
    )
    res = cli_run("intake", "--payload", str(f))
    f.unlink()  # the test's own input, not a place the product wrote (the scan reads tmp files)
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "is not UTF-8" in res.output and str(f) in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["intake", "--payload", "/nonexistent/x.json"], None, "--payload: cannot read"),
        (["intake", "--payload", "-"], "{not json", "not JSON"),
        (["intake", "--payload", "-"], "[1]", "must be a JSON object"),
        (["resume", "TK-1", "review", "--input", "{oops"], None, "--input: not JSON"),
        (["resume", "TK-1", "review", "--set", "novalue"], None, "is not field=value"),
        (["ticket", "TK-NOPE"], None, "does not exist"),
    ],
)
def test_cli_errors_exit_2_one_line_each_never_a_traceback(
    sqlite_db: str, args: list[str], stdin: str | None, message: str
) -> None:
    res = cli_run(*args, stdin=stdin)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert all(line.startswith("error: ") for line in res.output.splitlines())


def test_cli_intake_lists_every_bad_field_one_line_each(sqlite_db: str) -> None:
    res = cli_run("intake", "--payload", "-", stdin=json.dumps({"channel": "fax", "contact": "1"}))
    assert res.exit_code == 2
    lines = res.output.splitlines()
    fields = {line.split(":")[1].strip() for line in lines}
    assert {"channel", "contact", "customer_name", "description"} <= fields
    assert all(line.startswith("error: ") for line in lines)
