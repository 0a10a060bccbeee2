"""CB-1: the month's callback plan, from the database. Pure: no Prefect.

Who: the customers whose repair was completed (REP-4 archived) in the month, and every
VIP customer; one line per customer (a VIP with a completed repair is called about that
repair). How: phone for VIPs, an online survey for an ordinary customer who came
online or by email, else phone (the callback's ``schedule`` step). Script: the message
template ``survey_link`` / the call form's three questions. A VIP without a repair gets
a callback ticket of its own (``sop: callback``, derived id, so the plan is idempotent);
a ticket whose callback has no run and no start event yet gets its start queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from aftersales.privacy import mask_name
from aftersales.report_model import month_bounds
from aftersales.sla import Deadlines
from aftersales.steps import START_EVENTS, queue_start
from models.entities import (
    Callback,
    Channel,
    Customer,
    OutboxEvent,
    Sop,
    SopRun,
    Ticket,
    TicketCreate,
    TicketStatus,
    WorkOrder,
)
from models.repository import create_ticket


@dataclass(frozen=True)
class PlanRow:
    customer_id: str
    customer: str  # masked (PRIV-1: the artifact is seen by the whole team)
    ticket_id: str
    reason: str  # repair | vip
    method: str  # phone | online
    state: str  # started | running | already planned

    def as_row(self) -> dict[str, str]:
        return {
            "customer": self.customer,
            "customer id": self.customer_id,
            "ticket": self.ticket_id,
            "reason": self.reason,
            "method": self.method,
            "script": "call: attitude, efficiency, effectiveness 1-5 + open question",
            "state": self.state,
        }


def _method(ticket: Ticket, vip: bool) -> str:
    return "online" if not vip and ticket.channel in (Channel.ONLINE, Channel.EMAIL) else "phone"


def plan_month(
    session: Session, *, month: str, deadlines: Deadlines, now: datetime
) -> list[PlanRow]:
    start, end = month_bounds(month, deadlines.calendar.tz.key)
    repaired = session.exec(
        select(Ticket, WorkOrder)
        .join(WorkOrder, WorkOrder.ticket_id == Ticket.id)
        .where(WorkOrder.archived_at >= start, WorkOrder.archived_at < end)
        .order_by(WorkOrder.archived_at)
    ).all()
    rows: list[PlanRow] = []
    planned: set[str] = set()
    vips = {c.id: c for c in session.exec(select(Customer).where(Customer.vip)).all()}
    for t, _wo in repaired:
        who = t.customer_id or f"contact:{t.contact}"
        if who in planned:
            continue
        planned.add(who)
        vip = t.customer_id in vips
        rows.append(_plan(session, t, "repair", _method(t, vip), month, now))
    for cid, c in sorted(vips.items()):
        if cid in planned:
            continue
        planned.add(cid)
        t, _ = create_ticket(
            session,
            data=TicketCreate(
                intake_key=f"callback:{month}:{cid}",
                created_at=now,
                sop=Sop.CALLBACK,
                channel=Channel.PHONE,
                customer_id=cid,
                customer_name=c.name,
                contact=c.phone,
                description=f"monthly VIP callback {month} (CB-1)",
            ),
        )
        if t.status == TicketStatus.PENDING:
            t.status = TicketStatus.IN_PROGRESS
            session.add(t)
        rows.append(_plan(session, t, "vip", "phone", month, now))
    return rows


def _plan(
    session: Session, t: Ticket, reason: str, method: str, month: str, now: datetime
) -> PlanRow:
    cb = session.exec(select(Callback).where(Callback.ticket_id == t.id)).first()
    if cb is None:
        cb = Callback(ticket_id=t.id, customer_id=t.customer_id, method=method, reason=reason)
    cb.plan_month = cb.plan_month or month
    session.add(cb)
    has_run = session.exec(
        select(SopRun.id).where(SopRun.ticket_id == t.id, SopRun.sop == Sop.CALLBACK)
    ).first()
    queued = session.exec(
        select(OutboxEvent.id).where(
            OutboxEvent.ticket_id == t.id, OutboxEvent.event == START_EVENTS["callback"]
        )
    ).first()
    if has_run is not None:
        state = "running"
    elif queued is not None:
        state = "already planned"
    else:
        queue_start(session, sop="callback", ticket=t, now=now)
        state = "started"
    return PlanRow(t.customer_id or "-", mask_name(t.customer_name), t.id, reason, method, state)
