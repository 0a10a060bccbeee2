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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from aftersales.steps import Refusal, StepContext, StepError, base_step, catalogue
from aftersales.submissions import round_key
from models.db import get_engine, session_scope
from models.entities import Escalation, SopRun
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


def _prefect(budget: float | None = None) -> Any:
    from aftersales.prefect_rest import PrefectRest, PrefectRestError

    try:
        return PrefectRest(budget=budget)
    except PrefectRestError as exc:
        raise ResumeRefused(
            [Refusal("prefect", str(exc))], status=503, code="prefect_unavailable"
        ) from None


def waiting(ticket_id: str, rest: Any = None) -> list[Waiting]:
    """The ticket's runs that wait for a person, with the step each waits for (over
    ``rest``, a :class:`~aftersales.prefect_rest.PrefectRest`, or a new client)."""
    from aftersales.prefect_rest import PrefectRestError

    runs = _runs_of(ticket_id)
    if not runs:
        return []
    if rest is None:
        with _prefect() as own:
            return waiting(ticket_id, own)
    out = []
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
    check_submission(w, ticket_id, data, now or get_clock().now())
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
    between is refused ("Run input schema not found"). Wait until the schema is there
    (at most ``timeout`` and what is left of the client's budget)."""
    if not w.schema_key:
        return
    deadline = time.monotonic() + min(timeout, rest.remaining())
    while not rest.has_input(w.flow_run_id, w.schema_key):
        if time.monotonic() + 0.2 > deadline:
            raise ResumeRefused(
                [Refusal("step", f"run {w.flow_run_id} has not published its form yet; retry")],
                status=409,
                code="not_waiting",
            )
        time.sleep(0.2)


# ---------------------------------------------------------------- durable submissions
@dataclass(frozen=True)
class Submitted:
    """What a submission did: ``resumed`` (the waiting run has the form now) or ``queued``
    (stored; the run takes it when it asks for the step, or the reconciler resumes it)."""

    status: str  # "resumed" | "queued"
    submission_id: int
    created: bool  # False: the same body for the same step was already submitted
    sop: str
    step_key: str
    escalation_id: int | None
    flow_run_id: str | None = None
    note: str = ""  # why it was queued (Prefect down, no run waiting yet …)


@dataclass(frozen=True)
class Target:
    sop: str
    step: str  # base step
    step_key: str  # the round: ``resolve``, ``resolve-r2``
    escalation_id: int | None
    waiting: Waiting | None = None


def _match(runs: list[Waiting], step: str, escalation_id: int | None) -> Waiting | None:
    exact = [w for w in runs if w.step_key == step]
    by_round = [w for w in runs if round_key(w.step_key) == round_key(step)]
    by_step = [w for w in runs if w.step == step]
    found = [
        w
        for w in (exact or by_round or by_step)
        if escalation_id is None or w.escalation_id == escalation_id
    ]
    return found[0] if found else None


def _target_from_db(
    ticket_id: str, step: str, escalation_id: int | None, runs: list[Waiting] | None
) -> Target:
    """The SOP and escalation a step names, from the ticket's records alone (no Prefect):
    the ticket's current SOP first, then its other runs, then its escalations."""
    from models.entities import EscalationState
    from models.repository import NotFoundError

    base = base_step(step)
    with session_scope() as s:
        ticket = get_ticket(s, ticket_id=ticket_id)
        sops = [str(ticket.sop)] + [
            str(r.sop) for r in s.exec(select(SopRun).where(SopRun.ticket_id == ticket_id)).all()
        ]
        escs = list(s.exec(select(Escalation).where(Escalation.ticket_id == ticket_id)).all())
    cat = catalogue()
    for sop in dict.fromkeys(sops):
        spec = cat.get(sop)
        if spec and any(st.id == base and st.form is not None for st in spec.steps):
            if escalation_id is not None:
                raise ResumeRefused(
                    [Refusal("escalation", f"{sop}.{base} is not an escalation step")],
                    status=422, code="invalid_parameter",
                )  # fmt: skip
            return Target(sop, base, round_key(step), None)
    esc_spec = cat.get("escalation")
    if esc_spec and escs and any(st.id == base and st.form for st in esc_spec.steps):
        if escalation_id is not None:
            if not any(e.id == escalation_id for e in escs):
                raise NotFoundError(f"ticket {ticket_id!r} has no escalation {escalation_id}")
            return Target("escalation", base, round_key(step), escalation_id)
        open_ = [e for e in escs if e.state == EscalationState.OPEN]
        if len(open_) == 1:
            return Target("escalation", base, round_key(step), open_[0].id)
        if len(open_) > 1:
            ids = ", ".join(str(e.id) for e in open_)
            raise ResumeRefused(
                [Refusal("escalation", f"several escalations are open ({ids}): name one")],
                status=422, code="invalid_parameter",
            )  # fmt: skip
    if runs:
        _pick(ticket_id, step, runs, escalation_id)  # raises not_waiting listing them
    raise ResumeRefused(
        [Refusal("step", f"ticket {ticket_id} is not waiting for a person; no SOP of it "
                         f"has a step {base!r}")],
        status=409, code="not_waiting",
    )  # fmt: skip


def check_submission(
    t: Target | Waiting, ticket_id: str, data: dict[str, Any], now: datetime
) -> Any:
    """The form and the ticket's state, judged without Prefect and without changing
    anything (the step round not done, the step's ``check``). Returns the form."""
    from aftersales.runtime import deadlines
    from aftersales.submissions import is_recorded

    st = catalogue()[t.sop].step(t.step)
    assert st.form is not None, f"{t.sop}.{t.step} is automatic"
    try:
        form = st.form.model_validate(data)
    except ValidationError as exc:
        raise ResumeRefused(form_problems(exc), status=422, code="invalid_form") from None
    with Session(get_engine()) as s:  # read only: never committed
        if is_recorded(s, ticket_id=ticket_id, sop=t.sop, step=t.step, step_key=t.step_key,
                       instance=t.escalation_id or 0):  # fmt: skip
            raise ResumeRefused(
                [Refusal("step", f"{t.step_key} of {ticket_id} is already done (a later "
                                 f"round of a loop is named {t.step}-r2, {t.step}-r3 …)")],
                status=409, code="step_done",
            )  # fmt: skip
        if st.check is not None:
            ticket = get_ticket(s, ticket_id=ticket_id)
            esc = s.get(Escalation, t.escalation_id) if t.escalation_id else None
            refused = st.check(StepContext(s, ticket, form, now, deadlines(), esc))
            s.rollback()
            if refused is not None:
                raise ResumeRefused([refused], status=422, code="refused")
    return form


def _resume_held(rest: Any, w: Waiting, sub_id: int, data: dict[str, Any], now: datetime) -> str:
    """Resume ``w`` with ``data`` for the held submission; '' when resumed, else why not
    (the row is pending again)."""
    from aftersales.prefect_rest import PrefectRestError
    from aftersales.submissions import release

    try:
        _wait_for_form_schema(rest, w)
        rest.resume(w.flow_run_id, data)
        return ""
    except (PrefectRestError, ResumeRefused) as exc:
        release(sub_id, now=now)
        return f"run {w.flow_run_id} not resumed now ({exc}); queued"


def submit_step(
    ticket_id: str,
    step: str,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
    escalation_id: int | None = None,
    actor: str = "",
) -> Submitted:
    """Judge the form for the step (its SOP's declared form and ``check``, known without
    Prefect), store it durably, then resume the run waiting for it if there is one and
    Prefect answers within ``prefect_call_timeout_seconds`` (all calls together).
    Refusals raise :class:`ResumeRefused` and store nothing; Prefect down, a dead run or
    a run not waiting yet is never a refusal: the submission is queued."""
    from aftersales.clock import get_clock
    from aftersales.settings import get_settings
    from aftersales.submissions import hold, store

    now = now or get_clock().now()
    budget = get_settings().prefect_call_timeout_seconds
    rest, runs, note = None, None, ""
    try:
        _runs_of(ticket_id)  # NotFoundError first, before Prefect is asked anything
        rest = _prefect(budget)
        runs = waiting(ticket_id, rest)
    except ResumeRefused as exc:  # Prefect unreachable: judged and stored all the same
        note = f"Prefect unavailable ({exc}); queued"
    try:
        w = _match(runs or [], step, escalation_id)
        if w is not None:
            t = Target(w.sop, w.step, round_key(w.step_key), w.escalation_id, w)
        else:
            t = _target_from_db(ticket_id, step, escalation_id, runs)
        check_submission(t, ticket_id, data, now)
        stored = store(ticket_id=ticket_id, sop=t.sop, step=t.step, step_key=t.step_key,
                       escalation_id=t.escalation_id, data=data, now=now, actor=actor)  # fmt: skip
        out = Submitted("queued", stored.id, stored.created, t.sop, t.step_key, t.escalation_id)
        if t.waiting is None:
            return replace(out, note=note or "no run waits for this step now; queued")
        if not hold(stored.id, now=now):
            return replace(out, note=f"submission {stored.id} is being delivered")
        why = _resume_held(rest, t.waiting, stored.id, data, now)
        if why:
            return replace(out, note=why)
        return replace(out, status="resumed", flow_run_id=t.waiting.flow_run_id)
    finally:
        if rest is not None:
            rest.__exit__(None, None, None)


def deliver(row: Any, *, now: datetime) -> bool:
    """Resume the run waiting for a pending submission's step (used by
    :func:`aftersales.submissions.deliver_pending`); False when no run waits for it (the
    run takes it when it asks) or the resume failed (it stays pending). Raises
    :class:`ResumeRefused` (``prefect_unavailable``) when Prefect does not answer."""
    from aftersales.settings import get_settings
    from aftersales.submissions import hold

    with _prefect(get_settings().prefect_call_timeout_seconds) as rest:
        w = next(
            (
                w
                for w in waiting(row.ticket_id, rest)
                if w.sop == row.sop
                and round_key(w.step_key) == row.step_key
                and (w.escalation_id or 0) == (row.escalation_id or 0)
            ),
            None,
        )
        if w is None or not hold(row.id, now=now):
            return False
        return not _resume_held(rest, w, row.id, dict(row.data), now)
