"""Keyword-only repository functions over the entities. Each takes a Session;
the caller owns the transaction (``models.db.session_scope``)."""

from __future__ import annotations

import hashlib
from datetime import datetime

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


def unstarted_tickets(
    session: Session, *, older_than: datetime, newer_than: datetime, limit: int = 200
) -> list[Ticket]:
    """Open tickets whose current SOP has no flow run yet (its start event was lost,
    e.g. the Prefect server was down at intake)."""
    from sqlalchemy import and_, exists

    from models.entities import TicketStatus

    has_run = exists().where(and_(SopRun.ticket_id == Ticket.id, SopRun.sop == Ticket.sop))
    return list(
        session.exec(
            select(Ticket)
            .where(
                Ticket.status.in_([TicketStatus.PENDING, TicketStatus.IN_PROGRESS]),
                Ticket.sop.in_([Sop.INQUIRY, Sop.REPAIR]),
                Ticket.created_at <= older_than,
                Ticket.created_at >= newer_than,
                ~has_run,
            )
            .order_by(Ticket.created_at)
            .limit(limit)
        ).all()
    )
