"""SQLModel entities: one family (Base / Create / table / Public) per entity.

Ticket fields follow REC-1/REC-2; SLA clocks are one row per armed deadline;
escalations and notifications are the durable record (REC-3) of what the clock
did. Timestamps are timezone-aware (UTCDateTime) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import field_validator
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime


def _ts(nullable: bool = True, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Channel(StrEnum):
    PHONE = "phone"
    ONLINE = "online"
    EMAIL = "email"
    SOCIAL = "social"


class Sop(StrEnum):
    INQUIRY = "inquiry"
    REPAIR = "repair"
    COMPLAINT = "complaint"
    CALLBACK = "callback"
    INSTALLATION = "installation"


class Priority(StrEnum):
    URGENT = "urgent"
    IMPORTANT = "important"
    NORMAL = "normal"


class Category(StrEnum):
    """INQ-2: A product usage, B fault/repair, C policy, D other."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"


class TicketStatus(StrEnum):
    """REC-2 status."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ClockState(StrEnum):
    ARMED = "armed"
    REMINDED = "reminded"
    MET = "met"
    BREACHED = "breached"
    PAUSED = "paused"
    CANCELLED = "cancelled"


ACTIVE_CLOCK_STATES = (ClockState.ARMED, ClockState.REMINDED)


class Skill(StrEnum):
    HARDWARE = "hardware"
    SOFTWARE = "software"


# ---------------------------------------------------------------- customers
class CustomerBase(SQLModel):
    name: str = Field(min_length=1, max_length=120)
    phone: str = Field(min_length=5, max_length=40)
    id_number: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    city: str = Field(min_length=1, max_length=60)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    vip: bool = False


class CustomerCreate(CustomerBase):
    id: str = Field(min_length=1, max_length=64)


class Customer(CustomerBase, table=True):
    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class CustomerPublic(SQLModel):
    id: str
    name: str
    city: str
    vip: bool


# ---------------------------------------------------------------- engineers
class EngineerBase(SQLModel):
    name: str = Field(min_length=1, max_length=120)
    skill: Skill
    city: str = Field(min_length=1, max_length=60)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    available: bool = True
    senior: bool = False


class EngineerCreate(EngineerBase):
    id: str = Field(min_length=1, max_length=64)


class Engineer(EngineerBase, table=True):
    id: str = Field(primary_key=True, max_length=64)


class EngineerPublic(EngineerBase):
    id: str


# ---------------------------------------------------------------- tickets
class TicketBase(SQLModel):
    sop: Sop = Sop.INQUIRY
    channel: Channel
    customer_id: str | None = Field(default=None, foreign_key="customer.id", max_length=64)
    customer_name: str = Field(min_length=1, max_length=120)
    contact: str = Field(min_length=5, max_length=120)
    product_model: str = Field(default="", max_length=120)
    purchase_date: date | None = None
    description: str = Field(min_length=1, max_length=4000)
    # Email first-response grade (INQ-CH-EMAIL): urgent complaint / important technical / normal.
    email_grade: Priority | None = None
    is_public: bool = False  # a public (social media) post
    safety_risk: bool = False  # ESC-URGENT trigger
    amount_cny: float = Field(default=0, ge=0)  # ESC-IMPORTANT trigger (> 1000 CNY)
    # REP-2 same/other city: the service address's city (the customer's, or given at REP-1)
    service_city: str | None = Field(default=None, max_length=60)
    # a complaint opened from another ticket (a low callback score, CB-3)
    parent_ticket_id: str | None = Field(default=None, max_length=40)
    category: Category | None = None
    priority: Priority = Priority.NORMAL


class TicketCreate(TicketBase):
    intake_key: str = Field(min_length=1, max_length=200)
    created_at: datetime


class Ticket(TicketBase, table=True):
    __table_args__ = (
        Index("ix_ticket_created_at", "created_at"),
        # ESC-IMPORTANT "second complaint within the window": a customer's history by index
        Index("ix_ticket_customer_history", "customer_id", "created_at"),
        Index("ix_ticket_contact_history", "contact", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    intake_key: str = Field(unique=True, max_length=200)
    status: TicketStatus = TicketStatus.PENDING
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    first_response_at: datetime | None = Field(default=None, sa_column=_ts())
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    closed_at: datetime | None = Field(default=None, sa_column=_ts())
    owner_team: str | None = Field(default=None, max_length=60)  # INQ-OWNER
    handler: str | None = Field(default=None, max_length=120)
    satisfaction: float | None = Field(default=None, ge=0, le=10)  # QA-1 scale
    # CB-3 / INQ-4 survey, each 1-5 as asked; satisfaction = their mean x 2 (conflicts table)
    satisfaction_attitude: int | None = Field(default=None, ge=1, le=5)
    satisfaction_efficiency: int | None = Field(default=None, ge=1, le=5)
    satisfaction_effectiveness: int | None = Field(default=None, ge=1, le=5)
    result: str | None = None
    root_cause: str | None = None
    new_customer: bool = True


class TicketPublic(SQLModel):
    id: str
    sop: Sop
    channel: Channel
    category: Category | None
    priority: Priority
    status: TicketStatus
    customer_name: str
    contact: str
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    owner_team: str | None
    handler: str | None

    @field_validator("contact", "customer_name")
    @classmethod
    def _mask(cls, v: str) -> str:
        from aftersales.privacy import mask_text

        return mask_text(v)


class SopRun(SQLModel, table=True):
    """One flow run per ticket per SOP."""

    __table_args__ = (UniqueConstraint("ticket_id", "sop"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, index=True)
    sop: Sop
    flow_run_id: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    # when the run supervisor saw the owner run finish; a closed ticket's claim stays
    # supervised until then (a run killed after its last step is restarted to complete)
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


# ---------------------------------------------------------------- work orders
class WorkOrder(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, unique=True)
    engineer_id: str | None = Field(default=None, foreign_key="engineer.id", max_length=64)
    skill: Skill
    distance_km: float | None = None
    same_city: bool | None = None
    ticket_type: str = "repair"  # 报修 repair / 保修 warranty (REP-1)
    warranty_until: date | None = None
    mode: str | None = None  # on_site | depot (REP-3)
    charge: str | None = None  # free | paid_repair | paid_service (seed 003)
    cost_cny: float | None = None
    cause: str | None = None
    customer_agreed: bool | None = None
    reviewed_at: datetime | None = Field(default=None, sa_column=_ts())
    dispatched_at: datetime | None = Field(default=None, sa_column=_ts())
    arrived_at: datetime | None = Field(default=None, sa_column=_ts())
    repaired_at: datetime | None = Field(default=None, sa_column=_ts())
    signed_by: str | None = None
    test_report: str | None = None
    archived_at: datetime | None = Field(default=None, sa_column=_ts())
    device_status: str | None = None


# ---------------------------------------------------------------- complaints (§4)
class Complaint(SQLModel, table=True):
    """The complaint record (表4) and what became of it: investigation, the solution and
    its approval, the result sent, the customer's acceptance and the tracking (CMP-1..4)."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, unique=True)
    cause: str = ""
    staff_involved: str = ""
    expected_outcome: str = ""
    amount_claimed_cny: float = 0
    investigator: str | None = Field(default=None, max_length=120)
    service_records: str | None = None
    recording_refs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    photo_refs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cross_department: bool = False
    department: str | None = Field(default=None, max_length=40)
    verified_by: str | None = Field(default=None, max_length=120)
    findings: str | None = None
    solution: str | None = Field(
        default=None, max_length=20
    )  # apology|compensation|repair|process_change
    compensation_cny: float = 0
    solution_details: str | None = None
    approved_by: str | None = Field(default=None, max_length=120)
    approved_at: datetime | None = Field(default=None, sa_column=_ts())
    rejections: int = 0
    last_rejection: str | None = None
    informed_at: datetime | None = Field(default=None, sa_column=_ts())
    outcome: str | None = Field(default=None, max_length=20)  # accepted | reopened
    reopened: int = 0
    tracking: str | None = None
    theme: str | None = Field(default=None, max_length=120)


# ---------------------------------------------------------------- callbacks (§5)
class Callback(SQLModel, table=True):
    """One customer's callback (CB-2/CB-3) for a ticket: how, the attempts, the survey.
    ``plan_month`` is set when the monthly plan (CB-1) listed it."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, unique=True)
    customer_id: str | None = Field(default=None, max_length=64, index=True)
    method: str = Field(default="phone", max_length=20)  # phone | online
    reason: str = Field(default="repair", max_length=20)  # repair | vip
    plan_month: str | None = Field(default=None, max_length=7)
    attempts: int = 0
    reached_at: datetime | None = Field(default=None, sa_column=_ts())
    unreachable: bool = False
    attitude: int | None = None
    efficiency: int | None = None
    effectiveness: int | None = None
    answer: str | None = None
    second_call_at: datetime | None = Field(default=None, sa_column=_ts())
    complaint_ticket_id: str | None = Field(default=None, max_length=40)
    survey_token_hash: str | None = Field(default=None, max_length=64, unique=True)
    survey_expires_at: datetime | None = Field(default=None, sa_column=_ts())
    survey_used_at: datetime | None = Field(default=None, sa_column=_ts())


# ---------------------------------------------------------------- SLA clocks
class SlaClock(SQLModel, table=True):
    """One row per armed deadline. ``next_fire_at`` is the only column the clock
    service scans (indexed), so its cost follows the due clocks, not the open ones."""

    __tablename__ = "sla_clock"
    __table_args__ = (UniqueConstraint("ticket_id", "rule_id", "instance"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, index=True)
    rule_id: str = Field(max_length=80)
    clause: str = Field(max_length=40)
    instance: int = 0
    profile: str = Field(max_length=80)
    kind: str = Field(max_length=20)
    unit: str = Field(max_length=20)
    duration: float
    state: ClockState = ClockState.ARMED
    started_at: datetime = Field(sa_column=_ts(nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=_ts())
    remind_at: datetime | None = Field(default=None, sa_column=_ts())
    next_fire_at: datetime | None = Field(default=None, sa_column=_ts(index=True))
    remaining_seconds: float | None = None  # while paused, in the rule's unit space
    paused_at: datetime | None = Field(default=None, sa_column=_ts())
    reminded_at: datetime | None = Field(default=None, sa_column=_ts())
    met_at: datetime | None = Field(default=None, sa_column=_ts())
    breached_at: datetime | None = Field(default=None, sa_column=_ts())
    fire_count: int = 0
    flow_run_id: str | None = Field(default=None, max_length=64)
    # how much later than its moment the clock last fired when that was beyond
    # ``late_fire_seconds`` (the SLA service was down): a late breach is never taken
    # for an on-time one (issue 11 §4)
    fired_late_seconds: float | None = None


class SlaClockPublic(SQLModel):
    rule_id: str
    clause: str
    state: ClockState
    started_at: datetime
    due_at: datetime | None
    remind_at: datetime | None
    met_at: datetime | None
    breached_at: datetime | None


# ---------------------------------------------------------------- escalations
class EscalationState(StrEnum):
    OPEN = "open"  # its own process: the person escalated to has steps to take
    ACTED = "acted"  # the person took the level's steps (stepped in / contacted / planned)
    JOINED = "joined"  # the same person already held an open escalation: recorded, no new run


class Escalation(SQLModel, table=True):
    """Every escalation (ESC-*), with its reason, who raised it, who acted and when."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, index=True)
    clock_id: int | None = Field(default=None, foreign_key="sla_clock.id", unique=True)
    rule_id: str = Field(max_length=80)
    clause: str = Field(max_length=40)
    level: str = Field(max_length=20)
    escalated_to: str = Field(max_length=40)
    reason: str
    escalated_by: str = Field(default="sla-clock", max_length=120)
    progress: str | None = None
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    trigger: str | None = Field(default=None, max_length=80)  # the rule that opened it
    parent_id: int | None = Field(default=None, foreign_key="escalation.id")
    state: EscalationState = EscalationState.OPEN
    acted_by: str | None = Field(default=None, max_length=120)
    acted_at: datetime | None = Field(default=None, sa_column=_ts())
    flow_run_id: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------- step records
class StepRecord(SQLModel, table=True):
    """One completed step of an SOP (REC-3): which, by whom, when it happened, and when
    it was recorded. Unique per ticket, SOP, step key and escalation, so a step is
    applied once whatever re-runs or resubmits it."""

    __tablename__ = "step_record"
    __table_args__ = (UniqueConstraint("ticket_id", "sop", "step_key", "instance"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, index=True)
    sop: str = Field(max_length=20)
    step: str = Field(max_length=40)
    step_key: str = Field(max_length=60)
    instance: int = 0  # the escalation id for escalation steps
    actor: str = Field(default="", max_length=120)
    completed_at: datetime = Field(sa_column=_ts(nullable=False))
    recorded_at: datetime = Field(sa_column=_ts(nullable=False))
    flow_run_id: str | None = Field(default=None, max_length=64)
    # what the step decided, for a replacement run that re-runs the flow body: it
    # branches on the same value, closure, pause and hand-over without applying it again
    value: str | None = Field(default=None, max_length=120)
    closed: bool = False
    paused: bool = False
    handed_over: str | None = Field(default=None, max_length=20)


# ---------------------------------------------------------------- Prefect events (outbox)
class OutboxEvent(SQLModel, table=True):
    """A Prefect event stored with the change that caused it and sent afterwards (the
    start of an SOP run, a completed step, a reminder or breach), so an event is never
    lost while the Prefect server is down. ``tag`` re-tags the ticket's runs."""

    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_event_due", "sent_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event: str = Field(max_length=80)
    ticket_id: str = Field(max_length=40, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    related: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    tag: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    attempts: int = 0
    last_error: str | None = None


# ---------------------------------------------------------------- notifications
class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # unroutable (no route configured, invalid URL): retrying cannot help; listed by
    # ``aftersales notifications --failed``. A target that does not answer never makes a
    # row FAILED: it stays PENDING and is retried with a capped backoff (issue 11 §4).
    FAILED = "failed"


class Notification(SQLModel, table=True):
    """Outbox: every message is stored first, then delivered (and retried) by the clock service."""

    __table_args__ = (Index("ix_notification_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=200)
    ticket_id: str | None = Field(default=None, foreign_key="ticket.id", max_length=40, index=True)
    role: str = Field(max_length=40)
    template: str = Field(max_length=60)
    clause: str = Field(max_length=40)
    title: str
    body: str  # already masked (PRIV-1)
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    # a courier's lease: another courier skips the row until it expires (a crashed
    # courier's claim expires by itself)
    claimed_until: datetime | None = Field(default=None, sa_column=_ts())
    claimed_by: str | None = Field(default=None, max_length=80)
    delivered_via: str | None = Field(default=None, max_length=20)  # "primary" | "fallback"
    # a late breach is held while a reminder of its ticket queued from #after_id on (its
    # late REM-1 reminders) is pending: the reminder is delivered first
    after_id: int | None = None
    late_seconds: float | None = None  # the clock that queued it fired this late


# ---------------------------------------------------------------- erasures (PRIV-2)
class Erasure(SQLModel, table=True):
    """The record of a personal-data erasure done on the customer's request (PRIV-2):
    who asked, why, when and what was erased — never the erased data itself."""

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str | None = Field(default=None, max_length=64, index=True)
    contact_hash: str | None = Field(default=None, max_length=64)
    reason: str = Field(min_length=1)
    requested_by: str = Field(min_length=1, max_length=120)
    tickets_affected: int = 0
    erased_at: datetime = Field(sa_column=_ts(nullable=False))


# ---------------------------------------------------------------- human-step submissions
class SubmissionState(StrEnum):
    PENDING = "pending"  # stored, not yet given to the run
    DELIVERING = "delivering"  # being resumed into the waiting run right now
    APPLIED = "applied"  # the run completed the step with it
    REFUSED = "refused"  # the run's step refused it (``reason``); the step is asked again


class StepSubmission(SQLModel, table=True):
    """A person's form for a human step, stored before any Prefect call (issue 11 §2): the
    API and the CLI store it, then resume the waiting run if they can; otherwise the run
    takes it when it asks for the step (``SopRun.ask``) or the reconciler resumes it
    (``aftersales.submissions.deliver_pending``). ``dedupe_key`` (the ticket, SOP, step,
    escalation and the body's canonical JSON) makes the same body for the same pending step
    one submission; a settled row's key gets its id appended, freeing it."""

    __tablename__ = "step_submission"
    __table_args__ = (Index("ix_step_submission_pending", "ticket_id", "state", "sop", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=120)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40)
    sop: str = Field(max_length=20)
    step: str = Field(max_length=40)  # the base step (``resolve``)
    step_key: str = Field(max_length=60)  # the round it is for: ``resolve``, ``resolve-r2``
    escalation_id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(default="", max_length=120)
    received_at: datetime = Field(sa_column=_ts(nullable=False))
    state: str = Field(default=SubmissionState.PENDING.value, max_length=12)  # SubmissionState
    updated_at: datetime = Field(sa_column=_ts(nullable=False))
    applied_key: str | None = Field(default=None, max_length=60)  # the step key it completed
    flow_run_id: str | None = Field(default=None, max_length=64)  # the run that settled it
    reason: str | None = None  # why the step refused it
    # what the step's completion said (closed, handed over, value): a replacement run
    # that finds the step recorded returns it without asking again
    outcome: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# ---------------------------------------------------------------- run supervision (issue 11 §1)
class RunRepair(SQLModel, table=True):
    """One repair the run supervisor (``aftersales.reconciler``) made to a ticket's SOP
    run: what it did (created, restarted, replaced, rescheduled, cancelled, gave-up),
    why (the Prefect state it found), the run it acted on and the run that owns the
    ticket afterwards. ``instance`` is the escalation id for an escalation's run."""

    __tablename__ = "run_repair"
    __table_args__ = (Index("ix_run_repair_pair", "ticket_id", "sop", "instance"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(max_length=40)
    sop: str = Field(max_length=20)
    instance: int = 0
    action: str = Field(max_length=20)
    reason: str
    old_run: str | None = Field(default=None, max_length=64)
    new_run: str | None = Field(default=None, max_length=64)
    at: datetime = Field(sa_column=_ts(nullable=False))
