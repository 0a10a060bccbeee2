"""The complaint SOP (CMP-1..4) on the step model, step by step against a real database,
without Prefect: its clocks, the supervisor's approval loop, the hand-over to repair,
and ESC-IMPORTANT / ESC-URGENT through the escalation process."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from aftersales import forms, sla, steps
from aftersales.intake import accept_intake, parse_payload
from aftersales.runtime import deadlines
from models.db import get_engine, session_scope
from models.entities import ClockState, Complaint, OutboxEvent, SlaClock
from models.repository import clocks_for, escalations_for, get_ticket

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday


@pytest.fixture
def ctx(any_db: str) -> sla.Deadlines:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    return deadlines("default")


def complaint(ctx: sla.Deadlines, key: str, at: datetime = T0, **extra: Any) -> str:
    payload = {
        "channel": "phone",
        "sop": "complaint",
        "intake_id": key,
        "customer_id": "C-1002",
        "customer_name": "李娜",
        "contact": "13987654321",
        "description": "the engineer was rude and left the device broken",
        **extra,
    }
    return accept_intake(parse_payload(payload), ctx=ctx, now=at).ticket_id


def do(ctx: sla.Deadlines, tid: str, step: str, at: datetime, form: forms.Form | None,
       key: str | None = None) -> steps.StepResult:  # fmt: skip
    with session_scope() as s:
        return steps.complete(s, deadlines=ctx, sop="complaint", step=step, ticket_id=tid,
                              now=at, form=form, key=key)  # fmt: skip


def clocks(tid: str) -> dict[str, SlaClock]:
    with session_scope() as s:
        return {c.rule_id: c for c in clocks_for(s, ticket_id=tid)}


def record(**extra: Any) -> forms.ComplaintRecord:
    return forms.ComplaintRecord(
        **{"agent": "小周", "cause": "rude engineer", "expected_outcome": "an apology", **extra}
    )


def investigation(**extra: Any) -> forms.Investigation:
    return forms.Investigation(
        **{
            "investigator": "主管-孙",
            "service_records": "WO-17",
            "cross_department": False,
            "recording_refs": ["rec://2026-11-23/0931.wav"],
            "photo_refs": ["s3://site/1.jpg"],
            **extra,
        }  # fmt: skip
    )


def test_record_within_10_min_then_investigation_within_1_h_CMP_1_CMP_2(
    ctx: sla.Deadlines,
) -> None:
    tid = complaint(ctx, "cmp-1")
    assert clocks(tid)["CMP-1"].due_at == T0 + timedelta(minutes=10)
    do(ctx, tid, "accept", T0 + timedelta(minutes=6), record())
    c = clocks(tid)
    assert c["CMP-1"].state == ClockState.MET
    assert c["PRI-NORMAL:response"].state == ClockState.MET  # the customer heard from a person
    assert c["CMP-2"].due_at == T0 + timedelta(minutes=6, hours=1)
    r = do(ctx, tid, "investigate", T0 + timedelta(minutes=40), investigation())
    assert "CMP-2" in r.stopped and "CMP-2:cross-department" not in r.armed
    with session_scope() as s:
        row = s.exec(select(Complaint).where(Complaint.ticket_id == tid)).one()
    assert row.recording_refs == ["rec://2026-11-23/0931.wav"] and row.cause == "rude engineer"


def test_a_cross_department_case_is_verified_together_within_2_working_days_CMP_2(
    ctx: sla.Deadlines,
) -> None:
    tid = complaint(ctx, "cmp-x")
    do(ctx, tid, "accept", T0 + timedelta(minutes=5), record())
    with pytest.raises(ValueError, match="department: required"):
        investigation(cross_department=True)
    r = do(ctx, tid, "investigate", T0 + timedelta(minutes=30),
           investigation(cross_department=True, department="logistics"))  # fmt: skip
    assert "CMP-2:cross-department" in r.armed
    due = clocks(tid)["CMP-2:cross-department"].due_at
    assert due == datetime.fromisoformat("2026-11-25T10:30:00+08:00")  # Mon + 2 working days
    do(ctx, tid, "verify", T0 + timedelta(days=1),
       forms.Verification(department="logistics", verifier="物流-钱", findings="box crushed"))  # fmt: skip
    assert clocks(tid)["CMP-2:cross-department"].state == ClockState.MET


def test_a_rejected_solution_loops_back_and_the_approved_one_reaches_the_customer_CMP_3(
    ctx: sla.Deadlines,
) -> None:
    tid = complaint(ctx, "cmp-3")
    do(ctx, tid, "accept", T0 + timedelta(minutes=5), record())
    do(ctx, tid, "investigate", T0 + timedelta(minutes=30), investigation())
    do(ctx, tid, "resolve", T0 + timedelta(hours=2),
       forms.Resolution(by="小周", kind="apology", details="a call from the engineer"))  # fmt: skip
    with pytest.raises(ValueError, match="reason: a rejection states its reason"):
        forms.Approval(supervisor="主管-孙", approved=False)
    rejected = do(ctx, tid, "approve", T0 + timedelta(hours=3),
                  forms.Approval(supervisor="主管-孙", approved=False, reason="too little"))  # fmt: skip
    assert rejected.done and "CMP-3" not in rejected.armed
    do(ctx, tid, "resolve", T0 + timedelta(hours=4), forms.Resolution(
        by="小周", kind="compensation", compensation_cny=200, details="200 CNY voucher"),
        key="resolve-r2")  # fmt: skip
    approved_at = T0 + timedelta(hours=5)
    ok = do(ctx, tid, "approve", approved_at,
            forms.Approval(supervisor="主管-孙", approved=True), key="approve-r2")  # fmt: skip
    assert "CMP-3" in ok.armed
    # 1 working day of 9 h: Mon 15-18 and Tue 9-15
    assert clocks(tid)["CMP-3"].due_at == datetime.fromisoformat("2026-11-24T15:00:00+08:00")
    do(ctx, tid, "inform", approved_at + timedelta(hours=2),
       forms.Inform(agent="小周", via="phone"), key="inform-r2")  # fmt: skip
    c = clocks(tid)
    assert c["CMP-3"].state == ClockState.MET
    assert c["PRI-NORMAL:resolution"].state == ClockState.MET
    assert c["ESC-TIMEOUT:normal"].state == ClockState.MET
    do(ctx, tid, "close", approved_at + timedelta(days=2),
       forms.ComplaintClose(outcome="accepted", tracking="voucher used", theme="attitude"),
       key="close-r2")  # fmt: skip
    with session_scope() as s:
        row = s.exec(select(Complaint).where(Complaint.ticket_id == tid)).one()
        t = get_ticket(s, ticket_id=tid)
    assert (row.rejections, row.last_rejection, row.approved_by) == (1, "too little", "主管-孙")
    assert (row.solution, row.compensation_cny, row.theme) == ("compensation", 200, "attitude")
    assert t.status == "closed" and t.result == "compensation: 200 CNY voucher"


def test_an_approved_repair_solution_starts_repair_dispatch_for_the_same_ticket_CMP_3_REP_1(
    ctx: sla.Deadlines,
) -> None:
    tid = complaint(ctx, "cmp-rep")
    do(ctx, tid, "accept", T0 + timedelta(minutes=5), record())
    do(ctx, tid, "investigate", T0 + timedelta(minutes=30), investigation())
    do(ctx, tid, "resolve", T0 + timedelta(hours=1),
       forms.Resolution(by="小周", kind="repair", details="repair it on site for free"))  # fmt: skip
    r = do(ctx, tid, "approve", T0 + timedelta(hours=2),
           forms.Approval(supervisor="主管-孙", approved=True))  # fmt: skip
    assert r.handed_over == "repair" and "REP-1" in r.armed and "CMP-3" in r.armed
    with session_scope() as s:
        assert str(get_ticket(s, ticket_id=tid).sop) == "repair"
        starts = s.exec(
            select(OutboxEvent.event).where(
                OutboxEvent.ticket_id == tid, OutboxEvent.event == "aftersales.repair.requested"
            )
        ).all()
    assert starts == ["aftersales.repair.requested"]


def test_the_customers_second_complaint_within_the_window_opens_ESC_IMPORTANT(
    ctx: sla.Deadlines,
) -> None:
    first = complaint(ctx, "cmp-first", at=T0 - timedelta(days=20))
    do(ctx, first, "accept", T0 - timedelta(days=20) + timedelta(minutes=5), record())
    old = complaint(ctx, "cmp-old", at=T0 - timedelta(days=45), contact="13900000000",
                    customer_id="C-1001", customer_name="张伟")  # fmt: skip
    assert old
    second = complaint(ctx, "cmp-second")
    r = do(ctx, second, "accept", T0 + timedelta(minutes=5), record())
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=second)
        assert escalations_for(s, ticket_id=first) == []
    assert len(r.escalations) == 1
    assert [(e.trigger, e.escalated_to, e.level) for e in esc] == [
        ("ESC-IMPORTANT", "cs_manager", "important")
    ]
    # C-1001's only earlier complaint is 45 days old: outside the 30-day window
    third = complaint(ctx, "cmp-c1001", contact="13900000000", customer_id="C-1001",
                      customer_name="张伟")  # fmt: skip
    assert do(ctx, third, "accept", T0 + timedelta(minutes=5), record()).escalations == ()


def test_the_customer_history_query_walks_an_index_not_the_table_ESC_IMPORTANT(
    sqlite_db: str,
) -> None:
    with get_engine().connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM ticket LEFT OUTER JOIN complaint "
                "ON complaint.ticket_id = ticket.id WHERE ticket.customer_id = 'C-1' "
                "AND ticket.created_at >= '2026-10-01' AND ticket.created_at < '2026-11-01'"
            )
        ).all()
    detail = " ".join(str(row[-1]) for row in plan)
    assert "ix_ticket_customer_history" in detail, detail


def test_a_claim_over_1000_CNY_opens_ESC_IMPORTANT_and_a_public_post_ESC_URGENT(
    ctx: sla.Deadlines,
) -> None:
    tid = complaint(ctx, "cmp-claim")
    do(ctx, tid, "accept", T0 + timedelta(minutes=5), record(amount_claimed_cny=1500))
    public = accept_intake(
        parse_payload(
            {
                "channel": "social",
                "is_public": True,
                "intake_id": "post-9",
                "customer_name": "网友",
                "contact": "weibo:@someone",
                "description": "the heater smoked, nobody answers!",
            }
        ),  # fmt: skip
        ctx=ctx,
        now=T0,
    ).ticket_id
    with session_scope() as s:
        claim = [(e.trigger, e.escalated_to) for e in escalations_for(s, ticket_id=tid)]
        posted = [(e.trigger, e.escalated_to) for e in escalations_for(s, ticket_id=public)]
        assert str(get_ticket(s, ticket_id=public).sop) == "complaint"
    assert claim == [("ESC-IMPORTANT", "cs_manager")]
    assert posted == [("ESC-URGENT", "operations_director")]
    assert "CMP-1" in clocks(public)
