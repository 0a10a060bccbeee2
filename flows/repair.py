"""Repair dispatch SOP (故障报修), spec §3: REP-1..4.

Started by ``aftersales.repair.requested``: from the inquiry SOP when a ticket is class
B (INQ-2), or from intake with ``sop: repair``. The steps are declared in
``tasks/repair.py``; the clocks each one starts and stops are the policy's.
"""

from __future__ import annotations

from prefect import flow

from tasks.steps import SopRun


@flow(name="repair_dispatch", flow_run_name="repair-{ticket_id}", persist_result=True)
def repair_dispatch(ticket_id: str) -> str:
    sop = SopRun("repair", ticket_id)
    if not sop.claim():
        return "duplicate"
    sop.auto("register")  # REP-1 register, warranty check
    if sop.ask("review").closed:  # REP-1 review within 30 min
        return "rejected"
    if not sop.auto("dispatch").done:  # REP-2 nearest engineer with the skill
        sop.ask("engineer")  # nobody free: dispatch names one
        sop.auto("dispatch", key="dispatch-by-hand")
    sop.ask("arrival")  # REP-2 same city 4 h / other city 24 h
    if sop.ask("diagnosis").paused:  # REP-3 chargeable: the customer decides first
        if sop.ask("customer-decision").closed:
            return "declined"
    sop.ask("confirmation")  # REP-4 tested, signed, archived
    return "completed"
