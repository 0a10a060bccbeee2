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
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from aftersales import steps
from aftersales.sla import Deadlines
from models.db import session_scope
from models.entities import Channel, Customer, Priority, Sop, TicketCreate
from models.repository import create_ticket

log = logging.getLogger("aftersales.intake")

#: the earliest ``received_at`` accepted (before it is a typo or a number read as 1970)
EARLIEST_RECEIVED = datetime(2000, 1, 1, tzinfo=UTC)


def json_canonical(value: Any) -> str:
    """One text per value (sorted keys, no spaces): hashes of equal bodies are equal."""
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _printable(text: str) -> str:
    """A field name or rule as safe text (a lone surrogate in a key becomes \\udXXX)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    received_at: datetime | None = Field(
        default=None, description="ISO 8601 with a UTC offset, e.g. 2026-11-23T09:00:00+08:00"
    )

    @field_validator("received_at", mode="before")
    @classmethod
    def _iso_text(cls, v: object) -> object:
        # a number would be read as seconds since 1970 (463 -> 1970-01-01T00:07:43Z)
        if v is not None and not isinstance(v, str | datetime):
            raise ValueError(
                f"must be an ISO 8601 date-time text with a UTC offset, not a {type(v).__name__}"
            )
        return v

    @field_validator("received_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
        try:
            utc = v.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("is out of range (not a representable UTC time)") from None
        if utc < EARLIEST_RECEIVED:
            raise ValueError(f"is before {EARLIEST_RECEIVED.date()} (out of range)")
        return v

    # the rules across fields name the field they refuse (a model validator's error has
    # no field: fuzzing found "(payload)" answers); an earlier field that failed is
    # absent from ``info.data`` and already named
    @field_validator("email_grade")
    @classmethod
    def _email_only(cls, v: Priority | None, info: ValidationInfo) -> Priority | None:
        channel = info.data.get("channel")
        if v is not None and channel is not None and channel != Channel.EMAIL:
            raise ValueError("email_grade is only for the email channel (INQ-CH-EMAIL)")
        return v

    @field_validator("is_public")
    @classmethod
    def _public_post(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("sop") == "repair":
            raise ValueError(
                "is_public: a public post is a complaint (INQ-CH-SOCIAL), not a repair"
            )
        channel = info.data.get("channel")
        if v and channel is not None and channel != Channel.SOCIAL:
            raise ValueError("is_public is only for the social channel (INQ-CH-SOCIAL)")
        return v

    def intake_key(self, received_at: datetime) -> str:
        """The ticket's key: the source's id, else the content and the time received."""
        if self.intake_id:
            return f"{self.channel}:{self.intake_id}"
        digest = hashlib.sha256(
            "|".join(
                [str(self.channel), self.contact, self.description, received_at.isoformat()]
            ).encode("utf-8", "surrogatepass")
        ).hexdigest()[:24]
        return f"{self.channel}:auto:{digest}"

    def window_keys(self, now: datetime, window_seconds: float) -> tuple[str, str]:
        """(this window's key, the previous window's key) of an intake with neither an id
        nor ``received_at``: its content hashed with the dedupe window it arrives in, so a
        client's retry within the window (or just across its boundary) is the same ticket."""
        content = self.model_dump(mode="json", exclude={"intake_id", "received_at"})
        blob = json_canonical(content).encode("utf-8", "surrogatepass")
        slot = int(now.timestamp() // window_seconds)

        def key(n: int) -> str:
            digest = hashlib.sha256(blob + f"|w{window_seconds:g}:{n}".encode()).hexdigest()
            return f"{self.channel}:win:{digest[:24]}"

        return key(slot), key(slot - 1)


def parse_payload(data: dict[str, Any]) -> IntakePayload:
    """Validate; on failure raise IntakeError naming every field and the rule it breaks."""
    # keys pydantic cannot name (a lone surrogate, the empty key) are refused here, by
    # name: its own error for them has no field (fuzzing found "(payload)" answers)
    odd = [k for k in data if not isinstance(k, str) or not k or _printable(k) != k]
    errors = [(_printable(repr(k)) if k == "" else _printable(str(k)), "is not a field of an intake")
              for k in odd]  # fmt: skip
    try:
        payload = IntakePayload.model_validate({k: v for k, v in data.items() if k not in odd})
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(payload)"
            msg = e["msg"].removeprefix("Value error, ")
            errors.append((_printable(loc), _printable(msg)))
    if errors:
        raise IntakeError(errors)
    return payload


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
    post) and queue its SOP's start event, all in one transaction; then hand the stored
    events to ``send(now=, ticket_id=)`` if given: ``PUMP.queue`` in the API (never
    waits) or a ``bounded`` send in a one-shot process. The SLA service sends whatever is
    left: starting the SOP is not intake's job, so a Prefect server that is down or slow
    never fails or delays an intake. The same intake again is the same ticket and queues
    nothing."""
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


def bounded(send: Callable[..., int]) -> Callable[..., None]:
    """``send`` made best effort for a one-shot process (the CLI, the demo): it sends the
    ticket's stored events in a thread and waits for it at most
    ``intake_send_timeout_seconds``; an error or a longer wait leaves them stored for the
    SLA service (the thread finishes or fails on its own, bounded by the Prefect call
    timeout, and records the attempt on the outbox row). A long-lived API queues them on
    ``aftersales.events.PUMP`` instead and never waits."""
    from aftersales.settings import get_settings

    def send_bounded(*, now: datetime, ticket_id: str) -> None:
        def run() -> None:
            try:
                send(now=now, ticket_ids=[ticket_id])
            except Exception as exc:  # noqa: BLE001 - stored: the SLA service sends it later
                log.warning("start event of %s left for the SLA service: %s", ticket_id, exc)

        worker = threading.Thread(target=run, name=f"intake-send-{ticket_id}", daemon=True)
        worker.start()
        worker.join(get_settings().intake_send_timeout_seconds)
        if worker.is_alive():
            log.warning("start event of %s not sent yet; left for the SLA service", ticket_id)

    return send_bounded


def intake_keys(payload: IntakePayload, *, now: datetime) -> tuple[str, ...]:
    """The key a new ticket of this intake gets, then any older key it may already be
    stored under: the source's id; else the content and ``received_at``; else (neither
    given) the content within the dedupe window, this window's key first and the
    previous window's second (a retry just across a boundary is still one ticket)."""
    from aftersales.settings import get_settings

    if payload.intake_id or payload.received_at is not None:
        return (payload.intake_key(payload.received_at or now),)
    return payload.window_keys(now, get_settings().intake_dedupe_window_seconds)


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
    from models.entities import Ticket
    from models.repository import ticket_id_for

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
    key, *older = intake_keys(payload, now=now)
    for k in older:
        found = session.get(Ticket, ticket_id_for(k))
        if found is not None:
            return found, False
    ticket, created = create_ticket(
        session,
        data=TicketCreate(
            intake_key=key,
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
