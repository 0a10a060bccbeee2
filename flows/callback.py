"""Callback SOP (客户回访), spec §5: CB-1..3.

``callback`` (one run per ticket, ``callback-<ticket>``) starts when a repair is
completed (REP-4 hands the ticket over) or when the monthly plan lists a VIP customer:
a phone call (a customer not reached is asked again on the next working day, up to the
profile's attempts, then recorded unreachable), or an online survey link; a VIP also
gets a second call within 7 days. A low score opens a complaint linked to the ticket.

``callback_plan`` (CB-1, cron on the 1st, Asia/Shanghai) builds the month's plan:
customers whose repair completed in the month and the VIP customers, one per customer,
publishes it as a table artifact and starts the callback runs not started yet. The
``callback`` deployment has a concurrency limit (``AFTERSALES_CALLBACK_CONCURRENCY``),
so a month of completions never starts thousands of processes at once. Running the
plan twice for a month starts nothing new.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from aftersales.clock import get_clock
from tasks.steps import SopRun


@task(cache_policy=NO_CACHE)
def open_clock_for(ticket_id: str, ref: str) -> bool:
    """Does a running clock of the ticket wait for the step ``ref`` (CB-2:vip-second)?"""
    from aftersales.runtime import deadlines
    from models.db import session_scope
    from models.entities import ACTIVE_CLOCK_STATES
    from models.repository import clocks_for

    rules = {r.id for r in deadlines().profile.stopped_by(ref)}
    with session_scope() as s:
        return any(
            c.rule_id in rules and c.state in ACTIVE_CLOCK_STATES
            for c in clocks_for(s, ticket_id=ticket_id)
        )


@flow(name="callback", flow_run_name="callback-{ticket_id}", persist_result=True)
def callback(ticket_id: str) -> str:
    sop = SopRun("callback", ticket_id)
    if not sop.claim():
        return "duplicate"
    method = sop.auto("schedule").value  # CB-1: phone, or an online survey
    if method == "online":
        sop.auto("send-survey")
        sop.ask("survey")  # CB-3 through POST /surveys/{token}
    else:
        sop.ask("call")  # CB-2 within 3 working days; CB-3 survey
    if open_clock_for(ticket_id, "callback.second-call"):
        sop.ask("second-call")  # CB-2: a VIP's second call within 7 days
    return "recorded"


@task(cache_policy=NO_CACHE)
def build_plan(month: str) -> list[dict[str, str]]:
    from aftersales.callback_plan import plan_month
    from aftersales.events import send_outbox_events
    from aftersales.runtime import deadlines
    from models.db import init_db, session_scope

    init_db()
    now = get_clock().now()
    with session_scope() as s:
        rows = plan_month(s, month=month, deadlines=deadlines(), now=now)
    try:
        send_outbox_events(now=now)
    except Exception:  # noqa: BLE001 - the SLA service sends them
        pass
    return [r.as_row() for r in rows]


@flow(name="callback_plan", flow_run_name="callback-plan-{month}", persist_result=True)
def callback_plan(month: str | None = None) -> list[dict[str, str]]:
    from aftersales.report_model import previous_month
    from aftersales.runtime import deadlines

    month = month or previous_month(get_clock().now(), deadlines().calendar.tz.key)
    rows = build_plan(month)
    create_table_artifact(
        key=f"callback-plan-{month}",
        table=rows or [{"customer": "-", "state": "nobody to call back"}],
        description=f"CB-1 callback plan for {month}: repairs completed and VIP customers",
    )
    return rows
