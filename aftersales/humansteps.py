"""Resuming a waiting SOP run with a human step's form, from the CLI or the API
(the Prefect UI's Resume button does the same through Prefect itself).

Everything that can be judged before the run is touched is judged here, so a bad
value never reaches the run: the step the run waits for (a person may name the step,
``arrival``, or the attempt, ``arrival-2``), the form (the step's declared pydantic
form), and the values that depend on the ticket's state (the step's declared
``check``: is this the assigned engineer, is the repair signed …), read in a
transaction that is rolled back. A refusal raises :class:`ResumeRefused` naming each
field and its rule; the run stays Suspended. The same ``check`` runs again inside the
run (``aftersales.steps.complete``), which answers a submission from the Prefect UI
by asking the step again with the reason.

Prefect is reached over its REST API (:mod:`aftersales.prefect_rest`), not the Prefect
client, so a cold ``aftersales resume`` does not pay Prefect's import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from aftersales.steps import Refusal, StepContext, StepError, base_step, catalogue
from models.db import get_engine, session_scope
from models.entities import Escalation, SopRun, StepRecord
from models.repository import get_ticket


class ResumeRefused(StepError):
    """A resume refused before the run was touched: each problem names the field and
    the rule; ``status``/``code`` are the HTTP answer (409 not waiting, 422 a bad value,
    503 Prefect unreachable)."""

    def __init__(self, problems: list[Refusal], *, status: int, code: str) -> None:
        self.problems = problems
        self.status = status
        self.code = code
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Waiting:
    """A run of the ticket that waits for a person's step."""

    sop: str
    step_key: str
    flow_run_id: str
    escalation_id: int | None = None
    schema_key: str | None = field(default=None, compare=False)

    @property
    def step(self) -> str:
        return base_step(self.step_key)


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


def _prefect() -> Any:
    from aftersales.prefect_rest import PrefectRest, PrefectRestError

    try:
        return PrefectRest()
    except PrefectRestError as exc:
        raise ResumeRefused(
            [Refusal("prefect", str(exc))], status=503, code="prefect_unavailable"
        ) from None


def waiting(ticket_id: str) -> list[Waiting]:
    """The ticket's runs that wait for a person, with the step each waits for."""
    from aftersales.prefect_rest import PrefectRestError

    runs = _runs_of(ticket_id)
    if not runs:
        return []
    out = []
    with _prefect() as rest:
        for sop, run_id, esc in runs:
            try:
                fr = rest.flow_run(run_id)
            except PrefectRestError as exc:
                raise ResumeRefused(
                    [Refusal("prefect", str(exc))], status=503, code="prefect_unavailable"
                ) from None
            if fr is not None and fr.paused:
                out.append(Waiting(sop, fr.pause_key or "?", run_id, esc, fr.schema_key))
    return out


def waiting_step(ticket_id: str) -> list[tuple[str, str]]:
    """(sop, step key) pairs the ticket's runs are waiting for."""
    return [(w.sop, w.step_key) for w in waiting(ticket_id)]


def _pick(ticket_id: str, step: str, runs: list[Waiting], escalation_id: int | None) -> Waiting:
    exact = [w for w in runs if w.step_key == step]
    by_step = [w for w in runs if w.step == step]
    found = [
        w for w in (exact or by_step) if escalation_id is None or w.escalation_id == escalation_id
    ]
    if found:
        return found[0]
    if runs:
        listed = ", ".join(
            f"'{w.step_key}' ({w.sop}"
            + (f" escalation {w.escalation_id}" if w.escalation_id else "")
            + ")"
            for w in runs
        )
        rule = f"no run of {ticket_id} waits for {step!r}; the run waits for step {listed}"
    else:
        rule = f"ticket {ticket_id} is not waiting for a person"
    raise ResumeRefused([Refusal("step", rule)], status=409, code="not_waiting")


def form_problems(exc: ValidationError) -> list[Refusal]:
    """A pydantic validation error as (field, rule) pairs."""
    return [
        Refusal(
            ".".join(str(x) for x in e["loc"]) or "(form)",
            e["msg"].removeprefix("Value error, "),
        )
        for e in exc.errors()
    ]


def precheck(w: Waiting, ticket_id: str, data: dict[str, Any], now: datetime) -> Any:
    """Validate ``data`` for the step ``w`` waits for, against the form and the ticket's
    state, without changing anything. Returns the form; raises :class:`ResumeRefused`."""
    from aftersales.runtime import deadlines

    st = catalogue()[w.sop].step(w.step)
    assert st.form is not None, f"{w.sop}.{w.step} is automatic"
    try:
        form = st.form.model_validate(data)
    except ValidationError as exc:
        raise ResumeRefused(form_problems(exc), status=422, code="invalid_form") from None
    instance = w.escalation_id or 0
    with Session(get_engine()) as s:  # read only: never committed
        done = s.exec(
            select(StepRecord.id).where(
                StepRecord.ticket_id == ticket_id,
                StepRecord.sop == w.sop,
                StepRecord.step_key == w.step_key,
                StepRecord.instance == instance,
            )
        ).first()
        if done is not None:
            raise ResumeRefused(
                [Refusal("step", f"{w.step_key} of {ticket_id} is already done")],
                status=409,
                code="step_done",
            )
        if st.check is not None:
            ticket = get_ticket(s, ticket_id=ticket_id)
            esc = s.get(Escalation, w.escalation_id) if w.escalation_id else None
            refused = st.check(StepContext(s, ticket, form, now, deadlines(), esc))
            s.rollback()
            if refused is not None:
                raise ResumeRefused([refused], status=422, code="refused")
    return form


def resume_step(
    ticket_id: str,
    step: str,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
    escalation_id: int | None = None,
) -> str:
    """Check ``data`` (form and state) for the step the ticket's run waits for, then
    resume that run. Nothing is resumed when anything is refused."""
    from aftersales.clock import get_clock
    from aftersales.prefect_rest import PrefectRestError

    w = _pick(ticket_id, step, waiting(ticket_id), escalation_id)
    precheck(w, ticket_id, data, now or get_clock().now())
    with _prefect() as rest:
        try:
            _wait_for_form_schema(rest, w)
            rest.resume(w.flow_run_id, data)
        except PrefectRestError as exc:
            raise ResumeRefused(
                [Refusal("step", f"run {w.flow_run_id} could not be resumed: {exc}")],
                status=409,
                code="not_resumed",
            ) from None
    return w.flow_run_id


def _wait_for_form_schema(rest: Any, w: Waiting, timeout: float = 15.0) -> None:
    """Prefect marks a run Suspended before it stores the form's schema; a resume in
    between is refused ("Run input schema not found"). Wait until the schema is there."""
    if not w.schema_key:
        return
    deadline = time.monotonic() + timeout
    while not rest.has_input(w.flow_run_id, w.schema_key):
        if time.monotonic() > deadline:
            raise ResumeRefused(
                [Refusal("step", f"run {w.flow_run_id} has not published its form yet; retry")],
                status=409,
                code="not_waiting",
            )
        time.sleep(0.2)
