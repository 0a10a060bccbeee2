"""Intake: a validated payload opens (at most) one ticket, completes its ``intake`` step
(the first clocks, triggers and posts the policy ties to ``intake``) and queues the
event that starts the SOP deployment (``triggers:`` in prefect.yaml).

Producers: ``aftersales intake ...`` (CLI) and ``POST /intake`` (HTTP). The
clocks start at the moment the customer reached us (``received_at``), not when a
worker picks the run up. The same intake delivered twice (same ``intake_id``, or
the same channel/contact/description/time when the source gives no id) is one
ticket and one event.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aftersales import steps
from aftersales.sla import Deadlines
from models.db import session_scope
from models.entities import Channel, Customer, Priority, Sop, TicketCreate
from models.repository import create_ticket

log = logging.getLogger("aftersales.intake")

INQUIRY_EVENT = steps.START_EVENTS["inquiry"]
REPAIR_EVENT = steps.START_EVENTS["repair"]


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
    sop: Literal["inquiry", "repair", "complaint"] = Field(
        default="inquiry",
        description="the SOP that takes the ticket; a public social-media post is a complaint",
    )
    customer_id: str | None = Field(default=None, max_length=64)
    customer_name: str = Field(min_length=1, max_length=120)
    contact: str = Field(min_length=5, max_length=120, description="phone or email")
    product_model: str = Field(default="", max_length=120)
    purchase_date: date | None = None
    description: str = Field(min_length=1, max_length=4000)
    email_grade: Priority | None = None
    is_public: bool = False
    safety_risk: bool = False
    amount_cny: float = Field(default=0, ge=0, le=100_000_000, allow_inf_nan=False)
    service_city: str | None = Field(default=None, min_length=1, max_length=60)
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
        if self.is_public and self.sop == "repair":
            raise ValueError(
                "is_public: a public post is a complaint (INQ-CH-SOCIAL), not a repair"
            )
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


def initial_priority(p: IntakePayload) -> Priority:
    """The grade known at submission: safety risk or public complaint urgent (ESC-URGENT),
    a repair request urgent (INQ-2 class B), an amount over the limit important, an
    email's stated grade; else normal until the first response classifies the ticket."""
    if p.safety_risk or p.is_public or p.sop == "repair":
        return Priority.URGENT
    if p.amount_cny > 1000:
        return Priority.IMPORTANT
    if p.email_grade is not None:
        return p.email_grade
    return Priority.NORMAL


class IntakeResult(BaseModel):
    ticket_id: str
    created: bool
    sop: str
    event: str | None


def accept_intake(
    payload: IntakePayload,
    *,
    ctx: Deadlines,
    now: datetime,
    send: Callable[..., int] | None = None,
) -> IntakeResult:
    """Store the ticket, complete its ``intake`` step (first clocks, triggers, the sync
    post) and queue its SOP's start event, all in one transaction; then ``send(now=,
    ticket_id=)`` the stored events if given (the SLA service sends whatever is left).
    The same intake again is the same ticket and queues nothing."""
    received = payload.received_at or now
    if received > now + timedelta(minutes=5):
        raise IntakeError([("received_at", "is in the future (more than 5 minutes ahead of now)")])
    with session_scope() as s:
        ticket, created = store_intake(s, payload, deadlines=ctx, now=now)
        tid, sop = ticket.id, str(ticket.sop)
    event = steps.START_EVENTS[sop] if created else None
    if created and send is not None:
        try:
            send(now=now, ticket_id=tid)
        except Exception as exc:  # noqa: BLE001 - stored: the SLA service sends it later
            log.warning("start event of %s left for the SLA service: %s", tid, exc)
    log.info("intake %s -> ticket %s (%s)", payload.channel, tid, "new" if created else "duplicate")
    return IntakeResult(ticket_id=tid, created=created, sop=sop, event=event)


def store_intake(
    session: Any,
    payload: IntakePayload,
    *,
    deadlines: Deadlines,
    now: datetime,
    parent_ticket_id: str | None = None,
) -> tuple[Any, bool]:
    """In the caller's transaction: the ticket, its ``intake`` step and its SOP's start
    event (used by :func:`accept_intake`, and by a low callback score opening a linked
    complaint). Returns (ticket, created)."""
    received = payload.received_at or now
    # INQ-CH-SOCIAL: a public social-media complaint becomes a complaint ticket (CMP-1)
    sop = Sop.COMPLAINT if payload.is_public else Sop(payload.sop)
    if payload.customer_id and session.get(Customer, payload.customer_id) is None:
        raise IntakeError(
            [
                (
                    "customer_id",
                    f"no customer {payload.customer_id!r}; omit it or register the customer",
                )
            ]
        )
    ticket, created = create_ticket(
        session,
        data=TicketCreate(
            intake_key=payload.intake_key(received),
            created_at=received,
            sop=sop,
            priority=initial_priority(payload),
            parent_ticket_id=parent_ticket_id,
            **payload.model_dump(exclude={"intake_id", "received_at", "sop"}),
        ),
    )
    if created:
        steps.complete(session, deadlines=deadlines, sop=steps.TICKET_SOP, step="intake",
                       ticket_id=ticket.id, now=received, actor=str(payload.channel))  # fmt: skip
        steps.queue_start(session, sop=str(sop), ticket=ticket, now=now)
    return ticket, created
