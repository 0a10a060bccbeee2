"""Steps of the repair dispatch SOP (spec §3, REP-1..4). Idempotent and cached per run."""

from __future__ import annotations

from datetime import date
from typing import Any

from dateutil.relativedelta import relativedelta
from haversine import Unit as DistanceUnit
from haversine import haversine
from prefect import task

from aftersales import sla
from aftersales.clock import get_clock
from aftersales.intake import resolution_rules
from aftersales.runtime import clock_context
from aftersales.settings import get_settings
from aftersales.sla import ticket_context
from models.db import session_scope
from models.entities import Customer, Engineer, Escalation, Skill, TicketStatus, WorkOrder
from models.repository import available_engineers, get_ticket, get_work_order
from tasks.common import STEP, current_flow_run_id


def warranty_until(purchase: date | None, months: int) -> date | None:
    return purchase + relativedelta(months=months) if purchase else None


def nearest_engineer(
    customer: Customer | None, engineers: list[Engineer]
) -> tuple[Engineer | None, float | None]:
    """REP-2: the nearest engineer (great-circle distance) among those given; without
    customer coordinates, one in the customer's city, else any."""
    if not engineers:
        return None, None
    if customer is None:
        return engineers[0], None
    scored = [
        (haversine((customer.lat, customer.lon), (e.lat, e.lon), unit=DistanceUnit.KILOMETERS), e)
        for e in engineers
    ]
    dist, best = min(scored, key=lambda p: (p[0], p[1].id))
    return best, round(dist, 2)


def candidates_for(customer: Customer | None, engineers: list[Engineer]) -> list[Engineer]:
    """ASSIGN-1: a VIP customer goes to a senior first — a senior in the customer's city,
    so that seniority never costs the VIP the same-city limit of REP-2; with none free
    there, the nearest engineer with the skill, as for everyone."""
    if customer is not None and customer.vip:
        seniors = [e for e in engineers if e.senior and e.city == customer.city]
        if seniors:
            return seniors
    return engineers


@task(**STEP)
def register_repair(ticket_id: str) -> dict[str, Any]:
    """REP-1: repair form registered, the 30-min review clock running (armed idempotently
    if intake or the inquiry did not), warranty checked from the purchase date."""
    now = get_clock().now()
    settings = get_settings()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        ctx = clock_context()
        # REP-1 and, for a repair reported directly, the resolution clocks of its grade
        # (a class-B inquiry armed them at classification; arming is idempotent)
        for rule_id in ["REP-1", *resolution_rules(str(t.channel), str(t.priority))]:
            sla.arm(s, ctx=ctx, ticket_id=ticket_id, rule_id=rule_id, start=t.created_at)
        wo = get_work_order(s, ticket_id=ticket_id)
        if wo is None:
            until = warranty_until(t.purchase_date, settings.warranty_months)
            in_warranty = until is not None and now.date() <= until
            wo = WorkOrder(
                ticket_id=ticket_id,
                skill=Skill.HARDWARE,
                warranty_until=until,
                ticket_type="warranty" if in_warranty else "repair",
            )
            s.add(wo)
            s.flush()
        return {"ticket_type": wo.ticket_type, "warranty_until": str(wo.warranty_until or "")}


@task(**STEP)
def record_review(ticket_id: str, reviewer: str, approved: bool, skill: str) -> bool:
    """REP-1 review done: fault skill decided (the clock stops when the engineer is assigned)."""
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        wo.skill = Skill(skill)
        wo.reviewed_at = wo.reviewed_at or now
        t.handler = t.handler or reviewer
        t.status = TicketStatus.IN_PROGRESS
        t.first_response_at = t.first_response_at or now
        if not approved:
            t.status = TicketStatus.CLOSED
            t.closed_at = now
            t.result = f"repair request rejected at review by {reviewer}"
            sla.cancel(s, ticket_id=ticket_id, at=now)
        else:
            sla.meet(s, ticket_id=ticket_id, at=now, kinds=["response"])
        s.add_all([t, wo])
        return approved


@task(**STEP)
def dispatch_engineer(ticket_id: str, engineer_id: str | None = None) -> dict[str, Any]:
    """REP-2: nearest available engineer with the right skill; work order with its limit
    (same city 4 h, other city 24 h). No engineer: escalate to the team lead."""
    now = get_clock().now()
    ctx = clock_context()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        customer = s.get(Customer, t.customer_id) if t.customer_id else None
        if wo.engineer_id is None:
            if engineer_id:
                chosen = s.get(Engineer, engineer_id)
                if chosen is None:
                    raise ValueError(f"engineer_id: no engineer {engineer_id!r}")
                dist = nearest_engineer(customer, [chosen])[1] if customer is not None else None
            else:
                chosen, dist = nearest_engineer(
                    customer, candidates_for(customer, available_engineers(s, skill=wo.skill))
                )
            if chosen is None:
                s.add(
                    Escalation(
                        ticket_id=ticket_id,
                        rule_id="REP-2",
                        clause="REP-2",
                        level="normal",
                        escalated_to="team_lead",
                        reason=f"no available {wo.skill} engineer",
                        escalated_by="dispatch",
                        created_at=now,
                    )
                )
                sla.enqueue_notification(
                    s,
                    dedupe_key=f"no-engineer:{ticket_id}",
                    role="team_lead",
                    template="no_engineer_available",
                    context={**ticket_context(t), "skill": str(wo.skill)},
                    now=now,
                    ticket_id=ticket_id,
                )
                return {"engineer_id": None}
            wo.engineer_id = chosen.id
            wo.distance_km = dist
            wo.same_city = customer is None or customer.city == chosen.city
            wo.dispatched_at = now
            chosen.available = False
            s.add_all([wo, chosen])
        engineer = s.get(Engineer, wo.engineer_id)
        rule = "REP-2:same-city" if wo.same_city else "REP-2:other-city"
        sla.meet(s, ticket_id=ticket_id, at=now, rule_ids=["REP-1"])
        sla.arm(s, ctx=ctx, ticket_id=ticket_id, rule_id=rule, start=wo.dispatched_at or now)
        sla.enqueue_notification(
            s,
            dedupe_key=f"work-order:{ticket_id}:{wo.engineer_id}",
            role="engineer",
            template="work_order",
            context={
                **ticket_context(t),
                "engineer": engineer.name if engineer else wo.engineer_id,
                "rule_id": rule,
                "distance_km": wo.distance_km if wo.distance_km is not None else "-",
            },
            now=now,
            ticket_id=ticket_id,
        )
        return {"engineer_id": wo.engineer_id, "rule": rule, "distance_km": wo.distance_km}


@task(**STEP)
def record_arrival(ticket_id: str, engineer_id: str) -> None:
    """REP-2 met: the engineer responded on site."""
    now = get_clock().now()
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        if wo.engineer_id != engineer_id:
            raise ValueError(f"engineer_id: {engineer_id!r} is not the engineer of this work order")
        wo.arrived_at = wo.arrived_at or now
        s.add(wo)
        sla.meet(s, ticket_id=ticket_id, at=now, rule_ids=["REP-2"])


@task(**STEP)
def record_diagnosis(
    ticket_id: str, cause: str, mode: str, charge: str, cost_cny: float, customer_agreed: bool
) -> dict[str, Any]:
    """REP-3: cause, plan and cost told to the customer; a depot repair starts the
    progress report every 2 working days; a chargeable repair waits for the customer's
    consent with the resolution clocks paused (time waiting on the customer is not ours)."""
    now = get_clock().now()
    ctx = clock_context()
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        wo.cause, wo.mode, wo.charge, wo.cost_cny = cause, mode, charge, cost_cny
        wo.customer_agreed = customer_agreed or charge == "free"
        s.add(wo)
        if mode == "depot":
            sla.arm(s, ctx=ctx, ticket_id=ticket_id, rule_id="REP-3", start=now)
        must_wait = not wo.customer_agreed
        if must_wait:
            sla.pause(s, ctx=ctx, ticket_id=ticket_id, at=now, kinds=["resolution"])
        return {"mode": mode, "wait_for_customer": must_wait}


@task(**STEP)
def record_customer_decision(ticket_id: str, agreed: bool) -> bool:
    """REP-3: repair only after the customer agrees; a refusal closes the ticket."""
    now = get_clock().now()
    ctx = clock_context()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        wo.customer_agreed = agreed
        s.add(wo)
        if agreed:
            sla.resume(s, ctx=ctx, ticket_id=ticket_id, at=now)
        else:
            t.status = TicketStatus.CLOSED
            t.closed_at = now
            t.result = "customer declined the chargeable repair"
            s.add(t)
            sla.cancel(s, ticket_id=ticket_id, at=now)
            _release_engineer(s, wo)
        return agreed


def _release_engineer(s: Any, wo: WorkOrder) -> None:
    if wo.engineer_id:
        eng = s.get(Engineer, wo.engineer_id)
        if eng is not None:
            eng.available = True
            s.add(eng)


@task(**STEP)
def archive_repair(
    ticket_id: str,
    test_passed: bool,
    customer_signed: bool,
    signer: str,
    device_status: str,
    test_report: str,
) -> str:
    """REP-4: tested together, form 表3 signed, archived with the test report, device status
    updated; completion starts the callback clock (CB-2; VIP customers a second one)."""
    now = get_clock().now()
    ctx = clock_context()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        wo = get_work_order(s, ticket_id=ticket_id)
        assert wo is not None
        if not (test_passed and customer_signed):
            raise ValueError(
                "customer_signed/test_passed: REP-4 archives only a tested repair the "
                "customer signed; submit the confirmation again when both are true"
            )
        wo.repaired_at = wo.repaired_at or now
        wo.signed_by = signer
        wo.test_report = test_report
        wo.device_status = device_status
        wo.archived_at = wo.archived_at or now
        t.status = TicketStatus.RESOLVED
        t.resolved_at = t.resolved_at or now
        t.result = t.result or f"repaired ({wo.mode or 'on_site'}, {wo.charge or 'free'})"
        t.root_cause = t.root_cause or wo.cause
        s.add_all([t, wo])
        _release_engineer(s, wo)
        sla.meet(s, ticket_id=ticket_id, at=now, kinds=["resolution", "repeat", "response"])
        customer = s.get(Customer, t.customer_id) if t.customer_id else None
        callbacks = ["CB-2:ordinary"] + (["CB-2:vip-second"] if customer and customer.vip else [])
        for rule_id in callbacks:
            sla.arm(
                s,
                ctx=ctx,
                ticket_id=ticket_id,
                rule_id=rule_id,
                start=now,
                flow_run_id=current_flow_run_id(),
            )
        sla.enqueue_notification(
            s,
            dedupe_key=f"REP-4:{ticket_id}",
            role="customer",
            template="repair_confirmation",
            context={**ticket_context(t), "device_status": device_status},
            now=now,
            ticket_id=ticket_id,
        )
        return str(t.status)
