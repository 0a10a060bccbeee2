"""Input is checked before a run is resumed (issue 10): every human step of the inquiry,
repair and escalation SOPs is submitted once with a wrong value — a form value the
form refuses, or a value the ticket's state refuses (not the assigned engineer, an
engineer without the skill, an unsigned repair, an approval without a city) — and the
run must still wait for the same step; the right value then moves it on. Through the
three doors: ``resume_step``, ``POST /tickets/{id}/steps/{step}`` (422 naming the
field) and ``aftersales resume`` (exit 2, one line per problem). Real Prefect server,
runner, database (SQLite and PostgreSQL) and notification sink."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from aftersales import steps
from aftersales.api import create_app
from aftersales.cli import app as cli
from aftersales.humansteps import ResumeRefused, resume_step, waiting
from models.db import session_scope
from models.entities import Engineer, StepRecord
from models.repository import escalations_for, get_sop_run, get_ticket
from tests.conftest import Stack
from tests.flows.test_end_to_end import flow_run, wait, waits_for

pytestmark = pytest.mark.e2e

COVERED: set[tuple[str, str]] = set()


def run_of(ticket_id: str, sop: str, step: str) -> str:
    """The flow run waiting for ``step`` (after waiting for it to ask)."""
    wait(lambda: waits_for(ticket_id, step), 120, f"{ticket_id} to wait for {step!r}")
    (w,) = [w for w in waiting(ticket_id) if w.step_key == step]
    assert w.sop == sop
    return w.flow_run_id


def refused_then_done(
    api: TestClient,
    ticket_id: str,
    sop: str,
    step: str,
    wrong: dict[str, Any],
    field: str,
    right: dict[str, Any],
    door: str = "function",
) -> None:
    """The wrong value is refused naming ``field`` and the run keeps waiting for the same
    step (nothing recorded); the right value completes the step."""
    run_id = run_of(ticket_id, sop, step)
    if door == "http":
        resp = api.post(f"/tickets/{ticket_id}/steps/{step}", json=wrong)
        assert resp.status_code == 422, resp.text
        assert field in [e["field"] for e in resp.json()["errors"]], resp.json()
    elif door == "cli":
        args = ["resume", ticket_id, step]
        for k, v in wrong.items():
            args += ["--set", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert f"error: {field}:" in res.output and "Traceback" not in res.output
    else:
        with pytest.raises(ResumeRefused) as exc:
            resume_step(ticket_id, step, wrong)
        assert exc.value.status == 422
        assert field in [p.field for p in exc.value.problems], exc.value.problems
    time.sleep(0.5)
    state = flow_run(run_id).state
    assert state.is_paused() and state.state_details.pause_key == step, state
    with session_scope() as s:
        recorded = s.exec(
            select(StepRecord.id).where(
                StepRecord.ticket_id == ticket_id, StepRecord.step_key == step
            )
        ).all()
    assert recorded == [], f"{step}: a refused value recorded the step"
    resume_step(ticket_id, step, right)
    wait(lambda: not waits_for(ticket_id, step), 120, f"{ticket_id} to move past {step!r}")
    COVERED.add((sop, steps.base_step(step)))


def intake(api: TestClient, stack: Stack, tag: str, **extra: Any) -> str:
    resp = api.post(
        "/intake",
        json={
            "intake_id": f"checks-{tag}-{stack.backend}-{time.time_ns()}",
            "customer_name": "周强",
            "contact": "13600001111",
            "description": "heater smokes; refund 1500",
            **extra,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["ticket_id"]


def test_every_human_step_refuses_a_wrong_value_before_the_run_and_takes_the_right_one(
    stack: Stack,
) -> None:
    api = TestClient(create_app())
    COVERED.clear()

    # ---- a phone inquiry with a complex issue, a safety risk (ESC-URGENT to the director)
    # and an amount over the limit (ESC-IMPORTANT to the CS manager)
    t1 = intake(api, stack, "inq", channel="phone", safety_risk=True, amount_cny=1500)
    # ---- a repair reported directly, no customer on file (no city), software fault
    t2 = intake(api, stack, "rep", channel="online", sop="repair")

    esc = {e.escalated_to: e.id for e in _escalations(t1)}
    assert set(esc) == {"operations_director", "cs_manager"}
    refused_then_done(api, t1, "escalation", "acknowledge", {"by": "", "team": "PR"}, "by",
                      {"by": "运营总监-吴", "team": "tech support + PR"}, door="http")  # fmt: skip
    refused_then_done(api, t1, "escalation", "plan", {"by": "运营总监-吴"}, "plan",
                      {"by": "运营总监-吴", "plan": "stop batch 7"})  # fmt: skip
    refused_then_done(api, t1, "escalation", "contact",
                      {"by": "经理-钱", "compensation_plan": "refund", "contacted_at": "yesterday"},
                      "contacted_at", {"by": "经理-钱", "compensation_plan": "refund 1500"})  # fmt: skip

    refused_then_done(api, t1, "inquiry", "first-response",
                      {"agent": "小吴", "category": "Z", "priority": "auto", "complex_issue": True},
                      "category",
                      {"agent": "小吴", "category": "A", "priority": "auto", "complex_issue": True},
                      door="cli")  # fmt: skip
    # ESC-AUTHORITY: the handler reports what is beyond their authority -> the supervisor
    with session_scope() as s:
        from aftersales.clock import get_clock
        from aftersales.events import send_outbox_events
        from aftersales.runtime import deadlines

        steps.complete(s, deadlines=deadlines(), sop="ticket", step="beyond-authority",
                       ticket_id=t1, now=get_clock().now(), actor="小吴")  # fmt: skip
    send_outbox_events(now=get_clock().now(), ticket_ids=[t1])
    refused_then_done(api, t1, "escalation", "step-in", {"by": "主管-郑", "action": ""}, "action",
                      {"by": "主管-郑", "action": "approved the refund"})  # fmt: skip
    refused_then_done(api, t1, "inquiry", "callback", {"specialist": "", "notes": "x"}, "specialist",
                      {"specialist": "技术-马", "notes": "explained the fuse"})  # fmt: skip
    refused_then_done(api, t1, "inquiry", "answer", {"answered_from_knowledge_base": "perhaps",
                      "answer": "x"}, "answered_from_knowledge_base",
                      {"answered_from_knowledge_base": True, "answer": "replace the fuse"})  # fmt: skip
    refused_then_done(api, t1, "inquiry", "solved", {"resolution": "done"}, "root_cause",
                      {"resolution": "fuse replaced", "root_cause": "fuse"}, door="http")  # fmt: skip
    refused_then_done(api, t1, "inquiry", "report", {"agent": "小吴", "via": "fax"}, "via",
                      {"agent": "小吴", "via": "phone"})  # fmt: skip
    refused_then_done(api, t1, "inquiry", "feedback", {"outcome": "rated", "attitude": 9,
                      "efficiency": 5, "effectiveness": 5}, "attitude",
                      {"outcome": "rated", "attitude": 5, "efficiency": 4, "effectiveness": 5})  # fmt: skip

    # ---- repair: the state-dependent checks (Step.check), before the run is touched
    with session_scope() as s:  # the only software engineer is busy: dispatch names one
        e03 = s.get(Engineer, "E-03")
        assert e03 is not None
        e03.available = False
        s.add(e03)
    review = {"reviewer": "调度-孙", "approved": True, "skill": "software"}
    refused_then_done(api, t2, "repair", "review", review, "service_city",
                      {**review, "service_city": "上海"}, door="http")  # fmt: skip
    run_of(t2, "repair", "engineer")
    with pytest.raises(ResumeRefused, match="E-01 is a hardware engineer"):
        resume_step(t2, "engineer", {"engineer_id": "E-01"})
    refused_then_done(api, t2, "repair", "engineer", {"engineer_id": "E-99"}, "engineer_id",
                      {"engineer_id": "E-03"})  # fmt: skip
    refused_then_done(api, t2, "repair", "arrival", {"engineer_id": "E-01"}, "engineer_id",
                      {"engineer_id": "E-03"}, door="cli")  # fmt: skip
    diagnosis = {"cause": "flash", "mode": "depot", "charge": "paid_repair", "cost_cny": 300,
                 "customer_agreed": False}  # fmt: skip
    refused_then_done(api, t2, "repair", "diagnosis", {**diagnosis, "mode": "teleport"}, "mode",
                      diagnosis)  # fmt: skip
    refused_then_done(api, t2, "repair", "customer-decision", {"agreed": "maybe"}, "agreed",
                      {"agreed": True})  # fmt: skip
    signed = {"test_passed": True, "customer_signed": True, "signer": "周强",
              "device_status": "in service", "test_report": "ok"}  # fmt: skip
    refused_then_done(api, t2, "repair", "confirmation", {**signed, "customer_signed": False},
                      "customer_signed", signed, door="http")  # fmt: skip

    # every human step of the three SOPs was tried wrong, then right
    human = {
        (sop, st.id)
        for sop in ("inquiry", "repair", "escalation")
        for st in steps.steps_of(sop)
        if not st.automatic
    }
    assert human == COVERED
    with session_scope() as s:
        repair = get_sop_run(s, ticket_id=t2, sop="repair")
        inquiry = get_sop_run(s, ticket_id=t1, sop="inquiry")
    assert repair is not None and inquiry is not None
    wait(lambda: flow_run(repair.flow_run_id).state.is_completed(), 120, "repair completed")
    wait(lambda: flow_run(inquiry.flow_run_id).state.is_completed(), 120, "inquiry completed")
    for e in _escalations(t1):
        assert e.flow_run_id and flow_run(e.flow_run_id).state.is_completed(), e
    with session_scope() as s:
        assert str(get_ticket(s, ticket_id=t1).status) == "closed"
        assert str(get_ticket(s, ticket_id=t2).status) in ("resolved", "closed")
    # no run ever asked a step again: every wrong value was stopped before the run
    with session_scope() as s:
        keys = s.exec(select(StepRecord.step_key).where(StepRecord.ticket_id.in_([t1, t2]))).all()
    assert [k for k in keys if steps.base_step(k) != k] == [], keys


def _escalations(ticket_id: str) -> list[Any]:
    with session_scope() as s:
        return list(escalations_for(s, ticket_id=ticket_id))
