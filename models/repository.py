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
    """One line of the work queue and the sla-board: an open ticket's SOP run (or one of
    its open escalations), the step it waits for and who takes it, since when, its next
    due clock and state. ``step`` is None for an open ticket nobody has a step to take
    on (a run between automatic steps, an SOP not deployed yet): only the board lists it."""

    ticket_id: str
    sop: str
    priority: str
    owner: str
    next_rule: str | None
    next_due: datetime | None
    state: str  # breached | at-risk | on-track | no clock
    step: str | None = None
    role: str | None = None
    person: str | None = None
    since: datetime | None = None
    escalation_id: int | None = None

    @property
    def who(self) -> str:
        if self.role is None:
            return "-"
        return f"{self.role} ({self.person})" if self.person else self.role

    def as_row(self, tz: Any) -> dict[str, str]:
        def fmt(t: datetime | None) -> str:
            return t.astimezone(tz).isoformat(timespec="minutes") if t else ""

        return {
            "ticket": self.ticket_id,
            "sop": self.sop,
            "priority": self.priority,
            "owner": self.owner,
            "step": self.step or "",
            "who": self.who if self.step else "",
            "since": fmt(self.since),
            "next due": fmt(self.next_due),
            "rule": self.next_rule or "",
            "state": self.state,
        }


def sla_board(
    session: Session,
    *,
    limit: int = 500,
    now: datetime | None = None,
    profile: Any = None,
    ticket_ids: list[str] | None = None,
) -> list[BoardRow]:
    """The work queue and the sla-board, one query: for every ticket not closed, a row per
    run waiting on a person (its SOP's and each open escalation's), or, for an open ticket
    nobody acts on, one row without a step; soonest due first. The waiting step comes from the step records and the SOP's declared
    order (:func:`aftersales.queue.waiting_for`), so it needs no Prefect server."""
    from aftersales.queue import ClockView, Scope, due_and_state, waiting_for
    from aftersales.steps import ref_of
    from models.entities import Complaint, EscalationState, StepRecord, TicketStatus

    if profile is None:
        from aftersales.runtime import deadlines

        profile = deadlines().profile
    # a resolved ticket may still wait on a person (INQ-4 report, feedback; CMP-4 close)
    q = select(Ticket).where(Ticket.status != TicketStatus.CLOSED)
    if ticket_ids is not None:
        q = q.where(Ticket.id.in_(ticket_ids))
    tickets = session.exec(q).all()
    ids = [t.id for t in tickets]
    if not ids:
        return []
    clocks: dict[tuple[str, int], list[ClockView]] = {}
    for c in session.exec(
        select(SlaClock).where(SlaClock.ticket_id.in_(ids)).order_by(SlaClock.id)
    ).all():
        clocks.setdefault((c.ticket_id, c.instance), []).append(
            ClockView(c.rule_id, str(c.state), c.due_at)
        )
    records: dict[tuple[str, str, int], list[StepRecord]] = {}
    for r in session.exec(
        select(StepRecord).where(StepRecord.ticket_id.in_(ids)).order_by(StepRecord.id)
    ).all():
        records.setdefault((r.ticket_id, r.sop, r.instance), []).append(r)
    escalations: dict[str, list[Escalation]] = {}
    for e in session.exec(
        select(Escalation)
        .where(Escalation.ticket_id.in_(ids), Escalation.state == EscalationState.OPEN)
        .order_by(Escalation.id)
    ).all():
        escalations.setdefault(e.ticket_id, []).append(e)
    orders = {
        w.ticket_id: w
        for w in session.exec(select(WorkOrder).where(WorkOrder.ticket_id.in_(ids))).all()
    }
    complaints = {
        c.ticket_id: c
        for c in session.exec(select(Complaint).where(Complaint.ticket_id.in_(ids))).all()
    }
    engineers = {e.id: e for e in session.exec(select(Engineer)).all()}

    rows: list[BoardRow] = []
    for t in tickets:
        wo = orders.get(t.id)
        record = complaints.get(t.id) if t.sop == Sop.COMPLAINT else wo
        values = record.model_dump() if record else {}
        owner = t.handler or t.owner_team or "unassigned"
        runs: list[tuple[str, Escalation | None]] = [(str(t.sop), None)]
        runs += [("escalation", e) for e in escalations.get(t.id, [])]
        mine: list[BoardRow] = []
        for sop, esc in runs:
            instance = esc.id if esc and esc.id else 0
            done = records.get((t.id, sop, instance), [])
            scoped = clocks.get((t.id, instance), [])
            scope = Scope(
                sop=sop,
                done=tuple(r.step for r in done),
                armed=frozenset(c.rule_id for c in scoped),
                values=values,
                level=esc.level if esc else None,
            )
            st = waiting_for(scope, profile)
            if st is None and esc is not None:
                continue
            stops = [r.id for r in profile.stopped_by(ref_of(sop, st.id))] if st else []
            shown, state = due_and_state(scoped, stops, now)
            role, person = None, None
            if st is not None:
                role = esc.escalated_to if st.role == "assignee" and esc else st.role
                if role == "engineer" and wo is not None and wo.engineer_id:
                    eng = engineers.get(wo.engineer_id)
                    person = f"{wo.engineer_id} {eng.name}" if eng else wo.engineer_id
                elif role == "handler":
                    person = t.handler or t.owner_team
            since = max((r.recorded_at for r in done), default=None) or (
                esc.created_at if esc else t.created_at
            )
            mine.append(
                BoardRow(
                    t.id,
                    sop,
                    str(t.priority),
                    owner,
                    shown.rule_id if shown else None,
                    shown.due_at if shown else None,
                    state,
                    st.id if st else None,
                    role,
                    person,
                    since,
                    esc.id if esc else None,
                )  # fmt: skip
            )
        waiting = [r for r in mine if r.step is not None]
        if waiting:
            rows += waiting
        elif t.status != TicketStatus.RESOLVED:  # an open ticket nobody acts on: once
            rows += mine[:1]
    far = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (r.next_due or far, r.ticket_id, r.escalation_id or 0))
    return rows[:limit]
