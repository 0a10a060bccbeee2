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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_
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
ResumeCallback = Callable[[str, dict[str, Any]], None]


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
    from aftersales.notify import render

    existing = session.exec(
        select(Notification).where(Notification.dedupe_key == dedupe_key)
    ).first()
    if existing is not None:
        return existing
    msg = render(template, context)
    row = Notification(
        dedupe_key=dedupe_key,
        ticket_id=ticket_id,
        role=role,
        template=template,
        clause=msg.clause,
        title=msg.title,
        body=msg.body,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    session.flush()
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
    resumed: list[int] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)

    @property
    def fired(self) -> int:
        return len(self.reminded) + len(self.breached) + len(self.repeated)


def fire_due(
    session: Session,
    *,
    ctx: Deadlines,
    now: datetime,
    batch: int = 500,
    on_resume: ResumeCallback | None = None,
) -> FireReport:
    """Fire every clock whose ``next_fire_at`` has come. Cost follows the due clocks only."""
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
    tz = ctx.calendar.tz
    tickets: dict[str, Ticket | None] = {}
    for c in clocks:
        if c.ticket_id not in tickets:
            tickets[c.ticket_id] = session.get(Ticket, c.ticket_id)
        ticket = tickets[c.ticket_id]
        rule = ctx.profile.rules.get(c.rule_id)
        base = {**ticket_context(ticket), **_clock_context(c, rule, tz)}
        assert c.next_fire_at is not None and c.due_at is not None
        report.lateness.append((now - c.next_fire_at).total_seconds())
        if c.state == ClockState.ARMED and c.remind_at is not None and now < c.due_at:
            _remind(session, c, rule, base, now)
            report.reminded.append(c.id or 0)
        elif c.kind == "repeat":
            _repeat(session, ctx, c, rule, base, now)
            report.repeated.append(c.id or 0)
        else:
            resumed = _breach(session, ctx, c, rule, base, now, on_resume, ticket)
            report.breached.append(c.id or 0)
            if resumed:
                report.resumed.append(c.id or 0)
        session.add(c)
    session.flush()
    return report


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
    session: Session, c: SlaClock, rule: Rule | None, base: dict[str, Any], now: datetime
) -> None:
    """REM-1: remind the owner and the supervisor before the breach."""
    c.state = ClockState.REMINDED
    c.reminded_at = now
    c.next_fire_at = c.due_at
    _sla_event(session, c, "reminded", base, now)
    for role in rule.remind_to if rule else ("handler", "supervisor"):
        enqueue_notification(
            session,
            dedupe_key=f"remind:{c.id}:{role}",
            role=role,
            template="reminder",
            context=base,
            now=now,
            ticket_id=c.ticket_id,
        )


def _repeat(
    session: Session,
    ctx: Deadlines,
    c: SlaClock,
    rule: Rule | None,
    base: dict[str, Any],
    now: datetime,
) -> None:
    """A repeating clock (progress every N, follow-up mail every N): act, then re-arm from the due."""
    c.fire_count += 1
    template = (rule.template if rule else None) or "progress_report"
    role = (rule.escalate_to if rule else None) or "customer"
    enqueue_notification(
        session,
        dedupe_key=f"repeat:{c.id}:{c.fire_count}",
        role=role,
        template=template,
        context={**base, "fire_count": c.fire_count},
        now=now,
        ticket_id=c.ticket_id,
    )
    assert c.due_at is not None
    nxt = ctx.due(rule, c.due_at) if rule else c.due_at + timedelta(hours=24)
    if nxt <= now:  # the service was down for several periods: do not burst, count from now
        nxt = ctx.due(rule, now) if rule else now + timedelta(hours=24)
    c.due_at = nxt
    c.next_fire_at = nxt


def _breach(
    session: Session,
    ctx: Deadlines,
    c: SlaClock,
    rule: Rule | None,
    base: dict[str, Any],
    now: datetime,
    on_resume: ResumeCallback | None,
    ticket: Ticket | None,
) -> bool:
    """The deadline passed unmet: record it, then escalate (an escalation process of its
    own, one level up for an escalation's own clock), notify, or resume the waiting run;
    the SOP run goes on."""
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
    resumed = False
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
        enqueue_notification(
            session,
            dedupe_key=f"breach:{c.id}",
            role=rule.escalate_to or "supervisor",
            template=rule.template or "delay_alert",
            context={**base, "reason": reason},
            now=now,
            ticket_id=c.ticket_id,
        )
    elif action == "resume" and rule is not None:
        if c.flow_run_id and on_resume is not None:
            try:
                on_resume(c.flow_run_id, dict(rule.resume_input or {}))
                resumed = True
            except Exception as exc:  # the run was resumed by a person meanwhile, or is gone
                log.warning("clock %s: could not resume run %s: %s", c.id, c.flow_run_id, exc)
        enqueue_notification(
            session,
            dedupe_key=f"breach:{c.id}",
            role="handler",
            template=rule.template or "ticket_auto_closed",
            context={**base, "reason": reason},
            now=now,
            ticket_id=c.ticket_id,
        )
    log.info("clock %s %s breached for ticket %s (%s)", c.id, c.rule_id, c.ticket_id, action)
    return resumed


def deliver_outbox(
    session: Session,
    *,
    notifier: Any,
    now: datetime,
    max_attempts: int = 5,
    backoff_seconds: float = 2.0,
    batch: int = 200,
) -> list[Notification]:
    """Deliver pending notifications; a failure is retried with exponential backoff and
    recorded; after the last attempt the row is marked failed (never dropped)."""
    from aftersales.notify import RenderedMessage

    rows = list(
        session.exec(
            select(Notification)
            .where(
                Notification.status == NotificationStatus.PENDING,
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at)
            .limit(batch)
        ).all()
    )
    for n in rows:
        msg = RenderedMessage(template=n.template, clause=n.clause, title=n.title, body=n.body)
        report = notifier.try_send(n.role, msg)
        delivered, error = report.delivered, report.error
        if not delivered and not report.retryable:
            n.attempts = max_attempts - 1  # no route / bad URL: retrying cannot help
        n.attempts += 1
        if delivered:
            n.status = NotificationStatus.SENT
            n.sent_at = now
            n.last_error = None
            n.next_attempt_at = None
        else:
            n.last_error = error
            if n.attempts >= max_attempts:
                n.status = NotificationStatus.FAILED
                n.next_attempt_at = None
                log.error(
                    "notification %s (%s to %s) failed after %s attempts: %s",
                    n.id,
                    n.template,
                    n.role,
                    n.attempts,
                    error,
                )
            else:
                n.next_attempt_at = now + timedelta(seconds=backoff_seconds * 2 ** (n.attempts - 1))
        session.add(n)
    session.flush()
    return rows


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
