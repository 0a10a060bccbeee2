"""The complaint investigation SOP (投诉处理, spec §4, CMP-1..4) as data: its steps, who
takes them, their forms, what each does to the complaint record (表4) and the messages
it sends. The clocks each step starts and stops are the policy's (rules citing
``complaint.<step>``); ``flows/complaint.py`` orders the steps. No Prefect here."""

from __future__ import annotations

from sqlmodel import select

from aftersales.forms import (
    Approval,
    ComplaintClose,
    ComplaintRecord,
    Inform,
    Investigation,
    Resolution,
    Verification,
)
from aftersales.steps import Handover, Message, SopSpec, Step, StepContext, StepOutcome
from models.entities import Category, Complaint, Priority, TicketStatus


def complaint_of(sc: StepContext) -> Complaint:
    """The ticket's complaint record, created at the first step."""
    row = sc.session.exec(select(Complaint).where(Complaint.ticket_id == sc.ticket.id)).first()
    if row is None:
        row = Complaint(ticket_id=sc.ticket.id)
        sc.session.add(row)
    return row


def accept(sc: StepContext) -> StepOutcome:
    """CMP-1: the 表4 record; the customer heard from a person (first response)."""
    form = sc.form
    assert isinstance(form, ComplaintRecord)
    t, c = sc.ticket, complaint_of(sc)
    at = sc.reported(form.responded_at)
    c.cause, c.staff_involved = form.cause, form.staff_involved
    c.expected_outcome, c.amount_claimed_cny = form.expected_outcome, form.amount_claimed_cny
    t.first_response_at = t.first_response_at or at
    t.handler = t.handler or form.agent
    t.status = TicketStatus.IN_PROGRESS
    t.category = t.category or Category.D  # INQ-2 "other"; REC-2 category: complaint
    t.safety_risk = t.safety_risk or form.safety_risk
    if t.safety_risk and t.priority != Priority.URGENT:
        t.priority = Priority.URGENT
    sc.session.add_all([t, c])
    sc.session.flush()
    return StepOutcome(at=at)


def investigate(sc: StepContext) -> StepOutcome:
    form = sc.form
    assert isinstance(form, Investigation)
    c = complaint_of(sc)
    c.investigator, c.service_records = form.investigator, form.service_records
    c.recording_refs, c.photo_refs = list(form.recording_refs), list(form.photo_refs)
    c.cross_department, c.department = form.cross_department, form.department
    sc.session.add(c)
    return StepOutcome(at=sc.reported(form.started_at))


def verify(sc: StepContext) -> StepOutcome:
    form = sc.form
    assert isinstance(form, Verification)
    c = complaint_of(sc)
    c.verified_by, c.findings = f"{form.department}: {form.verifier}", form.findings
    sc.session.add(c)
    return StepOutcome()


def resolve(sc: StepContext) -> StepOutcome:
    form = sc.form
    assert isinstance(form, Resolution)
    c = complaint_of(sc)
    c.solution, c.compensation_cny, c.solution_details = (
        form.kind,
        form.compensation_cny,
        form.details,
    )
    c.approved_by = c.approved_at = None
    sc.session.add(c)
    return StepOutcome()


def approve(sc: StepContext) -> StepOutcome:
    """CMP-3: the after-sales supervisor's decision; a rejection loops back with its reason."""
    form = sc.form
    assert isinstance(form, Approval)
    c = complaint_of(sc)
    if form.approved:
        c.approved_by, c.approved_at = form.supervisor, sc.now
    else:
        c.rejections += 1
        c.last_rejection = form.reason
    sc.session.add(c)
    return StepOutcome()


def inform(sc: StepContext) -> StepOutcome:
    form = sc.form
    assert isinstance(form, Inform)
    t, c = sc.ticket, complaint_of(sc)
    at = sc.reported(form.informed_at)
    c.informed_at = at
    t.resolved_at = t.resolved_at or at
    t.status = TicketStatus.RESOLVED
    t.result = f"{c.solution}: {c.solution_details}"
    sc.session.add_all([t, c])
    return StepOutcome(at=at)


def close(sc: StepContext) -> StepOutcome:
    """CMP-4: accepted (tracked, themed for the improvement report) or reopened."""
    form = sc.form
    assert isinstance(form, ComplaintClose)
    t, c = sc.ticket, complaint_of(sc)
    c.outcome = form.outcome
    c.tracking = form.tracking or c.tracking
    c.theme = form.theme or c.theme
    t.root_cause = form.root_cause or t.root_cause
    if form.outcome == "accepted":
        t.status = TicketStatus.CLOSED
        t.closed_at = t.closed_at or sc.now
    else:
        c.reopened += 1
        t.status = TicketStatus.IN_PROGRESS
        t.resolved_at = None
    sc.session.add_all([t, c])
    return StepOutcome()


COMPLAINT = SopSpec(
    name="complaint",
    title="Complaint investigation (投诉处理), spec §4",
    steps=(
        Step(
            "accept",
            "handler",
            "CMP-1: calm the customer and record (表4) cause, staff involved, expected outcome, amount",
            ComplaintRecord,
            apply=accept,
            messages=(Message("complaint_recorded", "supervisor"),),
        ),
        Step(
            "investigate",
            "handler",
            "CMP-2: start the investigation with its evidence (records, recordings, photos)",
            Investigation,
            apply=investigate,
            messages=(Message("step_done", "supervisor"),),
        ),
        Step(
            "verify",
            "tech_support",
            "CMP-2: the other department verifies the case together with us",
            Verification,
            apply=verify,
            messages=(Message("step_done", "handler"),),
        ),
        Step(
            "resolve",
            "handler",
            "CMP-3: propose the solution (apology, compensation, repair, process change)",
            Resolution,
            apply=resolve,
            messages=(Message("approval_request", "supervisor"),),
        ),
        Step(
            "approve",
            "supervisor",
            "CMP-3: approve the solution, or reject it with the reason",
            Approval,
            apply=approve,
            messages=(Message("approval_decision", "handler"),),
            hand_over=Handover("repair", when=[{"approved": True, "solution": "repair"}]),
        ),
        Step(
            "inform",
            "handler",
            "CMP-3: send the approved result to the customer",
            Inform,
            apply=inform,
            messages=(Message("complaint_result", "customer"),),
        ),
        Step(
            "close",
            "handler",
            "CMP-4: the customer accepts (track the implementation) or reopens",
            ComplaintClose,
            apply=close,
            messages=(
                Message("ticket_closed", "handler", when=[{"outcome": "accepted"}]),
                Message("complaint_reopened", "supervisor", when=[{"outcome": "reopened"}]),
            ),
        ),
    ),
)
