"""Human steps as Prefect RunInput forms. Every human-confirmed field is required
(no default), so the Resume form in the Prefect UI, the CLI and the API all refuse
an input that leaves one out."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field


class FirstResponse(RunInput):
    """INQ-1/INQ-2: the agent's first reply and the classification A/B/C/D."""

    agent: str = Field(min_length=1, description="who replied")
    category: Literal["A", "B", "C", "D"] = Field(
        description="A product usage, B fault/repair, C policy, D other"
    )
    priority: Literal["urgent", "important", "normal", "auto"] = Field(
        description="'auto' applies INQ-2 (A/C normal, B urgent, D normal)"
    )
    complex_issue: bool = Field(description="phone: a technical specialist calls back within 1 h")


class Answer(RunInput):
    """INQ-3: answered from the knowledge base / policy manual, or escalated to tech support."""

    answered_from_knowledge_base: bool
    answer: str = Field(min_length=1)


class Solved(RunInput):
    """The problem is solved (starts INQ-4 feedback and, by email, the follow-ups)."""

    resolution: str = Field(min_length=1)
    root_cause: str


class Feedback(RunInput):
    """INQ-4: result reported, satisfaction asked (0-10, QA-1); 'no_reply' when the
    email close clock (INQ-CH-EMAIL) ran out."""

    outcome: Literal["rated", "no_reply", "declined"]
    satisfaction: float | None = Field(default=None, ge=0, le=10)


class Review(RunInput):
    """REP-1: the dispatch centre checked customer and fault data."""

    reviewer: str = Field(min_length=1)
    approved: bool
    skill: Literal["hardware", "software"]


class EngineerChoice(RunInput):
    """REP-2 when no engineer was available: the dispatcher assigns one by hand."""

    engineer_id: str = Field(min_length=1)


class Arrival(RunInput):
    """REP-2: the engineer responded / is on site."""

    engineer_id: str = Field(min_length=1)


class Diagnosis(RunInput):
    """REP-3: cause, plan, cost; on site or back to the repair centre."""

    cause: str = Field(min_length=1)
    mode: Literal["on_site", "depot"]
    charge: Literal["free", "paid_repair", "paid_service"]
    cost_cny: float = Field(ge=0)
    customer_agreed: bool


class CustomerDecision(RunInput):
    """REP-3: repair only after the customer agrees."""

    agreed: bool


class Confirmation(RunInput):
    """REP-4: tested together, the customer signed the repair service form (表3)."""

    test_passed: bool
    customer_signed: bool
    signer: str = Field(min_length=1)
    device_status: str = Field(min_length=1)
    test_report: str = Field(min_length=1)


FORMS: dict[str, type[RunInput]] = {
    "first-response": FirstResponse,
    "answer": Answer,
    "solved": Solved,
    "feedback": Feedback,
    "review": Review,
    "engineer": EngineerChoice,
    "arrival": Arrival,
    "diagnosis": Diagnosis,
    "customer-decision": CustomerDecision,
    "confirmation": Confirmation,
}
