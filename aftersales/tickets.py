"""One ticket as an operator needs it: what it waits for (the step, who takes it, its
form's fields and the valid choices from data), its clocks, its escalations and the
notifications sent, every time in the configured zone. Shared by ``aftersales ticket``,
``GET /tickets/{id}`` and the Resume dialog's description (``tasks/steps.py``).
No Prefect import; the caller passes the session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, select

from aftersales.forms import Form
from aftersales.queue import local
from aftersales.steps import catalogue
from models.entities import Engineer, TicketPublic
from models.repository import (
    clocks_for,
    escalations_for,
    get_ticket,
    get_work_order,
    notifications_for,
    sla_board,
)


class Choice(BaseModel):
    """A valid value of a form field, from the ticket's data."""

    field: str
    value: str
    label: str


class FormField(BaseModel):
    name: str
    type: str
    required: bool
    description: str = ""
    values: list[str] = []


class WaitingStep(BaseModel):
    sop: str
    step: str
    summary: str
    role: str
    person: str | None
    escalation_id: int | None
    since: str
    next_due: str
    rule: str | None
    state: str
    fields: list[FormField]
    choices: list[Choice]


class ClockRow(BaseModel):
    rule_id: str
    clause: str
    escalation_id: int | None
    state: str
    started: str
    due: str
    met: str
    breached: str


class EscalationRow(BaseModel):
    id: int
    rule_id: str
    level: str
    escalated_to: str
    state: str
    reason: str
    opened: str
    acted_by: str | None
    acted_at: str


class NotificationRow(BaseModel):
    role: str
    template: str
    clause: str
    status: str
    title: str
    created: str
    sent: str


class TicketView(BaseModel):
    ticket: dict[str, Any]
    timezone: str
    waiting: list[WaitingStep]
    clocks: list[ClockRow]
    escalations: list[EscalationRow]
    notifications: list[NotificationRow]


def form_fields(form: type[Form]) -> list[FormField]:
    """The form's fields as its JSON schema states them (name, type, required, values)."""
    schema = form.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        alts = prop.get("anyOf", [prop])
        types = [a.get("format") or a.get("type", "?") for a in alts if a.get("type") != "null"]
        values = [str(v) for a in alts for v in a.get("enum", [])]
        if "const" in prop:
            values.append(str(prop["const"]))
        out.append(
            FormField(
                name=name,
                type="|".join(types) + ("|null" if len(types) < len(alts) else ""),
                required=name in required,
                description=prop.get("description", ""),
                values=values,
            )
        )
    return out


def choices(session: Session, *, sop: str, step: str, ticket_id: str) -> list[Choice]:
    """The valid values the data gives for the step's fields: the assigned engineer at
    ``arrival``, the engineers with the fault's skill at ``engineer`` (available first),
    the city on file at ``review``."""
    ref = f"{sop}.{step}"
    wo = get_work_order(session, ticket_id=ticket_id)
    if ref == "repair.arrival" and wo is not None and wo.engineer_id:
        eng = session.get(Engineer, wo.engineer_id)
        return [Choice(field="engineer_id", value=wo.engineer_id,
                       label=f"{eng.name if eng else '?'}, the assigned engineer")]  # fmt: skip
    if ref == "repair.engineer" and wo is not None:
        pool = session.exec(
            select(Engineer)
            .where(Engineer.skill == wo.skill)
            .order_by(Engineer.available.desc(), Engineer.id)  # type: ignore[union-attr]
        ).all()
        return [
            Choice(field="engineer_id", value=e.id,
                   label=f"{e.name}, {e.city}, {'available' if e.available else 'busy'}")
            for e in pool
        ]  # fmt: skip
    if ref == "repair.review":
        city = get_ticket(session, ticket_id=ticket_id).service_city
        return [
            Choice(field="service_city", value=city, label="the city on file")
            if city
            else Choice(field="service_city", value="", label="none on file: give it to approve")
        ]
    return []


def ticket_view(
    session: Session, *, ticket_id: str, tz: Any, now: datetime | None = None
) -> TicketView:
    """Everything about one ticket (personal data masked by ``TicketPublic``)."""
    t = get_ticket(session, ticket_id=ticket_id)
    waiting = []
    for row in sla_board(session, now=now, ticket_ids=[ticket_id]):
        if row.ticket_id != ticket_id or row.step is None:
            continue
        st = catalogue()[row.sop].step(row.step)
        waiting.append(
            WaitingStep(
                sop=row.sop, step=row.step, summary=st.summary, role=row.role or "",
                person=row.person, escalation_id=row.escalation_id, since=local(row.since, tz),
                next_due=local(row.next_due, tz), rule=row.next_rule, state=row.state,
                fields=form_fields(st.form) if st.form else [],
                choices=choices(session, sop=row.sop, step=row.step, ticket_id=ticket_id),
            )
        )  # fmt: skip
    return TicketView(
        ticket=TicketPublic.model_validate(t, from_attributes=True).model_dump(mode="json")
        | {
            k: local(getattr(t, k), tz)
            for k in ("created_at", "first_response_at", "resolved_at", "closed_at")
        },
        timezone=str(tz),
        waiting=waiting,
        clocks=[
            ClockRow(
                rule_id=c.rule_id, clause=c.clause, escalation_id=c.instance or None,
                state=str(c.state), started=local(c.started_at, tz), due=local(c.due_at, tz),
                met=local(c.met_at, tz), breached=local(c.breached_at, tz),
            )
            for c in clocks_for(session, ticket_id=ticket_id)
        ],
        escalations=[
            EscalationRow(
                id=e.id or 0, rule_id=e.rule_id, level=e.level, escalated_to=e.escalated_to,
                state=str(e.state), reason=e.reason, opened=local(e.created_at, tz),
                acted_by=e.acted_by, acted_at=local(e.acted_at, tz),
            )
            for e in escalations_for(session, ticket_id=ticket_id)
        ],
        notifications=[
            NotificationRow(
                role=n.role, template=n.template, clause=n.clause, status=str(n.status),
                title=n.title, created=local(n.created_at, tz), sent=local(n.sent_at, tz),
            )
            for n in notifications_for(session, ticket_id=ticket_id)
        ],
    )  # fmt: skip


def as_text(v: TicketView) -> list[str]:
    """The ticket view for a terminal."""
    t = v.ticket
    out = [
        f"ticket {t['id']}  {t['sop']}  {t['channel']}  {t['priority']}  {t['status']}"
        f"  (times in {v.timezone})",
        f"  customer {t['customer_name']} ({t['contact']}); handler {t['handler'] or '-'}; "
        f"opened {t['created_at']}",
    ]
    for w in v.waiting:
        who = f"{w.role} ({w.person})" if w.person else w.role
        esc = f" escalation {w.escalation_id}" if w.escalation_id else ""
        out += [
            f"waits for {w.sop}{esc} step '{w.step}': {w.summary}",
            f"  who {who}; since {w.since}; next due {w.next_due or '-'} ({w.rule or '-'}), {w.state}",
        ]
        for f in w.fields:
            values = f" one of {', '.join(f.values)}" if f.values else ""
            out.append(
                f"  --set {f.name}=…  {f.type}{' required' if f.required else ''}{values}"
                + (f"  {f.description}" if f.description else "")
            )
        out += [f"  choice {c.field}={c.value}  {c.label}" for c in w.choices]
    if not v.waiting:
        out.append("waits for nobody")
    out.append("clocks:")
    out += [
        f"  {c.rule_id:<28} {c.state:<9} due {c.due or '-'}"
        + (f" met {c.met}" if c.met else "")
        + (f" breached {c.breached}" if c.breached else "")
        for c in v.clocks
    ]
    out.append("escalations:" + ("" if v.escalations else " none"))
    out += [
        f"  #{e.id} {e.rule_id} {e.level} to {e.escalated_to} ({e.state}) {e.opened}: {e.reason}"
        for e in v.escalations
    ]
    out.append("notifications:" + ("" if v.notifications else " none"))
    out += [
        f"  {n.created} {n.role:<20} {n.template:<24} {n.status:<7} {n.title}"
        for n in v.notifications
    ]
    return out
