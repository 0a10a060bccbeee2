"""The month's callback plan end to end on a real Prefect server, runner, database and
HTTP sink (SQLite and PostgreSQL): an ordinary customer's repair completed this month
(REP-4 hands it to its callback, CB-2 met by the call), and three VIP customers the plan
(CB-1) adds: one reached with good scores, one never reached (unreachable after the
profile's attempts), one whose low score opens a complaint linked to the callback
(CB-3). Running the plan again starts nothing new. Exact notifications at the sink."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from models.db import session_scope
from models.entities import Callback, ClockState, CustomerCreate, TicketStatus
from models.repository import (
    clocks_for,
    get_sop_run,
    get_ticket,
    get_work_order,
    upsert_customer,
)
from tests.conftest import Stack
from tests.flows.test_end_to_end import flow_run, notes, submit, wait, waits_for

pytestmark = pytest.mark.e2e

GOOD = {"caller": "回访-林", "reached": True, "attitude": 5, "efficiency": 4, "effectiveness": 5}
AWAY = {"caller": "回访-林", "reached": False}
LOW = {"caller": "回访-林", "reached": True, "attitude": 2, "efficiency": 3,
       "effectiveness": 3, "answer": "the engineer was rude"}  # fmt: skip
CUSTOMERS = [
    # ordinary, in a city without an engineer (REP-2 other city: 10 min in the e2e profile)
    CustomerCreate(
        id="C-3001",
        name="周敏",
        phone="13700001111",
        city="南京",
        lat=32.06,
        lon=118.79,
        address="南京市玄武区中山路1号",
    ),  # fmt: skip
    CustomerCreate(
        id="C-3002", name="吴军", phone="13700002222", city="上海", lat=31.23, lon=121.47, vip=True
    ),
    CustomerCreate(
        id="C-3003", name="郑红", phone="13700003333", city="上海", lat=31.23, lon=121.47, vip=True
    ),
]


def repaired_through_the_runner(stack: Stack, customer: CustomerCreate) -> str:
    """A repair request taken through REP-1..4 by forms, as the people would."""
    from fastapi.testclient import TestClient

    from aftersales.api import create_app

    resp = TestClient(create_app()).post(
        "/intake",
        json={
            "channel": "phone",
            "sop": "repair",
            "intake_id": f"cb-{stack.backend}-{time.time_ns()}",
            "customer_id": customer.id,
            "customer_name": customer.name,
            "contact": customer.phone,
            "product_model": "X200",
            "purchase_date": "2026-06-01",
            "description": "X200 does not start",
            "service_city": customer.city,
        },
    )
    assert resp.status_code == 201, resp.text
    tid = resp.json()["ticket_id"]
    submit(tid, "review", {"reviewer": "调度-孙", "approved": True, "skill": "hardware"})
    wait(lambda: waits_for(tid, "arrival"), 120, f"{tid} to wait for arrival")
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=tid)
        assert wo is not None and wo.engineer_id is not None and wo.same_city is False
        engineer = wo.engineer_id  # the nearest hardware engineer (REP-2 other city)
    submit(tid, "arrival", {"engineer_id": engineer})
    submit(tid, "diagnosis", {"cause": "fuse", "mode": "on_site", "charge": "free",
                              "cost_cny": 0, "customer_agreed": True})  # fmt: skip
    submit(tid, "confirmation", {"test_passed": True, "customer_signed": True, "signer": "周敏",
                                 "device_status": "in service", "test_report": "ok"})  # fmt: skip
    return tid


def run_plan(month: str) -> list[dict[str, str]]:
    """The ``callback-plan`` deployment, run as its monthly schedule (or ``--month``) does."""
    from prefect.deployments import run_deployment

    fr = run_deployment(
        "callback_plan/callback-plan", parameters={"month": month}, timeout=180, poll_interval=1
    )
    assert fr.state is not None and fr.state.is_completed(), fr.state
    return fr.state.result()


def test_a_month_plan_calls_an_ordinary_and_VIP_customers_one_unreachable_one_low_score_CB_1_3(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    month = now.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    with session_scope() as s:
        for c in CUSTOMERS:
            upsert_customer(s, data=c, now=now)
    ordinary = repaired_through_the_runner(stack, CUSTOMERS[0])
    # REP-4 handed the repair to its callback at once (CB-2: 3 working days)
    submit(ordinary, "call", GOOD)

    plan = run_plan(month)
    by_customer = {r["customer id"]: r for r in plan}
    assert (
        by_customer["C-3001"]["reason"] == "repair" and by_customer["C-3001"]["ticket"] == ordinary
    )
    assert by_customer["C-3001"]["state"] == "running"  # its callback started at REP-4
    for vip in ("C-1001", "C-3002", "C-3003"):  # the VIPs, one line each, started now
        assert by_customer[vip]["reason"] == "vip" and by_customer[vip]["method"] == "phone"
        assert by_customer[vip]["state"] == "started"
    assert len(plan) == len(by_customer)  # deduplicated per customer
    assert all("吴军" not in r["customer"] for r in plan)  # masked in the artifact (PRIV-1)
    again = run_plan(month)  # the plan again for the same month: nothing new starts
    assert all(r["state"] in ("running", "already planned") for r in again), again
    assert {r["ticket"] for r in again} == {r["ticket"] for r in plan}

    reached, away, low = (by_customer[c]["ticket"] for c in ("C-1001", "C-3002", "C-3003"))
    # the three ways a person submits a form: HTTP here, the CLI for the low score below,
    # the Python API (what both call) for the others
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from aftersales.api import create_app
    from aftersales.cli import app as cli

    wait(lambda: waits_for(reached, "call"), 120, f"{reached} to wait for 'call'")
    resp = TestClient(create_app()).post(
        f"/tickets/{reached}/steps/call", json={**GOOD, "answer": "all good"}
    )
    assert resp.status_code == 200 and resp.json()["status"] == "resumed", resp.text
    # not reached: asked again (the next working day), then unreachable after 3 attempts
    submit(away, "call", AWAY)
    submit(away, "call-2", AWAY)
    submit(away, "call-3", AWAY)
    wait(lambda: waits_for(low, "call"), 120, f"{low} to wait for 'call'")
    sets = [
        x
        for k, v in LOW.items()
        for x in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")
    ]
    res = CliRunner().invoke(cli, ["resume", low, "call", *sets])
    assert res.exit_code == 0, res.output

    for tid in (ordinary, reached, away, low):
        with session_scope() as s:
            run = get_sop_run(s, ticket_id=tid, sop="callback")
        assert run is not None
        wait(lambda r=run: flow_run(r.flow_run_id).state.is_completed(), 120, f"callback {tid}")
        assert flow_run(run.flow_run_id).name == f"callback-{tid}"

    with session_scope() as s:
        cb = {c.rule_id: c for c in clocks_for(s, ticket_id=ordinary)}
        records = {
            r.ticket_id: r
            for r in s.exec(
                select(Callback).where(Callback.ticket_id.in_([ordinary, reached, away, low]))
            )
        }
        t_ord, t_low = get_ticket(s, ticket_id=ordinary), get_ticket(s, ticket_id=low)
    assert cb["CB-2:ordinary"].state == ClockState.MET  # met by the call, not breached
    assert "CB-2:vip-second" not in cb  # an ordinary customer: one call
    assert t_ord.satisfaction == pytest.approx(9.33) and t_ord.status == TicketStatus.CLOSED
    assert records[away].unreachable and records[away].attempts == 3
    assert records[reached].attitude == 5 and not records[reached].unreachable
    # CB-3: a low score (attitude 2) opened a complaint linked to the callback's ticket
    complaint = records[low].complaint_ticket_id
    assert complaint is not None and t_low.satisfaction == pytest.approx(5.33)
    with session_scope() as s:
        ct = get_ticket(s, ticket_id=complaint)
    assert ct.parent_ticket_id == low and str(ct.sop) == "complaint"
    wait(lambda: waits_for(complaint, "accept"), 120, "the complaint run waiting for CMP-1")

    # exactly the messages each ticket caused, in order
    assert notes(reached) == [("handler", "callback_done")]
    assert notes(away) == [("handler", "callback_done")]
    assert notes(low) == [("handler", "callback_done")]
    assert notes(ordinary)[-1] == ("handler", "callback_done")
    assert notes(complaint) == [("sync_group", "sync_group_post")]  # CMP-1 clock armed
