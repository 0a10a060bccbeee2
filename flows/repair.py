"""Repair dispatch SOP (故障报修), spec §3: REP-1..4.

Trigger: the event ``aftersales.repair.requested`` — from the inquiry SOP when a
ticket is class B (INQ-2), or from intake with ``sop: repair``.
Before: the REP-1 30-min review clock is already running (armed at the request).
After: completion arms the callback clocks (CB-2) for the callback plan SOP.
Human steps suspend the run (no process held) until resumed with their form.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run

from flows.forms import Arrival, Confirmation, CustomerDecision, Diagnosis, EngineerChoice, Review
from tasks.common import claim_ticket_run, publish_clocks
from tasks.repair import (
    archive_repair,
    dispatch_engineer,
    record_arrival,
    record_customer_decision,
    record_diagnosis,
    record_review,
    register_repair,
)


def wait_for(form: type, step: str):  # noqa: ANN201
    return suspend_flow_run(wait_for_input=form, key=step, timeout=None)


@flow(name="repair_dispatch", flow_run_name="repair-{ticket_id}", persist_result=True)
def repair_dispatch(ticket_id: str) -> str:
    log = get_run_logger()
    claim = claim_ticket_run(ticket_id, "repair")
    if not claim["owner"]:
        log.warning("ticket %s already has repair run %s; stopping", ticket_id, claim["owner_run"])
        return "duplicate"

    # REP-1 Register: review within 30 min, warranty check
    register_repair(ticket_id)
    publish_clocks(ticket_id)
    review: Review = wait_for(Review, "review")
    if not record_review(ticket_id, review.reviewer, review.approved, review.skill):
        publish_clocks(ticket_id)
        return "rejected"

    # REP-2 Dispatch: nearest engineer with the right skill, same city 4 h / other city 24 h
    order = dispatch_engineer(ticket_id)
    if order["engineer_id"] is None:
        choice: EngineerChoice = wait_for(EngineerChoice, "engineer")
        order = dispatch_engineer.with_options(name="dispatch_engineer_by_hand")(
            ticket_id, choice.engineer_id
        )
    publish_clocks(ticket_id)
    arrival: Arrival = wait_for(Arrival, "arrival")
    record_arrival(ticket_id, arrival.engineer_id)

    # REP-3 Repair: on site, or depot with progress every 2 working days; consent first
    diagnosis: Diagnosis = wait_for(Diagnosis, "diagnosis")
    plan = record_diagnosis(
        ticket_id,
        diagnosis.cause,
        diagnosis.mode,
        diagnosis.charge,
        diagnosis.cost_cny,
        diagnosis.customer_agreed,
    )
    publish_clocks(ticket_id)
    if plan["wait_for_customer"]:
        decision: CustomerDecision = wait_for(CustomerDecision, "customer-decision")
        if not record_customer_decision(ticket_id, decision.agreed):
            publish_clocks(ticket_id)
            return "declined"

    # REP-4 Confirm & archive (starts CB-2)
    attempt = 1
    confirmation: Confirmation = wait_for(Confirmation, "confirmation")
    while not (confirmation.test_passed and confirmation.customer_signed):
        log.warning(
            "REP-4: test passed=%s, signed=%s; waiting for a new confirmation",
            confirmation.test_passed,
            confirmation.customer_signed,
        )
        attempt += 1
        confirmation = wait_for(Confirmation, f"confirmation-{attempt}")
    status = archive_repair(
        ticket_id,
        confirmation.test_passed,
        confirmation.customer_signed,
        confirmation.signer,
        confirmation.device_status,
        confirmation.test_report,
    )
    publish_clocks(ticket_id)
    return status
