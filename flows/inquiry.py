"""Inquiry SOP (咨询响应), spec §1: INQ-1..4, INQ-CH-PHONE/ONLINE/EMAIL/SOCIAL, INQ-OWNER.

Started by ``aftersales.inquiry.received`` (queued at intake with the ticket and its
first clocks). The steps are declared in ``tasks/inquiry.py``; the clocks each one
starts and stops are the policy's. Class B hands the same ticket to repair dispatch
(``flows/repair.py``). A person's step suspends the run (no process held) until its
form comes from the Prefect UI, ``aftersales resume`` or ``POST /tickets/{id}/steps/{step}``.
"""

from __future__ import annotations

from prefect import flow

from tasks.steps import SopRun


@flow(name="inquiry", flow_run_name="inquiry-{ticket_id}", persist_result=True, log_prints=True)
def inquiry(ticket_id: str) -> str:
    sop = SopRun("inquiry", ticket_id)
    if not sop.claim():
        return "duplicate"
    sop.auto("receive")  # INQ-1 record, INQ-OWNER
    first = sop.ask("first-response")  # INQ-1 first response, INQ-2 classify
    if first.handed_over:  # INQ-2/INQ-3 class B: repair dispatch takes the ticket
        return "handed-to-repair"
    if sop.armed_for("callback", first):  # INQ-CH-PHONE complex issue: callback within 1 h
        sop.ask("callback")
    sop.ask("answer")  # INQ-3: knowledge base, or tech support within 1 h
    sop.ask("solved")
    sop.ask("report")  # INQ-4: result reported, satisfaction asked, within 2 h
    sop.ask("feedback")  # INQ-4 rating; by email the clock answers after 3 days
    return "closed"
