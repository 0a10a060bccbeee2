"""Resuming a waiting SOP run with a human step's form, from the CLI or the API
(the Prefect UI's Resume button does the same through Prefect itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlmodel import select

from aftersales.steps import StepError, base_step, catalogue
from models.db import session_scope
from models.entities import Escalation, SopRun
from models.repository import get_ticket


@dataclass(frozen=True)
class Waiting:
    """A run of the ticket that waits for a person's step."""

    sop: str
    step_key: str
    flow_run_id: str
    escalation_id: int | None = None


def _runs_of(ticket_id: str) -> list[tuple[str, str, int | None]]:
    """(sop, flow run id, escalation id) of every run of the ticket."""
    with session_scope() as s:
        get_ticket(s, ticket_id=ticket_id)
        runs: list[tuple[str, str, int | None]] = [
            (str(r.sop), r.flow_run_id, None)
            for r in s.exec(select(SopRun).where(SopRun.ticket_id == ticket_id)).all()
        ]
        runs += [
            ("escalation", e.flow_run_id, e.id)
            for e in s.exec(select(Escalation).where(Escalation.ticket_id == ticket_id)).all()
            if e.flow_run_id
        ]
    return runs


def waiting(ticket_id: str) -> list[Waiting]:
    """The ticket's runs that wait for a person, with the step each waits for."""
    from prefect.client.orchestration import get_client

    out = []
    with get_client(sync_client=True) as client:
        for sop, run_id, esc in _runs_of(ticket_id):
            fr = client.read_flow_run(UUID(run_id))
            if fr.state and fr.state.is_paused():
                out.append(Waiting(sop, fr.state.state_details.pause_key or "?", run_id, esc))
    return out


def resume_step(ticket_id: str, step: str, data: dict[str, Any]) -> str:
    """Validate ``data`` against the declared form of the step the ticket's run waits
    for, then resume that run. Nothing is resumed when the form is invalid."""
    from prefect.flow_runs import resume_flow_run

    candidates = [w for w in waiting(ticket_id) if w.step_key == step]
    if not candidates:
        now_waiting = [f"{w.sop}.{w.step_key}" for w in waiting(ticket_id)]
        if now_waiting:
            raise StepError(
                f"step: no run of {ticket_id} waits for {step!r}; the run waits for step "
                + ", ".join(repr(w.split(".", 1)[1]) for w in now_waiting)
                + f" ({', '.join(now_waiting)})"
            )
        raise StepError(f"step {step}: ticket {ticket_id} is not waiting for a person")
    w = candidates[0]
    form = catalogue()[w.sop].step(base_step(step)).form
    assert form is not None
    try:
        form.model_validate(data)
    except ValidationError as exc:
        raise StepError(
            "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(form)'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    _check_waiting_for(w.flow_run_id, step)
    try:
        resume_flow_run(UUID(w.flow_run_id), run_input=data)
    except Exception as exc:
        raise StepError(
            f"ticket {ticket_id}: run {w.flow_run_id} could not be resumed: {exc}"
        ) from exc
    return w.flow_run_id


def _check_waiting_for(run_id: str, step: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(UUID(run_id))
    state = fr.state
    if state is None or not state.is_paused():
        raise StepError(
            f"step {step}: run {run_id} is not waiting for a person (state {state.name if state else '-'})"
        )
    pause_key = state.state_details.pause_key
    if pause_key and pause_key != step:
        raise StepError(f"step: the run waits for step {pause_key!r}, not {step!r}")
    _wait_for_form_schema(run_id, state, step)


def _wait_for_form_schema(run_id: str, state: Any, step: str, timeout: float = 15.0) -> None:
    """Prefect marks a run Suspended before it stores the form's schema; a resume in
    between is refused ("Run input schema not found"). Wait until the schema is there."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    keyset = state.state_details.run_input_keyset or {}
    schema_key = keyset.get("schema")
    if not schema_key:
        return
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_flow_run_input(UUID(run_id), schema_key)
                return
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", 404)
                if status != 404:
                    raise
                if time.monotonic() > deadline:
                    raise StepError(
                        f"step {step}: run {run_id} has not published its form yet; try again"
                    ) from None
                time.sleep(0.2)


def waiting_step(ticket_id: str) -> list[tuple[str, str]]:
    """(sop, step) pairs the ticket's runs are waiting for."""
    return [(w.sop, w.step_key) for w in waiting(ticket_id)]
