"""The durable SLA clock on a real database (SQLite and PostgreSQL), driven by a manual
clock: arm, remind (REM-1), breach and escalate (ESC-*), pause/resume keeping the
remaining time, repeating clocks, the notification outbox with retries (real HTTP sink)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from aftersales import sla
from aftersales.calendar import WorkCalendar
from aftersales.notify import Notifier
from aftersales.policy import load_profile
from models.db import session_scope
from models.entities import (
    ClockState,
    NotificationStatus,
    Priority,
    StepSubmission,
    TicketCreate,
)
from models.repository import clocks_for, create_ticket, escalations_for, notifications_for

SH = "+08:00"
T0 = datetime.fromisoformat(f"2026-11-23T10:00:00{SH}")  # a Monday


@pytest.fixture
def ctx() -> sla.Deadlines:
    return sla.Deadlines(profile=load_profile("default"), calendar=WorkCalendar())


def new_ticket(key: str, at: datetime = T0, **kw: Any) -> str:
    with session_scope() as s:
        t, _ = create_ticket(
            s,
            data=TicketCreate(
                intake_key=key,
                created_at=at,
                channel="phone",
                customer_name="张伟",
                contact="13812345678",
                description="broken",
                priority=Priority.NORMAL,
                **kw,
            ),
        )
        return t.id


def fire(ctx: sla.Deadlines, now: datetime) -> sla.FireReport:
    with session_scope() as s:
        return sla.fire_due(s, ctx=ctx, now=now)


def clock_of(ticket_id: str, rule_id: str):  # noqa: ANN201
    with session_scope() as s:
        return next(c for c in clocks_for(s, ticket_id=ticket_id) if c.rule_id == rule_id)


def test_same_city_dispatch_reminds_at_3h30_and_escalates_at_4h_REP_2_REM_1_ESC(
    any_db: str, ctx: sla.Deadlines
) -> None:
    tid = new_ticket("rep2-breach")
    with session_scope() as s:
        c = sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-2:same-city", start=T0)
        assert c.due_at == T0 + timedelta(hours=4)
        assert c.remind_at == T0 + timedelta(hours=3, minutes=30)
    assert fire(ctx, T0 + timedelta(hours=3, minutes=29)).fired == 0
    r = fire(ctx, T0 + timedelta(hours=3, minutes=30))
    assert len(r.reminded) == 1 and not r.breached
    assert clock_of(tid, "REP-2:same-city").state == ClockState.REMINDED
    r = fire(ctx, T0 + timedelta(hours=4, seconds=1))
    assert len(r.breached) == 1
    c = clock_of(tid, "REP-2:same-city")
    assert c.state == ClockState.BREACHED and c.breached_at == T0 + timedelta(hours=4, seconds=1)
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=tid)
        notes = notifications_for(s, ticket_id=tid)
    assert [(e.escalated_to, e.level, e.rule_id) for e in esc] == [
        ("team_lead", "normal", "REP-2:same-city")
    ]
    assert "REP-2:same-city breached" in esc[0].reason
    assert sorted((n.role, n.template) for n in notes) == [
        ("handler", "reminder"),
        ("supervisor", "reminder"),
        ("team_lead", "breach_escalation"),
    ]
    assert all("13812345678" not in n.body for n in notes)  # PRIV-1
    # the escalation is a process: the team lead must step in within 15 min
    # (ESC-NORMAL:within); nobody did, so it goes one level up to the supervisor
    step_in = clock_of(tid, "ESC-NORMAL:within")
    assert step_in.instance == esc[0].id and step_in.due_at == c.breached_at + timedelta(minutes=15)
    assert fire(ctx, T0 + timedelta(hours=5)).breached == [step_in.id]
    with session_scope() as s:
        chain = [
            (e.rule_id, e.escalated_to, e.parent_id) for e in escalations_for(s, ticket_id=tid)
        ]
    assert chain == [
        ("REP-2:same-city", "team_lead", None),
        ("ESC-NORMAL:within", "supervisor", esc[0].id),
    ]


def test_met_clock_never_reminds_nor_breaches_REP_1(any_db: str, ctx: sla.Deadlines) -> None:
    tid = new_ticket("rep1-met")
    with session_scope() as s:
        sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-1", start=T0)
        sla.meet(s, ticket_id=tid, at=T0 + timedelta(minutes=20), rule_ids=["REP-1"])
    assert fire(ctx, T0 + timedelta(hours=2)).fired == 0
    assert clock_of(tid, "REP-1").state == ClockState.MET


def test_arming_twice_is_one_clock(any_db: str, ctx: sla.Deadlines) -> None:
    tid = new_ticket("arm-twice")
    with session_scope() as s:
        a = sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-1", start=T0)
        b = sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-1", start=T0 + timedelta(minutes=5))
        assert a.id == b.id and b.due_at == T0 + timedelta(minutes=30)
        assert len(clocks_for(s, ticket_id=tid)) == 1


def test_pause_keeps_working_time_remaining_across_a_weekend_REP_3(
    any_db: str, ctx: sla.Deadlines
) -> None:
    """REP-3 progress every 2 working days: paused Friday 17:00 with 10 h left, resumed Monday."""
    thu = datetime.fromisoformat(f"2026-11-26T10:00:00{SH}")  # Thursday
    tid = new_ticket("pause-weekend", at=thu)
    with session_scope() as s:
        c = sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-3", start=thu)
        assert c.due_at == datetime.fromisoformat(f"2026-11-30T10:00:00{SH}")  # Thu + 2 wd = Mon
        sla.pause(s, ctx=ctx, ticket_id=tid, at=datetime.fromisoformat(f"2026-11-27T17:00:00{SH}"))
    c = clock_of(tid, "REP-3")
    # left: Fri 17-18 (1 h) + Mon 9-10 (1 h) = 2 working hours
    assert c.state == ClockState.PAUSED and c.remaining_seconds == 2 * 3600
    assert fire(ctx, datetime.fromisoformat(f"2026-12-10T00:00:00{SH}")).fired == 0
    with session_scope() as s:
        sla.resume(s, ctx=ctx, ticket_id=tid, at=datetime.fromisoformat(f"2026-12-07T09:00:00{SH}"))
    c = clock_of(tid, "REP-3")
    assert c.state == ClockState.ARMED
    assert c.due_at == datetime.fromisoformat(f"2026-12-07T11:00:00{SH}")  # Mon 9h + 2 h


def test_pause_keeps_natural_time_remaining_of_a_target_but_never_pauses_a_hard_limit_PRI_ESC_TIMEOUT(
    any_db: str, ctx: sla.Deadlines
) -> None:
    """Waiting on the customer pauses targets, never a hard limit (spec, "Readings")."""
    tid = new_ticket("pause-natural")
    with session_scope() as s:
        for rule in ("PRI-NORMAL:resolution", "ESC-TIMEOUT:normal", "INQ-4"):
            sla.arm(s, ctx=ctx, ticket_id=tid, rule_id=rule, start=T0)
        paused = sla.pause(s, ctx=ctx, ticket_id=tid, at=T0 + timedelta(minutes=30))
        assert [c.rule_id for c in paused] == ["PRI-NORMAL:resolution"]
        sla.resume(s, ctx=ctx, ticket_id=tid, at=T0 + timedelta(hours=5))
    c = clock_of(tid, "PRI-NORMAL:resolution")
    assert c.due_at == T0 + timedelta(hours=28, minutes=30)
    assert c.remind_at == c.due_at - timedelta(hours=1)
    hard = clock_of(tid, "ESC-TIMEOUT:normal")
    assert hard.state == ClockState.ARMED and hard.due_at == T0 + timedelta(hours=24)
    assert clock_of(tid, "INQ-4").due_at == T0 + timedelta(hours=2)


def test_repeating_progress_report_fires_every_2_working_days_REP_3(
    any_db: str, ctx: sla.Deadlines
) -> None:
    tid = new_ticket("rep3-repeat")
    with session_scope() as s:
        sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-3", start=T0)  # Monday 10:00
    r = fire(ctx, datetime.fromisoformat(f"2026-11-25T10:00:00{SH}"))  # Wednesday 10:00
    assert len(r.repeated) == 1
    c = clock_of(tid, "REP-3")
    assert c.state == ClockState.ARMED and c.fire_count == 1
    assert c.due_at == datetime.fromisoformat(f"2026-11-27T10:00:00{SH}")  # Friday
    with session_scope() as s:
        assert [n.template for n in notifications_for(s, ticket_id=tid)] == ["progress_report"]


def test_email_close_after_3_days_answers_the_feedback_step_with_a_stored_submission_INQ_CH_EMAIL(
    any_db: str, ctx: sla.Deadlines
) -> None:
    tid = new_ticket("email-close")
    with session_scope() as s:
        sla.arm(
            s,
            ctx=ctx,
            ticket_id=tid,
            rule_id="INQ-CH-EMAIL:close",
            start=T0,
            flow_run_id="00000000-0000-0000-0000-000000000001",
        )
    r = fire(ctx, T0 + timedelta(days=3))
    assert len(r.answered) == 1
    with session_scope() as s:
        (sub,) = s.exec(select(StepSubmission).where(StepSubmission.ticket_id == tid)).all()
    # the run takes it when it asks for feedback, whatever step it waits on now (issue 11 §2)
    assert (sub.sop, sub.step, sub.step_key, sub.state) == (
        "inquiry",
        "feedback",
        "feedback",
        "pending",
    )
    assert sub.data == {"outcome": "no_reply"} and sub.actor == "sla-clock:INQ-CH-EMAIL:close"
    assert fire(ctx, T0 + timedelta(days=4)).fired == 0  # fired once, stored once


def test_urgent_ticket_target_and_hard_limit_both_escalate_ESC_TIMEOUT_PRI_URGENT(
    any_db: str, ctx: sla.Deadlines
) -> None:
    tid = new_ticket("urgent-timeout")
    with session_scope() as s:
        for rule in ("PRI-URGENT:resolution", "ESC-TIMEOUT:urgent"):
            sla.arm(s, ctx=ctx, ticket_id=tid, rule_id=rule, start=T0)
    fire(ctx, T0 + timedelta(hours=2, seconds=1))
    fire(ctx, T0 + timedelta(hours=12, seconds=1))
    with session_scope() as s:
        esc = [(e.rule_id, e.escalated_to, str(e.state)) for e in escalations_for(s, ticket_id=tid)]
    # the 2 h target escalates to the CS manager (urgent: acknowledge in 10 min, plan in
    # 1 h); nobody acted, so its own clocks go one level up to the director, whose open
    # escalation the later plan breach and the 12 h hard limit join (no second process)
    assert esc == [
        ("PRI-URGENT:resolution", "cs_manager", "open"),
        ("ESC-URGENT:within", "operations_director", "open"),
        ("ESC-URGENT:plan", "operations_director", "joined"),
        ("ESC-TIMEOUT:urgent", "operations_director", "joined"),
    ]


def test_due_clocks_are_found_by_index_not_by_scanning_open_ones(
    any_db: str, ctx: sla.Deadlines
) -> None:
    from sqlalchemy import text

    tid = new_ticket("index")
    with session_scope() as s:
        sla.arm(s, ctx=ctx, ticket_id=tid, rule_id="REP-1", start=T0)
        dialect = s.get_bind().dialect.name
        if dialect == "sqlite":
            plan = (
                s.connection()
                .execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM sla_clock WHERE next_fire_at <= :n "
                        "ORDER BY next_fire_at LIMIT 500"
                    ),
                    {"n": "2030-01-01"},
                )
                .all()
            )
            assert any("ix_sla_clock_next_fire_at" in str(row) for row in plan)
        else:
            idx = (
                s.connection()
                .execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'sla_clock'"))
                .scalars()
                .all()
            )
            assert "ix_sla_clock_next_fire_at" in idx


def test_outbox_retries_with_backoff_then_delivers_to_the_sink(
    any_db: str, ctx: sla.Deadlines, sink: Any
) -> None:
    tid = new_ticket("outbox-retry")
    notifier = Notifier({"team_lead": [sink.url("/team_lead")]}, max_attempts=5, backoff_seconds=2)
    now = T0
    with session_scope() as s:
        sla.enqueue_notification(
            s,
            dedupe_key="x1",
            role="team_lead",
            template="breach_escalation",
            context={"ticket_id": tid, "rule_id": "REP-1", "level": "normal", "reason": "late"},
            now=now,
            ticket_id=tid,
        )
    sink.fail_next(2)
    attempts = []
    for dt in (0, 2, 6):  # backoff 2 s then 4 s
        with session_scope() as s:
            rows = sla.deliver_outbox(
                s,
                notifier=notifier,
                now=now + timedelta(seconds=dt),
                max_attempts=5,
                backoff_seconds=2,
            )
            attempts.append([(r.status, r.attempts) for r in rows])
    assert attempts == [
        [(NotificationStatus.PENDING, 1)],
        [(NotificationStatus.PENDING, 2)],
        [(NotificationStatus.SENT, 3)],
    ]
    assert len(sink.messages("/team_lead")) == 1


def test_outbox_never_gives_up_after_max_attempts_it_slows_down_until_the_target_answers(
    any_db: str, ctx: sla.Deadlines, sink: Any
) -> None:
    """Issue 11 §4: after the fast retries a message stays queued, retried with the
    backoff capped at notify_retry_max_seconds, and is delivered once the target answers."""
    tid = new_ticket("outbox-fail")
    notifier = Notifier({"team_lead": [sink.url("/team_lead")]})
    policy = sla.OutboxPolicy(max_attempts=3, backoff_seconds=2, retry_max_seconds=300)
    with session_scope() as s:
        sla.enqueue_notification(
            s,
            dedupe_key="x2",
            role="team_lead",
            template="reminder",
            context={"ticket_id": tid, "rule_id": "REP-1", "due": "soon"},
            now=T0,
            ticket_id=tid,
        )
    sink.fail_next(10)
    now = T0
    for _ in range(10):
        sla.deliver_outbox(notifier=notifier, now=now, policy=policy)
        with session_scope() as s:
            (n,) = notifications_for(s, ticket_id=tid)
        assert n.status == NotificationStatus.PENDING and n.last_error and "500" in n.last_error
        assert n.next_attempt_at is not None
        assert n.next_attempt_at - now <= timedelta(seconds=300)  # capped, never given up
        now = n.next_attempt_at
    assert n.attempts == 10 and n.next_attempt_at - T0 > timedelta(minutes=10)
    rows = sla.deliver_outbox(notifier=notifier, now=now, policy=policy)
    assert [(r.status, r.attempts, r.delivered_via) for r in rows] == [
        (NotificationStatus.SENT, 11, "primary")
    ]
    assert len(sink.messages("/team_lead")) == 1


def test_role_without_route_is_recorded_failed_not_dropped(any_db: str, ctx: sla.Deadlines) -> None:
    tid = new_ticket("no-route")
    with session_scope() as s:
        sla.enqueue_notification(
            s,
            dedupe_key="x3",
            role="pr",
            template="reminder",
            context={"ticket_id": tid, "rule_id": "REP-1", "due": "soon"},
            now=T0,
            ticket_id=tid,
        )
    with session_scope() as s:
        sla.deliver_outbox(s, notifier=Notifier({}), now=T0, max_attempts=5)
    with session_scope() as s:
        (n,) = notifications_for(s, ticket_id=tid)
    assert n.status == NotificationStatus.FAILED and "pr" in (n.last_error or "")


def test_timestamps_come_back_timezone_aware_on_every_backend(any_db: str) -> None:
    tid = new_ticket("tz", at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    from models.repository import get_ticket

    with session_scope() as s:
        t = get_ticket(s, ticket_id=tid)
        assert t.created_at.tzinfo is not None
        assert t.created_at == T0
