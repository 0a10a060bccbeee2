"""The work queue: every ticket waiting on a person, soonest due first.

Where the waiting step comes from: the project database, not Prefect's pause keys.
A run suspends right after it records its previous step, so the step it waits for is
the SOP's next human step after its latest ``step_record``, in the order the SOP
declares its steps (``tasks/<sop>.py``), skipping the steps the flow asks only under a
condition, with the same condition the flow tests:

* ``inquiry.callback`` only when the first response armed a clock the callback stops
  (``flows/inquiry.py``: ``sop.armed_for("callback", first)``);
* ``repair.engineer`` only when the automatic dispatch found nobody (no ``dispatch``
  record);
* ``repair.customer-decision`` only while the work order waits on the customer (the
  diagnosis' ``pause_when``);
* ``complaint.verify`` only for a cross-department complaint (``flows/complaint.py``);
* the loops go back: a rejected solution (``complaint.approve``) to ``resolve``, a
  reopened complaint (``complaint.close``) to ``investigate``, so the step after the
  *latest* record counts, not the furthest one;
* an escalation's steps are its level's (:func:`aftersales.steps.escalation_steps`).

So the queue is one query over the project database: it answers in milliseconds for
thousands of open tickets and works while the Prefect server is down. The price: a
ticket whose run has not started yet (its start event still in the outbox) is listed
as waiting for its first human step already; ``aftersales ticket`` asks Prefect too
and says so. The ``sla-board`` artifact is the same query
(:func:`models.repository.sla_board`).

Pure module: no Prefect, no database access (the repository hands it the rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aftersales.policy import Profile
from aftersales.steps import Step, catalogue, escalation_steps, matches, ref_of

State = Literal["breached", "at-risk", "on-track", "no clock"]
STATES: tuple[State, ...] = ("breached", "at-risk", "on-track", "no clock")


@dataclass(frozen=True)
class Scope:
    """What the database says about one SOP run of a ticket (or one escalation)."""

    sop: str
    done: tuple[str, ...]  # the base steps recorded, oldest first
    armed: frozenset[str]  # every rule id armed in this scope, whatever its state now
    values: Mapping[str, Any]  # the work order's fields and the ticket's facts
    level: str | None = None  # an escalation's level


#: after the step, when the condition over the SOP record holds, the flow goes back to
LOOPS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "complaint.approve": ([{"approved_by": None}], "resolve"),
    "complaint.close": ([{"outcome": "reopened"}], "investigate"),
}


def _optional_skipped(sop: str, st: Step, scope: Scope, profile: Profile) -> bool:
    """The flow asks this step only under a condition that does not hold."""
    ref = ref_of(sop, st.id)
    if ref == "complaint.verify":
        return not scope.values.get("cross_department")
    if ref == "inquiry.callback":
        return not ({r.id for r in profile.stopped_by(ref)} & scope.armed)
    if ref == "repair.engineer":
        return "dispatch" in scope.done
    # CB-1's method: an online survey (send-survey done) is answered by the customer; a
    # phone callback is the handler's call (flows/callback.py asks one or the other)
    if ref == "callback.call":
        return "send-survey" in scope.done
    if ref == "callback.survey":
        return "send-survey" not in scope.done
    if ref == "callback.second-call":  # only for a VIP: REP-4 armed CB-2:vip-second
        return not ({r.id for r in profile.stopped_by(ref)} & scope.armed)
    if st.resume_when:  # asked only while the step before paused the SOP for the customer
        spec = catalogue()[sop]
        before = spec.steps[[s.id for s in spec.steps].index(st.id) - 1]
        return not (before.pause_when and matches(before.pause_when, scope.values))
    return False


def waiting_for(scope: Scope, profile: Profile) -> Step | None:
    """The human step the scope's run waits for, or None (finished, or not runnable)."""
    spec = catalogue().get(scope.sop)
    if spec is None or not spec.runnable:
        return None
    if scope.sop == "escalation":
        left = [s for s in escalation_steps(scope.level or "normal") if s not in scope.done]
        return spec.step(left[0]) if left else None
    order = [s.id for s in spec.steps]
    last = next((d for d in reversed(scope.done) if d in order), None)
    loop = LOOPS.get(ref_of(scope.sop, last)) if last else None
    if loop is not None and matches(loop[0], scope.values):
        return spec.step(loop[1])
    reached = order.index(last) if last else -1
    for st in spec.steps[reached + 1 :]:
        if st.automatic or _optional_skipped(scope.sop, st, scope, profile):
            continue
        return st
    return None


@dataclass(frozen=True)
class ClockView:
    rule_id: str
    state: str  # ClockState value
    due_at: datetime | None


def due_and_state(
    clocks: Sequence[ClockView], step_rules: Iterable[str], now: datetime | None
) -> tuple[ClockView | None, State]:
    """The clock to show and the row's state. The clock is the soonest running one the
    waiting step stops, else the soonest running one of the scope. The state: breached
    when a clock the step stops has breached or the shown clock is past due; at-risk when
    a reminder went out (REM-1); on-track with a running clock; else no clock."""
    stops = set(step_rules)
    running = sorted(
        (c for c in clocks if c.state in ("armed", "reminded") and c.due_at),
        key=lambda c: (c.due_at, c.rule_id),
    )
    mine = [c for c in running if c.rule_id in stops]
    shown = (mine or running or [None])[0]
    considered = [c for c in clocks if c.rule_id in stops] + ([shown] if shown else [])
    if any(c.state == "breached" for c in considered) or (
        now is not None and shown is not None and shown.due_at is not None and shown.due_at <= now
    ):
        return shown, "breached"
    if any(c.state == "reminded" for c in considered):
        return shown, "at-risk"
    return shown, ("on-track" if shown else "no clock")


# ---------------------------------------------------------------- filtering and printing
@dataclass(frozen=True)
class QueueFilter:
    role: str | None = None
    sop: str | None = None
    state: State | None = None

    def keep(self, row: Any) -> bool:
        return (
            row.step is not None
            and (self.role is None or row.role == self.role)
            and (self.sop is None or row.sop == self.sop)
            and (self.state is None or row.state == self.state)
        )


def local(t: datetime | None, tz: Any) -> str:
    """A time in the configured zone, to the minute, with its offset."""
    return t.astimezone(tz).isoformat(timespec="minutes") if t else ""


def as_text(rows: Sequence[Any], tz: Any) -> list[str]:
    """The queue as an aligned table (one line per waiting step)."""
    head = ("TICKET", "SOP", "STEP", "WHO", "SINCE", "NEXT DUE", "RULE", "STATE")
    body = [
        (
            r.ticket_id,
            r.sop + (f"#{r.escalation_id}" if r.escalation_id else ""),
            r.step or "-",
            r.who,
            local(r.since, tz),
            local(r.next_due, tz) or "-",
            r.next_rule or "-",
            r.state,
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    return [
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    ]
