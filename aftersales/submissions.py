"""A human step is never lost (issue 11 §2): every form a person submits is stored in
``step_submission`` before any Prefect call, then applied exactly once.

- :func:`store` (API, CLI, via ``aftersales.humansteps.submit_step``): the same body for
  the same pending step is one submission (``dedupe_key`` is unique; a concurrent twin
  reads the row the other stored).
- ``SopRun.ask`` (``tasks/steps.py``), before it suspends for a step, :func:`take`s the
  oldest pending submission for that (ticket, SOP, step round, escalation) and completes
  the step with it; a run resumed with a form (by the API, the reconciler or the Prefect
  UI) :func:`claim_resumed` the row that carried it. Either way :func:`settle` marks it
  applied (with the step key it completed and what the step said) or refused with the
  reason; the run then asks again as before. A step already recorded (a replacement run
  re-running the flow body) is :func:`recorded`: the run returns it without asking.
- :func:`deliver_pending` (called by the reconciler's loop, or ``aftersales submissions
  deliver``) resumes the runs that are Suspended waiting on a pending submission's step.

A row goes pending -> delivering (a resume or an ``ask`` holds it) -> applied | refused;
a failed resume puts it back to pending, and a row left delivering longer than
``submission_stale_seconds`` (a process died holding it) is pending again. The state
changes are compare-and-set updates, so two takers never both win. No Prefect import
here (the REST client is imported by :func:`deliver_pending` only).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.db import session_scope
from models.entities import StepRecord, StepSubmission, SubmissionState

log = logging.getLogger("aftersales.submissions")

PENDING, DELIVERING = SubmissionState.PENDING.value, SubmissionState.DELIVERING.value
APPLIED, REFUSED = SubmissionState.APPLIED.value, SubmissionState.REFUSED.value
_ATTEMPT = re.compile(r"-\d+$")


def round_key(key: str) -> str:
    """The step round of a key, without its attempt: ``review-2`` -> ``review``,
    ``resolve-r2-3`` -> ``resolve-r2``; ``resolve-r2`` stays."""
    return _ATTEMPT.sub("", key)


def canonical(data: dict[str, Any]) -> str:
    from aftersales.intake import json_canonical

    return json_canonical(data)


def dedupe_key(
    *, ticket_id: str, sop: str, step_key: str, escalation_id: int | None, data: dict[str, Any]
) -> str:
    blob = "|".join([ticket_id, sop, step_key, str(escalation_id or 0), canonical(data)])
    return "sub:" + hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Stored:
    """A stored submission: its id, whether this call stored it, and its state."""

    id: int
    created: bool
    state: str


@dataclass(frozen=True)
class Taken:
    """A submission a run holds (state delivering) to complete a step with."""

    id: int
    data: dict[str, Any]
    actor: str = ""


@dataclass(frozen=True)
class Recorded:
    """A step round already recorded: its key and time, what it decided (the step record's
    value, closure, pause and hand-over) and the form of the submission that completed it
    (``None`` when nobody stored one, e.g. before 0009)."""

    key: str
    at: datetime
    data: dict[str, Any] | None = None
    value: str | None = None
    closed: bool = False
    paused: bool = False
    handed_over: str | None = None


class SubmissionView(BaseModel):
    """A submission as ``aftersales ticket`` and ``GET /tickets/{id}`` show it (its time in
    the configured zone; the form's values are not shown: they may hold personal data)."""

    id: int
    sop: str
    step_key: str
    escalation_id: int | None
    state: str
    received: str
    reason: str | None
    applied_key: str | None


def store(
    *,
    ticket_id: str,
    sop: str,
    step: str,
    step_key: str,
    escalation_id: int | None,
    data: dict[str, Any],
    now: datetime,
    actor: str = "",
) -> Stored:
    """Store the submission (its own transaction, committed when this returns) unless the
    same body for the same step round is already pending; returns it either way."""
    put = partial(
        store_in, ticket_id=ticket_id, sop=sop, step=step, step_key=step_key,
        escalation_id=escalation_id, data=data, now=now, actor=actor,
    )  # fmt: skip
    try:
        with session_scope() as s:
            return put(s)
    except IntegrityError:  # a concurrent twin stored it first: found by its key now
        with session_scope() as s:
            return put(s)


def store_in(
    session: Session,
    *,
    ticket_id: str,
    sop: str,
    step: str,
    step_key: str,
    escalation_id: int | None,
    data: dict[str, Any],
    now: datetime,
    actor: str = "",
) -> Stored:
    """:func:`store` in the caller's transaction (the SLA clock answering a step stores it
    with the breach that caused it)."""
    key = dedupe_key(
        ticket_id=ticket_id, sop=sop, step_key=step_key, escalation_id=escalation_id, data=data
    )
    found = session.exec(select(StepSubmission).where(StepSubmission.dedupe_key == key)).first()
    if found is not None:
        return Stored(found.id or 0, False, found.state)
    row = StepSubmission(
        dedupe_key=key, ticket_id=ticket_id, sop=sop, step=step, step_key=step_key,
        escalation_id=escalation_id, data=data, actor=actor[:120], received_at=now,
        state=PENDING, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return Stored(row.id or 0, True, row.state)


def _move(session: Session, sub_id: int, *, frm: str, to: str, now: datetime) -> bool:
    """Compare-and-set the row's state; True when this caller moved it."""
    res = session.execute(
        update(StepSubmission)
        .where(col(StepSubmission.id) == sub_id, col(StepSubmission.state) == frm)
        .values(state=to, updated_at=now)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def hold(sub_id: int, *, now: datetime) -> bool:
    """pending -> delivering (a resume is about to carry it); False if another holds it."""
    with session_scope() as s:
        return _move(s, sub_id, frm=PENDING, to=DELIVERING, now=now)


def release(sub_id: int, *, now: datetime) -> None:
    """delivering -> pending (the resume failed: the run asks or the reconciler retries)."""
    with session_scope() as s:
        _move(s, sub_id, frm=DELIVERING, to=PENDING, now=now)


def _for_step(ticket_id: str, sop: str, step: str, step_key: str, instance: int) -> Any:
    esc = col(StepSubmission.escalation_id)
    return select(StepSubmission).where(
        StepSubmission.ticket_id == ticket_id,
        StepSubmission.sop == sop,
        StepSubmission.step == step,
        StepSubmission.step_key == step_key,
        esc == instance if instance else esc.is_(None),
    )


def take(
    *, ticket_id: str, sop: str, step: str, step_key: str, instance: int, now: datetime
) -> Taken | None:
    """The oldest pending submission for this step round, held for the asking run
    (pending -> delivering), or None: the run then suspends and waits."""
    with session_scope() as s:
        rows = s.exec(
            _for_step(ticket_id, sop, step, step_key, instance)
            .where(StepSubmission.state == PENDING)
            .order_by(col(StepSubmission.received_at), col(StepSubmission.id))
        ).all()
        for row in rows:
            if _move(s, row.id or 0, frm=PENDING, to=DELIVERING, now=now):
                return Taken(row.id or 0, dict(row.data), row.actor)
    return None


def claim_resumed(
    *,
    ticket_id: str,
    sop: str,
    step: str,
    step_key: str,
    instance: int,
    same: Callable[[dict[str, Any]], bool],
) -> Taken | None:
    """The submission that carried the form a run was resumed with: the delivering (or
    still pending: a resume whose answer was lost) row of this step round whose body
    ``same`` says is the form. None when the form came from elsewhere (the Prefect UI's
    Resume button, ``resume_step``)."""
    with session_scope() as s:
        rows = s.exec(
            _for_step(ticket_id, sop, step, step_key, instance)
            .where(col(StepSubmission.state).in_([DELIVERING, PENDING]))
            .order_by(col(StepSubmission.id))
        ).all()
        rows = sorted(rows, key=lambda r: (r.state != DELIVERING, r.id or 0))
        for row in rows:
            if same(dict(row.data)):
                _move(s, row.id or 0, frm=PENDING, to=DELIVERING, now=row.updated_at)
                return Taken(row.id or 0, dict(row.data), row.actor)
    return None


def settle(
    taken: Taken | None,
    *,
    ticket_id: str,
    sop: str,
    step: str,
    step_key: str,
    instance: int,
    key: str,
    data: dict[str, Any],
    done: bool,
    reason: str,
    outcome: dict[str, Any],
    flow_run_id: str | None,
    now: datetime,
) -> int:
    """Mark the held submission applied (``key`` completed) or refused with the reason;
    its dedupe key is freed. A form resumed from elsewhere (``taken`` None) is stored as
    an applied row so a replacement run finds its values. Returns the row's id."""
    with session_scope() as s:
        row = s.get(StepSubmission, taken.id) if taken else None
        if row is None:
            if not done:
                return 0
            row = StepSubmission(
                dedupe_key=f"ui:{uuid.uuid4().hex}", ticket_id=ticket_id, sop=sop, step=step, step_key=step_key,
                escalation_id=instance or None, data=data, actor="prefect-ui",
                received_at=now, state=PENDING, updated_at=now,
            )  # fmt: skip
        row.state = APPLIED if done else REFUSED
        row.applied_key = key if done else None
        row.reason = None if done else reason
        row.outcome = outcome
        row.flow_run_id = flow_run_id
        row.updated_at = now
        s.add(row)
        s.flush()
        row.dedupe_key = f"{row.dedupe_key}#{row.id}"[:120]
        s.add(row)
        s.flush()
        return row.id or 0


def recorded(
    *, ticket_id: str, sop: str, step: str, step_key: str, instance: int
) -> Recorded | None:
    """The step round's record, if any attempt of it completed (``review`` or
    ``review-2`` for the round ``review``), with the applied submission's form."""
    with session_scope() as s:
        recs = s.exec(
            select(StepRecord).where(
                StepRecord.ticket_id == ticket_id,
                StepRecord.sop == sop,
                StepRecord.step == step,
                StepRecord.instance == instance,
            )
        ).all()
        rec = next((r for r in recs if round_key(r.step_key) == step_key), None)
        if rec is None:
            return None
        sub = s.exec(
            _for_step(ticket_id, sop, step, step_key, instance).where(
                StepSubmission.state == APPLIED, StepSubmission.applied_key == rec.step_key
            )
        ).first()
        return Recorded(
            rec.step_key,
            rec.completed_at,
            dict(sub.data) if sub is not None else None,
            value=rec.value,
            closed=rec.closed,
            paused=rec.paused,
            handed_over=rec.handed_over,
        )


def is_recorded(
    session: Session, *, ticket_id: str, sop: str, step: str, step_key: str, instance: int
) -> bool:
    recs = session.exec(
        select(StepRecord.step_key).where(
            StepRecord.ticket_id == ticket_id,
            StepRecord.sop == sop,
            StepRecord.step == step,
            StepRecord.instance == instance,
        )
    ).all()
    return any(round_key(k) == step_key for k in recs)


def views(
    session: Session,
    *,
    ticket_id: str,
    tz: Any,
    states: tuple[str, ...] = (PENDING, DELIVERING, REFUSED),
) -> list[SubmissionView]:
    """The ticket's submissions in these states (default: not applied), oldest first."""
    from aftersales.queue import local

    rows = session.exec(
        select(StepSubmission)
        .where(StepSubmission.ticket_id == ticket_id, col(StepSubmission.state).in_(states))
        .order_by(col(StepSubmission.id))
    ).all()
    return [
        SubmissionView(
            id=r.id or 0,
            sop=r.sop,
            step_key=r.step_key,
            escalation_id=r.escalation_id,
            state=r.state,
            received=local(r.received_at, tz),
            reason=r.reason,
            applied_key=r.applied_key,
        )  # fmt: skip
        for r in rows
    ]


def as_text(subs: list[SubmissionView]) -> list[str]:
    """The submissions for a terminal (``aftersales ticket``)."""
    out = ["submissions:" + ("" if subs else " none pending")]
    for v in subs:
        esc = f" escalation {v.escalation_id}" if v.escalation_id else ""
        why = f": {v.reason}" if v.reason else ""
        out.append(f"  #{v.id} {v.sop}{esc} '{v.step_key}' {v.state} since {v.received}{why}")
    return out


def deliver_pending(*, now: datetime, limit: int = 200) -> int:
    """Resume the runs Suspended waiting on a pending submission's step; returns how many
    were resumed. A row held longer than ``submission_stale_seconds`` is pending again; a
    pending row whose step round is recorded already is refused (nothing can apply it).
    Prefect unreachable: nothing is resumed, nothing is lost (the next call retries).
    Called by the run supervisor's pass and ``aftersales submissions deliver``."""
    from aftersales.humansteps import ResumeRefused, deliver
    from aftersales.settings import get_settings

    stale = now - timedelta(seconds=get_settings().submission_stale_seconds)
    with session_scope() as s:
        s.execute(
            update(StepSubmission)
            .where(col(StepSubmission.state) == DELIVERING, col(StepSubmission.updated_at) < stale)
            .values(state=PENDING, updated_at=now)
        )
        rows = s.exec(
            select(StepSubmission)
            .where(StepSubmission.state == PENDING)
            .order_by(col(StepSubmission.received_at), col(StepSubmission.id))
            .limit(limit)
        ).all()
        todo: list[StepSubmission] = []
        for r in rows:
            inst = r.escalation_id or 0
            if is_recorded(s, ticket_id=r.ticket_id, sop=r.sop, step=r.step,
                           step_key=r.step_key, instance=inst):  # fmt: skip
                r.state, r.reason, r.updated_at = REFUSED, f"{r.step_key} was already done", now
                r.dedupe_key = f"{r.dedupe_key}#{r.id}"[:120]
                s.add(r)
            else:
                todo.append(r)
    resumed = 0
    seen: set[tuple[str, str, str, int]] = set()
    for r in todo:
        slot = (r.ticket_id, r.sop, r.step_key, r.escalation_id or 0)
        if slot in seen:  # one resume per waiting step per round; the rest wait their turn
            continue
        seen.add(slot)
        try:
            if deliver(r, now=now):
                resumed += 1
        except ResumeRefused as exc:
            log.info("submission %s of %s not delivered: %s", r.id, r.ticket_id, exc)
            if exc.code == "prefect_unavailable":
                break
    return resumed
