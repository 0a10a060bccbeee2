"""PRIV-2: a customer's personal data erased on request through a recorded procedure that
keeps the reason, without breaking the statistics."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from typer.testing import CliRunner

from aftersales.cli import app
from aftersales.erasure import ErasureError, erase_customer
from aftersales.intake import accept_intake, parse_payload
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import Customer, CustomerCreate, Erasure
from models.repository import get_ticket, notifications_for, upsert_customer

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def open_ticket(key: str, **kw: object) -> str:
    payload = {
        "channel": "phone",
        "intake_id": key,
        "customer_name": "张伟",
        "contact": "13812345678",
        "description": "call 13812345678, ID 110105199003071234",
        **kw,
    }
    return accept_intake(parse_payload(payload), ctx=deadlines(), now=NOW).ticket_id


def test_erasure_removes_personal_data_keeps_statistics_and_records_the_reason_PRIV_2(
    sqlite_db: str,
) -> None:
    with session_scope() as s:
        upsert_customer(
            s,
            data=CustomerCreate(
                id="C-1",
                name="张伟",
                phone="13812345678",
                city="上海",
                lat=31.2,
                lon=121.4,
                address="上海市浦东新区世纪大道100号",
                id_number="110105199003071234",
            ),
            now=NOW,
        )
    registered = open_ticket("call-1", customer_id="C-1")
    walk_in = open_ticket("call-2")  # same caller, not linked to the customer record
    with session_scope() as s:
        t = get_ticket(s, ticket_id=registered)
        t.satisfaction = 9
        s.add(t)
    with session_scope() as s:
        rec = erase_customer(
            s,
            customer_id="C-1",
            reason="customer request by phone 2026-11-23",
            requested_by="客服主管-周",
            now=NOW,
        )
        assert rec.tickets_affected == 2
    with session_scope() as s:
        c = s.get(Customer, "C-1")
        assert (c.name, c.phone, c.address, c.id_number) == ("[erased]", "[erased]", None, None)
        assert c.city == "上海"  # kept for statistics
        for tid in (registered, walk_in):
            t = get_ticket(s, ticket_id=tid)
            assert (t.customer_name, t.contact) == ("[erased]", "[erased]")
            assert "13812345678" not in t.description and "110105199003071234" not in t.description
        assert get_ticket(s, ticket_id=registered).satisfaction == 9  # statistics intact
        # the stored messages (masked when rendered) lose the name too
        for tid in (registered, walk_in):
            stored = notifications_for(s, ticket_id=tid)
            assert stored and all("张伟" not in n.title + n.body for n in stored)
        (row,) = s.exec(__import__("sqlmodel").select(Erasure)).all()
        assert row.reason == "customer request by phone 2026-11-23"
        assert row.requested_by == "客服主管-周"
        assert "13812345678" not in json.dumps(row.model_dump(mode="json"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"customer_id": "C-9", "reason": " ", "requested_by": "x"}, "reason"),
        ({"customer_id": "C-9", "reason": "asked", "requested_by": ""}, "requested_by"),
        ({"reason": "asked", "requested_by": "x"}, "customer_id/contact"),
        ({"customer_id": "C-404", "reason": "asked", "requested_by": "x"}, "customer_id"),
    ],
)
def test_erasure_request_without_reason_or_subject_is_refused_PRIV_2(
    sqlite_db: str, kwargs: dict, field: str
) -> None:
    with pytest.raises(ErasureError, match=f"^{field}"), session_scope() as s:
        erase_customer(s, now=NOW, **kwargs)


def test_cli_erase_by_contact_prints_the_record_PRIV_2(sqlite_db: str) -> None:
    tid = open_ticket("call-3")
    res = CliRunner().invoke(
        app,
        [
            "privacy",
            "erase",
            "--contact",
            "13812345678",
            "--reason",
            "asked on the hotline",
            "--by",
            "周",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["tickets_affected"] == 1
    with session_scope() as s:
        assert get_ticket(s, ticket_id=tid).contact == "[erased]"
    res = CliRunner().invoke(app, ["privacy", "erase", "--contact", "13812345678", "--by", "周"])
    assert res.exit_code != 0
