"""Escalation as its own process (ESC-NORMAL / ESC-IMPORTANT / ESC-URGENT, spec §2 and
its "Readings"), as data. An escalation is opened at once by a trigger (safety risk,
public complaint, amount over the limit, beyond the handler's authority) or by a
breached deadline; the person it went to takes the level's steps, whose clocks are
the policy's (rules citing ``escalation.<step>``); a breach of one of them goes one
level up. No Prefect here; ``flows/escalation.py`` orders the steps."""

from __future__ import annotations

from aftersales.forms import Acknowledge, Contact, InitialPlan, StepIn
from aftersales.steps import Message, SopSpec, Step, StepContext, StepOutcome
from models.entities import EscalationState


def _acted(sc: StepContext, *, by: str, progress: str, final: bool) -> StepOutcome:
    esc = sc.escalation
    assert esc is not None, "an escalation step belongs to an escalation"
    esc.acted_by = esc.acted_by or by
    esc.acted_at = esc.acted_at or sc.now
    esc.progress = ((esc.progress + "\n") if esc.progress else "") + progress
    if final:
        esc.state = EscalationState.ACTED
    sc.session.add(esc)
    return StepOutcome()


def step_in(sc: StepContext) -> StepOutcome:
    assert isinstance(sc.form, StepIn)
    return _acted(sc, by=sc.form.by, progress=f"stepped in: {sc.form.action}", final=True)


def contact(sc: StepContext) -> StepOutcome:
    assert isinstance(sc.form, Contact)
    _acted(sc, by=sc.form.by, progress=f"compensation plan: {sc.form.compensation_plan}",
           final=True)  # fmt: skip
    return StepOutcome(at=sc.reported(sc.form.contacted_at))


def acknowledge(sc: StepContext) -> StepOutcome:
    assert isinstance(sc.form, Acknowledge)
    return _acted(sc, by=sc.form.by, progress=f"emergency plan started: {sc.form.team}",
                  final=False)  # fmt: skip


def plan(sc: StepContext) -> StepOutcome:
    assert isinstance(sc.form, InitialPlan)
    return _acted(sc, by=sc.form.by, progress=f"initial plan: {sc.form.plan}", final=True)


ESCALATION = SopSpec(
    name="escalation",
    title="Escalation (升级), spec §2",
    steps=(
        Step("opened", "system", "the escalation is recorded and its level notified at once"),
        Step(
            "step-in",
            "assignee",
            "ESC-NORMAL: step in, handle with priority and report back to the customer",
            StepIn,
            apply=step_in,
            messages=(Message("escalation_progress", "handler"),),
        ),
        Step(
            "contact",
            "assignee",
            "ESC-IMPORTANT: contact the customer and make the compensation plan",
            Contact,
            apply=contact,
            messages=(Message("escalation_progress", "handler"),),
        ),
        Step(
            "acknowledge",
            "assignee",
            "ESC-URGENT: start the emergency plan with tech support and PR",
            Acknowledge,
            apply=acknowledge,
            messages=(Message("escalation_progress", "handler"),),
        ),
        Step(
            "plan",
            "assignee",
            "ESC-URGENT: the initial plan (copied to tech support and PR)",
            InitialPlan,
            apply=plan,
            messages=(
                Message("escalation_progress", "handler"),
                Message("emergency_plan", "tech_support"),
                Message("emergency_plan", "pr"),
            ),
        ),
    ),
)
