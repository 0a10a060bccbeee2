"""The durable SLA clock.

Deadlines live in the database (``sla_clock``), not in any process: a flow arms
a clock and goes on (or suspends, holding no process); the long-lived clock
service (``SlaService``) wakes for the clocks whose ``next_fire_at`` has
come, sends the REM-1 reminder before a breach and, at the breach, records the
escalation (ESC-*) and notifies the next level. A breach never fails the SOP
run. Clocks can be paused and resumed keeping the remaining time, and they
survive a restart of every process because the database is the only state.

No Prefect import here: resuming a waiting flow run (``on_breach: resume``) is
a callback the caller injects.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from aftersales.calendar import Unit, WorkCalendar
from aftersales.policy import Profile, Rule
from models.entities import (
    ACTIVE_CLOCK_STATES,
    ClockState,
    Escalation,
    Notification,
    NotificationStatus,
    SlaClock,
    Ticket,
)

log = logging.getLogger("aftersales.sla")

WORKING_UNITS = (Unit.WORKING_HOURS, Unit.WORKING_DAYS)


@dataclass
class Deadlines:
    """How deadlines are computed: the policy profile, the working-time calendar and the
    (demo) time scale. One name for one thing: a *clock* is an armed deadline
    (``sla_clock``); the *SLA service* fires clocks; the time source is
    ``aftersales.clock.Clock``; this is what turns a rule and a start into a due time."""

    profile: Profile
    calendar: WorkCalendar
    time_scale: float = 1.0

    def due(self, rule: Rule, start: datetime) -> datetime:
        return self.profile.due(rule.id, start, self.calendar, self.time_scale)

    def remind_at(self, rule: Rule, due: datetime, start: datetime) -> datetime | None:
        before = self.profile.remind_before(rule)
        if before is None:
            return None
        at = due - before / self.time_scale
        return at if at > start else None


# ------------------------------------------------------------------ arming
def _armed(session: Session, ticket_id: str, rule_id: str, instance: int) -> SlaClock | None:
    return session.exec(
        select(SlaClock).where(
            SlaClock.ticket_id == ticket_id,
            SlaClock.rule_id == rule_id,
            SlaClock.instance == instance,
        )
    ).first()


def _new_clock(
    session: Session,
    *,
    ctx: Deadlines,
    rule: Rule,
    ticket_id: str,
    instance: int,
    start: datetime,
    due: datetime,
    remind_at: datetime | None,
    flow_run_id: str | None,
) -> SlaClock:
    clock = SlaClock(
        ticket_id=ticket_id,
        rule_id=rule.id,
        clause=rule.clause,
        instance=instance,
        profile=ctx.profile.name,
        kind=rule.kind,
        unit=str(rule.unit),
        duration=float(rule.duration or 0),
        state=ClockState.ARMED,
        started_at=start,
        due_at=due,
        remind_at=remind_at,
        next_fire_at=remind_at or due,
        flow_run_id=flow_run_id,
    )
    session.add(clock)
    session.flush()
    return clock


def arm(
    session: Session,
    *,
    ctx: Deadlines,
    ticket_id: str,
    rule_id: str,
    start: datetime,
    instance: int = 0,
    flow_run_id: str | None = None,
) -> SlaClock:
    """Arm the deadline of ``rule_id`` for a ticket from ``start``; idempotent per (ticket, rule, instance)."""
    existing = _armed(session, ticket_id, rule_id, instance)
    if existing is not None:
        if flow_run_id and not existing.flow_run_id:
            existing.flow_run_id = flow_run_id
            session.add(existing)
        return existing
    rule = ctx.profile.rule(rule_id)
    due = ctx.due(rule, start)
    return _new_clock(session, ctx=ctx, rule=rule, ticket_id=ticket_id, instance=instance,
                      start=start, due=due, remind_at=ctx.remind_at(rule, due, start),
                      flow_run_id=flow_run_id)  # fmt: skip


def arm_until(
    session: Session,
    *,
    ctx: Deadlines,
    ticket_id: str,
    rule_id: str,
    start: datetime,
    due: datetime,
    remind_at: datetime | None = None,
    instance: int = 0,
    flow_run_id: str | None = None,
) -> SlaClock:
    """Arm ``rule_id`` with a due time the caller knows instead of the rule's duration: a
    project's planned date of a phase (INS-6). Idempotent per (ticket, rule, instance);
    a running clock armed again with another due (the plan changed) moves to it."""
    rule = ctx.profile.rule(rule_id)
    remind_at = remind_at if remind_at is not None and start < remind_at < due else None
    clock = _armed(session, ticket_id, rule_id, instance)
    if clock is not None:
        if clock.state in ACTIVE_CLOCK_STATES and clock.due_at != due:
            clock.due_at, clock.remind_at = due, remind_at
            clock.state, clock.reminded_at = ClockState.ARMED, None
            clock.next_fire_at = remind_at or due
            session.add(clock)
            session.flush()
        return clock
    return _new_clock(session, ctx=ctx, rule=rule, ticket_id=ticket_id, instance=instance,
                      start=start, due=due, remind_at=remind_at, flow_run_id=flow_run_id)  # fmt: skip


def _select_clocks(
    session: Session,
    ticket_id: str,
    rule_ids: Iterable[str] | None,
    kinds: Iterable[str] | None,
    states: Iterable[ClockState],
    instance: int | None = None,
    match_clause: bool = False,
) -> list[SlaClock]:
    """The ticket's clocks in ``states``: of exactly ``rule_ids`` (with ``match_clause``, an
    id without a variant also names every variant of its clause: ``REP-2``), of ``kinds``,
    of one ``instance`` (an escalation's own clocks) or of all."""
    q = select(SlaClock).where(SlaClock.ticket_id == ticket_id, SlaClock.state.in_(list(states)))
    if rule_ids is not None:
        ids = list(rule_ids)
        if match_clause:
            clauses = [r for r in ids if ":" not in r]
            q = q.where(or_(SlaClock.rule_id.in_(ids), SlaClock.clause.in_(clauses)))
        else:
            q = q.where(SlaClock.rule_id.in_(ids))
    if kinds is not None:
        q = q.where(SlaClock.kind.in_(list(kinds)))
    if instance is not None:
        q = q.where(SlaClock.instance == instance)
    return list(session.exec(q.order_by(SlaClock.id)).all())


def meet(
    session: Session,
    *,
    ticket_id: str,
    at: datetime,
    rule_ids: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    instance: int | None = None,
    match_clause: bool = False,
) -> list[SlaClock]:
    """Stop the matching clocks at ``at`` (when the step really happened). A clock met
    after its due time keeps ``met_at > due_at`` (late); a breached clock stays breached."""
    clocks = _select_clocks(
        session,
        ticket_id,
        rule_ids,
        kinds,
        (*ACTIVE_CLOCK_STATES, ClockState.PAUSED),
        instance,
        match_clause,
    )
    for c in clocks:
        c.state = ClockState.MET
        c.met_at = at
        c.next_fire_at = None
        session.add(c)
    session.flush()
    return clocks


def cancel(
    session: Session,
    *,
    ticket_id: str,
    at: datetime,
    rule_ids: Iterable[str] | None = None,
    instance: int | None = None,
) -> list[SlaClock]:
    """Stop the matching clocks without meeting them (the ticket closed; a grade change
    superseded them)."""
    clocks = _select_clocks(
        session, ticket_id, rule_ids, None, (*ACTIVE_CLOCK_STATES, ClockState.PAUSED), instance
    )
    for c in clocks:
        c.state = ClockState.CANCELLED
        c.next_fire_at = None
        session.add(c)
    session.flush()
    return clocks


def first_response_due(session: Session, *, ticket_id: str) -> datetime | None:
    """The earliest first-response deadline of the ticket's running clocks ("whichever is
    earlier", conflicts table): ESC-NORMAL counts from it."""
    return session.exec(
        select(SlaClock.due_at)
        .where(
            SlaClock.ticket_id == ticket_id,
            SlaClock.kind == "response",
            SlaClock.instance == 0,
            SlaClock.state.in_(list(ACTIVE_CLOCK_STATES)),
        )
        .order_by(SlaClock.due_at)
        .limit(1)
    ).first()


def pause(
    session: Session,
    *,
    ctx: Deadlines,
    ticket_id: str,
    at: datetime,
    rule_ids: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    match_clause: bool = False,
) -> list[SlaClock]:
    """Pause the matching running targets, keeping the remaining time (working time for
    working units). Only a rule marked ``pausable`` pauses: never a hard limit nor an
    escalation clock (spec, "Readings", Pauses)."""
    clocks = [
        c
        for c in _select_clocks(
            session, ticket_id, rule_ids, kinds, ACTIVE_CLOCK_STATES, match_clause=match_clause
        )
        if (r := ctx.profile.rules.get(c.rule_id)) is not None and r.pausable
    ]
    for c in clocks:
        assert c.due_at is not None
        if Unit(c.unit) in WORKING_UNITS and ctx.time_scale == 1.0:
            remaining = ctx.calendar.working_seconds_between(at, c.due_at)
        else:
            remaining = max(0.0, (c.due_at - at).total_seconds())
        c.remaining_seconds = remaining
        c.paused_at = at
        c.state = ClockState.PAUSED
        c.next_fire_at = None
        session.add(c)
    session.flush()
    return clocks


def resume(
    session: Session,
    *,
    ctx: Deadlines,
    ticket_id: str,
    at: datetime,
    rule_ids: Iterable[str] | None = None,
    match_clause: bool = False,
) -> list[SlaClock]:
    """Resume paused clocks: the new due is the remaining time counted from ``at``."""
    clocks = _select_clocks(
        session, ticket_id, rule_ids, None, (ClockState.PAUSED,), match_clause=match_clause
    )
    for c in clocks:
        remaining = c.remaining_seconds or 0.0
        if Unit(c.unit) in WORKING_UNITS and ctx.time_scale == 1.0:
            due = ctx.calendar.add(at, remaining / 3600, Unit.WORKING_HOURS)
        else:
            due = at + timedelta(seconds=remaining)
        rule = ctx.profile.rules.get(c.rule_id)
        remind_at = ctx.remind_at(rule, due, at) if rule and c.reminded_at is None else None
        c.due_at = due
        c.remind_at = remind_at
        c.state = ClockState.REMINDED if c.reminded_at else ClockState.ARMED
        c.next_fire_at = remind_at or due
        c.remaining_seconds = None
        c.paused_at = None
        session.add(c)
    session.flush()
    return clocks


# ------------------------------------------------------------------ outbox
_HOLD = "aftersales.sla.hold"  # session.info key: see ``_holding``


@dataclass(frozen=True)
class NotificationRequest:
    """One message to queue. It is rendered and masked (PRIV-1) when stored; a
    ``dedupe_key`` is stored once. ``after_id`` holds it while a reminder of its ticket
    queued from that id on is pending (a late breach waits for its late REM-1 reminders)."""

    dedupe_key: str
    role: str
    template: str
    context: Mapping[str, Any]
    ticket_id: str | None = None
    after_id: int | None = None
    late_seconds: float | None = None


@dataclass(frozen=True)
class _Hold:
    """What a late firing adds to every message queued while it holds (also the ones
    ``open_escalation`` queues itself): wait for ``after_id``, the lateness and its words."""

    after_id: int | None
    late_seconds: float | None
    context: dict[str, str]


@contextmanager
def _holding(session: Session, hold: _Hold | None) -> Iterator[None]:
    if hold is None:
        yield
        return
    session.info[_HOLD] = hold
    try:
        yield
    finally:
        session.info.pop(_HOLD, None)


def enqueue_notifications(
    session: Session, requests: Sequence[NotificationRequest], *, now: datetime
) -> list[Notification]:
    """Store many messages at once: one query for the dedupe keys already stored (per 500
    keys) and one bulk insert; returns the row of each request (an existing one for a key
    already stored), in order."""
    from aftersales.notify import render

    hold: _Hold | None = session.info.get(_HOLD)
    keys = list(dict.fromkeys(r.dedupe_key for r in requests))
    rows: dict[str, Notification] = {}
    for k in range(0, len(keys), 500):
        chunk = keys[k : k + 500]
        for n in session.exec(select(Notification).where(Notification.dedupe_key.in_(chunk))):
            rows[n.dedupe_key] = n
    new: list[Notification] = []
    rendered: dict[tuple[str, int], Any] = {}  # one render per template and context object
    for r in requests:
        if r.dedupe_key in rows:
            continue
        after, late = r.after_id, r.late_seconds
        if hold is not None:
            after = after if after is not None else hold.after_id
            late = late if late is not None else hold.late_seconds
        msg = rendered.get((r.template, id(r.context)))
        if msg is None:
            context = {**r.context, **hold.context} if hold is not None else r.context
            msg = rendered[(r.template, id(r.context))] = render(r.template, context)
        row = Notification(
            dedupe_key=r.dedupe_key,
            ticket_id=r.ticket_id,
            role=r.role,
            template=r.template,
            clause=msg.clause,
            title=msg.title,
            body=msg.body,
            created_at=now,
            next_attempt_at=now,
            after_id=after,
            late_seconds=late,
        )
        rows[r.dedupe_key] = row
        new.append(row)
    if new:
        session.add_all(new)
        session.flush()
    return [rows[r.dedupe_key] for r in requests]


def enqueue_notification(
    session: Session,
    *,
    dedupe_key: str,
    role: str,
    template: str,
    context: dict[str, Any],
    now: datetime,
    ticket_id: str | None = None,
) -> Notification:
    """Store a rendered, masked message for delivery; the same dedupe key is stored once."""
    (row,) = enqueue_notifications(
        session,
        [NotificationRequest(dedupe_key, role, template, context, ticket_id)],
        now=now,
    )
    return row


def ticket_context(ticket: Ticket | None) -> dict[str, Any]:
    """The ticket fields message templates may use (masked when rendered, PRIV-1)."""
    if ticket is None:
        return {}
    return {
        "ticket_id": ticket.id,
        "customer_name": ticket.customer_name,
        "contact": ticket.contact,
        "channel": str(ticket.channel),
        "priority": str(ticket.priority),
        # what is not known yet is said in words, never an empty "-" (issue 10)
        "category": str(ticket.category or "not classified yet"),
        "status": str(ticket.status),
        "handler": ticket.handler or "not assigned yet",
        "owner_team": ticket.owner_team or _OWNER_TEAM.get(str(ticket.channel), "not assigned yet"),
        "description": ticket.description,
        "product_model": ticket.product_model or "not given",
        "purchase_date": str(ticket.purchase_date or "not given"),
        "result": ticket.result or "not recorded yet",
        "service_city": ticket.service_city or "not on file",
        "address": ticket.service_city or "not on file",  # the area (city) of the service
    }


#: INQ-OWNER: the team of the channel that first received the ticket owns it
_OWNER_TEAM = {"phone": "hotline", "online": "online-service", "email": "email-service",
               "social": "social-media"}  # fmt: skip


def describe_stops(rule: Rule) -> str:
    """What meets the rule, in words: the summaries of the steps that stop it."""
    from aftersales.steps import StepError, resolve

    words = []
    for ref in rule.stops:
        try:
            words.append(f"{ref} ({resolve(ref)[1].summary})")
        except StepError:
            words.append(ref)
    return " or ".join(words) or rule.id


def _clock_context(c: SlaClock, rule: Rule | None, tz: Any) -> dict[str, Any]:
    return {
        "rule_id": c.rule_id,
        "clause": c.clause,
        "due": c.due_at.astimezone(tz).isoformat() if c.due_at else "-",
        "started": c.started_at.astimezone(tz).isoformat(),
        "stops": describe_stops(rule) if rule else "",
        "level": (rule.level if rule else None) or "-",
        "escalate_to": (rule.escalate_to if rule else None) or "-",
        "fire_count": c.fire_count,
    }


# ------------------------------------------------------------------ service
@dataclass
class FireReport:
    reminded: list[int] = field(default_factory=list)
    breached: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # a step answered by the clock
    lateness: list[float] = field(default_factory=list)
    late: list[int] = field(default_factory=list)  # fired later than the bound
    late_reminders: list[int] = field(default_factory=list)  # REM-1 sent after the due
    clocks: int = 0  # clocks taken in this batch

    @property
    def fired(self) -> int:
        return len(self.reminded) + len(self.breached) + len(self.repeated)


def _duration_words(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, round(seconds))} s"
    minutes = math.floor(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _late_context(late_seconds: float | None, moment: datetime, tz: Any) -> dict[str, str]:
    """``late_mark``/``late_note`` of a clock that fired late (empty when on time)."""
    if late_seconds is None:
        return {}
    words = _duration_words(late_seconds)
    at = moment.astimezone(tz).isoformat(timespec="minutes")
    return {
        "late_mark": f"[LATE {words}] ",
        "late_note": f"Fired {words} late after an outage; due was {at}.\n",
    }


def fire_due(
    session: Session,
    *,
    ctx: Deadlines,
    now: datetime,
    batch: int = 500,
    late_after: float | None = None,
) -> FireReport:
    """Fire one batch of the clocks whose ``next_fire_at`` has come. Cost follows the due
    clocks only: one query for the clocks (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
    several SLA service instances share them without firing one twice), one for their
    tickets, one for the dedupe keys of the messages and bulk inserts.

    A reminder is never skipped (REM-1): a clock found past its due without having
    reminded sends its reminder, marked late, and then breaches; the breach's messages
    wait for the reminder's delivery (``after_id``). A clock that fires more than
    ``late_after`` seconds (``late_fire_seconds``) after its moment records it
    (``fired_late_seconds``) and its messages say so."""
    if late_after is None:
        from aftersales.settings import get_settings

        late_after = get_settings().late_fire_seconds
    report = FireReport()
    q = (
        select(SlaClock)
        .where(SlaClock.next_fire_at.is_not(None), SlaClock.next_fire_at <= now)
        .order_by(SlaClock.next_fire_at)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    clocks = list(session.exec(q).all())
    report.clocks = len(clocks)
    if not clocks:
        return report
    tids = sorted({c.ticket_id for c in clocks})
    tickets = {t.id: t for t in session.exec(select(Ticket).where(Ticket.id.in_(tids)))}
    tz = ctx.calendar.tz
    reminders: list[tuple[int, NotificationRequest]] = []
    later: list[tuple[SlaClock, Rule | None, dict[str, Any], Ticket | None, float | None]] = []
    for c in clocks:
        assert c.next_fire_at is not None and c.due_at is not None
        ticket = tickets.get(c.ticket_id)
        rule = ctx.profile.rules.get(c.rule_id)
        base = {**ticket_context(ticket), **_clock_context(c, rule, tz)}
        late_s = (now - c.next_fire_at).total_seconds()
        report.lateness.append(late_s)
        if late_s > late_after:
            c.fired_late_seconds = late_s
            report.late.append(c.id or 0)
        reminds = c.state == ClockState.ARMED and c.remind_at is not None and c.kind != "repeat"
        if reminds and now < c.due_at:
            late = late_s if late_s > late_after else None
            reminders += _remind(session, c, rule, base, now, late, tz)
            report.reminded.append(c.id or 0)
        else:
            if reminds:  # past its due without having reminded: REM-1 first, marked late
                assert c.remind_at is not None
                late = (now - c.remind_at).total_seconds()
                c.fired_late_seconds = max(c.fired_late_seconds or 0.0, late)
                reminders += _remind(session, c, rule, base, now, late, tz)
                report.reminded.append(c.id or 0)
                report.late_reminders.append(c.id or 0)
            breach_late = (now - c.due_at).total_seconds()
            later.append((c, rule, base, ticket, breach_late if late_s > late_after else None))
    stored = enqueue_notifications(session, [r for _, r in reminders], now=now)
    held: dict[int, int] = {}  # clock id -> its first reminder row: the breach waits
    for (clock_id, _), row in zip(reminders, stored, strict=True):  # for its reminders
        held[clock_id] = min(held.get(clock_id, row.id or 0), row.id or 0)
    messages: list[NotificationRequest] = []
    for c, rule, base, ticket, late in later:
        hold = (
            _Hold(held.get(c.id or 0), late, _late_context(late, c.due_at or now, tz))
            if late is not None or (c.id or 0) in held
            else None
        )
        if c.kind == "repeat":
            messages.append(_repeat(session, ctx, c, rule, base, now))
            report.repeated.append(c.id or 0)
            continue
        with _holding(session, hold):
            answered, msg = _breach(session, ctx, c, rule, base, now, ticket)
        if msg is not None:
            messages.append(_held(msg, hold))
        report.breached.append(c.id or 0)
        if answered:
            report.answered.append(c.id or 0)
    enqueue_notifications(session, messages, now=now)
    session.add_all(clocks)
    session.flush()
    return report


def _held(msg: NotificationRequest, hold: _Hold | None) -> NotificationRequest:
    if hold is None:
        return msg
    return replace(
        msg,
        after_id=hold.after_id,
        late_seconds=hold.late_seconds,
        context={**msg.context, **hold.context},
    )


def _sla_event(
    session: Session, c: SlaClock, what: str, base: dict[str, Any], now: datetime
) -> None:
    """``aftersales.sla.reminded|breached`` for the UI's event feed and a user's own
    automations; the ticket's runs are re-tagged ``sla:at-risk`` / ``sla:breached``."""
    from aftersales.steps import queue_event

    queue_event(
        session,
        event=f"aftersales.sla.{what}",
        ticket_id=c.ticket_id,
        payload={"ticket_id": c.ticket_id, "rule_id": c.rule_id, "due": base.get("due")},
        now=now,
        tag="sla:at-risk" if what == "reminded" else "sla:breached",
    )


def _remind(
    session: Session,
    c: SlaClock,
    rule: Rule | None,
    base: dict[str, Any],
    now: datetime,
    late: float | None,
    tz: Any,
) -> list[tuple[int, NotificationRequest]]:
    """REM-1: remind the owner and the supervisor before the breach (the messages are
    returned for one bulk insert)."""
    c.state = ClockState.REMINDED
    c.reminded_at = now
    c.next_fire_at = c.due_at
    _sla_event(session, c, "reminded", base, now)
    context = {**base, **_late_context(late, c.remind_at or now, tz)}
    return [
        (
            c.id or 0,
            NotificationRequest(
                dedupe_key=f"remind:{c.id}:{role}",
                role=role,
                template="reminder",
                context=context,
                ticket_id=c.ticket_id,
                late_seconds=late,
            ),
        )
        for role in (rule.remind_to if rule else ("handler", "supervisor"))
    ]


def _repeat(
    session: Session,
    ctx: Deadlines,
    c: SlaClock,
    rule: Rule | None,
    base: dict[str, Any],
    now: datetime,
) -> NotificationRequest:
    """A repeating clock (progress every N, follow-up mail every N): act, then re-arm from
    the due. Its messages go to customers and carry no outage note."""
    c.fire_count += 1
    template = (rule.template if rule else None) or "progress_report"
    role = (rule.escalate_to if rule else None) or "customer"
    msg = NotificationRequest(
        dedupe_key=f"repeat:{c.id}:{c.fire_count}",
        role=role,
        template=template,
        context={**base, "fire_count": c.fire_count},
        ticket_id=c.ticket_id,
    )
    assert c.due_at is not None
    nxt = ctx.due(rule, c.due_at) if rule else c.due_at + timedelta(hours=24)
    if nxt <= now:  # the service was down for several periods: do not burst, count from now
        nxt = ctx.due(rule, now) if rule else now + timedelta(hours=24)
    c.due_at = nxt
    c.next_fire_at = nxt
    return msg


def _breach(
    session: Session,
    ctx: Deadlines,
    c: SlaClock,
    rule: Rule | None,
    base: dict[str, Any],
    now: datetime,
    ticket: Ticket | None,
) -> tuple[bool, NotificationRequest | None]:
    """The deadline passed unmet: record it, then escalate (an escalation process of its
    own, one level up for an escalation's own clock), notify, or answer the step the
    clock waits for; the SOP run goes on. Returns (answered, the message to queue)."""
    from aftersales.steps import open_escalation

    c.state = ClockState.BREACHED
    c.breached_at = now
    c.next_fire_at = None
    action = rule.on_breach if rule else "none"
    late_min = math.floor((now - c.due_at).total_seconds() / 60) if c.due_at else 0
    reason = (
        f"{c.rule_id} breached: '{rule.note or rule.id if rule else 'deadline'}' not done by "
        f"{base.get('due')} ({late_min} min late when detected)"
    )
    _sla_event(session, c, "breached", base, now)
    answered = False
    msg: NotificationRequest | None = None
    if action == "escalate" and rule is not None and ticket is not None:
        parent = session.get(Escalation, c.instance) if c.instance else None
        session.flush()
        open_escalation(
            session,
            deadlines=ctx,
            ticket=ticket,
            rule=rule,
            reason=reason,
            by="sla-clock",
            now=now,
            parent=parent,
            clock_id=c.id,
        )
    elif action == "notify" and rule is not None:
        msg = NotificationRequest(
            dedupe_key=f"breach:{c.id}",
            role=rule.escalate_to or "supervisor",
            template=rule.template or "delay_alert",
            context={**base, "reason": reason},
            ticket_id=c.ticket_id,
        )
    elif action == "resume" and rule is not None:
        answered = _answer_steps(session, c, rule, now)
        msg = NotificationRequest(
            dedupe_key=f"breach:{c.id}",
            role="handler",
            template=rule.template or "ticket_auto_closed",
            context={**base, "reason": reason},
            ticket_id=c.ticket_id,
        )
    log.info("clock %s %s breached for ticket %s (%s)", c.id, c.rule_id, c.ticket_id, action)
    return answered, msg


def _answer_steps(session: Session, c: SlaClock, rule: Rule, now: datetime) -> bool:
    """The clock answers the step it stops (INQ-CH-EMAIL:close answers ``feedback`` with
    ``no_reply``) as a stored submission, in the firing transaction (issue 11 §2): the run
    takes it when it asks for that step, even if it still waits on an earlier one or is
    down when the clock fires; the run supervisor resumes a run already waiting for it.
    Nothing here calls Prefect, so a slow server never holds the firing loop."""
    from aftersales.submissions import store_in

    for ref in rule.stops:
        sop, _, step = ref.partition(".")
        store_in(
            session, ticket_id=c.ticket_id, sop=sop, step=step, step_key=step,
            escalation_id=c.instance or None if sop == "escalation" else None,
            data=dict(rule.resume_input or {}), now=now, actor=f"sla-clock:{c.rule_id}",
        )  # fmt: skip
    return bool(rule.stops)


# ------------------------------------------------------------------ courier
@dataclass(frozen=True)
class OutboxPolicy:
    """How the courier retries. ``max_attempts`` fast attempts with backoff
    ``backoff_seconds * 2**(n-1)``; after them a message is not given up but retried with
    that backoff capped at ``retry_max_seconds``, for every template and without an age
    limit (an escalation must arrive, however late; the CLI lists what waits). Only an
    unroutable message (no route, invalid URL) is terminal (FAILED). After
    ``fallback_after`` failed attempts the role's fallback route is tried too."""

    max_attempts: int = 5
    backoff_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    fallback_after: int = 3
    lease_seconds: float = 120.0
    concurrency: int = 1
    courier: str = field(
        default_factory=lambda: f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> OutboxPolicy:
        if settings is None:
            from aftersales.settings import get_settings

            settings = get_settings()
        values: dict[str, Any] = {
            "max_attempts": settings.notify_max_attempts,
            "backoff_seconds": settings.notify_backoff_seconds,
            "retry_max_seconds": settings.notify_retry_max_seconds,
            "fallback_after": settings.notify_fallback_after,
            "lease_seconds": settings.notify_lease_seconds,
            "concurrency": settings.notify_concurrency,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def retry_delay(self, attempts: int) -> float:
        """Delay after failed attempt number ``attempts`` (1-based)."""
        return min(self.retry_max_seconds, self.backoff_seconds * 2 ** min(attempts - 1, 40))


@dataclass(frozen=True)
class _Job:
    id: int
    ticket_id: str | None
    role: str
    attempts: int
    message: Any  # aftersales.notify.RenderedMessage


def _claim(
    session: Session, *, now: datetime, batch: int, policy: OutboxPolicy
) -> list[Notification]:
    """Take the due rows nobody holds, oldest first, and lease them to this courier. On
    PostgreSQL ``FOR UPDATE SKIP LOCKED``: concurrent couriers never take one row; SQLite
    serialises writers, so there one SLA service instance is the supported set-up."""
    held = aliased(Notification)
    waiting = (  # a late breach waits for the late reminders queued before it
        select(held.id)
        .where(
            held.ticket_id == Notification.ticket_id,
            held.id >= Notification.after_id,
            held.id < Notification.id,
            held.template == "reminder",
            held.status == NotificationStatus.PENDING,
        )
        .exists()
    )
    q = (
        select(Notification)
        .where(
            Notification.status == NotificationStatus.PENDING,
            Notification.next_attempt_at <= now,
            or_(Notification.claimed_until.is_(None), Notification.claimed_until <= now),
            or_(Notification.after_id.is_(None), ~waiting),
        )
        .order_by(Notification.id)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=Notification)
    rows = list(session.exec(q).all())
    until = now + timedelta(seconds=policy.lease_seconds)
    for n in rows:
        n.claimed_until = until
        n.claimed_by = policy.courier
    session.add_all(rows)
    session.flush()
    return rows


def _send_all(notifier: Any, jobs: list[_Job], policy: OutboxPolicy) -> dict[int, Any]:
    """Deliver concurrently (``policy.concurrency`` threads), one ticket's messages in
    creation order in one thread (a message that must wait for another one is held at the
    claim by ``after_id``). A target that did not answer is not tried again in this
    round."""
    groups: dict[str, list[_Job]] = {}
    for j in sorted(jobs, key=lambda j: j.id):
        groups.setdefault(j.ticket_id or f"#{j.id}", []).append(j)
    down: set[str] = set()

    def run(group: list[_Job]) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        for j in group:
            report = notifier.try_send(
                j.role, j.message, fallback=j.attempts >= policy.fallback_after, down=down
            )
            out.append((j.id, report))
        return out

    results: dict[int, Any] = {}
    if policy.concurrency <= 1 or len(groups) <= 1:
        for g in groups.values():
            results.update(run(g))
        return results
    with ThreadPoolExecutor(
        max_workers=min(policy.concurrency, len(groups)), thread_name_prefix="sla-courier"
    ) as pool:
        for out in pool.map(run, groups.values()):
            results.update(out)
    return results


def _record(
    session: Session,
    rows: Iterable[Notification],
    results: dict[int, Any],
    *,
    now: datetime,
    policy: OutboxPolicy,
) -> list[Notification]:
    out: list[Notification] = []
    for n in rows:
        if n.claimed_by != policy.courier:  # our lease expired and another courier took it
            log.warning("notification %s: lease lost to %s; not recorded", n.id, n.claimed_by)
            continue
        n.claimed_until, n.claimed_by = None, None
        report = results.get(n.id or 0)
        out.append(n)
        if report is None:  # not attempted (cannot happen today); released as it was
            session.add(n)
            continue
        n.attempts += 1
        if report.delivered:
            n.status = NotificationStatus.SENT
            n.sent_at = now
            n.last_error = None
            n.next_attempt_at = None
            n.delivered_via = report.route
        elif not report.retryable:
            n.status = NotificationStatus.FAILED
            n.last_error = report.error
            n.next_attempt_at = None
            log.error(
                "notification %s (%s to %s) cannot be routed: %s",
                n.id,
                n.template,
                n.role,
                report.error,
            )
        else:
            n.last_error = report.error
            n.next_attempt_at = now + timedelta(seconds=policy.retry_delay(n.attempts))
            if n.attempts == policy.max_attempts:
                log.error(
                    "notification %s (%s to %s) still undelivered after %s attempts; retried "
                    "every %.0f s at most until its target answers: %s",
                    n.id,
                    n.template,
                    n.role,
                    n.attempts,
                    policy.retry_max_seconds,
                    report.error,
                )
        session.add(n)
    session.flush()
    return out


def deliver_outbox(
    session: Session | None = None,
    *,
    notifier: Any,
    now: datetime,
    max_attempts: int | None = None,
    backoff_seconds: float | None = None,
    batch: int = 200,
    policy: OutboxPolicy | None = None,
) -> list[Notification]:
    """One courier round: claim due notifications, deliver them, record the outcome.

    Without ``session`` (the SLA service) the claim and the record are two short
    transactions and the deliveries happen between them, under a lease
    (``claimed_until``) that another courier respects and that expires if this one
    crashes. With a ``session`` (the caller owns the transaction) all happens in it; on
    PostgreSQL the claimed rows stay locked until the caller commits.

    A failure is retried with backoff (``OutboxPolicy``) and never given up; only an
    unroutable message is FAILED. ``max_attempts``/``backoff_seconds`` override the
    policy's fast retries. Returns the claimed rows as recorded."""
    from aftersales.notify import RenderedMessage

    pol = policy or OutboxPolicy.from_settings()
    if max_attempts is not None or backoff_seconds is not None:
        pol = replace(
            pol,
            max_attempts=max_attempts if max_attempts is not None else pol.max_attempts,
            backoff_seconds=backoff_seconds if backoff_seconds is not None else pol.backoff_seconds,
        )

    def jobs_of(rows: list[Notification]) -> list[_Job]:
        return [
            _Job(
                n.id or 0,
                n.ticket_id,
                n.role,
                n.attempts,
                RenderedMessage(template=n.template, clause=n.clause, title=n.title, body=n.body),
            )
            for n in rows
        ]

    if session is not None:
        rows = _claim(session, now=now, batch=batch, policy=pol)
        results = _send_all(notifier, jobs_of(rows), pol)
        return _record(session, rows, results, now=now, policy=pol)
    from models.db import session_scope

    with session_scope() as s:
        jobs = jobs_of(_claim(s, now=now, batch=batch, policy=pol))
    if not jobs:
        return []
    results = _send_all(notifier, jobs, pol)
    with session_scope() as s:
        rows = list(
            s.exec(
                select(Notification)
                .where(Notification.id.in_([j.id for j in jobs]))
                .order_by(Notification.id)
            ).all()
        )
        return _record(s, rows, results, now=now, policy=pol)


def next_wakeup(session: Session, *, include_outbox: bool = True) -> datetime | None:
    """The earliest moment anything is due (a clock, or with ``include_outbox`` a
    notification retry)."""
    clock = session.exec(
        select(SlaClock.next_fire_at)
        .where(SlaClock.next_fire_at.is_not(None))
        .order_by(SlaClock.next_fire_at)
        .limit(1)
    ).first()
    if not include_outbox:
        return clock
    notif = session.exec(
        select(Notification.next_attempt_at)
        .where(Notification.status == NotificationStatus.PENDING)
        .order_by(Notification.next_attempt_at)
        .limit(1)
    ).first()
    candidates = [t for t in (clock, notif) if t is not None]
    return min(candidates) if candidates else None
