"""Tasks shared by every SOP flow: claiming the run, clocks, notifications, the clocks artifact.

Every task is idempotent against the database (re-running it changes nothing)
and cached per flow run and ticket, because a suspended flow re-runs its body
when a person resumes it.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext, get_run_context

from aftersales import sla
from aftersales.clock import get_clock
from aftersales.privacy import install_log_masking
from aftersales.runtime import clock_context
from models.db import session_scope
from models.entities import Sop
from models.repository import claim_sop_run, clocks_for, get_ticket

# PRIV-1: every log record of these loggers (flow and task run logs shipped to the
# Prefect UI included) is masked when it is created.
install_log_masking(("aftersales", "prefect"))


def current_flow_run_id() -> str:
    ctx = get_run_context()
    fr = getattr(ctx, "flow_run", None) or getattr(getattr(ctx, "task_run", None), "flow_run", None)
    if fr is None:
        from prefect.runtime import flow_run

        return str(flow_run.id)
    return str(fr.id)


def step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Stable per (flow run, task, ticket, step): a resumed run does not redo finished steps."""
    from prefect.runtime import flow_run

    return ":".join(
        [
            str(flow_run.id),
            context.task.name,
            str(parameters.get("ticket_id", "")),
            str(parameters.get("step", "")),
        ]
    )


STEP = {
    "cache_key_fn": step_cache_key,
    "persist_result": True,
    "retries": 2,
    "retry_delay_seconds": 2,
}


@task(**STEP)
def claim_ticket_run(ticket_id: str, sop: str) -> dict[str, Any]:
    """One flow run per ticket per SOP: the first run claims the ticket; a duplicate run
    (the same intake delivered twice) sees another owner and stops."""
    run_id = current_flow_run_id()
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        claim = claim_sop_run(s, ticket_id=ticket_id, sop=Sop(sop), flow_run_id=run_id, now=now)
        owner = claim.flow_run_id
        tags = [f"sop:{sop}", f"priority:{t.priority}", f"channel:{t.channel}"]
    tag_run(run_id, tags)
    return {"owner": owner == run_id, "owner_run": owner}


def tag_run(run_id: str, tags: list[str]) -> None:
    """Set the run's ``sop:``/``priority:``/``channel:`` tags (a new value replaces the old)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    prefixes = {t.split(":", 1)[0] + ":" for t in tags}
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(UUID(run_id))
        kept = [t for t in fr.tags or [] if not any(t.startswith(p) for p in prefixes)]
        client.update_flow_run(UUID(run_id), tags=sorted({*kept, *tags}))


@task(**STEP)
def arm_clocks(ticket_id: str, rules: list[str], step: str, attach_run: bool = False) -> list[str]:
    """Arm the deadlines of ``rules`` from now (each cites its clause in the policy)."""
    ctx = clock_context()
    now = get_clock().now()
    run_id = current_flow_run_id() if attach_run else None
    with session_scope() as s:
        for rule_id in rules:
            sla.arm(s, ctx=ctx, ticket_id=ticket_id, rule_id=rule_id, start=now, flow_run_id=run_id)
    get_run_logger().info("armed %s for %s", ", ".join(rules), ticket_id)
    return rules


@task(cache_policy=NO_CACHE)
def publish_clocks(ticket_id: str) -> None:
    """The ticket's clocks as a table artifact in the Prefect UI (rule, clause, due, state)."""
    tz = clock_context().calendar.tz
    with session_scope() as s:
        rows = [
            {
                "rule": c.rule_id,
                "clause": c.clause,
                "state": str(c.state),
                "started": c.started_at.astimezone(tz).isoformat(timespec="seconds"),
                "due": c.due_at.astimezone(tz).isoformat(timespec="seconds") if c.due_at else "",
                "met": c.met_at.astimezone(tz).isoformat(timespec="seconds") if c.met_at else "",
                "breached": c.breached_at.astimezone(tz).isoformat(timespec="seconds")
                if c.breached_at
                else "",
            }
            for c in clocks_for(s, ticket_id=ticket_id)
        ]
    create_table_artifact(
        key=f"clocks-{ticket_id.lower()}",
        table=rows,
        description=f"SLA clocks of ticket {ticket_id}",
    )
