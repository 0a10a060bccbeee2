"""Fuzzed intakes (issue 11 §8): a valid base with one field mutated to a random JSON
value. ``parse_payload`` either accepts or raises only ``IntakeError`` naming payload
fields; an accepted payload is stored as one ticket whose fields equal the payload's
(read back from the database and through ``GET /tickets/{id}``); a refused one stores
nothing. Through the HTTP API (raw bytes too): never a 5xx, every 4xx in the one shape.
The inputs that answered 500 or were wrongly accepted before are pinned as examples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import text

from aftersales.api import create_app
from aftersales.clock import get_clock
from aftersales.intake import (
    IntakeError,
    IntakePayload,
    accept_intake,
    initial_priority,
    parse_payload,
)
from aftersales.privacy import mask_text
from aftersales.runtime import deadlines
from models.db import session_scope
from tests.fuzz import json_values, nasty_text, odd_strings

FIELDS = tuple(IntakePayload.model_fields)
BASE: dict[str, Any] = {
    "channel": "online",
    "sop": "inquiry",
    "customer_name": "李娜",
    "contact": "13987654321",
    "product_model": "AC-2000",
    "description": "The remote does not pair.",
    "amount_cny": 120.5,
    "received_at": "2026-01-05T09:00:00+08:00",
}
#: what a field may be set to: any JSON value, or one of the values it may legally take
LEGAL: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.sampled_from(["phone", "online", "email", "social"]),
    "sop": st.sampled_from(["inquiry", "repair", "complaint"]),
    "email_grade": st.sampled_from(["urgent", "important", "normal"]),
    "is_public": st.booleans(),
    "safety_risk": st.booleans(),
    "amount_cny": st.floats(min_value=0, max_value=1e8),
    "purchase_date": st.dates().map(str),
    "received_at": st.datetimes(
        min_value=datetime(1999, 12, 30),
        max_value=datetime(2030, 1, 1),
        timezones=st.sampled_from([UTC, None]),
    ).map(lambda d: d.isoformat()),  # fmt: skip
}


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A near-valid payload: the base with one or two fields set, dropped, or a junk key."""
    data = {**BASE, "intake_id": f"fz-{uuid.UUID(int=draw(st.integers(0, 2**64)))}"}
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from([*FIELDS, "(junk)"]))
        if field == "(junk)":
            data[draw(nasty_text)] = draw(json_values)
        elif draw(st.integers(0, 9)) == 0:
            data.pop(field, None)
        else:
            legal = LEGAL.get(field, odd_strings | nasty_text)
            data[field] = draw(st.one_of(json_values, legal))
    return data


PINNED: list[dict[str, Any]] = [
    # answered 500 before (helper 2's fixes): an out-of-range offset time
    {**BASE, "received_at": "9999-12-31T23:59:59-12:00"},
    {**BASE, "received_at": "0001-01-01T00:00:00+14:00"},
    # accepted before: infinite amounts, a number read as seconds since 1970
    {**BASE, "amount_cny": float("inf")},
    {**BASE, "amount_cny": float("nan")},
    {**BASE, "amount_cny": 10**309},
    {**BASE, "received_at": 463},
    {**BASE, "received_at": 1.5e9},
    # a lone surrogate in a list value and in a key
    {**BASE, "description": ["\ud800"]},
    {**BASE, "\udc00": 1},
    # rejections by a rule across fields must still name a field
    {**BASE, "email_grade": "urgent"},
    {**BASE, "is_public": True},
    {**BASE, "is_public": True, "sop": "repair", "channel": "social"},
]


def tickets() -> int:
    with session_scope() as s:
        return int(s.execute(text("SELECT count(*) FROM ticket")).scalar_one())


def _check_refusal(exc: IntakeError) -> None:
    """A refusal names at least one field; each is a payload field, or an extra key
    named as itself (printable), never ``(payload)``."""
    assert exc.errors, "a refusal names at least one field"
    for field, rule in exc.errors:
        assert rule and field and field != "(payload)", exc.errors
        if field.split(".")[0] not in FIELDS:
            assert rule in ("Extra inputs are not permitted", "is not a field of an intake"), (
                exc.errors
            )
        field.encode("utf-8")  # printable: no lone surrogate


def _check_round_trip(api: TestClient, payload: IntakePayload, ticket_id: str) -> None:
    from models.entities import Ticket

    with session_scope() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        stored = {f: getattr(t, f) for f in (
            "channel", "customer_name", "contact", "product_model", "purchase_date",
            "description", "email_grade", "is_public", "safety_risk", "amount_cny",
            "service_city", "customer_id",
        )}  # fmt: skip
        created = t.created_at
    sent = payload.model_dump()
    for f, v in stored.items():
        assert v == sent[f], (f, v, sent[f])
    if payload.received_at is not None:
        got = created if created.tzinfo else created.replace(tzinfo=UTC)
        assert got == payload.received_at, (created, payload.received_at)
    resp = api.get(f"/tickets/{ticket_id}")
    assert resp.status_code == 200, resp.text
    view = resp.json()["ticket"]
    assert view["channel"] == str(payload.channel)
    assert view["sop"] == ("complaint" if payload.is_public else payload.sop)
    assert view["priority"] == str(initial_priority(payload))
    assert view["customer_name"] == mask_text(payload.customer_name)
    assert view["contact"] == mask_text(payload.contact)


@pytest.fixture
def api(sqlite_db: str) -> TestClient:
    return TestClient(create_app(send=None))


@given(data=mutated())
@example(data=BASE | {"intake_id": "fz-base"})
def test_parse_then_accept_refuses_by_field_or_round_trips(
    api: TestClient, data: dict[str, Any]
) -> None:
    before = tickets()
    try:
        payload = parse_payload(data)
    except IntakeError as exc:
        _check_refusal(exc)
        assert tickets() == before
        return
    now = get_clock().now()
    try:
        result = accept_intake(payload, ctx=deadlines(), now=now, send=None)
    except IntakeError as exc:
        _check_refusal(exc)
        assert tickets() == before, "nothing stored for a refused intake"
        return
    if result.created:
        assert tickets() == before + 1
        _check_round_trip(api, payload, result.ticket_id)
    else:
        assert tickets() == before


@pytest.mark.parametrize("data", PINNED, ids=range(len(PINNED)))
def test_pinned_inputs_are_refused_by_field(sqlite_db: str, data: dict[str, Any]) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_payload(data)
    _check_refusal(caught.value)
    assert all(f != "(payload)" for f, _ in caught.value.errors), caught.value.errors


def _shape(resp: Any) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code >= 400:
        body = resp.json()
        assert set(body) == {"code", "errors"}, body
        assert body["errors"], body
        assert all(set(e) == {"field", "rule"} and e["rule"] for e in body["errors"]), body


def _dumps(data: Any) -> bytes:
    """JSON as a client would send it: non-finite floats as the words Python writes,
    lone surrogates as \\u escapes (ensure_ascii)."""
    return json.dumps(data).encode("ascii")


@given(data=mutated())
@example(data=PINNED[0])
@example(data=PINNED[7])
def test_http_intake_never_5xx_and_every_refusal_in_the_one_shape(
    api: TestClient, data: dict[str, Any]
) -> None:
    before = tickets()
    resp = api.post("/intake", content=_dumps(data), headers={"content-type": "application/json"})
    _shape(resp)
    if resp.status_code >= 400:
        assert tickets() == before
    else:
        assert resp.status_code in (200, 201), resp.text
        assert tickets() == before + (resp.status_code == 201)


@given(
    body=st.binary(max_size=200)
    | st.builds(lambda b, t: b + t, st.just(b'{"channel":'), st.binary(max_size=40))
)
@example(body=b'{"channel": "phone", "description": ["\\ud800"]}')
@example(body=b'{"received_at": 1e309}')
@example(body=b"\xff\xfe{}")
@example(body=b'{"a": NaN}')
def test_http_raw_bytes_never_5xx(api: TestClient, body: bytes) -> None:
    before = tickets()
    resp = api.post("/intake", content=body, headers={"content-type": "application/json"})
    _shape(resp)
    if resp.status_code >= 400:
        assert tickets() == before


def test_received_at_in_the_future_is_refused_and_nothing_stored(sqlite_db: str) -> None:
    now = get_clock().now()
    payload = parse_payload({**BASE, "received_at": (now + timedelta(hours=1)).isoformat()})
    with pytest.raises(IntakeError) as caught:
        accept_intake(payload, ctx=deadlines(), now=now, send=None)
    assert caught.value.errors[0][0] == "received_at"
    assert tickets() == 0
