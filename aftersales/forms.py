"""The forms people fill at the human steps of the SOPs, as plain pydantic models.

They carry no Prefect import: the step runtime (``tasks/steps.py``) turns a form into
a Prefect ``RunInput`` when a run suspends for it, the CLI and the HTTP API validate
against the same class before they resume a run, and the policy check reads their
fields (a rule's ``when:`` may test a field of the form of the step that arms it).

Every field a person must confirm is required (no default), so the Resume form in
the Prefect UI, ``aftersales resume`` and ``POST /tickets/{id}/steps/{step}`` all
refuse an input that leaves one out. Times a channel reports (``responded_at``,
``called_at`` …) are optional: without one the submission time counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Score = int  # a survey dimension, 1-5 (CB-3, seed 004 §四(三))


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _aware(cls, v: object) -> object:
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
        return v


# ---------------------------------------------------------------- inquiry (§1)
class FirstResponse(Form):
    """INQ-1/INQ-2: the customer first heard from a person; the ticket is classified."""

    agent: str = Field(min_length=1, max_length=120, description="who replied")
    responded_at: datetime | None = Field(
        default=None,
        description="when the customer first heard from a person, as the channel reports it "
        "(call answered, first chat reply, first reply mail, public reply); default: now",
    )
    category: Literal["A", "B", "C", "D"] = Field(
        description="A product usage, B fault/repair, C policy, D other"
    )
    priority: Literal["urgent", "important", "normal", "auto"] = Field(
        description="'auto' applies INQ-2 (A/C normal, B urgent, D normal)"
    )
    complex_issue: bool = Field(description="phone: a technical specialist calls back within 1 h")
    safety_risk: bool = Field(
        default=False, description="product safety risk (ESC-URGENT to the operations director)"
    )


class Callback(Form):
    """INQ-CH-PHONE: the technical specialist called the customer back."""

    specialist: str = Field(min_length=1, max_length=120)
    called_at: datetime | None = None
    notes: str = Field(min_length=1, max_length=4000)


class Answer(Form):
    """INQ-3: answered from the knowledge base / policy manual, or escalated to tech support."""

    answered_from_knowledge_base: bool
    answer: str = Field(min_length=1, max_length=4000)


class Solved(Form):
    """The problem is solved: the resolution clocks stop, INQ-4 starts."""

    resolution: str = Field(min_length=1, max_length=4000)
    root_cause: str = Field(max_length=2000)


class Report(Form):
    """INQ-4: the result is reported to the customer and satisfaction is asked."""

    agent: str = Field(min_length=1, max_length=120)
    reported_at: datetime | None = None
    via: Literal["phone", "online", "email", "social"]


class Feedback(Form):
    """INQ-4 / CB-3: the customer's rating on the three dimensions of the survey (1-5
    each, as asked); 'no_reply' when nobody answered (the email close clock answers it)."""

    outcome: Literal["rated", "no_reply", "declined"]
    attitude: Score | None = Field(default=None, ge=1, le=5, description="service attitude 1-5")
    efficiency: Score | None = Field(
        default=None, ge=1, le=5, description="resolution efficiency 1-5"
    )
    effectiveness: Score | None = Field(
        default=None, ge=1, le=5, description="solution effectiveness 1-5"
    )
    comment: str = Field(default="", max_length=4000, description="the open question")

    @model_validator(mode="after")
    def _scores_when_rated(self) -> Feedback:
        scores = (self.attitude, self.efficiency, self.effectiveness)
        if self.outcome == "rated" and any(s is None for s in scores):
            raise ValueError(
                "attitude, efficiency, effectiveness: all three are required when outcome is 'rated'"
            )
        return self

    @property
    def satisfaction_0_10(self) -> float | None:
        """The ticket's score on 0-10 (QA-1..4): the mean of the three dimensions x 2
        (spec, conflicts table)."""
        if self.outcome != "rated":
            return None
        scores = [self.attitude, self.efficiency, self.effectiveness]
        return round(sum(s or 0 for s in scores) / 3 * 2, 2)


# ---------------------------------------------------------------- repair (§3)
class Review(Form):
    """REP-1: the dispatch centre checked customer and fault data."""

    reviewer: str = Field(min_length=1, max_length=120)
    approved: bool
    skill: Literal["hardware", "software"]
    service_city: str | None = Field(
        default=None,
        max_length=60,
        description="the service address's city; required when the ticket has none (REP-2)",
    )
    responded_at: datetime | None = Field(
        default=None, description="a repair reported directly: when the customer heard from us"
    )


class EngineerChoice(Form):
    """REP-2 when no engineer was available: the dispatcher assigns one by hand."""

    engineer_id: str = Field(min_length=1, max_length=64)


class Arrival(Form):
    """REP-2: the assigned engineer responded / is on site."""

    engineer_id: str = Field(min_length=1, max_length=64)
    arrived_at: datetime | None = None


class Diagnosis(Form):
    """REP-3: cause, plan, cost; on site or back to the repair centre."""

    cause: str = Field(min_length=1, max_length=2000)
    mode: Literal["on_site", "depot"]
    charge: Literal["free", "paid_repair", "paid_service"]
    cost_cny: float = Field(ge=0, le=10_000_000, allow_inf_nan=False)
    customer_agreed: bool


class CustomerDecision(Form):
    """REP-3: repair only after the customer agrees."""

    agreed: bool


class Confirmation(Form):
    """REP-4: tested together, the customer signed the repair service form (表3)."""

    test_passed: bool
    customer_signed: bool
    signer: str = Field(min_length=1, max_length=120)
    device_status: str = Field(min_length=1, max_length=200)
    test_report: str = Field(min_length=1, max_length=4000)


# ---------------------------------------------------------------- escalation (§2)
class StepIn(Form):
    """ESC-NORMAL: the person escalated to steps in, handles with priority and reports
    back to the customer."""

    by: str = Field(min_length=1, max_length=120)
    action: str = Field(min_length=1, max_length=4000)


class Contact(Form):
    """ESC-IMPORTANT: the CS manager contacted the customer with a compensation plan."""

    by: str = Field(min_length=1, max_length=120)
    contacted_at: datetime | None = None
    compensation_plan: str = Field(min_length=1, max_length=4000)


class Acknowledge(Form):
    """ESC-URGENT: the operations director started the emergency plan."""

    by: str = Field(min_length=1, max_length=120)
    team: str = Field(min_length=1, max_length=400, description="who works the emergency plan")


class InitialPlan(Form):
    """ESC-URGENT: the initial plan, copied to tech support and PR."""

    by: str = Field(min_length=1, max_length=120)
    plan: str = Field(min_length=1, max_length=4000)


# ---------------------------------------------------------------- complaint (§4)
class ComplaintRecord(Form):
    """CMP-1: the 表4 record, within 10 minutes: cause, staff involved, expected outcome,
    the amount claimed."""

    agent: str = Field(min_length=1, max_length=120)
    responded_at: datetime | None = Field(
        default=None, description="when the customer first heard from a person"
    )
    cause: str = Field(min_length=1, max_length=4000)
    staff_involved: str = Field(default="", max_length=400)
    expected_outcome: str = Field(min_length=1, max_length=2000)
    amount_claimed_cny: float = Field(default=0, ge=0, le=100_000_000, allow_inf_nan=False)
    safety_risk: bool = Field(default=False, description="ESC-URGENT to the operations director")


class Investigation(Form):
    """CMP-2: the investigation started, with its evidence (file references)."""

    investigator: str = Field(min_length=1, max_length=120)
    started_at: datetime | None = None
    service_records: str = Field(min_length=1, max_length=4000)
    recording_refs: list[str] = Field(default_factory=list, max_length=50)
    photo_refs: list[str] = Field(default_factory=list, max_length=50)
    cross_department: bool = Field(description="product quality, logistics …: verified together")
    department: Literal["product_quality", "logistics", "sales", "other"] | None = None

    @model_validator(mode="after")
    def _department_when_cross(self) -> Investigation:
        if self.cross_department and self.department is None:
            raise ValueError("department: required when cross_department is true")
        return self


class Verification(Form):
    """CMP-2: the other department verified the case together with us."""

    department: str = Field(min_length=1, max_length=60)
    verifier: str = Field(min_length=1, max_length=120)
    findings: str = Field(min_length=1, max_length=4000)


class Resolution(Form):
    """CMP-3: the proposed solution, for the after-sales supervisor's approval."""

    by: str = Field(min_length=1, max_length=120)
    kind: Literal["apology", "compensation", "repair", "process_change"]
    compensation_cny: float = Field(default=0, ge=0, le=100_000_000, allow_inf_nan=False)
    details: str = Field(min_length=1, max_length=4000)

    @model_validator(mode="after")
    def _amount_for_compensation(self) -> Resolution:
        if self.kind == "compensation" and self.compensation_cny <= 0:
            raise ValueError("compensation_cny: a compensation needs its amount (> 0)")
        return self


class Approval(Form):
    """CMP-3: the after-sales supervisor approves the solution, or rejects it with a reason."""

    supervisor: str = Field(min_length=1, max_length=120)
    approved: bool
    reason: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _reason_when_rejected(self) -> Approval:
        if not self.approved and not self.reason.strip():
            raise ValueError("reason: a rejection states its reason")
        return self


class Inform(Form):
    """CMP-3: the approved result reached the customer."""

    agent: str = Field(min_length=1, max_length=120)
    informed_at: datetime | None = None
    via: Literal["phone", "online", "email", "social", "visit"]


class ComplaintClose(Form):
    """CMP-4: the customer accepts (implementation is tracked) or reopens."""

    outcome: Literal["accepted", "reopened"]
    tracking: str = Field(default="", max_length=4000, description="implementation tracking")
    theme: str = Field(default="", max_length=120, description="the complaint's theme (CMP-4)")
    root_cause: str = Field(default="", max_length=2000)


# ---------------------------------------------------------------- callback (§5)
class Survey(Form):
    """CB-3: the satisfaction survey (seed 004 §四(三)), each dimension 1-5, and the open question."""

    attitude: Score = Field(ge=1, le=5, description="服务态度 service attitude, 1-5")
    efficiency: Score = Field(ge=1, le=5, description="解决效率 resolution efficiency, 1-5")
    effectiveness: Score = Field(ge=1, le=5, description="方案效果 solution effectiveness, 1-5")
    answer: str = Field(default="", max_length=4000, description="the open question")

    @property
    def satisfaction_0_10(self) -> float:
        return round((self.attitude + self.efficiency + self.effectiveness) / 3 * 2, 2)

    @property
    def low(self) -> bool:
        """Any dimension at 2 or below opens a complaint linked to the ticket."""
        return min(self.attitude, self.efficiency, self.effectiveness) <= 2


class CallResult(Form):
    """CB-2/CB-3: the callback: reached or not; when reached, the survey."""

    caller: str = Field(min_length=1, max_length=120)
    called_at: datetime | None = None
    reached: bool
    attitude: Score | None = Field(default=None, ge=1, le=5, description="服务态度 1-5")
    efficiency: Score | None = Field(default=None, ge=1, le=5, description="解决效率 1-5")
    effectiveness: Score | None = Field(default=None, ge=1, le=5, description="方案效果 1-5")
    answer: str = Field(default="", max_length=4000)

    @model_validator(mode="after")
    def _survey_when_reached(self) -> CallResult:
        scores = (self.attitude, self.efficiency, self.effectiveness)
        if self.reached and any(s is None for s in scores):
            raise ValueError(
                "attitude, efficiency, effectiveness: all three are required when reached"
            )
        return self

    def survey(self) -> Survey | None:
        if not self.reached:
            return None
        return Survey(attitude=self.attitude, efficiency=self.efficiency,  # type: ignore[arg-type]
                      effectiveness=self.effectiveness, answer=self.answer)  # type: ignore[arg-type]  # fmt: skip
