"""Keyword-only repository functions over the entities. Each takes a Session;
the caller owns the transaction (``models.db.session_scope``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models.entities import (
    Customer,
    CustomerCreate,
    Engineer,
    EngineerCreate,
    Escalation,
    Notification,
    SlaClock,
    Sop,
    SopRun,
    Ticket,
    TicketCreate,
    WorkOrder,
)


class NotFoundError(LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


def ticket_id_for(intake_key: str) -> str:
    """A stable ticket id derived from the intake key: the same intake twice is one ticket."""
    return "TK-" + hashlib.sha256(intake_key.encode()).hexdigest()[:12].upper()


def create_ticket(session: Session, *, data: TicketCreate) -> tuple[Ticket, bool]:
    """Insert the ticket unless its intake key is known; returns (ticket, created)."""
    tid = ticket_id_for(data.intake_key)
    existing = session.get(Ticket, tid)
    if existing is not None:
        return existing, False
    returning = bool(
        data.customer_id
        and session.exec(select(Ticket.id).where(Ticket.customer_id == data.customer_id)).first()
    )
    ticket = Ticket(id=tid, new_customer=not returning, **data.model_dump())
    session.add(ticket)
    try:
        session.flush()
    except IntegrityError:  # a concurrent delivery of the same intake won the race
        session.rollback()
        found = session.get(Ticket, tid)
        if found is None:
            raise
        return found, False
    return ticket, True


def get_ticket(session: Session, *, ticket_id: str) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"ticket {ticket_id!r} does not exist")
    return ticket


def upsert_customer(session: Session, *, data: CustomerCreate, now: datetime) -> Customer:
    row = session.get(Customer, data.id)
    if row is None:
        row = Customer(created_at=now, **data.model_dump())
        session.add(row)
    else:
        for k, v in data.model_dump(exclude={"id"}).items():
            setattr(row, k, v)
    session.flush()
    return row


def upsert_engineer(session: Session, *, data: EngineerCreate) -> Engineer:
    row = session.get(Engineer, data.id)
    if row is None:
        row = Engineer(**data.model_dump())
        session.add(row)
    else:
        for k, v in data.model_dump(exclude={"id"}).items():
            setattr(row, k, v)
    session.flush()
    return row


def available_engineers(session: Session, *, skill: str) -> list[Engineer]:
    return list(
        session.exec(select(Engineer).where(Engineer.skill == skill, Engineer.available)).all()
    )


def claim_sop_run(
    session: Session, *, ticket_id: str, sop: Sop, flow_run_id: str, now: datetime
) -> SopRun:
    """Record the flow run that owns (ticket, sop); an existing claim is returned unchanged."""
    row = session.exec(
        select(SopRun).where(SopRun.ticket_id == ticket_id, SopRun.sop == sop)
    ).first()
    if row is not None:
        return row
    row = SopRun(ticket_id=ticket_id, sop=sop, flow_run_id=flow_run_id, created_at=now)
    session.add(row)
    session.flush()
    return row


def get_sop_run(session: Session, *, ticket_id: str, sop: Sop) -> SopRun | None:
    return session.exec(
        select(SopRun).where(SopRun.ticket_id == ticket_id, SopRun.sop == sop)
    ).first()


def get_work_order(session: Session, *, ticket_id: str) -> WorkOrder | None:
    return session.exec(select(WorkOrder).where(WorkOrder.ticket_id == ticket_id)).first()


def clocks_for(session: Session, *, ticket_id: str) -> list[SlaClock]:
    return list(
        session.exec(
            select(SlaClock).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id)
        ).all()
    )


def escalations_for(session: Session, *, ticket_id: str) -> list[Escalation]:
    return list(
        session.exec(
            select(Escalation).where(Escalation.ticket_id == ticket_id).order_by(Escalation.id)
        ).all()
    )


def notifications_for(session: Session, *, ticket_id: str) -> list[Notification]:
    return list(
        session.exec(
            select(Notification)
            .where(Notification.ticket_id == ticket_id)
            .order_by(Notification.id)
        ).all()
    )


def earlier_complaints(session: Session, *, ticket: Ticket, window_days: float) -> int:
    """The customer's complaints in the ``window_days`` before this ticket (ESC-IMPORTANT:
    a second complaint). The customer is the registered customer, else the contact; the
    query walks the (customer_id|contact, created_at) index, not the ticket table."""
    from models.entities import Complaint

    who = (
        Ticket.customer_id == ticket.customer_id
        if ticket.customer_id
        else Ticket.contact == ticket.contact
    )
    return session.exec(
        select(func.count())
        .select_from(Ticket)
        .outerjoin(Complaint, Complaint.ticket_id == Ticket.id)
        .where(
            who,
            or_(Ticket.sop == Sop.COMPLAINT, Complaint.id.is_not(None)),
            Ticket.created_at >= ticket.created_at - timedelta(days=window_days),
            Ticket.created_at < ticket.created_at,
            Ticket.id != ticket.id,
        )
    ).one()


def lost_starts(session: Session, *, now: datetime, grace: timedelta) -> list[str]:
    """Queue the start event again for each open ticket whose current SOP has no run, and
    each open escalation without a run, when their last start event was sent more than
    ``grace`` ago (an unsent one is still the courier's). Returns what was re-queued."""
    from aftersales.steps import START_EVENTS, queue_event, queue_start
    from models.entities import EscalationState, OutboxEvent, TicketStatus

    cutoff = now - grace
    has_run = exists().where(and_(SopRun.ticket_id == Ticket.id, SopRun.sop == Ticket.sop))
    tickets = session.exec(
        select(Ticket).where(
            Ticket.status.in_([TicketStatus.PENDING, TicketStatus.IN_PROGRESS]),
            Ticket.sop.in_([Sop.INQUIRY, Sop.REPAIR, Sop.COMPLAINT]),
            Ticket.created_at <= cutoff,
            ~has_run,
        )
    ).all()
    escalations = session.exec(
        select(Escalation).where(
            Escalation.state == EscalationState.OPEN,
            Escalation.flow_run_id.is_(None),
            Escalation.created_at <= cutoff,
        )
    ).all()
    queued = []

    def last_start(ticket_id: str, event: str) -> OutboxEvent | None:
        return session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.ticket_id == ticket_id, OutboxEvent.event == event)
            .order_by(OutboxEvent.id.desc())
            .limit(1)
        ).first()

    for t in tickets:
        last = last_start(t.id, START_EVENTS[str(t.sop)])
        if last is not None and (last.sent_at is None or last.created_at > cutoff):
            continue
        queue_start(session, sop=str(t.sop), ticket=t, now=now)
        queued.append(f"ticket {t.id} ({t.sop})")
    for e in escalations:
        starts = session.exec(
            select(OutboxEvent)
            .where(
                OutboxEvent.ticket_id == e.ticket_id,
                OutboxEvent.event == START_EVENTS["escalation"],
            )
            .order_by(OutboxEvent.id.desc())
        ).all()
        mine = [o for o in starts if o.payload.get("escalation_id") == e.id]
        if mine and (mine[0].sent_at is None or mine[0].created_at > cutoff):
            continue
        queue_event(
            session,
            event=START_EVENTS["escalation"],
            ticket_id=e.ticket_id,
            payload={
                "ticket_id": e.ticket_id,
                "sop": "escalation",
                "escalation_id": e.id,
                "level": e.level,
                "to": e.escalated_to,
            },  # fmt: skip
            now=now,
        )
        queued.append(f"escalation {e.id} of {e.ticket_id}")
    return queued


@dataclass(frozen=True)
class BoardRow:
    """One open ticket on the sla-board: its next due clock, owner and state."""

    ticket_id: str
    sop: str
    priority: str
    owner: str
    next_rule: str | None
    next_due: datetime | None
    state: str  # breached | at-risk | on-track | no clock

    def as_row(self, tz: Any) -> dict[str, str]:
        return {
            "ticket": self.ticket_id,
            "sop": self.sop,
            "priority": self.priority,
            "owner": self.owner,
            "next due": self.next_due.astimezone(tz).isoformat(timespec="minutes")
            if self.next_due
            else "",
            "rule": self.next_rule or "",
            "state": self.state,
        }


def sla_board(session: Session, *, limit: int = 500) -> list[BoardRow]:
    """Every open ticket with its next due running clock, soonest first; its state is
    breached (any clock breached), at-risk (a reminder went out) or on-track."""
    from models.entities import ACTIVE_CLOCK_STATES, ClockState, TicketStatus

    open_ids = select(Ticket.id).where(
        Ticket.status.in_([TicketStatus.PENDING, TicketStatus.IN_PROGRESS])
    )
    clocks = session.exec(
        select(SlaClock)
        .where(
            SlaClock.ticket_id.in_(open_ids),
            SlaClock.state.in_([*ACTIVE_CLOCK_STATES, ClockState.BREACHED]),
        )
        .order_by(SlaClock.due_at)
    ).all()
    nxt: dict[str, SlaClock] = {}
    breached: set[str] = set()
    reminded: set[str] = set()
    for c in clocks:
        if c.state == ClockState.BREACHED:
            breached.add(c.ticket_id)
            continue
        if c.state == ClockState.REMINDED:
            reminded.add(c.ticket_id)
        nxt.setdefault(c.ticket_id, c)
    tickets = session.exec(
        select(Ticket).where(Ticket.status.in_([TicketStatus.PENDING, TicketStatus.IN_PROGRESS]))
    ).all()
    rows = []
    for t in tickets:
        c = nxt.get(t.id)
        state = (
            "breached" if t.id in breached else "at-risk" if t.id in reminded else
            "on-track" if c else "no clock"
        )  # fmt: skip
        rows.append(
            BoardRow(
                t.id,
                str(t.sop),
                str(t.priority),
                t.handler or t.owner_team or "unassigned",
                c.rule_id if c else None,
                c.due_at if c else None,
                state,
            )  # fmt: skip
        )
    far = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (r.next_due or far, r.ticket_id))
    return rows[:limit]
