"""schemathesis against the HTTP API's own OpenAPI schema (issue 11 §8), beyond the
30 examples of tests/test_api_errors.py: no 5xx, only documented statuses and shapes,
and every 4xx in the one error shape ``{"code", "errors": [{"field", "rule"}]}`` with
at least one error whose rule is not empty."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import settings

from aftersales.api import create_app
from aftersales.errors import CODES
from tests.fuzz import examples


@pytest.fixture
def seeded(sqlite_db: str) -> None:
    from aftersales.demo import seed_reference_data

    seed_reference_data()


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(send=None))


@schema.parametrize()
@settings(max_examples=examples(6))
def test_generated_requests_get_no_5xx_and_the_one_error_shape(seeded: None, case: Any) -> None:
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
        assert set(body) == {"code", "errors"}, body
        assert CODES[body["code"]] == response.status_code, body
        assert body["errors"] and all(e["field"] and e["rule"] for e in body["errors"]), body


def test_a_body_fastapi_cannot_parse_is_400_invalid_json_not_a_422_code(sqlite_db: str) -> None:
    """Found by the fuzzer: a route whose body FastAPI parses itself (the survey answer)
    answered a body that is not UTF-8 400 with the 422 code ``invalid_parameter``."""
    from fastapi.testclient import TestClient

    resp = TestClient(create_app(send=None)).post(
        "/surveys/x", content=b'"\xff"', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_json"
    assert resp.json()["errors"][0]["field"] == "body"
