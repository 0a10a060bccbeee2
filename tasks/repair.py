"""The repair dispatch SOP (故障报修, spec §3, REP-1..4) as data: its steps, who takes
them, their forms, what each does to the work order and the messages it sends. The
clocks each step starts and stops are the policy's (rules citing ``repair.<step>``);
``flows/repair.py`` orders the steps. No Prefect here."""

from __future__ import annotations

from datetime import date

from dateutil.relativedelta import relativedelta
from haversine import Unit as DistanceUnit
from haversine import haversine
from sqlmodel import Session

from aftersales.forms import (
    Arrival,
    Confirmation,
    CustomerDecision,
    Diagnosis,
    EngineerChoice,
    Review,
)
from aftersales.settings import get_settings
from aftersales.sla import enqueue_notification, ticket_context
from aftersales.steps import Handover, Message, Refusal, SopSpec, Step, StepContext, StepOutcome
from models.entities import Customer, Engineer, Skill, TicketStatus, WorkOrder
from models.repository import available_engineers, get_work_order


def warranty_until(purchase: date | None, months: int) -> date | None:
    return purchase + relativedelta(months=months) if purchase else None


def nearest_engineer(
    customer: Customer | None, engineers: list[Engineer], city: str | None = None
) -> tuple[Engineer | None, float | None]:
    """REP-2: the nearest engineer (great-circle distance) among those given; without the
    customer's coordinates, one based in the service city, else the first."""
    if not engineers:
        return None, None
    if customer is None:
        local = [e for e in engineers if city and e.city == city]
        return (local or engineers)[0], None
    scored = [
        (haversine((customer.lat, customer.lon), (e.lat, e.lon), unit=DistanceUnit.KILOMETERS), e)
        for e in engineers
    ]
    dist, best = min(scored, key=lambda p: (p[0], p[1].id))
    return best, round(dist, 2)


def candidates_for(
    customer: Customer | None, engineers: list[Engineer], city: str | None
) -> list[Engineer]:
    """ASSIGN-1: a VIP customer goes to a senior first — a senior in the service city, so
    that seniority never costs the VIP the same-city limit of REP-2; with none free there,
    the nearest engineer with the skill, as for everyone."""
    if customer is not None and customer.vip:
        seniors = [e for e in engineers if e.senior and e.city == city]
        if seniors:
            return seniors
    return engineers


def _work_order(sc: StepContext) -> WorkOrder:
    wo = get_work_order(sc.session, ticket_id=sc.ticket.id)
    assert wo is not None, "register runs first"
    return wo


def _release_engineer(s: Session, wo: WorkOrder) -> None:
    if wo.engineer_id:
        eng = s.get(Engineer, wo.engineer_id)
        if eng is not None:
            eng.available = True
            s.add(eng)


def _due_of(sc: StepContext, ref: str) -> str:
    """When the running clocks the step ``ref`` stops are due (the soonest), in words."""
    from models.entities import ACTIVE_CLOCK_STATES
    from models.repository import clocks_for

    stops = {r.id for r in sc.deadlines.profile.stopped_by(ref)}
    due = sorted(
        (c.due_at, c.rule_id)
        for c in clocks_for(sc.session, ticket_id=sc.ticket.id)
        if c.rule_id in stops and c.state in ACTIVE_CLOCK_STATES and c.due_at
    )
    if not due:
        return "no clock running"
    return f"{due[0][0].astimezone(sc.deadlines.calendar.tz).isoformat()}, {due[0][1]}"


def register(sc: StepContext) -> StepOutcome:
    """REP-1: the repair form is registered; warranty checked from the purchase date."""
    t = sc.ticket
    if get_work_order(sc.session, ticket_id=t.id) is None:
        until = warranty_until(t.purchase_date, get_settings().warranty_months)
        in_warranty = until is not None and sc.now.date() <= until
        sc.session.add(
            WorkOrder(
                ticket_id=t.id,
                skill=Skill.HARDWARE,
                warranty_until=until,
                ticket_type="warranty" if in_warranty else "repair",
            )
        )
    if t.service_city is None and t.customer_id:
        customer = sc.session.get(Customer, t.customer_id)
        t.service_city = customer.city if customer else None
        sc.session.add(t)
    sc.session.flush()
    return StepOutcome()


def review_check(sc: StepContext) -> Refusal | None:
    """REP-2 needs the service city: an approved review of a ticket without one gives it."""
    form = sc.form
    assert isinstance(form, Review)
    if form.approved and not (form.service_city or sc.ticket.service_city):
        return Refusal(
            "service_city",
            "the service address has no city; give it (REP-2 compares it with the "
            "engineer's city: same city 4 h, other city 24 h)",
        )
    return None


def review(sc: StepContext) -> StepOutcome:
    """REP-1 review: the fault's skill; the service city where the ticket has none."""
    form = sc.form
    assert isinstance(form, Review)
    t, wo = sc.ticket, _work_order(sc)
    at = sc.reported(form.responded_at)
    t.service_city = form.service_city or t.service_city
    wo.skill = Skill(form.skill)
    wo.reviewed_at = wo.reviewed_at or sc.now
    t.handler = t.handler or form.reviewer
    t.first_response_at = t.first_response_at or at
    t.status = TicketStatus.IN_PROGRESS
    if not form.approved:
        t.result = f"repair request rejected at review by {form.reviewer}"
    sc.session.add_all([t, wo])
    return StepOutcome(at=at)


def engineer_check(sc: StepContext) -> Refusal | None:
    """The engineer named by hand exists and has the fault's skill."""
    form = sc.form
    assert isinstance(form, EngineerChoice)
    chosen = sc.session.get(Engineer, form.engineer_id)
    wo = get_work_order(sc.session, ticket_id=sc.ticket.id)
    if chosen is None:
        return Refusal("engineer_id", f"no engineer {form.engineer_id!r}")
    if wo is not None and chosen.skill != wo.skill:
        return Refusal(
            "engineer_id",
            f"{chosen.id} is a {chosen.skill} engineer; this fault needs {wo.skill}",
        )
    return None


def engineer(sc: StepContext) -> StepOutcome:
    """REP-2 by hand: the dispatcher names an engineer (none was available)."""
    form = sc.form
    assert isinstance(form, EngineerChoice)
    wo = _work_order(sc)
    wo.engineer_id = form.engineer_id
    sc.session.add(wo)
    return StepOutcome()


def dispatch(sc: StepContext) -> StepOutcome:
    """REP-2 / ASSIGN-1: the nearest available engineer with the right skill (or the one
    the dispatcher chose); same city or other city decides the limit. With nobody free
    the step is not done: the team lead and dispatch are told, and dispatch chooses."""
    t, wo = sc.ticket, _work_order(sc)
    s = sc.session
    customer = s.get(Customer, t.customer_id) if t.customer_id else None
    if wo.engineer_id is None:
        pool = candidates_for(customer, available_engineers(s, skill=wo.skill), t.service_city)
        chosen, dist = nearest_engineer(customer, pool, t.service_city)
        if chosen is None:
            for role in ("team_lead", "dispatch"):
                enqueue_notification(
                    s,
                    dedupe_key=f"no-engineer:{t.id}:{role}",
                    role=role,
                    template="no_engineer_available",
                    context={
                        **ticket_context(t),
                        "skill": str(wo.skill),
                        "due": _due_of(sc, "repair.dispatch"),
                    },  # fmt: skip
                    now=sc.now,
                    ticket_id=t.id,
                )
            return StepOutcome(done=False, reason=f"no available {wo.skill} engineer")
    else:
        chosen = s.get(Engineer, wo.engineer_id)
        assert chosen is not None
        dist = nearest_engineer(customer, [chosen])[1] if customer is not None else None
    wo.engineer_id = chosen.id
    wo.distance_km = dist
    wo.same_city = t.service_city == chosen.city
    wo.dispatched_at = wo.dispatched_at or sc.now
    chosen.available = False
    s.add_all([wo, chosen])
    return StepOutcome()


def arrival_check(sc: StepContext) -> Refusal | None:
    """Only the engineer the work order is assigned to reports the arrival."""
    form = sc.form
    assert isinstance(form, Arrival)
    wo = get_work_order(sc.session, ticket_id=sc.ticket.id)
    assigned = wo.engineer_id if wo else None
    if assigned != form.engineer_id:
        return Refusal(
            "engineer_id",
            f"{form.engineer_id!r} is not the engineer of this work order ({assigned})",
        )
    return None


def arrival(sc: StepContext) -> StepOutcome:
    """REP-2 met: the assigned engineer responded on site."""
    form = sc.form
    assert isinstance(form, Arrival)
    wo = _work_order(sc)
    at = sc.reported(form.arrived_at)
    wo.arrived_at = wo.arrived_at or at
    sc.session.add(wo)
    return StepOutcome(at=at)


def diagnosis(sc: StepContext) -> StepOutcome:
    """REP-3: cause, plan and cost told to the customer; on site or back to the depot."""
    form = sc.form
    assert isinstance(form, Diagnosis)
    wo = _work_order(sc)
    wo.cause, wo.mode, wo.charge, wo.cost_cny = form.cause, form.mode, form.charge, form.cost_cny
    wo.customer_agreed = form.customer_agreed or form.charge == "free"
    sc.session.add(wo)
    return StepOutcome()


def customer_decision(sc: StepContext) -> StepOutcome:
    """REP-3: repair only after the customer agrees; a refusal closes the ticket."""
    form = sc.form
    assert isinstance(form, CustomerDecision)
    wo = _work_order(sc)
    wo.customer_agreed = form.agreed
    sc.session.add(wo)
    if not form.agreed:
        sc.ticket.result = "customer declined the chargeable repair"
        sc.session.add(sc.ticket)
        _release_engineer(sc.session, wo)
    return StepOutcome()


def confirmation_check(sc: StepContext) -> Refusal | None:
    """REP-4 archives only a repair tested together and signed by the customer."""
    form = sc.form
    assert isinstance(form, Confirmation)
    for name, ok in (("test_passed", form.test_passed), ("customer_signed", form.customer_signed)):
        if not ok:
            return Refusal(
                name,
                "REP-4 archives only a tested repair the customer signed "
                f"(test passed: {form.test_passed}, signed: {form.customer_signed})",
            )
    return None


def confirmation(sc: StepContext) -> StepOutcome:
    """REP-4: tested together, form 表3 signed, archived with the test report, device
    status updated. Unsigned or untested: refused by :func:`confirmation_check`."""
    form = sc.form
    assert isinstance(form, Confirmation)
    t, wo = sc.ticket, _work_order(sc)
    wo.repaired_at = wo.repaired_at or sc.now
    wo.signed_by = form.signer
    wo.test_report = form.test_report
    wo.device_status = form.device_status
    wo.archived_at = wo.archived_at or sc.now
    t.status = TicketStatus.RESOLVED
    t.resolved_at = t.resolved_at or sc.now
    t.result = t.result or f"repaired ({wo.mode or 'on_site'}, {wo.charge or 'free'})"
    t.root_cause = t.root_cause or wo.cause
    sc.session.add_all([t, wo])
    _release_engineer(sc.session, wo)
    return StepOutcome()


WAITING_ON_CUSTOMER = [
    {"customer_agreed": False, "charge": ["paid_repair", "paid_service"]},
]

REPAIR = SopSpec(
    name="repair",
    title="Repair dispatch (故障报修), spec §3",
    steps=(
        Step(
            "register",
            "system",
            "REP-1: the repair form is registered, warranty checked",
            apply=register,
        ),  # fmt: skip
        Step(
            "review",
            "dispatch",
            "REP-1: check customer and fault data; choose the skill (and the city if missing)",
            Review,
            apply=review,
            check=review_check,
            close_when=[{"approved": False}],
        ),
        Step(
            "engineer",
            "dispatch",
            "REP-2: no engineer was free; name one",
            EngineerChoice,
            apply=engineer,
            check=engineer_check,
        ),
        Step(
            "dispatch",
            "system",
            "REP-2/ASSIGN-1: the nearest free engineer with the skill gets the work order",
            apply=dispatch,
            messages=(Message("work_order", "engineer"),),
        ),
        Step(
            "arrival",
            "engineer",
            "REP-2: the assigned engineer is on site",
            Arrival,
            apply=arrival,
            check=arrival_check,
            messages=(Message("step_done", "dispatch"),),
        ),
        Step(
            "diagnosis",
            "engineer",
            "REP-3: cause, plan and cost; on site or back to the repair centre",
            Diagnosis,
            apply=diagnosis,
            messages=(Message("repair_plan", "customer"),),
            pause_when=WAITING_ON_CUSTOMER,
        ),
        Step(
            "customer-decision",
            "engineer",
            "REP-3: the customer agrees to the chargeable repair, or declines",
            CustomerDecision,
            apply=customer_decision,
            messages=(Message("step_done", "dispatch"),),
            resume_when=[{"agreed": True}],
            close_when=[{"agreed": False}],
        ),
        Step(
            "confirmation",
            "engineer",
            "REP-4: tested together; the customer signs the repair service form (表3)",
            Confirmation,
            apply=confirmation,
            check=confirmation_check,
            messages=(Message("repair_confirmation", "customer"),),
            hand_over=Handover("callback"),  # CB-2: the callback starts with the completion
        ),
    ),
)
