"""End to end on a real Prefect server, a real runner, a real database and a real HTTP
sink: intake event -> inquiry (class B, INQ-2) -> repair dispatch (REP-1..4) ->
REM-1 reminder -> REP-2 breach -> escalation received -> engineer resumes -> completed.
Runs on SQLite and on PostgreSQL (skipped with a reason where none is reachable)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from aftersales.humansteps import resume_step, submit_step, waiting_step
from aftersales.policy import load_profile
from models.db import session_scope
from models.entities import ClockState, TicketStatus
from models.repository import (
    clocks_for,
    escalations_for,
    get_sop_run,
    get_ticket,
    get_work_order,
    notifications_for,
)
from tests.conftest import E2E_PROFILE, Stack

pytestmark = pytest.mark.e2e


def wait(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def waits_for(ticket_id: str, step: str) -> bool:
    try:
        return any(s == step for _, s in waiting_step(ticket_id))
    except Exception:  # noqa: BLE001 - the run may not exist yet
        return False


def submit(ticket_id: str, step: str, data: dict[str, Any], timeout: float = 120) -> None:
    """Submit a step as the API and the CLI do, once the run waits for it: judged, stored,
    then the run resumed (or, when its form is not published yet or Prefect is slow,
    queued for the run supervisor to deliver)."""
    wait(lambda: waits_for(ticket_id, step), timeout, f"{ticket_id} to wait for '{step}'")
    out = submit_step(ticket_id, step, data)
    assert out.status in ("resumed", "queued"), out


def ui_resume(ticket_id: str, step: str, data: dict[str, Any]) -> None:
    """Resume the waiting run as the Prefect UI does: straight through Prefect, without the
    project's pre-check (``resume_step``)."""
    from prefect.flow_runs import resume_flow_run

    from aftersales.humansteps import _wait_for_form_schema, waiting
    from aftersales.prefect_rest import PrefectRest

    (w,) = [w for w in waiting(ticket_id) if w.step_key == step]
    with PrefectRest() as rest:
        _wait_for_form_schema(rest, w)  # the run publishes its form just after it suspends
    resume_flow_run(UUID(w.flow_run_id), run_input=data)


def flow_run(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def artifact_rules(ticket_id: str) -> set[str]:
    """The rules in the newest clocks artifact of the ticket (the one the UI shows)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        arts = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": [f"clocks-{ticket_id.lower()}"]}},
                "sort": "CREATED_DESC",
                "limit": 1,
            },
        ).json()
    assert arts, f"no clocks artifact for {ticket_id}"
    data = arts[0]["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    return {row["rule"] for row in rows}


def run_logs(run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])),
            limit=200,
            offset=0,
        )
    return [entry.message for entry in logs]


def notes(ticket_id: str) -> list[tuple[str, str]]:
    """Every notification the ticket produced, as (role, template), in order."""
    with session_scope() as s:
        return [(n.role, n.template) for n in notifications_for(s, ticket_id=ticket_id)]


def escalations(ticket_id: str) -> list[tuple[str, str, str]]:
    with session_scope() as s:
        return [
            (e.rule_id, e.escalated_to, str(e.state))
            for e in escalations_for(s, ticket_id=ticket_id)
        ]


def test_phone_fault_report_runs_inquiry_then_repair_with_reminder_breach_and_escalation_INQ_2_REP_2_REM_1_ESC(
    stack: Stack,
) -> None:
    from aftersales.api import create_app

    api = TestClient(create_app())
    payload = {
        "channel": "phone",
        "intake_id": f"call-{stack.backend}-{time.time_ns()}",
        "customer_id": "C-1001",
        "customer_name": "张伟",
        "contact": "13812345678",
        "product_model": "X200",
        "purchase_date": "2026-03-01",
        "description": "X200 will not power on; call me on 13812345678",
    }
    first = api.post("/intake", json=payload)
    assert first.status_code == 201, first.text
    ticket_id = first.json()["ticket_id"]
    again = api.post("/intake", json=payload)  # the same intake delivered twice
    assert again.status_code == 200 and again.json() == {
        **first.json(),
        "created": False,
        "event": None,
    }

    # INQ-1/INQ-2: the agent answers and classifies B -> repair dispatch starts by event
    submit(
        ticket_id,
        "first-response",
        {"agent": "小吴", "category": "B", "priority": "auto", "complex_issue": False},
    )
    # REP-1: review within 30 min
    submit(ticket_id, "review", {"reviewer": "调度-孙", "approved": True, "skill": "hardware"})

    # REP-2: nearest hardware engineer in the same city; the engineer is late on purpose
    def breach_escalated() -> bool:
        return any(
            m.body.get("title", "").find("REP-2") >= 0 for m in stack.sink.messages("/team_lead")
        )

    wait(breach_escalated, 120, "the REP-2 breach escalation at the team lead's sink")
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None and wo.engineer_id == "E-01" and wo.same_city is True
        rep2 = next(c for c in clocks_for(s, ticket_id=ticket_id) if c.rule_id == "REP-2:same-city")
        assert rep2.state == ClockState.BREACHED
        assert rep2.reminded_at is not None and rep2.reminded_at < rep2.breached_at
        esc = [e for e in escalations_for(s, ticket_id=ticket_id) if e.rule_id == "REP-2:same-city"]
        assert len(esc) == 1 and esc[0].escalated_to == "team_lead" and esc[0].level == "normal"
    reminders = [
        m for m in stack.sink.messages("/supervisor") if "REP-2" in m.body.get("title", "")
    ]
    assert reminders, "REM-1 reminder to the supervisor before the REP-2 breach"
    assert any("REP-2" in m.body.get("title", "") for m in stack.sink.messages("/handler"))

    # the run goes on after the breach: the engineer arrives, diagnoses, the customer signs
    # the three ways a person submits a form: HTTP API, CLI (and the Prefect UI's Resume)
    wait(lambda: waits_for(ticket_id, "arrival"), 120, "waiting for arrival")
    resp = api.post(f"/tickets/{ticket_id}/steps/arrival", json={})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "engineer_id"
    resp = api.post(f"/tickets/{ticket_id}/steps/arrival", json={"engineer_id": "E-01"})
    assert resp.status_code == 200, resp.text
    wait(lambda: waits_for(ticket_id, "diagnosis"), 120, "waiting for diagnosis")
    from typer.testing import CliRunner

    from aftersales.cli import app as cli

    res = CliRunner().invoke(
        cli,
        [
            "resume",
            ticket_id,
            "diagnosis",
            "--set",
            "cause=power board",
            "--set",
            "mode=on_site",
            "--set",
            "charge=free",
            "--set",
            "cost_cny=0",
            "--set",
            "customer_agreed=true",
        ],
    )
    assert res.exit_code == 0, res.output
    submit(
        ticket_id,
        "confirmation",
        {
            "test_passed": True,
            "customer_signed": True,
            "signer": "张伟",
            "device_status": "in service",
            "test_report": "boots; 2 h soak ok",
        },
    )
    with session_scope() as s:
        repair_run = get_sop_run(s, ticket_id=ticket_id, sop="repair")
        inquiry_run = get_sop_run(s, ticket_id=ticket_id, sop="inquiry")
    assert repair_run is not None and inquiry_run is not None
    wait(lambda: flow_run(repair_run.flow_run_id).state.is_completed(), 120, "repair run completed")
    ir = flow_run(inquiry_run.flow_run_id)
    assert ir.state.is_completed() and ir.name == f"inquiry-{ticket_id}"
    assert {"sop:inquiry", "priority:urgent", "channel:phone"} <= set(ir.tags)  # re-tagged by INQ-2
    assert artifact_rules(ticket_id) >= {"REP-1", "REP-2:same-city", "ESC-NORMAL:within"}
    rr = flow_run(repair_run.flow_run_id)
    assert rr.name == f"repair-{ticket_id}"
    assert {"sop:repair", "priority:urgent", "channel:phone"} <= set(rr.tags)
    assert "sla:breached" in rr.tags  # the REP-2 breach re-tagged the ticket's runs

    # the clocks in the database match the policy
    profile = load_profile(str(E2E_PROFILE))
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        assert t.status == TicketStatus.RESOLVED and t.category == "B" and t.priority == "urgent"
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
        assert clocks["REP-1"].state == ClockState.MET
        assert clocks["REP-2:same-city"].due_at - clocks["REP-2:same-city"].started_at == timedelta(
            seconds=profile.rule("REP-2:same-city").duration
        )
        assert clocks["REP-2:same-city"].remind_at == clocks["REP-2:same-city"].due_at - timedelta(
            minutes=profile.reminders.response_minutes
        )
        assert clocks["PRI-URGENT:resolution"].state == ClockState.MET
        # classified B (urgent) at the first response: the grade's clocks re-armed from
        # the submission, the normal ones superseded
        assert clocks["PRI-URGENT:resolution"].started_at == t.created_at
        assert clocks["PRI-NORMAL:resolution"].state == ClockState.CANCELLED
        assert clocks["ESC-TIMEOUT:urgent"].state == ClockState.MET
        # REP-4 armed the callback clocks (C-1001 is a VIP: a second call too)
        assert {"CB-2:ordinary", "CB-2:vip-second"} <= set(clocks)
        bodies = [n.body for n in notifications_for(s, ticket_id=ticket_id)]
    # PRIV-1: the phone number never leaves unmasked: not in the run logs, the
    # notifications stored, nor what the sink received
    logs = run_logs(inquiry_run.flow_run_id)
    assert any("138****5678" in line for line in logs), logs
    assert all("13812345678" not in line for line in logs)
    assert all("13812345678" not in b for b in bodies)
    assert all("13812345678" not in str(m.body) for m in stack.sink.messages())

    # REP-4 handed the ticket to its callback (CB-2): the VIP is called, then called again
    call = {"caller": "回访-林", "reached": True, "attitude": 5, "efficiency": 4,
            "effectiveness": 5, "answer": "quick and polite"}  # fmt: skip
    submit(ticket_id, "call", call)
    submit(ticket_id, "second-call", {**call, "answer": "still fine"})
    with session_scope() as s:
        callback_run = get_sop_run(s, ticket_id=ticket_id, sop="callback")
    assert callback_run is not None
    wait(lambda: flow_run(callback_run.flow_run_id).state.is_completed(), 120, "callback done")
    assert flow_run(callback_run.flow_run_id).name == f"callback-{ticket_id}"
    with session_scope() as s:
        cb = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
        t = get_ticket(s, ticket_id=ticket_id)
    assert cb["CB-2:ordinary"].state == ClockState.MET  # met, not breached (CB-2)
    assert cb["CB-2:vip-second"].state == ClockState.MET
    assert t.satisfaction == pytest.approx(9.33) and t.status == TicketStatus.CLOSED

    # the escalation is its own run: the team lead steps in (ESC-NORMAL:within stops)
    submit(
        ticket_id, "step-in", {"by": "组长-周", "action": "called the engineer; told the customer"}
    )
    with session_scope() as s:
        esc_run = escalations_for(s, ticket_id=ticket_id)[0].flow_run_id
    assert esc_run is not None
    wait(lambda: flow_run(esc_run).state.is_completed(), 120, "escalation run completed")
    er = flow_run(esc_run)
    assert er.name.startswith(f"escalation-{ticket_id}-")
    assert {"sop:escalation", "level:normal", "to:team_lead"} <= set(er.tags)
    with session_scope() as s:
        within = next(
            c for c in clocks_for(s, ticket_id=ticket_id) if c.rule_id == "ESC-NORMAL:within"
        )
    assert within.state == ClockState.MET
    # exactly what this scenario caused: one escalation (REP-2, acted on) and these messages
    assert escalations(ticket_id) == [("REP-2:same-city", "team_lead", "acted")]
    assert notes(ticket_id) == [
        ("sync_group", "sync_group_post"),  # INQ-SYNC at intake
        ("dispatch", "repair_request"),  # INQ-2 class B
        ("engineer", "work_order"),  # REP-2
        ("handler", "reminder"),  # REM-1 before the REP-2 breach
        ("supervisor", "reminder"),
        ("team_lead", "breach_escalation"),  # REP-2 breached
        ("dispatch", "step_done"),  # arrival
        ("customer", "repair_plan"),  # REP-3 diagnosis
        ("customer", "repair_confirmation"),  # REP-4
        ("handler", "callback_done"),  # CB-2/CB-3 the VIP called back
        ("handler", "escalation_progress"),  # the lead stepped in
    ]


def test_email_inquiry_escalated_to_tech_support_then_closed_after_no_reply_INQ_3_INQ_CH_EMAIL(
    stack: Stack,
) -> None:
    """Class A by email: the knowledge base cannot answer (INQ-3 -> tech support), solved,
    follow-up mails every period, and with no reply the clock closes the ticket by resuming
    the waiting run (INQ-CH-EMAIL, shortened in the e2e profile)."""
    from aftersales.api import create_app

    api = TestClient(create_app())
    resp = api.post(
        "/intake",
        json={
            "channel": "email",
            "email_grade": "important",
            "intake_id": f"<mail-{stack.backend}-{time.time_ns()}@example.com>",
            "customer_name": "李娜",
            "contact": "lina@example.com",
            "description": "Which firmware supports the new remote?",
        },
    )
    assert resp.status_code == 201, resp.text
    ticket_id = resp.json()["ticket_id"]
    submit(
        ticket_id,
        "first-response",
        {"agent": "小周", "category": "A", "priority": "auto", "complex_issue": False},
    )
    submit(ticket_id, "answer", {"answered_from_knowledge_base": False, "answer": "not in KB"})
    wait(
        lambda: any(ticket_id in str(m.body) for m in stack.sink.messages("/tech_support")),
        120,
        "the INQ-3 escalation at tech support",
    )
    submit(ticket_id, "solved", {"resolution": "firmware 2.1 or later", "root_cause": "docs gap"})
    # INQ-4 is met by reporting the result and asking for satisfaction (not by the answer)
    submit(ticket_id, "report", {"agent": "小周", "via": "phone"})
    with session_scope() as s:
        run = get_sop_run(s, ticket_id=ticket_id, sop="inquiry")
    assert run is not None
    wait(lambda: flow_run(run.flow_run_id).state.is_completed(), 120, "inquiry closed by the clock")
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
        escalations = [(e.rule_id, e.escalated_to) for e in escalations_for(s, ticket_id=ticket_id)]
    assert t.status == TicketStatus.CLOSED and "without reply" in (t.result or "")
    assert clocks["INQ-CH-EMAIL:close"].state == ClockState.BREACHED
    assert clocks["INQ-CH-EMAIL:followup"].fire_count >= 2  # every period until closed
    assert clocks["INQ-CH-EMAIL:important"].state == ClockState.MET
    assert clocks["INQ-4"].state == ClockState.MET and clocks["INQ-3"].state == ClockState.MET
    assert clocks["INQ-CH-EMAIL:callback"].state == ClockState.MET  # the report phoned
    # classified A (normal): the important grade's clocks superseded from the submission
    assert clocks["PRI-IMPORTANT:resolution"].state == ClockState.CANCELLED
    assert clocks["PRI-NORMAL:resolution"].started_at == t.created_at
    assert escalations == []  # INQ-3 is a hand-over to tech support, not an escalation
    got = notes(ticket_id)
    followups = got.count(("customer", "email_followup"))
    assert followups >= 2
    assert [n for n in got if n != ("customer", "email_followup")] == [
        ("sync_group", "sync_group_post"),
        ("tech_support", "tech_support_escalation"),  # INQ-3
        ("customer", "solution_sent"),
        ("customer", "feedback_request"),  # INQ-4
        ("handler", "ticket_auto_closed"),  # INQ-CH-EMAIL: 3 days (60 s here) no reply
        ("handler", "ticket_closed"),
    ]
    assert all("lina@example.com" not in str(m.body) for m in stack.sink.messages())


def test_direct_repair_other_city_depot_paid_repair_waits_for_consent_with_clocks_paused_REP_3_REP_4(
    stack: Stack,
) -> None:
    """A repair reported directly (sop=repair): other-city engineer (REP-2 24 h), depot repair
    with progress reports (REP-3), a chargeable repair waits for consent with the resolution
    clocks paused; an unsigned confirmation is not archived (REP-4); bad forms are refused."""
    from aftersales.api import create_app
    from aftersales.humansteps import StepError

    api = TestClient(create_app())
    resp = api.post(
        "/intake",
        json={
            "channel": "online",
            "sop": "repair",
            "intake_id": f"chat-{stack.backend}-{time.time_ns()}",
            "customer_id": "C-1002",
            "customer_name": "李娜",
            "contact": "13987654321",
            "product_model": "X200",
            "purchase_date": "2024-01-10",
            "description": "app crashes on start",
        },
    )
    assert resp.status_code == 201, resp.text
    ticket_id = resp.json()["ticket_id"]
    wait(lambda: waits_for(ticket_id, "review"), 120, "repair run waiting for review")
    with pytest.raises(StepError, match="skill"):  # a required form field left out is refused
        resume_step(ticket_id, "review", {"reviewer": "孙", "approved": True})
    with pytest.raises(StepError, match="waits for step 'review'"):
        resume_step(ticket_id, "arrival", {"engineer_id": "E-03"})
    submit(ticket_id, "review", {"reviewer": "调度-孙", "approved": True, "skill": "software"})
    # a typo never kills the run: refused before the run is resumed (422 naming the field) …
    wait(lambda: waits_for(ticket_id, "arrival"), 120, "waiting for arrival")
    with pytest.raises(StepError, match="engineer_id: 'E-01' is not the engineer"):
        resume_step(ticket_id, "arrival", {"engineer_id": "E-01"})
    # … and one that reaches the run anyway (the Prefect UI's Resume button resumes the
    # run directly) is refused by the same check inside it and the step asked again
    ui_resume(ticket_id, "arrival", {"engineer_id": "E-01"})
    wait(lambda: waits_for(ticket_id, "arrival-2"), 120, "arrival asked again")
    with session_scope() as s:
        run = get_sop_run(s, ticket_id=ticket_id, sop="repair")
    assert run is not None and flow_run(run.flow_run_id).state.is_paused()
    submit(ticket_id, "arrival-2", {"engineer_id": "E-03"})  # only software engineer: Shanghai
    submit(
        ticket_id,
        "diagnosis",
        {
            "cause": "corrupt flash",
            "mode": "depot",
            "charge": "paid_repair",
            "cost_cny": 300,
            "customer_agreed": False,
        },
    )
    wait(lambda: waits_for(ticket_id, "customer-decision"), 120, "waiting for consent")
    with session_scope() as s:
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
        wo = get_work_order(s, ticket_id=ticket_id)
    assert (
        wo is not None and wo.same_city is False and wo.ticket_type == "repair"
    )  # out of warranty
    assert clocks["REP-2:other-city"].state == ClockState.MET
    assert (clocks["REP-2:other-city"].due_at - clocks["REP-2:other-city"].started_at) == timedelta(
        seconds=load_profile(str(E2E_PROFILE)).rule("REP-2:other-city").duration
    )
    paused = clocks["PRI-URGENT:resolution"]
    assert paused.state == ClockState.PAUSED and paused.remaining_seconds > 0
    # waiting on the customer pauses the targets (REP-3 included), never a hard limit
    assert clocks["REP-3"].state == ClockState.PAUSED  # depot: progress every 2 working days
    assert clocks["ESC-TIMEOUT:urgent"].state == ClockState.ARMED
    submit(ticket_id, "customer-decision", {"agreed": True})
    confirmation = {
        "test_passed": True,
        "customer_signed": False,
        "signer": "李娜",
        "device_status": "in service",
        "test_report": "ok",
    }
    wait(lambda: waits_for(ticket_id, "confirmation"), 120, "waiting for confirmation")
    ui_resume(ticket_id, "confirmation", confirmation)  # unsigned: asked again inside the run
    wait(lambda: waits_for(ticket_id, "confirmation-2"), 120, "a second confirmation")
    with session_scope() as s:
        assert get_ticket(s, ticket_id=ticket_id).status == TicketStatus.IN_PROGRESS
    submit(ticket_id, "confirmation-2", {**confirmation, "customer_signed": True})
    with session_scope() as s:
        run = get_sop_run(s, ticket_id=ticket_id, sop="repair")
    assert run is not None
    wait(lambda: flow_run(run.flow_run_id).state.is_completed(), 120, "repair run completed")
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=ticket_id)}
        wo = get_work_order(s, ticket_id=ticket_id)
    assert t.status == TicketStatus.RESOLVED and wo is not None and wo.archived_at is not None
    assert wo.signed_by == "李娜" and wo.charge == "paid_repair" and wo.mode == "depot"
    resumed = clocks["PRI-URGENT:resolution"]
    assert resumed.state == ClockState.MET
    assert clocks["REP-3"].state == ClockState.MET
    # the callback is an online survey: the customer answers through the one-time link
    wait(lambda: waits_for(ticket_id, "survey"), 120, "the callback waiting for the survey")
    with session_scope() as s:
        link = next(n.body for n in notifications_for(s, ticket_id=ticket_id)
                    if n.template == "survey_link")  # fmt: skip
    token = link.split("/surveys/")[1].split()[0]
    answer = {"attitude": 4, "efficiency": 5, "effectiveness": 4, "answer": "ok"}
    assert api.post(f"/surveys/{token}", json=answer).status_code == 202
    with session_scope() as s:
        callback_run = get_sop_run(s, ticket_id=ticket_id, sop="callback")
    assert callback_run is not None
    wait(lambda: flow_run(callback_run.flow_run_id).state.is_completed(), 120, "callback done")
    assert api.post(f"/surveys/{token}", json=answer).status_code == 410  # one time only
    with session_scope() as s:
        cb2 = next(c for c in clocks_for(s, ticket_id=ticket_id) if c.rule_id == "CB-2:ordinary")
    assert cb2.state == ClockState.MET
    assert escalations(ticket_id) == []
    assert notes(ticket_id) == [
        ("sync_group", "sync_group_post"),
        ("dispatch", "repair_request"),  # REP-1 at intake
        ("engineer", "work_order"),  # REP-2 other city
        ("dispatch", "step_done"),  # arrival (the second submission)
        ("customer", "repair_plan"),  # REP-3
        ("dispatch", "step_done"),  # the customer agreed
        ("customer", "repair_confirmation"),  # REP-4
        ("customer", "survey_link"),  # CB-3: came online, an ordinary customer
        ("handler", "callback_done"),
    ]


def test_safety_risk_opens_an_urgent_escalation_run_the_director_acknowledges_and_plans_ESC_URGENT(
    stack: Stack,
) -> None:
    """ESC-URGENT fires at intake: the operations director is notified at once and the
    escalation is its own run (acknowledge within 10 min, initial plan within 1 h, copied to
    tech support and PR); the inquiry run goes on beside it."""
    from aftersales.api import create_app

    api = TestClient(create_app())
    resp = api.post(
        "/intake",
        json={
            "channel": "phone",
            "intake_id": f"call-safety-{stack.backend}-{time.time_ns()}",
            "customer_name": "周强",
            "contact": "13600001111",
            "description": "heater smokes when switched on",
            "safety_risk": True,
        },
    )
    assert resp.status_code == 201, resp.text
    ticket_id = resp.json()["ticket_id"]
    submit(ticket_id, "acknowledge", {"by": "运营总监-吴", "team": "tech support + PR"})
    submit(ticket_id, "plan", {"by": "运营总监-吴", "plan": "stop sales of batch 7; replace units"})
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=ticket_id)
    assert [(e.rule_id, e.escalated_to, e.level) for e in esc] == [
        ("ESC-URGENT", "operations_director", "urgent")
    ]
    wait(lambda: flow_run(esc[0].flow_run_id).state.is_completed(), 120, "escalation run completed")
    with session_scope() as s:
        clocks = {(c.rule_id, c.instance): c for c in clocks_for(s, ticket_id=ticket_id)}
    assert clocks[("ESC-URGENT:within", esc[0].id)].state == ClockState.MET
    assert clocks[("ESC-URGENT:plan", esc[0].id)].state == ClockState.MET
    assert clocks[("ESC-URGENT:resolution", esc[0].id)].state == ClockState.ARMED  # until solved
    assert escalations(ticket_id) == [("ESC-URGENT", "operations_director", "acted")]
    assert notes(ticket_id) == [
        ("sync_group", "sync_group_post"),
        ("operations_director", "escalation_opened"),
        ("handler", "escalation_progress"),  # acknowledged
        ("handler", "escalation_progress"),  # planned
        ("tech_support", "emergency_plan"),
        ("pr", "emergency_plan"),
    ]
    wait(lambda: waits_for(ticket_id, "first-response"), 120, "the inquiry run beside it")
