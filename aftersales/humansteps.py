"""Resuming a waiting SOP run with a human step's form, from the CLI or the API
(the Prefect UI's Resume button does the same through Prefect itself)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError

from models.db import session_scope
from models.entities import Sop
from models.repository import get_sop_run, get_ticket

STEP_SOP = {
    "first-response": Sop.INQUIRY,
    "answer": Sop.INQUIRY,
    "solved": Sop.INQUIRY,
    "feedback": Sop.INQUIRY,
    "review": Sop.REPAIR,
    "engineer": Sop.REPAIR,
    "arrival": Sop.REPAIR,
    "diagnosis": Sop.REPAIR,
    "customer-decision": Sop.REPAIR,
    "confirmation": Sop.REPAIR,
}


class StepError(ValueError):
    """A resume that cannot be done; the message names the field or the state."""


def resume_step(ticket_id: str, step: str, data: dict[str, Any]) -> str:
    """Validate ``data`` against the step's form and resume the ticket's waiting run."""
    from prefect.flow_runs import resume_flow_run

    from flows.forms import FORMS

    form = FORMS.get(step.split("-")[0] if step.startswith("confirmation-") else step)
    if form is None:
        raise StepError(f"step: unknown step {step!r}; known: {', '.join(FORMS)}")
    try:
        form.model_validate(data)
    except ValidationError as exc:
        raise StepError(
            "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(form)'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    base_step = "confirmation" if step.startswith("confirmation") else step
    with session_scope() as s:
        get_ticket(s, ticket_id=ticket_id)
        run = get_sop_run(s, ticket_id=ticket_id, sop=STEP_SOP[base_step])
        if run is None:
            raise StepError(f"ticket {ticket_id}: no {STEP_SOP[base_step]} run yet")
        run_id = run.flow_run_id
    _check_waiting_for(run_id, step)
    try:
        resume_flow_run(UUID(run_id), run_input=data)
    except Exception as exc:
        raise StepError(f"ticket {ticket_id}: run {run_id} could not be resumed: {exc}") from exc
    return run_id


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
    from prefect.client.orchestration import get_client

    out: list[tuple[str, str]] = []
    with session_scope() as s:
        runs = [get_sop_run(s, ticket_id=ticket_id, sop=sop) for sop in (Sop.INQUIRY, Sop.REPAIR)]
    with get_client(sync_client=True) as client:
        for r in runs:
            if r is None:
                continue
            fr = client.read_flow_run(UUID(r.flow_run_id))
            if fr.state and fr.state.is_paused():
                out.append((str(r.sop), fr.state.state_details.pause_key or "?"))
    return out
