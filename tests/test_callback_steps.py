"""The callback SOP (CB-1..3) on the step model, against a real database, without a
runner: REP-4 arms CB-2 and hands the ticket to the callback; not reached is asked again
on the next working day, then unreachable; a low score opens a linked complaint; the
online survey link is one-time and expires; the monthly plan is idempotent."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from aftersales import forms, sla, steps
from aftersales.intake import accept_intake, parse_payload
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import Callback, ClockState, Notification, OutboxEvent, SlaClock, Ticket
from models.repository import clocks_for, get_ticket

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday


@pytest.fixture
def ctx(any_db: str) -> sla.Deadlines:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    return deadlines("default")


def do(ctx: sla.Deadlines, tid: str, sop: str, step: str, at: datetime,
       form: forms.Form | None = None, key: str | None = None) -> steps.StepResult:  # fmt: skip
    with session_scope() as s:
        return steps.complete(s, deadlines=ctx, sop=sop, step=step, ticket_id=tid, now=at,
                              form=form, key=key)  # fmt: skip


def repaired(ctx: sla.Deadlines, customer: str, channel: str = "phone", key: str = "r") -> str:
    """A repair taken to REP-4 (completed at T0 + 2 h)."""
    tid = accept_intake(
        parse_payload(
            {
                "channel": channel,
                "sop": "repair",
                "intake_id": f"{key}-{customer}",
                "customer_id": customer,
                "customer_name": "张伟",
                "contact": "13812345678",
                "description": "no power",
            }
        ),  # fmt: skip
        ctx=ctx,
        now=T0,
    ).ticket_id
    do(ctx, tid, "repair", "register", T0)
    do(ctx, tid, "repair", "review", T0 + timedelta(minutes=5),
       forms.Review(reviewer="孙", approved=True, skill="hardware"))  # fmt: skip
    do(ctx, tid, "repair", "dispatch", T0 + timedelta(minutes=5))
    do(ctx, tid, "repair", "arrival", T0 + timedelta(hours=1), forms.Arrival(engineer_id="E-01"))
    do(ctx, tid, "repair", "diagnosis", T0 + timedelta(hours=1), forms.Diagnosis(
        cause="fuse", mode="on_site", charge="free", cost_cny=0, customer_agreed=True))  # fmt: skip
    r = do(ctx, tid, "repair", "confirmation", T0 + timedelta(hours=2), forms.Confirmation(
        test_passed=True, customer_signed=True, signer="张伟", device_status="ok", test_report="ok"))  # fmt: skip
    assert r.handed_over == "callback"
    return tid


def clocks(tid: str) -> dict[str, SlaClock]:
    with session_scope() as s:
        return {c.rule_id: c for c in clocks_for(s, ticket_id=tid)}


def call(**extra: Any) -> forms.CallResult:
    return forms.CallResult(**{"caller": "回访-林", "reached": True, "attitude": 5,
                               "efficiency": 4, "effectiveness": 5, **extra})  # fmt: skip


def test_REP_4_arms_CB_2_and_a_VIP_gets_the_second_call_clock_too_CB_2(ctx: sla.Deadlines) -> None:
    vip = repaired(ctx, "C-1001")  # VIP
    c = clocks(vip)
    done = T0 + timedelta(hours=2)
    assert c["CB-2:ordinary"].started_at == done
    assert c["CB-2:ordinary"].due_at == datetime.fromisoformat("2026-11-26T12:00:00+08:00")
    assert c["CB-2:vip-second"].due_at == done + timedelta(days=7)
    with session_scope() as s:
        assert str(get_ticket(s, ticket_id=vip).sop) == "callback"
        starts = s.exec(select(OutboxEvent.event).where(OutboxEvent.ticket_id == vip)).all()
    assert "aftersales.callback.requested" in starts
    assert "CB-2:vip-second" not in clocks(repaired(ctx, "C-1002"))  # not a VIP


def test_not_reached_is_asked_again_next_working_day_then_the_survey_meets_CB_2_CB_3(
    ctx: sla.Deadlines,
) -> None:
    tid = repaired(ctx, "C-1002")
    assert do(ctx, tid, "callback", "schedule", T0).value == "phone"
    friday = datetime.fromisoformat("2026-11-27T10:00:00+08:00")
    first = do(ctx, tid, "callback", "call", friday, call(reached=False))
    assert not first.done and "attempt 1 of 3" in first.reason and "2026-11-30" in first.reason
    ok = do(ctx, tid, "callback", "call", friday + timedelta(days=3), call(answer="good"),
            key="call-2")  # fmt: skip
    assert ok.done and "CB-2:ordinary" in ok.stopped
    with session_scope() as s:
        t = get_ticket(s, ticket_id=tid)
        cb = s.exec(select(Callback).where(Callback.ticket_id == tid)).one()
    assert (cb.attempts, cb.attitude, cb.efficiency, cb.effectiveness) == (2, 5, 4, 5)
    assert t.satisfaction == pytest.approx(9.33) and t.status == "closed"
    assert clocks(tid)["CB-2:ordinary"].state == ClockState.MET


def test_a_customer_never_reached_is_recorded_unreachable_after_the_profiles_attempts_CB_2(
    ctx: sla.Deadlines,
) -> None:
    tid = repaired(ctx, "C-1002")
    for n in range(1, 3):
        r = do(ctx, tid, "callback", "call", T0 + timedelta(days=n), call(reached=False),
               key=f"call-{n}")  # fmt: skip
        assert not r.done
    last = do(
        ctx, tid, "callback", "call", T0 + timedelta(days=3), call(reached=False), key="call-3"
    )
    assert last.done
    with session_scope() as s:
        cb = s.exec(select(Callback).where(Callback.ticket_id == tid)).one()
    assert cb.unreachable and cb.attempts == 3 and cb.attitude is None


def test_a_low_score_opens_a_complaint_linked_to_the_ticket_CB_3_CMP_1(ctx: sla.Deadlines) -> None:
    tid = repaired(ctx, "C-1002")
    do(ctx, tid, "callback", "call", T0 + timedelta(days=1), call(efficiency=2, answer="too slow"))
    with session_scope() as s:
        cb = s.exec(select(Callback).where(Callback.ticket_id == tid)).one()
        linked = s.get(Ticket, cb.complaint_ticket_id)
        assert linked is not None
        assert (str(linked.sop), linked.parent_ticket_id) == ("complaint", tid)
        assert "too slow" in linked.description
    assert "CMP-1" in clocks(linked.id)


def test_the_online_survey_link_is_one_time_and_expires_CB_3(ctx: sla.Deadlines) -> None:
    from aftersales.api import create_app

    tid = repaired(ctx, "C-1002", channel="online", key="web")
    assert do(ctx, tid, "callback", "schedule", T0).value == "online"
    do(ctx, tid, "callback", "send-survey", T0)
    with session_scope() as s:
        note = s.exec(select(Notification).where(Notification.template == "survey_link")).one()
        cb = s.exec(select(Callback).where(Callback.ticket_id == tid)).one()
    token = note.body.split("/surveys/")[1].split()[0]
    assert cb.survey_token_hash and token not in (cb.survey_token_hash or "")  # only a hash
    api = TestClient(create_app(send=None))
    answer = {"attitude": 4, "efficiency": 4, "effectiveness": 5}
    assert api.post("/surveys/nope", json=answer).status_code == 404
    bad = api.post(f"/surveys/{token}", json={"attitude": 9})
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} >= {"attitude"}
    with session_scope() as s:
        row = s.exec(select(Callback).where(Callback.ticket_id == tid)).one()
        row.survey_expires_at = T0 - timedelta(days=30)
        s.add(row)
    gone = api.post(f"/surveys/{token}", json=answer)
    assert gone.status_code == 410 and gone.json()["errors"][0]["field"] == "token"
    with session_scope() as s:
        assert s.exec(select(Callback).where(Callback.ticket_id == tid)).one().attitude is None


def test_the_monthly_plan_lists_repairs_and_VIPs_once_and_starts_nothing_twice_CB_1(
    ctx: sla.Deadlines,
) -> None:
    from aftersales.callback_plan import plan_month

    repaired(ctx, "C-1002")  # an ordinary customer's repair completed in November
    now = datetime.fromisoformat("2026-12-01T08:00:00+08:00")
    with session_scope() as s:
        rows = plan_month(s, month="2026-11", deadlines=ctx, now=now)
    by_reason = {(r.customer_id, r.reason, r.method) for r in rows}
    assert ("C-1002", "repair", "phone") in by_reason
    assert ("C-1001", "vip", "phone") in by_reason  # a VIP with no repair this month
    assert len({r.customer_id for r in rows}) == len(rows)  # one line per customer
    assert all("张伟" not in r.customer for r in rows)  # masked in the artifact
    with session_scope() as s:
        again = plan_month(s, month="2026-11", deadlines=ctx, now=now + timedelta(hours=1))
        starts = s.exec(
            select(OutboxEvent).where(OutboxEvent.event == "aftersales.callback.requested")
        ).all()
    assert {r.state for r in again} == {"already planned"}
    assert len(starts) == len(rows)  # REP-4's own start for C-1002, one per VIP
