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
from functools import partial
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext, get_run_context
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, ValidationError

from aftersales import steps, submissions
from aftersales.clock import get_clock
from aftersales.events import send_outbox_events
from aftersales.forms import Form
from aftersales.humansteps import form_problems
from aftersales.privacy import install_log_masking
from aftersales.runtime import deadlines, tag_run
from aftersales.settings import get_settings
from models.db import session_scope
from models.entities import ACTIVE_CLOCK_STATES, Escalation, Sop
from models.repository import (
    claim_escalation_run,
    claim_sop_run,
    clocks_for,
    get_ticket,
    run_owner,
)

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


class RunReplacedError(RuntimeError):
    """This run is not the recorded owner of its ticket's SOP (the run supervisor
    replaced it, or another run claimed first): the step was not applied; the run stops."""


def _retry_unless_replaced(task: Any, task_run: Any, state: Any) -> bool:
    """A replaced run stops at once: retrying cannot make it the owner again."""
    return not isinstance(getattr(state, "data", None), RunReplacedError)


@task(**STEP_TASK)
def claim_run(
    ticket_id: str, sop: str, key: str = "claim", escalation_id: int | None = None
) -> Claim:
    """One flow run per ticket per SOP (per escalation for escalations): the first run
    claims it; a run the supervisor created (pre-claimed) or moved the claim to is the
    recorded owner and goes on; a duplicate run (the same start event delivered twice)
    sees another owner and stops."""
    run_id = current_flow_run_id()
    now = get_clock().now()
    with session_scope() as s:
        t = get_ticket(s, ticket_id=ticket_id)
        if escalation_id is not None:
            esc = s.get(Escalation, escalation_id)
            assert esc is not None, f"escalation {escalation_id} does not exist"
            owner = claim_escalation_run(s, escalation_id=escalation_id, flow_run_id=run_id)
            tags = [f"sop:{sop}", f"level:{esc.level}", f"to:{esc.escalated_to}"]
        else:
            owner = claim_sop_run(
                s, ticket_id=ticket_id, sop=Sop(sop), flow_run_id=run_id, now=now
            ).flow_run_id
            tags = [f"sop:{sop}", f"priority:{t.priority}", f"channel:{t.channel}"]
    if owner == run_id:
        tag_run(run_id, tags)
    return Claim(owner=owner == run_id, owner_run=owner)


@task(
    **STEP_TASK,
    retry_condition_fn=_retry_unless_replaced,
    timeout_seconds=get_settings().step_timeout_seconds,
)
def complete_step(
    sop: str,
    step: str,
    key: str,
    ticket_id: str,
    form: Form | None = None,
    escalation_id: int | None = None,
) -> steps.StepResult:
    """Apply one completed step in one transaction, only if this run is the recorded
    owner of the ticket's SOP (or escalation): the owner row is locked in the same
    transaction, so a run the supervisor replaced can never apply a step
    (:class:`RunReplacedError`). Then tag the run, send the stored events and publish the
    clocks artifact (best effort: the SLA service retries)."""
    run_id = current_flow_run_id()
    now = get_clock().now()
    with session_scope() as s:
        owner = run_owner(s, ticket_id=ticket_id, sop=sop, escalation_id=escalation_id)
        if owner != run_id:
            raise RunReplacedError(
                f"run {run_id} does not own {sop} of {ticket_id}"
                + (f" (escalation {escalation_id})" if escalation_id else "")
                + f"; the owner is {owner or 'nobody'}: step {key} not applied, the run stops"
            )
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
            send_outbox_events(now=now, ticket_ids=[ticket_id])
        except Exception as exc:  # noqa: BLE001 - the SLA service sends them later
            get_run_logger().warning("events of %s left for the SLA service: %s", ticket_id, exc)
        publish_clocks(ticket_id)
    return result


def _same_form(form: type[BaseModel], stored: dict[str, Any], got: dict[str, Any]) -> bool:
    """Is the stored submission's body the form the run was resumed with?"""
    try:
        return form.model_validate(stored).model_dump(mode="json") == got
    except ValidationError:
        return False


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
        inst = self.escalation_id or 0
        where = {"ticket_id": self.ticket_id, "sop": self.sop, "step": step, "step_key": base,
                 "instance": inst}  # fmt: skip
        # a replacement run (a new flow run re-running the body after a crash) skips a
        # step round already recorded, with the form and outcome it was completed with
        done = submissions.recorded(**where)
        if done is not None:
            return steps.StepResult(
                self.sop, step, done.key, self.ticket_id, done=True, at=done.at,
                form=spec.form.model_validate(done.data) if done.data is not None else None,
                already=True, closed=done.closed, paused=done.paused,
                handed_over=done.handed_over, value=done.value,
            )  # fmt: skip
        while True:
            key = base if attempt == 1 else f"{base}-{attempt}"
            # a submission stored while nobody waited (issue 11 §2) is used without suspending
            taken = submissions.take(**where, now=get_clock().now())
            if taken is not None:
                try:
                    form = spec.form.model_validate(taken.data)
                except ValidationError as exc:  # the form changed since it was stored
                    refusal = "; ".join(f"{p.field}: {p.rule}" for p in form_problems(exc))
                    self._settle(taken, where, key, taken.data, None, refusal)
                    reason, attempt = refusal, attempt + 1
                    continue
            else:
                described = form_input.with_initial_data(
                    description=describe(self.sop, spec, self.ticket_id, reason)
                )
                got = suspend_flow_run(wait_for_input=described, key=key, timeout=None)
                form = spec.form.model_validate(got.model_dump(include=set(spec.form.model_fields)))
                data = form.model_dump(mode="json")
                taken = submissions.claim_resumed(
                    **where, same=partial(_same_form, spec.form, got=data)
                )
            result = complete_step.with_options(name=f"{self.sop}.{step}")(
                self.sop, step, key, self.ticket_id, form, self.escalation_id
            )
            self._settle(taken, where, key, form.model_dump(mode="json"), result, result.reason)
            if result.done:
                return result
            get_run_logger().warning("%s %s refused: %s", self.ticket_id, key, result.reason)
            reason, attempt = result.reason, attempt + 1

    def _settle(
        self,
        taken: submissions.Taken | None,
        where: dict[str, Any],
        key: str,
        data: dict[str, Any],
        result: steps.StepResult | None,
        reason: str,
    ) -> None:
        done = result is not None and result.done
        outcome = (
            {"closed": result.closed, "handed_over": result.handed_over, "value": result.value}
            if result is not None
            else {}
        )
        submissions.settle(
            taken, **where, key=key, data=data if taken is None else taken.data, done=done,
            reason=reason, outcome=outcome, flow_run_id=current_flow_run_id(),
            now=get_clock().now(),
        )  # fmt: skip

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
