"""The step runtime the SOP flows call: claim the run, ask a person for a step's form,
complete automatic steps. Completing a step is one Prefect task (one transaction,
:func:`aftersales.steps.complete`), cached per flow run and step key, because a
suspended run re-runs its body when a person resumes it: finished steps return their
result without being applied again.

A run waits on a person by ``suspend_flow_run`` (no process held), with the form as a
``RunInput`` whose description says what is asked, by whom, and by when. A submission
that the step refuses (a wrong engineer id, an unsigned confirmation) never fails the
run: the same step is asked again, with the reason above the form.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext, get_run_context
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

from aftersales import steps
from aftersales.clock import get_clock
from aftersales.forms import Form
from aftersales.privacy import install_log_masking
from aftersales.runtime import deadlines, send_outbox_events, tag_run
from aftersales.settings import get_settings
from models.db import session_scope
from models.entities import ACTIVE_CLOCK_STATES, Escalation, Sop
from models.repository import claim_sop_run, clocks_for, get_ticket

# PRIV-1: every log record of these loggers (flow and task run logs shipped to the
# Prefect UI included) is masked when it is created.
install_log_masking(("aftersales", "prefect"))
# the project's records (INQ-1 …) reach the run logs: PREFECT_LOGGING_EXTRA_LOGGERS=aftersales
logging.getLogger("aftersales").setLevel(logging.INFO)
log = logging.getLogger("aftersales.steps")


def current_flow_run_id() -> str:
    ctx = get_run_context()
    fr = getattr(ctx, "flow_run", None) or getattr(getattr(ctx, "task_run", None), "flow_run", None)
    if fr is None:
        from prefect.runtime import flow_run

        return str(flow_run.id)
    return str(fr.id)


def step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Stable per (flow run, task, ticket, step key, escalation): a resumed run does not
    redo finished steps."""
    from prefect.runtime import flow_run

    return ":".join(
        str(x)
        for x in (
            flow_run.id,
            context.task.name,
            parameters.get("ticket_id", ""),
            parameters.get("key", ""),
            parameters.get("escalation_id", ""),
        )
    )


STEP_TASK = {
    "cache_key_fn": step_cache_key,
    "persist_result": True,
    "retries": 2,
    "retry_delay_seconds": 2,
}


@dataclass(frozen=True)
class Claim:
    owner: bool
    owner_run: str


@task(**STEP_TASK)
def claim_run(
    ticket_id: str, sop: str, key: str = "claim", escalation_id: int | None = None
) -> Claim:
    """One flow run per ticket per SOP (per escalation for escalations): the first run
    claims it; a duplicate run (the same start event delivered twice) sees another
    owner and stops."""
    run_id = current_flow_run_id()
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        if escalation_id is not None:
            esc = s.get(Escalation, escalation_id)
            assert esc is not None, f"escalation {escalation_id} does not exist"
            esc.flow_run_id = esc.flow_run_id or run_id
            s.add(esc)
            owner = esc.flow_run_id
            tags = [f"sop:{sop}", f"level:{esc.level}", f"to:{esc.escalated_to}"]
        else:
            owner = claim_sop_run(
                s, ticket_id=ticket_id, sop=Sop(sop), flow_run_id=run_id, now=now
            ).flow_run_id
            tags = [f"sop:{sop}", f"priority:{t.priority}", f"channel:{t.channel}"]
    if owner == run_id:
        tag_run(run_id, tags)
    return Claim(owner=owner == run_id, owner_run=owner)


@task(**STEP_TASK, timeout_seconds=get_settings().step_timeout_seconds)
def complete_step(
    sop: str,
    step: str,
    key: str,
    ticket_id: str,
    form: Form | None = None,
    escalation_id: int | None = None,
) -> steps.StepResult:
    """Apply one completed step in one transaction; then tag the run, send the stored
    events and publish the clocks artifact (best effort: the SLA service retries)."""
    run_id = current_flow_run_id()
    now = get_clock().now()
    with session_scope() as s:
        result = steps.complete(
            s,
            deadlines=deadlines(),
            sop=sop,
            step=step,
            key=key,
            ticket_id=ticket_id,
            form=form,
            now=now,
            escalation_id=escalation_id,
            flow_run_id=run_id,
        )
        priority = str(get_ticket(s, ticket_id=ticket_id).priority)
    if result.done and not result.already:
        try:
            if sop != "escalation":
                tag_run(run_id, [f"priority:{priority}"])
            send_outbox_events(now=now, ticket_id=ticket_id)
        except Exception as exc:  # noqa: BLE001 - the SLA service sends them later
            get_run_logger().warning("events of %s left for the SLA service: %s", ticket_id, exc)
        publish_clocks(ticket_id)
    return result


def describe(sop: str, step: steps.Step, ticket_id: str, reason: str = "") -> str:
    """The markdown above the Resume form: ticket, step, what is asked, who, by when,
    and the valid choices the data gives (the assigned engineer, the engineers to pick)."""
    from aftersales.tickets import choices

    tz = deadlines().calendar.tz
    ref = steps.ref_of(sop, step.id)
    stops = {r.id for r in deadlines().profile.stopped_by(ref)}
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        dues = [
            f"{c.rule_id} due {c.due_at.astimezone(tz).isoformat(timespec='minutes')}"
            for c in clocks_for(s, ticket_id=ticket_id)
            if c.rule_id in stops and c.state in ACTIVE_CLOCK_STATES and c.due_at
        ]
        head = f"**Ticket {t.id}** ({t.channel}, {t.priority}) · step **{ref}**"
        picks = choices(s, sop=sop, step=step.id, ticket_id=ticket_id)
    lines = [head, "", step.summary, "", f"Who: {step.role}."]
    lines.append("Deadline: " + ("; ".join(dues) if dues else "no clock on this step") + ".")
    if picks:
        lines += ["", "Valid choices:"]
        lines += [f"- `{c.field}` = `{c.value}`: {c.label}" for c in picks]
    if reason:
        lines += ["", f"**The last submission was refused:** {reason}"]
    return "\n".join(lines)


class SopRun:
    """A flow's handle on its ticket: ``auto`` completes an automatic step, ``ask``
    waits for a person's form and completes the step with it."""

    def __init__(self, sop: str, ticket_id: str, escalation_id: int | None = None) -> None:
        self.sop = sop
        self.ticket_id = ticket_id
        self.escalation_id = escalation_id
        self.spec = steps.catalogue()[sop]

    def claim(self) -> bool:
        claim = claim_run(self.ticket_id, self.sop, escalation_id=self.escalation_id)
        if not claim.owner:
            get_run_logger().warning(
                "ticket %s already has %s run %s; stopping",
                self.ticket_id,
                self.sop,
                claim.owner_run,
            )
        return claim.owner

    def auto(self, step: str, key: str | None = None) -> steps.StepResult:
        return complete_step.with_options(name=f"{self.sop}.{step}")(
            self.sop, step, key or step, self.ticket_id, None, self.escalation_id
        )

    def ask(self, step: str, *, round: int = 1, note: str = "") -> steps.StepResult:
        """Suspend until the step's form comes; a refused submission asks again (keys
        ``step``, ``step-2``, …) with the reason. The run never fails on a person's input.
        A step taken again in a later round of a loop (a rejected solution) is keyed
        ``step-r2``, ``step-r3`` … (Prefect input keys take no dots); ``note`` says why above the form."""
        spec = self.spec.step(step)
        assert spec.form is not None, f"{step} is automatic"
        form_input = RunInput.subclass_from_base_model_type(spec.form)
        reason, attempt = note, 1
        base = step if round == 1 else f"{step}-r{round}"
        while True:
            key = base if attempt == 1 else f"{base}-{attempt}"
            described = form_input.with_initial_data(
                description=describe(self.sop, spec, self.ticket_id, reason)
            )
            got = suspend_flow_run(wait_for_input=described, key=key, timeout=None)
            form = spec.form.model_validate(got.model_dump(include=set(spec.form.model_fields)))
            result = complete_step.with_options(name=f"{self.sop}.{step}")(
                self.sop, step, key, self.ticket_id, form, self.escalation_id
            )
            if result.done:
                return result
            get_run_logger().warning("%s %s refused: %s", self.ticket_id, key, result.reason)
            reason, attempt = result.reason, attempt + 1

    def armed_for(self, step: str, result: steps.StepResult) -> bool:
        """Did ``result``'s step arm a clock that ``step`` stops (the step is due)?"""
        stops = {r.id for r in deadlines().profile.stopped_by(steps.ref_of(self.sop, step))}
        return bool(stops & set(result.armed))


@task(cache_policy=NO_CACHE, timeout_seconds=get_settings().prefect_call_timeout_seconds * 3)
def publish_clocks(ticket_id: str) -> None:
    """The ticket's clocks as a table artifact in the Prefect UI (rule, state, due, owner)."""
    tz = deadlines().calendar.tz

    def fmt(t: Any) -> str:
        return t.astimezone(tz).isoformat(timespec="seconds") if t else ""

    with session_scope() as s:
        rows = [
            {
                "rule": c.rule_id,
                "clause": c.clause,
                "state": str(c.state),
                "escalation": c.instance or "",
                "started": fmt(c.started_at),
                "due": fmt(c.due_at),
                "met": fmt(c.met_at),
                "breached": fmt(c.breached_at),
            }
            for c in clocks_for(s, ticket_id=ticket_id)
        ]
    create_table_artifact(
        key=f"clocks-{ticket_id.lower()}",
        table=rows,
        description=f"SLA clocks of ticket {ticket_id}",
    )
