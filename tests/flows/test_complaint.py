"""The complaint SOP end to end on a real Prefect server, runner, database and HTTP sink
(SQLite and PostgreSQL): the supervisor rejects a solution and approves the next one;
a customer's second complaint opens ESC-IMPORTANT and a public post ESC-URGENT, each its
own escalation run. Every scenario asserts the exact escalations and notifications."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from models.db import session_scope
from models.entities import ClockState
from models.repository import clocks_for, escalations_for, get_sop_run, get_ticket
from tests.conftest import Stack
from tests.flows.test_end_to_end import escalations, flow_run, notes, submit, wait, waits_for

pytestmark = pytest.mark.e2e


def open_complaint(stack: Stack, **extra: object) -> str:
    from aftersales.api import create_app

    resp = TestClient(create_app()).post(
        "/intake",
        json={
            "channel": "phone",
            "sop": "complaint",
            "intake_id": f"cmp-{stack.backend}-{time.time_ns()}",
            "customer_id": "C-1002",
            "customer_name": "李娜",
            "contact": "13987654321",
            "description": "the engineer was rude and the device still fails",
            **extra,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["ticket_id"]


RECORD = {"agent": "小周", "cause": "rude engineer", "expected_outcome": "apology"}
INVESTIGATION = {"investigator": "主管-孙", "service_records": "WO-17", "cross_department": False}


def test_a_rejected_solution_is_proposed_again_and_the_approved_one_closes_the_complaint_CMP_1_4(
    stack: Stack,
) -> None:
    from aftersales.api import create_app

    ticket_id = open_complaint(stack)
    submit(ticket_id, "accept", RECORD)
    submit(ticket_id, "investigate", INVESTIGATION)
    submit(ticket_id, "resolve", {"by": "小周", "kind": "apology", "details": "a phone call"})
    # the supervisor rejects through HTTP, with the reason
    wait(lambda: waits_for(ticket_id, "approve"), 120, "waiting for approval")
    api = TestClient(create_app())
    refused = api.post(
        f"/tickets/{ticket_id}/steps/approve", json={"supervisor": "孙", "approved": False}
    )
    assert refused.status_code == 422 and "reason" in refused.text  # nothing resumed
    ok = api.post(
        f"/tickets/{ticket_id}/steps/approve",
        json={"supervisor": "主管-孙", "approved": False, "reason": "offer a voucher too"},
    )
    assert ok.status_code == 200, ok.text
    # round 2: proposed again, approved through the CLI
    submit(ticket_id, "resolve-r2", {"by": "小周", "kind": "compensation",
                                    "compensation_cny": 200, "details": "apology + voucher"})  # fmt: skip
    wait(lambda: waits_for(ticket_id, "approve-r2"), 120, "waiting for the second approval")
    from aftersales.cli import app as cli

    res = CliRunner().invoke(
        cli,
        [
            "resume",
            ticket_id,
            "approve-r2",
            "--set",
            "supervisor=主管-孙",
            "--set",
            "approved=true",
        ],
    )
    assert res.exit_code == 0, res.output
    submit(ticket_id, "inform-r2", {"agent": "小周", "via": "phone"})
    submit(
        ticket_id,
        "close-r2",
        {"outcome": "accepted", "tracking": "voucher sent", "theme": "attitude"},
    )
    with session_scope() as s:
        run = get_sop_run(s, ticket_id=ticket_id, sop="complaint")
    assert run is not None
    wait(lambda: flow_run(run.flow_run_id).state.is_completed(), 120, "complaint run completed")
    assert flow_run(run.flow_run_id).name == f"complaint-{ticket_id}"
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
    assert t.status == "closed" and t.result == "compensation: apology + voucher"
    for rule in ("CMP-1", "CMP-2", "CMP-3", "PRI-NORMAL:response", "PRI-NORMAL:resolution"):
        assert clocks[rule].state == ClockState.MET, rule
    assert escalations(ticket_id) == []
    assert notes(ticket_id) == [
        ("sync_group", "sync_group_post"),
        ("supervisor", "complaint_recorded"),  # CMP-1
        ("supervisor", "step_done"),  # CMP-2 investigation started
        ("supervisor", "approval_request"),  # CMP-3
        ("handler", "approval_decision"),  # rejected, with the reason
        ("supervisor", "approval_request"),
        ("handler", "approval_decision"),  # approved
        ("customer", "complaint_result"),
        ("handler", "ticket_closed"),  # CMP-4 accepted
    ]


def test_a_second_complaint_opens_ESC_IMPORTANT_and_a_public_post_ESC_URGENT_each_its_own_run(
    stack: Stack,
) -> None:
    # another customer than the first test's (its complaint is within this one's window)
    who = {"customer_id": "C-1001", "customer_name": "张伟", "contact": "13812345678"}
    first = open_complaint(stack, **who)
    submit(first, "accept", RECORD)
    second = open_complaint(stack, **who, description="again: the device fails after the repair")
    submit(second, "accept", RECORD)  # the customer's second complaint within 30 days
    wait(lambda: waits_for(second, "contact"), 120, "the CS manager's escalation run")
    submit(second, "contact", {"by": "经理-冯", "compensation_plan": "free replacement"})
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=second)
    wait(lambda: flow_run(esc[0].flow_run_id).state.is_completed(), 120, "escalation run done")
    assert escalations(first) == []
    assert escalations(second) == [("ESC-IMPORTANT", "cs_manager", "acted")]
    assert notes(second) == [
        ("sync_group", "sync_group_post"),
        ("supervisor", "complaint_recorded"),
        ("cs_manager", "escalation_opened"),  # ESC-IMPORTANT: notified at once
        ("handler", "escalation_progress"),  # contacted with the compensation plan
    ]
    with session_scope() as s:
        within = next(
            c for c in clocks_for(s, ticket_id=second) if c.rule_id == "ESC-IMPORTANT:within"
        )
    assert within.state == ClockState.MET

    from aftersales.api import create_app

    public = (
        TestClient(create_app())
        .post(
            "/intake",
            json={
                "channel": "social",
                "is_public": True,
                "intake_id": f"post-{stack.backend}-{time.time_ns()}",
                "customer_name": "网友",
                "contact": "weibo:@heater_fan",
                "description": "the heater smoked and nobody answers!",
            },
        )
        .json()["ticket_id"]
    )
    wait(lambda: waits_for(public, "acknowledge"), 120, "the director's escalation run")
    wait(lambda: waits_for(public, "accept"), 120, "the complaint run waiting beside it")
    assert escalations(public) == [("ESC-URGENT", "operations_director", "open")]
    assert notes(public) == [
        ("sync_group", "sync_group_post"),
        ("pr", "public_complaint_copy"),  # INQ-CH-SOCIAL: copied to PR
        ("operations_director", "escalation_opened"),  # ESC-URGENT at once
    ]
