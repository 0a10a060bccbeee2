"""Complaint investigation SOP (投诉处理), spec §4: CMP-1..4.

Started by ``aftersales.complaint.received``: an intake with ``sop: complaint`` from any
channel, or a public social-media complaint (INQ-CH-SOCIAL). The steps are declared in
``tasks/complaint.py``; the clocks each one starts and stops are the policy's. A safety
or public complaint opened ESC-URGENT at intake; an amount over the limit or the
customer's second complaint opens ESC-IMPORTANT at the record (CMP-1).
"""

from __future__ import annotations

from prefect import flow

from tasks.steps import SopRun


@flow(name="complaint", flow_run_name="complaint-{ticket_id}", persist_result=True)
def complaint(ticket_id: str) -> str:
    sop = SopRun("complaint", ticket_id)
    if not sop.claim():
        return "duplicate"
    sop.ask("accept")  # CMP-1 record (表4) within 10 min
    r, note = 1, ""
    while True:
        investigation = sop.ask("investigate", round=r)  # CMP-2 within 1 h
        if investigation.form.cross_department:
            sop.ask("verify", round=r)  # CMP-2 verified together within 2 working days
        while True:
            sop.ask("resolve", round=r, note=note)  # CMP-3 the solution …
            decision = sop.ask("approve", round=r)  # … approved by the supervisor
            if decision.form.approved:
                break
            r, note = r + 1, f"rejected by {decision.form.supervisor}: {decision.form.reason}"
        sop.ask("inform", round=r)  # CMP-3 result to the customer within 1 working day
        if sop.ask("close", round=r).form.outcome == "accepted":  # CMP-4
            return "closed"
        r, note = r + 1, "the customer reopened the complaint"
