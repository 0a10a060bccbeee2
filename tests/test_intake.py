"""Intake: a validated payload makes one ticket with its first clocks (INQ-1, INQ-CH-*,
PRI-*, ESC-*, INQ-SYNC); the same intake twice is one ticket; a bad payload names the
field and the rule and stores nothing. Producers: HTTP endpoint and CLI."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select
from typer.testing import CliRunner

from aftersales.api import create_app
from aftersales.cli import app as cli
from aftersales.intake import IntakeError, accept_intake, parse_payload
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import SlaClock, Ticket
from models.repository import clocks_for

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
GOOD = {
    "channel": "online",
    "intake_id": "chat-1",
    "customer_name": "李娜",
    "contact": "13987654321",
    "description": "How do I pair the remote?",
}


def counts() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.exec(select(func.count()).select_from(Ticket)).one(),
            s.exec(select(func.count()).select_from(SlaClock)).one(),
        )


@pytest.mark.parametrize(
    ("extra", "rules"),
    [
        (
            {"channel": "phone"},
            {"INQ-CH-PHONE:response", "INQ-CH-PHONE:resolution", "INQ-CH-PHONE:progress",
             "PRI-NORMAL:response", "PRI-NORMAL:resolution", "ESC-TIMEOUT:normal"},
        ),
        (
            {"channel": "online"},
            {"INQ-CH-ONLINE:response", "INQ-CH-ONLINE:resolution", "PRI-NORMAL:response",
             "PRI-NORMAL:resolution", "ESC-TIMEOUT:normal"},
        ),
        (
            {"channel": "email", "email_grade": "important"},
            {"INQ-CH-EMAIL:important", "PRI-IMPORTANT:response", "PRI-IMPORTANT:resolution",
             "ESC-TIMEOUT:important"},
        ),
        (
            {"channel": "email"},
            {"INQ-CH-EMAIL:normal", "PRI-NORMAL:response", "PRI-NORMAL:resolution",
             "ESC-TIMEOUT:normal"},
        ),
        (
            {"channel": "social", "is_public": True},
            {"INQ-CH-SOCIAL:response", "INQ-CH-SOCIAL:public-complaint", "INQ-CH-SOCIAL:resolution",
             "PRI-URGENT:response", "PRI-URGENT:resolution", "ESC-TIMEOUT:urgent",
             # ESC-URGENT opened at intake: its own clocks (escalation 1)
             "ESC-URGENT:within", "ESC-URGENT:plan", "ESC-URGENT:resolution",
             "CMP-1"},  # a public post is a complaint ticket: recorded within 10 min
        ),
        (
            {"channel": "phone", "safety_risk": True},
            {"INQ-CH-PHONE:response", "INQ-CH-PHONE:resolution", "INQ-CH-PHONE:progress",
             "PRI-URGENT:response", "PRI-URGENT:resolution", "ESC-TIMEOUT:urgent",
             "ESC-URGENT:within", "ESC-URGENT:plan", "ESC-URGENT:resolution"},
        ),
        (
            {"channel": "phone", "amount_cny": 1500},
            {"INQ-CH-PHONE:response", "INQ-CH-PHONE:resolution", "INQ-CH-PHONE:progress",
             "PRI-IMPORTANT:response", "PRI-IMPORTANT:resolution", "ESC-TIMEOUT:important",
             "ESC-IMPORTANT:within", "ESC-IMPORTANT:resolution"},
        ),
        (
            {"channel": "phone", "amount_cny": 1000},
            {"INQ-CH-PHONE:response", "INQ-CH-PHONE:resolution", "INQ-CH-PHONE:progress",
             "PRI-NORMAL:response", "PRI-NORMAL:resolution", "ESC-TIMEOUT:normal"},
        ),
    ],
)  # fmt: skip
def test_first_clocks_by_channel_and_grade_INQ_1_INQ_CH_PRI_ESC(
    sqlite_db: str, extra: dict[str, Any], rules: set[str]
) -> None:
    """Exactly the clocks the policy starts at intake, and nothing nobody can stop:
    ESC-NORMAL counts from the first-response deadline; INQ-SYNC is met at once."""
    r = accept_intake(parse_payload({**GOOD, **extra}), ctx=deadlines(), now=NOW)
    with session_scope() as s:
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=r.ticket_id)}
    assert set(clocks) == rules | {"INQ-SYNC", "ESC-NORMAL"}
    assert clocks["INQ-SYNC"].state == "met"
    first_due = min(c.due_at for c in clocks.values() if c.kind == "response")
    assert clocks["ESC-NORMAL"].started_at == first_due  # ESC-NORMAL: 30 min after it
    assert (clocks["ESC-NORMAL"].due_at - first_due).total_seconds() == 30 * 60


def test_same_intake_twice_is_one_ticket_REC_1(sqlite_db: str) -> None:
    ctx = deadlines()
    a = accept_intake(parse_payload(GOOD), ctx=ctx, now=NOW)
    b = accept_intake(parse_payload(GOOD), ctx=ctx, now=NOW)
    assert a.created and not b.created and a.ticket_id == b.ticket_id
    assert b.event is None  # the duplicate starts no second run
    assert counts()[0] == 1
    with session_scope() as s:
        clocks = clocks_for(s, ticket_id=a.ticket_id)
    online = next(c for c in clocks if c.rule_id == "INQ-CH-ONLINE:response")
    assert (online.due_at - online.started_at).total_seconds() == 30


def test_intake_without_source_id_is_deduplicated_by_content_and_time(sqlite_db: str) -> None:
    payload = {k: v for k, v in GOOD.items() if k != "intake_id"} | {"received_at": NOW.isoformat()}
    a = accept_intake(parse_payload(payload), ctx=deadlines(), now=NOW)
    b = accept_intake(parse_payload(payload), ctx=deadlines(), now=NOW)
    assert a.ticket_id == b.ticket_id and counts()[0] == 1


@pytest.mark.parametrize(
    ("patch", "field", "rule"),
    [
        ({"channel": "fax"}, "channel", "Input should be 'phone', 'online', 'email' or 'social'"),
        ({"contact": "123"}, "contact", "at least 5 characters"),
        ({"customer_name": ""}, "customer_name", "at least 1 character"),
        ({"received_at": "2026-11-23T10:00:00"}, "received_at", "must carry a UTC offset"),
        ({"email_grade": "urgent"}, "email_grade", "email_grade is only for the email channel"),
        ({"amount_cny": -1}, "amount_cny", "greater than or equal to 0"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        # issue 11 §3 fuzz findings: never stored as 1970, never a 500
        ({"received_at": 463}, "received_at", "ISO 8601 date-time text"),
        ({"received_at": "9999-12-31T23:59:59-12:00"}, "received_at", "out of range"),
        ({"received_at": "0001-01-01T00:00:00+14:00"}, "received_at", "out of range"),
        ({"received_at": "1999-12-31T23:00:00+00:00"}, "received_at", "out of range"),
    ],
)
def test_bad_payload_names_field_and_rule_and_stores_nothing(
    sqlite_db: str, patch: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(IntakeError) as err:
        parse_payload({**GOOD, **patch})
    assert any(f == field and rule in r for f, r in err.value.errors), err.value.errors
    api = TestClient(create_app(send=None))
    resp = api.post("/intake", json={**GOOD, **patch})
    assert resp.status_code == 422
    assert any(e["field"] == field and rule in e["rule"] for e in resp.json()["errors"])
    assert counts() == (0, 0)


def test_missing_required_field_is_named(sqlite_db: str) -> None:
    payload = {k: v for k, v in GOOD.items() if k != "description"}
    resp = TestClient(create_app(send=None)).post("/intake", json=payload)
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"field": "description", "rule": "Field required"}]


def test_http_intake_stores_and_sends_one_start_event_for_a_new_ticket_only(sqlite_db: str) -> None:
    """The start event is stored with the ticket (one transaction), then sent; the same
    intake again stores and sends nothing."""
    from models.entities import OutboxEvent

    sent: list[str] = []
    api = TestClient(create_app(send=lambda now, ticket_id: sent.append(ticket_id) or 1))
    first = api.post("/intake", json={**GOOD, "intake_id": "chat-2"})
    second = api.post("/intake", json={**GOOD, "intake_id": "chat-2"})
    assert (first.status_code, second.status_code) == (201, 200)
    tid = first.json()["ticket_id"]
    assert sent == [tid]
    with session_scope() as s:
        starts = s.exec(
            select(OutboxEvent.event).where(OutboxEvent.event == "aftersales.inquiry.received")
        ).all()
    assert starts == ["aftersales.inquiry.received"]


def test_ticket_endpoint_masks_personal_data_PRIV_1(sqlite_db: str) -> None:
    api = TestClient(create_app(send=None))
    tid = api.post("/intake", json=GOOD).json()["ticket_id"]
    body = api.get(f"/tickets/{tid}").json()
    assert "13987654321" not in json.dumps(body, ensure_ascii=False)
    assert body["ticket"]["contact"] == "139****4321"
    assert {c["rule_id"] for c in body["clocks"]} >= {"INQ-CH-ONLINE:response", "INQ-SYNC"}
    assert api.get("/tickets/TK-NOPE").status_code == 404


def test_repair_intake_arms_review_clock_and_notifies_dispatch_REP_1(sqlite_db: str) -> None:
    r = accept_intake(
        parse_payload({**GOOD, "intake_id": "chat-3", "sop": "repair"}),
        ctx=deadlines(),
        now=NOW,
    )
    assert r.event == "aftersales.repair.requested"
    with session_scope() as s:
        rules = {c.rule_id: c for c in clocks_for(s, ticket_id=r.ticket_id)}
        from models.repository import notifications_for

        notes = [(n.role, n.template) for n in notifications_for(s, ticket_id=r.ticket_id)]
    assert (rules["REP-1"].due_at - rules["REP-1"].started_at).total_seconds() == 30 * 60
    assert ("dispatch", "repair_request") in notes


def test_cli_intake_bad_payload_exits_non_zero_naming_the_field(sqlite_db: str) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "intake",
            "--channel",
            "fax",
            "--name",
            "A",
            "--contact",
            "13812345678",
            "--description",
            "x",
            "--no-event",
        ],
    )
    assert res.exit_code == 2
    assert "channel" in res.output and counts() == (0, 0)


def test_cli_intake_twice_prints_the_same_ticket(sqlite_db: str) -> None:
    args = [
        "intake",
        "--channel",
        "phone",
        "--name",
        "A",
        "--contact",
        "13812345678",
        "--description",
        "no power",
        "--intake-id",
        "call-9",
        "--no-event",
    ]
    a = json.loads(CliRunner().invoke(cli, args).output)
    b = json.loads(CliRunner().invoke(cli, args).output)
    assert a["created"] and not b["created"] and a["ticket_id"] == b["ticket_id"]


def test_unknown_customer_id_is_refused_naming_the_field_and_nothing_is_stored(
    sqlite_db: str,
) -> None:
    resp = TestClient(create_app(send=None)).post("/intake", json={**GOOD, "customer_id": "C-404"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "customer_id"
    assert "no customer 'C-404'" in resp.json()["errors"][0]["rule"]
    assert counts() == (0, 0)


def test_public_social_complaint_is_copied_to_pr_and_urgent_INQ_CH_SOCIAL_ESC_URGENT(
    sqlite_db: str,
) -> None:
    from models.repository import get_ticket, notifications_for

    r = accept_intake(
        parse_payload({**GOOD, "channel": "social", "intake_id": "weibo-1", "is_public": True}),
        ctx=deadlines(),
        now=NOW,
    )
    with session_scope() as s:
        notes = [(n.role, n.template) for n in notifications_for(s, ticket_id=r.ticket_id)]
        assert get_ticket(s, ticket_id=r.ticket_id).priority == "urgent"
        rules = {c.rule_id: c for c in clocks_for(s, ticket_id=r.ticket_id)}
    assert ("pr", "public_complaint_copy") in notes
    public = rules["INQ-CH-SOCIAL:public-complaint"]
    assert (public.due_at - public.started_at).total_seconds() == 3600


# ---------------------------------------------------------------- issue 11 §3
def test_intake_while_prefect_is_down_is_201_at_once_and_its_start_event_stays_stored(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting the SOP is not intake's job: the ticket and its start event are stored
    and the answer is 201 without waiting for Prefect; the API's pump then tries the send
    in the background, fails (nothing listens) and records the attempt; the event stays
    in the outbox for the SLA service."""
    import time

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from aftersales.events import PUMP
    from aftersales.settings import reset_settings
    from models.entities import OutboxEvent

    closed = "http://127.0.0.1:9/api"
    monkeypatch.setenv("PREFECT_API_URL", closed)
    reset_settings()
    api = TestClient(create_app())  # the default: PUMP.queue

    def start_event(tid: str) -> OutboxEvent:
        with session_scope() as s:
            (row,) = s.exec(
                select(OutboxEvent).where(
                    OutboxEvent.ticket_id == tid, OutboxEvent.event == "aftersales.inquiry.received"
                )
            ).all()
            return row

    with temporary_settings({PREFECT_API_URL: closed}):
        t0 = time.monotonic()
        resp = api.post("/intake", json={**GOOD, "intake_id": "down-1"})
        took = time.monotonic() - t0
        assert resp.status_code == 201, resp.text
        assert took < 1.5, took  # the transaction only: nobody waits for Prefect
        tid = resp.json()["ticket_id"]
        end = time.monotonic() + 30
        while start_event(tid).attempts == 0 and time.monotonic() < end:
            time.sleep(0.1)
    row = start_event(tid)
    assert row.attempts == 1 and row.sent_at is None and row.last_error, row
    assert PUMP.rounds >= 1
    assert counts()[0] == 1


def test_fifty_concurrent_identical_posts_without_id_or_time_make_one_ticket(any_db: str) -> None:
    """No intake_id, no received_at: the key is the content within the dedupe window, so
    a client's retries (or 50 at once) are one ticket: one 201, the rest 200."""
    from concurrent.futures import ThreadPoolExecutor

    api = TestClient(create_app(send=None))
    payload = {k: v for k, v in GOOD.items() if k != "intake_id"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: api.post("/intake", json=payload), range(50)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 49 + [201], {r.status_code: r.text for r in answers}
    assert len({r.json()["ticket_id"] for r in answers}) == 1
    assert counts()[0] == 1


def test_a_retry_just_across_the_dedupe_window_boundary_is_the_same_ticket(sqlite_db: str) -> None:
    from datetime import timedelta

    payload = parse_payload({k: v for k, v in GOOD.items() if k != "intake_id"})
    window = 600
    edge = datetime.fromtimestamp((int(NOW.timestamp()) // window + 1) * window, tz=NOW.tzinfo)
    a = accept_intake(payload, ctx=deadlines(), now=edge - timedelta(seconds=1))
    b = accept_intake(payload, ctx=deadlines(), now=edge + timedelta(seconds=1))
    c = accept_intake(payload, ctx=deadlines(), now=edge + timedelta(seconds=2 * window))
    assert a.created and not b.created and a.ticket_id == b.ticket_id
    assert c.created and c.ticket_id != a.ticket_id  # two windows later: a new intake


def test_infinite_amount_and_lone_surrogates_are_refused_by_field_never_a_500(
    sqlite_db: str,
) -> None:
    for patch, field in (({"amount_cny": 1e309}, "amount_cny"),
                         ({"description": ["\ud800"]}, "description")):  # fmt: skip
        with pytest.raises(IntakeError) as err:
            parse_payload({**GOOD, **patch})
        assert field in [f for f, _ in err.value.errors]
    api = TestClient(create_app(send=None))
    head = {"content-type": "application/json"}
    inf = api.post(
        "/intake", content=json.dumps(GOOD)[:-1] + ', "amount_cny": 1e309}', headers=head
    )
    assert inf.status_code == 422 and inf.json()["errors"][0]["field"] == "amount_cny"
    sur = api.post("/intake", content=json.dumps(GOOD)[:-1] + ', "x": ["\\ud800"]}', headers=head)
    assert sur.status_code == 400 and sur.json()["code"] == "invalid_encoding"
    assert counts() == (0, 0)
