"""Steps of the inquiry SOP (spec §1, INQ-*). Each is idempotent and cached per run."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from aftersales import sla
from aftersales.clock import get_clock
from aftersales.intake import REPAIR_EVENT, open_repair_request
from aftersales.runtime import clock_context, emit_prefect_event
from aftersales.sla import ticket_context
from models.db import session_scope
from models.entities import Category, Channel, Escalation, Priority, TicketStatus
from models.repository import get_ticket
from tasks.common import STEP, current_flow_run_id, tag_run

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


@task(**STEP)
def receive_inquiry(ticket_id: str) -> dict[str, Any]:
    """INQ-1 record and INQ-OWNER owner team (INQ-SYNC was posted at intake)."""
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        t.owner_team = t.owner_team or OWNER_TEAM[t.channel]
        s.add(t)
        get_run_logger().info(
            "INQ-1 %s by %s from %s (%s): %s",
            ticket_id,
            t.channel,
            t.customer_name,
            t.contact,
            t.description,
        )
        return {"channel": str(t.channel), "owner_team": t.owner_team}


@task(**STEP)
def record_first_response(
    ticket_id: str, agent: str, category: str, priority: str
) -> dict[str, str]:
    """INQ-1 first response met; INQ-2 classification and priority."""
    now = get_clock().now()
    cat = Category(category)
    prio = CATEGORY_PRIORITY[cat] if priority == "auto" else Priority(priority)
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        t.first_response_at = t.first_response_at or now
        t.handler = t.handler or agent
        t.category = cat
        t.priority = prio
        t.status = TicketStatus.IN_PROGRESS
        s.add(t)
        sla.meet(s, ticket_id=ticket_id, at=now, kinds=["response"])
        channel = str(t.channel)
    tag_run(current_flow_run_id(), [f"priority:{prio}"])
    return {"category": str(cat), "priority": str(prio), "channel": channel}


@task(**STEP)
def start_repair_dispatch(ticket_id: str) -> str:
    """INQ-2/INQ-3 class B: the same ticket goes to repair dispatch at once (REP-1 clock
    starts now), the dispatch centre is notified, and the repair SOP starts by event."""
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        open_repair_request(s, ctx=clock_context(), ticket=t, start=now, now=now)
        payload = {"ticket_id": ticket_id, "sop": "repair", "channel": str(t.channel)}
    emit_prefect_event(
        REPAIR_EVENT,
        ticket_id,
        {**payload, "from_flow_run": current_flow_run_id()},
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{current_flow_run_id()}",
                "prefect.resource.role": "flow-run",
            }
        ],
    )
    return REPAIR_EVENT


@task(**STEP)
def answer_inquiry(ticket_id: str, answered: bool, answer: str) -> bool:
    """INQ-3: answered from the knowledge base, or escalated to a tech support engineer."""
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        sla.meet(s, ticket_id=ticket_id, at=now, rule_ids=["INQ-3"])
        if not answered:
            s.add(
                Escalation(
                    ticket_id=ticket_id,
                    rule_id="INQ-3",
                    clause="INQ-3",
                    level="normal",
                    escalated_to="tech_support",
                    reason="cannot be answered from the knowledge base on the spot",
                    escalated_by=t.handler or "agent",
                    created_at=now,
                )
            )
            sla.enqueue_notification(
                s,
                dedupe_key=f"INQ-3:{ticket_id}",
                role="tech_support",
                template="tech_support_escalation",
                context={**ticket_context(t), "reason": answer},
                now=now,
                ticket_id=ticket_id,
            )
        return answered


@task(**STEP)
def record_solution(ticket_id: str, resolution: str, root_cause: str) -> list[str]:
    """Solved: resolution clocks met, INQ-4 feedback clock armed; by email the callback,
    the 48 h follow-ups and the 3-day close (INQ-CH-EMAIL) start."""
    now = get_clock().now()
    ctx = clock_context()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        t.resolved_at = t.resolved_at or now
        t.status = TicketStatus.RESOLVED
        t.result = resolution
        t.root_cause = root_cause or t.root_cause
        s.add(t)
        sla.meet(s, ticket_id=ticket_id, at=now, kinds=["resolution", "repeat"])
        sla.meet(s, ticket_id=ticket_id, at=now, rule_ids=["INQ-CH-PHONE:callback"])
        armed = ["INQ-4"]
        if t.channel == Channel.EMAIL:
            armed += ["INQ-CH-EMAIL:callback", "INQ-CH-EMAIL:followup", "INQ-CH-EMAIL:close"]
        run_id = current_flow_run_id()
        for rule_id in armed:
            sla.arm(s, ctx=ctx, ticket_id=ticket_id, rule_id=rule_id, start=now, flow_run_id=run_id)
        sla.enqueue_notification(
            s,
            dedupe_key=f"INQ-4:{ticket_id}",
            role="customer",
            template="feedback_request",
            context=ticket_context(t),
            now=now,
            ticket_id=ticket_id,
        )
        return armed


@task(**STEP)
def record_feedback(ticket_id: str, outcome: str, satisfaction: float | None) -> str:
    """INQ-4: status and rating recorded, ticket closed; pending follow-ups stop."""
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        if outcome == "rated" and satisfaction is not None:
            t.satisfaction = satisfaction
        if outcome == "no_reply":
            t.result = (t.result or "") + " | closed after 3 days without reply (INQ-CH-EMAIL)"
        t.status = TicketStatus.CLOSED
        t.closed_at = t.closed_at or now
        s.add(t)
        if outcome == "no_reply":
            sla.cancel(s, ticket_id=ticket_id, at=now)
        else:
            sla.meet(s, ticket_id=ticket_id, at=now)
        return str(t.status)
