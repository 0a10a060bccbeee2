"""Intake: a validated payload opens (at most) one ticket, arms its first clocks and
emits the event that starts the SOP deployment (``triggers:`` in prefect.yaml).

Producers: ``aftersales intake ...`` (CLI) and ``POST /intake`` (HTTP). The
clocks start at the moment the customer reached us (``received_at``), not when a
worker picks the run up. The same intake delivered twice (same ``intake_id``, or
the same channel/contact/description/time when the source gives no id) is one
ticket and one event.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aftersales.sla import ClockContext, arm, enqueue_notification, meet, ticket_context
from models.db import session_scope
from models.entities import Channel, Customer, Priority, Sop, TicketCreate
from models.repository import create_ticket

log = logging.getLogger("aftersales.intake")

INQUIRY_EVENT = "aftersales.inquiry.received"
REPAIR_EVENT = "aftersales.repair.requested"


class IntakeError(ValueError):
    """A payload that breaks a rule; ``errors`` lists (field, rule) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))


class IntakePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel
    intake_id: str | None = Field(
        default=None, max_length=160, description="call id, chat session, Message-ID or post id"
    )
    sop: Literal["inquiry", "repair"] = "inquiry"
    customer_id: str | None = Field(default=None, max_length=64)
    customer_name: str = Field(min_length=1, max_length=120)
    contact: str = Field(min_length=5, max_length=120, description="phone or email")
    product_model: str = Field(default="", max_length=120)
    purchase_date: date | None = None
    description: str = Field(min_length=1, max_length=4000)
    email_grade: Priority | None = None
    is_public: bool = False
    safety_risk: bool = False
    amount_cny: float = Field(default=0, ge=0)
    received_at: datetime | None = None

    @field_validator("received_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
        return v

    @model_validator(mode="after")
    def _channel_rules(self) -> IntakePayload:
        if self.email_grade is not None and self.channel != Channel.EMAIL:
            raise ValueError("email_grade is only for the email channel (INQ-CH-EMAIL)")
        if self.is_public and self.channel != Channel.SOCIAL:
            raise ValueError("is_public is only for the social channel (INQ-CH-SOCIAL)")
        return self

    def intake_key(self, received_at: datetime) -> str:
        if self.intake_id:
            return f"{self.channel}:{self.intake_id}"
        digest = hashlib.sha256(
            "|".join(
                [str(self.channel), self.contact, self.description, received_at.isoformat()]
            ).encode()
        ).hexdigest()[:24]
        return f"{self.channel}:auto:{digest}"


def parse_payload(data: dict[str, Any]) -> IntakePayload:
    """Validate; on failure raise IntakeError naming every field and the rule it breaks."""
    try:
        return IntakePayload.model_validate(data)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(payload)"
            msg = e["msg"].removeprefix("Value error, ")
            errors.append((loc, msg))
        raise IntakeError(errors) from None


def first_response_rules(p: IntakePayload) -> list[str]:
    """The clocks that start at submission (INQ-1 via the channel table, PRI-*, ESC-*, INQ-SYNC)."""
    rules: list[str] = ["INQ-SYNC", "ESC-NORMAL"]
    if p.channel == Channel.EMAIL:
        rules.append(f"INQ-CH-EMAIL:{p.email_grade or Priority.NORMAL}")
    else:
        rules.append(f"INQ-CH-{str(p.channel).upper()}:response")
    if p.is_public:
        rules.append("INQ-CH-SOCIAL:public-complaint")
    rules.append(f"PRI-{str(initial_priority(p)).upper()}:response")
    if p.safety_risk or p.is_public:
        rules.append("ESC-URGENT:within")
    if p.amount_cny > 1000:
        rules.append("ESC-IMPORTANT:within")
    return rules


def resolution_rules(channel: str, priority: str) -> list[str]:
    """Resolution clocks: the grade's target (PRI-*), its hard limit (ESC-TIMEOUT) and the
    channel's (INQ-CH-*); the spec's conflicts table keeps all three, earliest breaches first."""
    rules = [f"PRI-{priority.upper()}:resolution", f"ESC-TIMEOUT:{priority}"]
    if channel != Channel.EMAIL:
        rules.append(f"INQ-CH-{channel.upper()}:resolution")
    return rules


def initial_priority(p: IntakePayload) -> Priority:
    """Before classification: safety risk or public complaint urgent (ESC-URGENT),
    a repair request urgent (INQ-2 class B), an email's stated grade, else normal."""
    if p.safety_risk or p.is_public or p.sop == "repair":
        return Priority.URGENT
    if p.amount_cny > 1000:
        return Priority.IMPORTANT
    if p.email_grade is not None:
        return p.email_grade
    return Priority.NORMAL


def open_repair_request(
    session: Any, *, ctx: ClockContext, ticket: Any, start: datetime, now: datetime
) -> None:
    """REP-1: the ticket enters repair dispatch — the 30-min review clock runs from ``start``
    and the dispatch centre gets the repair request (form 表2). Idempotent."""
    ticket.sop = Sop.REPAIR
    session.add(ticket)
    arm(session, ctx=ctx, ticket_id=ticket.id, rule_id="REP-1", start=start)
    enqueue_notification(
        session,
        dedupe_key=f"repair-request:{ticket.id}",
        role="dispatch",
        template="repair_request",
        context=ticket_context(ticket),
        now=now,
        ticket_id=ticket.id,
    )


class IntakeResult(BaseModel):
    ticket_id: str
    created: bool
    sop: str
    event: str | None


def accept_intake(
    payload: IntakePayload,
    *,
    ctx: ClockContext,
    now: datetime,
    emit: Any | None = None,
) -> IntakeResult:
    """Store the ticket and its first clocks in one transaction, then emit the start event
    (only for a new ticket). ``emit(event, ticket_id, payload)`` is injected by the producer."""
    received = payload.received_at or now
    key = payload.intake_key(received)
    sop = Sop(payload.sop)
    with session_scope() as s:
        if payload.customer_id and s.get(Customer, payload.customer_id) is None:
            raise IntakeError(
                [
                    (
                        "customer_id",
                        f"no customer {payload.customer_id!r}; omit it or register the customer",
                    )
                ]
            )
        ticket, created = create_ticket(
            s,
            data=TicketCreate(
                intake_key=key,
                created_at=received,
                sop=sop,
                priority=initial_priority(payload),
                **payload.model_dump(exclude={"intake_id", "received_at", "sop"}),
            ),
        )
        if created:
            for rule_id in first_response_rules(payload):
                arm(s, ctx=ctx, ticket_id=ticket.id, rule_id=rule_id, start=received)
            # INQ-SYNC: posted to the after-sales sync group in the intake transaction, so
            # the post goes out with the next outbox round, not after a flow run starts
            posts = [("INQ-SYNC", "sync_group", "sync_group_post")]
            if payload.is_public:  # INQ-CH-SOCIAL: a public complaint is copied to PR
                posts.append(("pr-copy", "pr", "public_complaint_copy"))
            for key, role, template in posts:
                enqueue_notification(
                    s,
                    dedupe_key=f"{key}:{ticket.id}",
                    role=role,
                    template=template,
                    context=ticket_context(ticket),
                    now=now,
                    ticket_id=ticket.id,
                )
            meet(s, ticket_id=ticket.id, at=now, rule_ids=["INQ-SYNC"])
            if sop == Sop.REPAIR:
                open_repair_request(s, ctx=ctx, ticket=ticket, start=received, now=now)
        tid = ticket.id
    event = (REPAIR_EVENT if sop == Sop.REPAIR else INQUIRY_EVENT) if created else None
    if event and emit is not None:
        emit(event, tid, {"ticket_id": tid, "sop": str(sop), "channel": str(payload.channel)})
    log.info("intake %s -> ticket %s (%s)", payload.channel, tid, "new" if created else "duplicate")
    return IntakeResult(ticket_id=tid, created=created, sop=str(sop), event=event)
