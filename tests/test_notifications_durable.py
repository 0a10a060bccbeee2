"""No message lost to an outage, late made visible, firing shared by several SLA services
(issues 11 §4 and 9 §4). Real parts: a real database, the real SLA service, Apprise posting
to a real local HTTP sink that is stopped and started again on the same port; time is a
``ManualClock`` (minutes of outage are moved, never slept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftersales import sla
from aftersales.calendar import WorkCalendar
from aftersales.clock import ManualClock
from aftersales.notify import Notifier
from aftersales.policy import load_profile
from aftersales.settings import reset_settings
from aftersales.sla_service import SlaService
from models.db import session_scope
from models.entities import (
    ClockState,
    Escalation,
    Notification,
    NotificationStatus,
    Priority,
    SlaClock,
    TicketCreate,
)
from models.repository import clocks_for, create_ticket, escalations_for, notifications_for
from tests.sink import HttpSink

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday
RULE = "REP-2:same-city"  # REM-1 at 3 h 30, due at 4 h, escalates to the team lead


@pytest.fixture
def ctx() -> sla.Deadlines:
    return sla.Deadlines(profile=load_profile("default"), calendar=WorkCalendar())


def new_ticket(key: str) -> str:
    with session_scope() as s:
        t, _ = create_ticket(
            s,
            data=TicketCreate(
                intake_key=key,
                created_at=T0,
                channel="phone",
                customer_name="张伟",
                contact="13812345678",
                description="broken",
                priority=Priority.NORMAL,
            ),
        )
        return t.id


def arm(ctx: sla.Deadlines, tid: str) -> None:
    with session_scope() as s:
        sla.arm(s, ctx=ctx, ticket_id=tid, rule_id=RULE, start=T0)


def service(ctx: sla.Deadlines, clock: ManualClock, notifier: Notifier) -> SlaService:
    svc = SlaService(clock=clock, notifier=notifier, ctx=ctx, send_events=False)
    svc.outbox = sla.OutboxPolicy(
        max_attempts=5, backoff_seconds=2, retry_max_seconds=300, fallback_after=3
    )
    return svc


def to(sink: HttpSink | str) -> Notifier:
    """Every role posts to ``/<role>`` of the sink (or of a sink URL base)."""
    base = sink.url("") if isinstance(sink, HttpSink) else sink
    return Notifier(lambda role: [f"{base.rstrip('/')}/{role}"], timeout_seconds=2)


def rows(tid: str) -> list[Notification]:
    with session_scope() as s:
        return notifications_for(s, ticket_id=tid)


def test_the_sink_down_longer_than_the_fast_retries_gets_the_escalation_when_it_is_back_ESC(
    sqlite_db: str, ctx: sla.Deadlines
) -> None:
    """The team lead's endpoint is down for 40 min (far beyond the 5 fast attempts): the
    escalation stays queued, retried every ≤ 5 min, and arrives once it answers again."""
    sink = HttpSink()
    port = sink.port
    tid = new_ticket("outage")
    arm(ctx, tid)
    clock = ManualClock(T0 + timedelta(hours=3, minutes=30))
    svc = service(ctx, clock, to(sink))
    svc.tick()  # REM-1 delivered while the sink is up
    assert {m.path for m in sink.messages()} == {"/handler", "/supervisor"}
    sink.close()  # the outage starts
    clock.set(T0 + timedelta(hours=4, seconds=1))
    svc.tick()  # breach: escalation queued, its delivery refused
    (esc,) = [n for n in rows(tid) if n.template == "breach_escalation"]
    assert esc.status == NotificationStatus.PENDING and esc.attempts == 1
    while clock.now() < T0 + timedelta(hours=4, minutes=40):
        (esc,) = [n for n in rows(tid) if n.template == "breach_escalation"]
        assert esc.next_attempt_at is not None
        assert esc.next_attempt_at - clock.now() <= timedelta(minutes=5)  # capped backoff
        clock.set(esc.next_attempt_at)
        svc.deliver()
    (esc,) = [n for n in rows(tid) if n.template == "breach_escalation"]
    assert esc.status == NotificationStatus.PENDING and esc.attempts > 5  # never given up
    assert esc.last_error and "team_lead" in esc.last_error
    back = HttpSink(port=port)  # the endpoint answers again, same address
    try:
        assert esc.next_attempt_at is not None
        clock.set(esc.next_attempt_at)
        svc.deliver()
        (esc,) = [n for n in rows(tid) if n.template == "breach_escalation"]
        assert esc.status == NotificationStatus.SENT and esc.delivered_via == "primary"
        (got,) = back.messages("/team_lead")
        assert got.body["title"].startswith("[ESC-NORMAL]") and tid in got.body["title"]
        clock.advance(timedelta(minutes=10))
        svc.deliver()  # nothing is sent twice
        assert len(back.messages("/team_lead")) == 1
    finally:
        back.close()


def test_the_fallback_route_is_used_after_n_failures_and_recorded(
    sqlite_db: str, ctx: sla.Deadlines, sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AFTERSALES_NOTIFY_FALLBACK_TEAM_LEAD is tried from the 3rd attempt
    (notify_fallback_after=2 here) and the row records that the fallback delivered."""
    dead = HttpSink()
    dead_url = dead.url("/team_lead")
    dead.close()
    monkeypatch.setenv("AFTERSALES_NOTIFY_TEAM_LEAD", dead_url)
    monkeypatch.setenv("AFTERSALES_NOTIFY_FALLBACK_TEAM_LEAD", sink.url("/fallback"))
    monkeypatch.setenv("AFTERSALES_NOTIFY_FALLBACK_AFTER", "2")
    reset_settings()
    try:
        notifier = Notifier.from_settings()
        policy = sla.OutboxPolicy.from_settings(backoff_seconds=1)
        tid = new_ticket("fallback")
        with session_scope() as s:
            sla.enqueue_notification(
                s,
                dedupe_key="fb-1",
                role="team_lead",
                template="breach_escalation",
                context={"ticket_id": tid, "rule_id": "REP-1", "level": "normal", "reason": "x"},
                now=T0,
                ticket_id=tid,
            )
        now, seen = T0, []
        for _ in range(3):
            (n,) = sla.deliver_outbox(notifier=notifier, now=now, policy=policy)
            seen.append((n.attempts, n.status, n.delivered_via))
            now = n.next_attempt_at or now
        assert seen == [
            (1, NotificationStatus.PENDING, None),
            (2, NotificationStatus.PENDING, None),
            (3, NotificationStatus.SENT, "fallback"),
        ]
        assert len(sink.messages("/fallback")) == 1
    finally:
        reset_settings()


def test_notifications_failed_lists_masked_and_retry_resends_through_the_cli(
    sqlite_db: str, ctx: sla.Deadlines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aftersales notifications --failed`` (a subprocess whose Prefect API is a dead
    port: the store alone answers) lists the waiting and the unroutable; ``retry --id N
    --deliver`` sends one now once its target is back."""
    from aftersales.cli import app

    sink = HttpSink()
    port = sink.port
    sink.close()
    monkeypatch.setenv("AFTERSALES_NOTIFY_TEAM_LEAD", f"json://127.0.0.1:{port}/team_lead")
    monkeypatch.delenv("AFTERSALES_NOTIFY_PR", raising=False)
    reset_settings()
    tid = new_ticket("cli")
    with session_scope() as s:
        for key, role in (("cli-1", "team_lead"), ("cli-2", "pr")):
            sla.enqueue_notification(
                s,
                dedupe_key=key,
                role=role,
                template="breach_escalation",
                context={"ticket_id": tid, "rule_id": "REP-1", "level": "normal",
                         "reason": "customer 13812345678 waits"},
                now=T0,
                ticket_id=tid,
            )  # fmt: skip
    sla.deliver_outbox(notifier=Notifier.from_settings(), now=T0)
    out = subprocess.run(
        [sys.executable, "-m", "aftersales.cli", "notifications", "--failed", "--json"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    listed = {r["role"]: r for r in json.loads(out.stdout)}
    assert listed["team_lead"]["state"] == "waiting" and listed["team_lead"]["attempts"] == 1
    assert listed["team_lead"]["next_attempt"] != "-" and listed["team_lead"]["ticket"] == tid
    assert (
        listed["pr"]["state"] == "unroutable"
        and "AFTERSALES_NOTIFY_PR" in (listed["pr"]["last_error"])
    )
    assert "13812345678" not in out.stdout  # PRIV-1
    table = CliRunner().invoke(app, ["notifications", "--failed"])
    assert table.exit_code == 0 and "unroutable" in table.output and "waiting" in table.output

    back = HttpSink(port=port)
    try:
        wid = listed["team_lead"]["id"]
        res = CliRunner().invoke(app, ["notifications", "retry", "--id", str(wid), "--deliver"])
        assert res.exit_code == 0, res.output
        assert "delivered 1 of 1" in res.output
        assert len(back.messages("/team_lead")) == 1
        res = CliRunner().invoke(app, ["notifications", "retry", "--id", str(wid)])
        assert res.exit_code == 2 and "already delivered" in res.output
    finally:
        back.close()
    with session_scope() as s:
        states = {n.role: n.status for n in notifications_for(s, ticket_id=tid)}
    assert states == {"team_lead": NotificationStatus.SENT, "pr": NotificationStatus.FAILED}


def test_a_clock_found_past_its_due_reminds_late_then_breaches_reminder_delivered_first_REM_1(
    any_db: str, ctx: sla.Deadlines, sink: HttpSink
) -> None:
    """The SLA service was down from 3 h to 6 h: REM-1 (due 3 h 30) is not skipped. The
    reminder goes out marked late, then the breach, also marked late; the clock records
    its lateness; the breach waits until the reminder is delivered."""
    tid = new_ticket("late")
    arm(ctx, tid)
    now = T0 + timedelta(hours=6)
    with session_scope() as s:
        r = sla.fire_due(s, ctx=ctx, now=now)
    assert r.reminded == r.breached == r.late_reminders and len(r.late) == 1
    (c,) = [c for c in clocks_for_ticket(tid) if c.rule_id == RULE]
    assert c.state == ClockState.BREACHED and c.reminded_at == now
    assert c.fired_late_seconds == pytest.approx(2.5 * 3600)
    notes = rows(tid)
    assert [(n.template, n.role) for n in notes] == [
        ("reminder", "handler"),
        ("reminder", "supervisor"),
        ("breach_escalation", "team_lead"),
    ]
    for n in notes:
        assert n.late_seconds and n.late_seconds >= 2 * 3600
        assert n.title.startswith("[LATE ") and "late after an outage; due was" in n.body
    assert "due was 2026-11-23T13:30+08:00" in notes[0].body  # the reminder's own moment
    assert "due was 2026-11-23T14:00+08:00" in notes[2].body  # the deadline
    assert notes[2].after_id == notes[0].id
    with session_scope() as s:
        assert "min late when detected" in escalations_for(s, ticket_id=tid)[0].reason

    notifier = to(sink)
    sink.fail_next(1)  # the handler's reminder fails once
    first = sla.deliver_outbox(notifier=notifier, now=now)
    assert [(n.template, n.status) for n in first] == [
        ("reminder", NotificationStatus.PENDING),
        ("reminder", NotificationStatus.SENT),
    ]  # the breach was not even taken: a late reminder of its ticket is pending
    assert sla.deliver_outbox(notifier=notifier, now=now + timedelta(seconds=1)) == []
    sla.deliver_outbox(notifier=notifier, now=now + timedelta(seconds=2))
    sla.deliver_outbox(notifier=notifier, now=now + timedelta(seconds=3))
    got = [(m.path, m.body["title"]) for m in sink.messages()]
    assert [p for p, _ in got] == ["/supervisor", "/handler", "/team_lead"]
    assert all(t.startswith("[LATE ") for _, t in got)


def clocks_for_ticket(tid: str) -> list[SlaClock]:
    with session_scope() as s:
        return clocks_for(s, ticket_id=tid)


def test_an_on_time_firing_is_not_marked_late(sqlite_db: str, ctx: sla.Deadlines) -> None:
    tid = new_ticket("on-time")
    arm(ctx, tid)
    with session_scope() as s:
        r = sla.fire_due(s, ctx=ctx, now=T0 + timedelta(hours=3, minutes=30, seconds=20))
    assert len(r.reminded) == 1 and r.late == [] and r.late_reminders == []
    (c,) = clocks_for_ticket(tid)
    assert c.fired_late_seconds is None
    assert all(n.late_seconds is None and not n.title.startswith("[LATE") for n in rows(tid))


def test_two_sla_services_on_postgresql_fire_each_clock_once_and_deliver_each_message_once(
    postgres_db: str, ctx: sla.Deadlines, sink: HttpSink
) -> None:
    """Two SlaService instances in threads share 500 due clocks (FOR UPDATE SKIP LOCKED)
    and the outbox (leases): every reminder and every breach fires once, every
    notification reaches the sink once."""
    n_clocks = 500
    with session_scope() as s:
        tids = []
        for i in range(n_clocks):
            t, _ = create_ticket(
                s,
                data=TicketCreate(
                    intake_key=f"pair-{i}", created_at=T0, channel="phone",
                    customer_name="张伟", contact="13812345678", description="broken",
                    priority=Priority.NORMAL,
                ),
            )  # fmt: skip
            tids.append(t.id)
            sla.arm(s, ctx=ctx, ticket_id=t.id, rule_id=RULE, start=T0)
    clock = ManualClock(T0 + timedelta(hours=3, minutes=31))
    services = [service(ctx, clock, to(sink)) for _ in range(2)]
    for svc in services:
        svc.batch, svc.outbox_batch = 40, 40
        svc.outbox = sla.OutboxPolicy(concurrency=4)
    fired: Counter[int] = Counter()

    def undelivered() -> int:
        from sqlmodel import func, select

        with session_scope() as s:
            return s.exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status != NotificationStatus.SENT)
            ).one()

    def run_both() -> None:
        gate = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(i: int, svc: SlaService) -> None:
            try:
                gate.wait(timeout=30)
                fired[i] += svc.fire()
                while svc.deliver():
                    pass
                gate.wait(timeout=300)
                for _ in range(20):  # a post the busy sink refused is retried (backoff 2 s)
                    if not undelivered():
                        return
                    if i == 0:
                        clock.advance(timedelta(seconds=5))
                    gate.wait(timeout=300)
                    while svc.deliver():
                        pass
                    gate.wait(timeout=300)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(services)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors

    run_both()  # the reminders
    clock.set(T0 + timedelta(hours=4, minutes=1))
    run_both()  # the breaches
    assert sum(fired.values()) == 2 * n_clocks
    with session_scope() as s:
        from sqlmodel import func, select

        states = Counter(s.exec(select(SlaClock.state).where(SlaClock.rule_id == RULE)).all())
        n_esc = s.exec(select(func.count()).select_from(Escalation)).one()
        pending = s.exec(
            select(func.count())
            .select_from(Notification)
            .where(Notification.status != NotificationStatus.SENT)
        ).one()
    assert states == {ClockState.BREACHED: n_clocks}
    assert n_esc == n_clocks and pending == 0
    got = Counter(
        (m.path, m.body["title"].split("Ticket ")[1].split()[0].rstrip(":"))
        for m in sink.messages()
    )
    assert len(got) == 3 * n_clocks  # handler + supervisor reminders, team lead escalation
    assert set(got.values()) == {1}  # none twice
    assert {p for p, _ in got} == {"/handler", "/supervisor", "/team_lead"}
    assert {t for _, t in got} == set(tids)
