"""Escalation as its own process (ESC-NORMAL / ESC-IMPORTANT / ESC-URGENT), spec §2.

Started by ``aftersales.escalation.opened``, queued when a trigger fires (safety risk,
public complaint, amount over the limit, beyond the handler's authority) or a deadline
is breached. Its clocks were armed when it opened, so they never wait for this run.
The person it went to takes the level's steps (declared in ``tasks/escalation.py``):
normal: step in; important: contact the customer with a compensation plan; urgent:
start the emergency plan, then the initial plan.
"""

from __future__ import annotations

from prefect import flow

from aftersales.steps import escalation_steps
from tasks.steps import SopRun


@flow(
    name="escalation",
    flow_run_name="escalation-{ticket_id}-{escalation_id}",
    persist_result=True,
)
def escalation(ticket_id: str, escalation_id: int, level: str) -> str:
    sop = SopRun("escalation", ticket_id, escalation_id=escalation_id)
    if not sop.claim():
        return "duplicate"
    for step in escalation_steps(level):
        sop.ask(step)
    return "acted"
