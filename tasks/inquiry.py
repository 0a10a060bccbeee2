"""The inquiry SOP (咨询响应, spec §1) as data: its steps, who takes them, their forms,
what each does to the ticket and the messages it sends. The clocks each step starts
and stops are the policy's (rules citing ``inquiry.<step>``); ``flows/inquiry.py``
orders the steps. No Prefect here."""

from __future__ import annotations

import logging

from aftersales.forms import Answer, Callback, Feedback, FirstResponse, Report, Solved
from aftersales.steps import Handover, Message, SopSpec, Step, StepContext, StepOutcome
from models.entities import Category, Channel, Priority, TicketStatus

log = logging.getLogger("aftersales.inquiry")

# INQ-2: A and C normal, B urgent, D normal unless the agent decides otherwise.
CATEGORY_PRIORITY = {
    Category.A: Priority.NORMAL,
    Category.B: Priority.URGENT,
    Category.C: Priority.NORMAL,
    Category.D: Priority.NORMAL,
}
OWNER_TEAM = {  # INQ-OWNER: the team of the channel that first received the ticket owns it
    Channel.PHONE: "hotline",
    Channel.ONLINE: "online-service",
    Channel.EMAIL: "email-service",
    Channel.SOCIAL: "social-media",
}


def receive(sc: StepContext) -> StepOutcome:
    """INQ-1 record and INQ-OWNER owner team (INQ-SYNC was posted at intake)."""
    t = sc.ticket
    t.owner_team = t.owner_team or OWNER_TEAM[t.channel]
    sc.session.add(t)
    log.info("INQ-1 %s by %s from %s (%s): %s", t.id, t.channel, t.customer_name, t.contact,
             t.description)  # fmt: skip  # masked by the log filter (PRIV-1)
    return StepOutcome()


def first_response(sc: StepContext) -> StepOutcome:
    """INQ-1 first response (when the customer heard from a person) and INQ-2 class/grade."""
    form = sc.form
    assert isinstance(form, FirstResponse)
    t = sc.ticket
    at = sc.reported(form.responded_at)
    cat = Category(form.category)
    t.first_response_at = t.first_response_at or at
    t.handler = t.handler or form.agent
    t.category = cat
    t.priority = CATEGORY_PRIORITY[cat] if form.priority == "auto" else Priority(form.priority)
    t.safety_risk = t.safety_risk or form.safety_risk
    t.status = TicketStatus.IN_PROGRESS
    sc.session.add(t)
    return StepOutcome(at=at)


def callback(sc: StepContext) -> StepOutcome:
    """INQ-CH-PHONE: the specialist's callback happened (when the phone system says)."""
    assert isinstance(sc.form, Callback)
    return StepOutcome(at=sc.reported(sc.form.called_at))


def answer(sc: StepContext) -> StepOutcome:
    """INQ-3: answered on the spot, or handed to tech support (their message is declared)."""
    assert isinstance(sc.form, Answer)
    return StepOutcome()


def solved(sc: StepContext) -> StepOutcome:
    assert isinstance(sc.form, Solved)
    t = sc.ticket
    t.resolved_at = t.resolved_at or sc.now
    t.status = TicketStatus.RESOLVED
    t.result = sc.form.resolution
    t.root_cause = sc.form.root_cause or t.root_cause
    sc.session.add(t)
    return StepOutcome()


def report(sc: StepContext) -> StepOutcome:
    """INQ-4 is met here: the result reported and satisfaction asked."""
    assert isinstance(sc.form, Report)
    return StepOutcome(at=sc.reported(sc.form.reported_at))


def feedback(sc: StepContext) -> StepOutcome:
    """INQ-4 / CB-3: the three survey dimensions (1-5) and the ticket's 0-10 score; closed."""
    form = sc.form
    assert isinstance(form, Feedback)
    t = sc.ticket
    if form.outcome == "rated":
        t.satisfaction_attitude = form.attitude
        t.satisfaction_efficiency = form.efficiency
        t.satisfaction_effectiveness = form.effectiveness
        t.satisfaction = form.satisfaction_0_10
    elif form.outcome == "no_reply":
        t.result = (t.result or "") + " | closed after 3 days without reply (INQ-CH-EMAIL)"
    t.status = TicketStatus.CLOSED
    t.closed_at = t.closed_at or sc.now
    sc.session.add(t)
    return StepOutcome()


INQUIRY = SopSpec(
    name="inquiry",
    title="Inquiry response (咨询响应), spec §1",
    steps=(
        Step(
            "receive",
            "system",
            "INQ-1/INQ-OWNER: the ticket is recorded and owned by the team that received it",
            apply=receive,
        ),
        Step(
            "first-response",
            "handler",
            "INQ-1/INQ-2: answer the customer, then classify A-D and grade the ticket",
            FirstResponse,
            apply=first_response,
            messages=(Message("repair_request", "dispatch", when=[{"category": "B"}]),),
            hand_over=Handover("repair", when=[{"category": "B"}]),
        ),
        Step(
            "callback",
            "tech_support",
            "INQ-CH-PHONE: a technical specialist calls the customer back",
            Callback,
            apply=callback,
            messages=(Message("step_done", "handler"),),
        ),
        Step(
            "answer",
            "handler",
            "INQ-3: answer from the knowledge base or policy manual, or hand to tech support",
            Answer,
            apply=answer,
            messages=(
                Message(
                    "tech_support_escalation",
                    "tech_support",
                    when=[{"answered_from_knowledge_base": False}],
                ),
            ),
        ),
        Step(
            "solved",
            "handler",
            "the problem is solved: give the resolution and the root cause",
            Solved,
            apply=solved,
            messages=(Message("solution_sent", "customer"),),
        ),
        Step(
            "report",
            "handler",
            "INQ-4: report the result to the customer and ask for satisfaction",
            Report,
            apply=report,
            messages=(Message("feedback_request", "customer"),),
        ),
        Step(
            "feedback",
            "handler",
            "INQ-4: record the customer's rating (attitude, efficiency, effectiveness, 1-5)",
            Feedback,
            apply=feedback,
            messages=(Message("ticket_closed", "handler"),),
        ),
    ),
)
