"""Inquiry SOP (咨询响应), spec §1: INQ-1..4, INQ-CH-PHONE/ONLINE/EMAIL/SOCIAL, INQ-SYNC, INQ-OWNER.

Trigger: the event ``aftersales.inquiry.received`` (emitted by ``aftersales intake``
or ``POST /intake`` after the ticket and its first-response clocks are stored).
Before: intake armed INQ-CH-<channel>:response, PRI-*:response, ESC-NORMAL, INQ-SYNC.
After: class B hands the same ticket to the repair dispatch SOP (flows/repair.py)
through the event ``aftersales.repair.requested``; other classes close here after
INQ-4 feedback. Human steps suspend the run (no process held) until resumed with
their form from the Prefect UI, ``aftersales resume`` or ``POST /tickets/{id}/steps/{step}``.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run

from aftersales.intake import resolution_rules
from flows.forms import Answer, Feedback, FirstResponse, Solved
from tasks.common import arm_clocks, claim_ticket_run, publish_clocks
from tasks.inquiry import (
    answer_inquiry,
    receive_inquiry,
    record_feedback,
    record_first_response,
    record_solution,
    start_repair_dispatch,
)


def wait_for(form: type, step: str):  # noqa: ANN201 - returns the form instance
    """Suspend until a person submits ``form``; the run holds no process meanwhile."""
    return suspend_flow_run(wait_for_input=form, key=step, timeout=None)


@flow(name="inquiry", flow_run_name="inquiry-{ticket_id}", persist_result=True, log_prints=True)
def inquiry(ticket_id: str) -> str:
    log = get_run_logger()
    claim = claim_ticket_run(ticket_id, "inquiry")
    if not claim["owner"]:
        log.warning("ticket %s already has inquiry run %s; stopping", ticket_id, claim["owner_run"])
        return "duplicate"

    # INQ-1 Receive (+ INQ-OWNER, INQ-SYNC)
    received = receive_inquiry(ticket_id)
    publish_clocks(ticket_id)

    # INQ-1 first response + INQ-2 Classify
    first: FirstResponse = wait_for(FirstResponse, "first-response")
    klass = record_first_response(ticket_id, first.agent, first.category, first.priority)

    if klass["category"] == "B":
        # INQ-3 class B: repair request to dispatch, repair dispatch SOP starts by event
        arm_clocks(ticket_id, resolution_rules(klass["channel"], klass["priority"]), "classified")
        start_repair_dispatch(ticket_id)
        publish_clocks(ticket_id)
        return "handed-to-repair"

    rules = [*resolution_rules(klass["channel"], klass["priority"]), "INQ-3"]
    if received["channel"] == "phone" and first.complex_issue:
        rules += ["INQ-CH-PHONE:callback", "INQ-CH-PHONE:progress"]
    arm_clocks(ticket_id, rules, "classified")
    publish_clocks(ticket_id)

    # INQ-3 Answer (or escalate to tech support within 1 h)
    answer: Answer = wait_for(Answer, "answer")
    answer_inquiry(ticket_id, answer.answered_from_knowledge_base, answer.answer)

    solved: Solved = wait_for(Solved, "solved")
    record_solution(ticket_id, solved.resolution, solved.root_cause)
    publish_clocks(ticket_id)

    # INQ-4 Feedback & close (email: follow-ups every 48 h, closed after 3 days without reply)
    feedback: Feedback = wait_for(Feedback, "feedback")
    status = record_feedback(ticket_id, feedback.outcome, feedback.satisfaction)
    publish_clocks(ticket_id)
    return status
