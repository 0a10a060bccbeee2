"""Keyword-only repository functions over the entities. Each takes a Session;
the caller owns the transaction (``models.db.session_scope``)."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
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


def claim_escalation_run(session: Session, *, escalation_id: int, flow_run_id: str) -> str:
    """Record the flow run that owns an escalation unless one is recorded (compare and
    set in one UPDATE, so two runs starting at once cannot both own it); returns the owner."""

    session.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id, Escalation.flow_run_id.is_(None))
        .values(flow_run_id=flow_run_id)
    )
    owner = session.exec(
        select(Escalation.flow_run_id).where(Escalation.id == escalation_id)
    ).first()
    if owner is None:
        raise NotFoundError(f"escalation {escalation_id} does not exist")
    return owner


def run_owner(
    session: Session, *, ticket_id: str, sop: str, escalation_id: int | None = None
) -> str | None:
    """The flow run recorded as the owner of (ticket, SOP) or of the escalation, read with
    a row lock on PostgreSQL (``FOR UPDATE``): a step applied in this transaction and a
    transfer of the claim by the run supervisor are serialised, so exactly one run makes
    progress. SQLite serialises every writing transaction anyway."""
    if escalation_id is not None:
        return session.exec(
            select(Escalation.flow_run_id).where(Escalation.id == escalation_id).with_for_update()
        ).first()
    return session.exec(
        select(SopRun.flow_run_id)
        .where(SopRun.ticket_id == ticket_id, SopRun.sop == sop)
        .with_for_update()
    ).first()


def preclaim_run(
    session: Session,
    *,
    ticket_id: str,
    sop: str,
    escalation_id: int | None,
    flow_run_id: str,
    now: datetime,
) -> bool:
    """Record ``flow_run_id`` as the owner of a pair nobody owns (the supervisor created
    or adopted it); False when another run claimed it meanwhile (nothing written)."""

    if escalation_id is not None:
        res = session.execute(
            update(Escalation)
            .where(Escalation.id == escalation_id, Escalation.flow_run_id.is_(None))
            .values(flow_run_id=flow_run_id)
        )
        return res.rowcount == 1  # type: ignore[attr-defined]
    try:
        with session.begin_nested():
            session.add(
                SopRun(ticket_id=ticket_id, sop=Sop(sop), flow_run_id=flow_run_id, created_at=now)
            )
    except IntegrityError:
        return False
    return True


def transfer_run(
    session: Session,
    *,
    ticket_id: str,
    sop: str,
    escalation_id: int | None,
    old_run: str,
    new_run: str,
) -> bool:
    """Move the claim from ``old_run`` to ``new_run`` (compare and set: False, nothing
    written, when ``old_run`` no longer owns the pair)."""

    if escalation_id is not None:
        stmt = update(Escalation).where(
            Escalation.id == escalation_id, Escalation.flow_run_id == old_run
        )
    else:
        stmt = update(SopRun).where(
            SopRun.ticket_id == ticket_id, SopRun.sop == sop, SopRun.flow_run_id == old_run
        )
    return session.execute(stmt.values(flow_run_id=new_run)).rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Supervised:
    """A run the project expects for an open ticket: its SOP (``instance`` 0) or one of
    its open escalations (``instance`` = the escalation id), the recorded owner, and the
    last start event queued for it (a hand-over included)."""

    ticket_id: str
    sop: str
    instance: int
    owner: str | None
    start_id: int | None = None
    start_created: datetime | None = None
    start_sent: datetime | None = None
    level: str | None = None
    ticket_closed: bool = False  # its ticket is closed: the run only has to finish

    @property
    def escalation_id(self) -> int | None:
        return self.instance if self.sop == "escalation" else None


def supervised_runs(
    session: Session, *, start_events: dict[str, str], ticket_ids: list[str] | None = None
) -> list[Supervised]:
    """Every run the open tickets should have: each claimed SOP run of a ticket not
    closed, each SOP whose start event was queued for such a ticket, and each open
    escalation; plus each claim of a closed ticket whose run was not seen finished
    (``ticket_closed``). ``start_events`` maps a start event to its SOP (``escalation``
    too)."""
    from models.entities import EscalationState, OutboxEvent, TicketStatus

    open_ticket = Ticket.status != TicketStatus.CLOSED
    sops = [s for s in start_events.values() if s != "escalation"]
    claim_q = (
        select(SopRun, Ticket.status)
        .join(Ticket, Ticket.id == SopRun.ticket_id)
        .where(or_(open_ticket, SopRun.finished_at.is_(None)), SopRun.sop.in_(sops))
    )
    if ticket_ids is not None:
        claim_q = claim_q.where(SopRun.ticket_id.in_(ticket_ids))
    claims = session.exec(claim_q).all()
    owners = {(c.ticket_id, str(c.sop)): c.flow_run_id for c, _ in claims}
    closed = {(c.ticket_id, str(c.sop)) for c, st in claims if st == TicketStatus.CLOSED}
    ticket_events = [e for e, s in start_events.items() if s != "escalation"]
    q = (
        select(func.max(OutboxEvent.id))
        .join(Ticket, Ticket.id == OutboxEvent.ticket_id)
        .where(open_ticket, OutboxEvent.event.in_(ticket_events))
        .group_by(OutboxEvent.ticket_id, OutboxEvent.event)
    )
    if ticket_ids is not None:
        q = q.where(OutboxEvent.ticket_id.in_(ticket_ids))
    last_ids = [i for i in session.exec(q).all() if i is not None]
    starts: dict[tuple[str, str], OutboxEvent] = {}
    for i in range(0, len(last_ids), 500):
        for ev in session.exec(
            select(OutboxEvent).where(OutboxEvent.id.in_(last_ids[i : i + 500]))
        ):
            starts[(ev.ticket_id, start_events[ev.event])] = ev
    out = []
    for key in sorted(set(owners) | set(starts)):
        ev = starts.get(key)
        out.append(
            Supervised(
                key[0],
                key[1],
                0,
                owners.get(key),
                ev.id if ev else None,
                ev.created_at if ev else None,
                ev.sent_at if ev else None,
                ticket_closed=key in closed,
            )  # fmt: skip
        )
    esc_q = (
        select(Escalation)
        .join(Ticket, Ticket.id == Escalation.ticket_id)
        .where(open_ticket, Escalation.state == EscalationState.OPEN)
    )
    if ticket_ids is not None:
        esc_q = esc_q.where(Escalation.ticket_id.in_(ticket_ids))
    escalations = session.exec(esc_q.order_by(Escalation.id)).all()
    esc_event = next((e for e, s in start_events.items() if s == "escalation"), None)
    esc_starts: dict[int, OutboxEvent] = {}
    if escalations and esc_event:
        tids = sorted({e.ticket_id for e in escalations})
        for i in range(0, len(tids), 500):
            for ev in session.exec(
                select(OutboxEvent)
                .where(OutboxEvent.ticket_id.in_(tids[i : i + 500]), OutboxEvent.event == esc_event)
                .order_by(OutboxEvent.id)
            ):
                eid = ev.payload.get("escalation_id")
                if eid is not None:
                    esc_starts[int(eid)] = ev  # the last one wins
    for e in escalations:
        ev = esc_starts.get(e.id or 0)
        if ev is None and e.flow_run_id is None:
            continue  # no process was asked for (nothing to supervise)
        out.append(
            Supervised(
                e.ticket_id,
                "escalation",
                e.id or 0,
                e.flow_run_id,
                ev.id if ev else None,
                ev.created_at if ev else None,
                ev.sent_at if ev else None,
                e.level,
            )  # fmt: skip
        )
    return out


def mark_run_finished(
    session: Session, *, ticket_id: str, sop: str, flow_run_id: str, now: datetime
) -> bool:
    """Record that the claim's run finished (only while ``flow_run_id`` still owns it)."""
    stmt = (
        update(SopRun)
        .where(
            SopRun.ticket_id == ticket_id,
            SopRun.sop == sop,
            SopRun.flow_run_id == flow_run_id,
            SopRun.finished_at.is_(None),
        )
        .values(finished_at=now)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


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
    keep: Callable[[BoardRow], bool] | None = None,
    chunk: int = 1_000,
) -> list[BoardRow]:
    """The work queue and the sla-board: for every ticket not closed, a row per run
    waiting on a person (its SOP's and each open escalation's), or, for an open ticket
    nobody acts on, one row without a step; soonest due first. The waiting step comes
    from the step records and the SOP's declared order (:func:`aftersales.queue.waiting_for`), so it needs no Prefect server.

    The open tickets are read ``chunk`` at a time in id order and only the ``limit``
    soonest rows that ``keep`` accepts are kept, so memory stays flat however many
    tickets are open (issue 9 (f): it held every open ticket before, 944 MB at 100,000,
    and its one ``IN`` list broke PostgreSQL's 65,535 parameters)."""
    from models.entities import TicketStatus

    if profile is None:
        from aftersales.runtime import deadlines

        profile = deadlines().profile
    # a resolved ticket may still wait on a person (INQ-4 report, feedback; CMP-4 close)
    far = datetime.max.replace(tzinfo=UTC)

    def soonest(r: BoardRow) -> tuple[datetime, str, int]:
        return (r.next_due or far, r.ticket_id, r.escalation_id or 0)

    best: list[BoardRow] = []
    after = ""
    while True:
        q = select(Ticket).where(Ticket.status != TicketStatus.CLOSED, Ticket.id > after)
        if ticket_ids is not None:
            q = q.where(Ticket.id.in_(ticket_ids))
        tickets = session.exec(q.order_by(Ticket.id).limit(chunk)).all()
        if not tickets:
            break
        after = tickets[-1].id
        rows = _board_chunk(session, tickets, profile=profile, now=now)
        best = heapq.nsmallest(limit, [*best, *(r for r in rows if keep is None or keep(r))],
                               key=soonest)  # fmt: skip
        if len(tickets) < chunk:
            break
    return best


def _board_chunk(
    session: Session, tickets: Sequence[Ticket], *, profile: Any, now: datetime | None
) -> list[BoardRow]:
    """The sla-board rows of some open tickets (see :func:`sla_board`)."""
    from aftersales.queue import ClockView, Scope, due_and_state, waiting_for
    from aftersales.steps import ref_of
    from models.entities import Complaint, EscalationState, StepRecord, TicketStatus

    ids = [t.id for t in tickets]
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
    return rows
