"""The run supervisor (issue 11 §1): exactly one progressing flow run per open ticket and
SOP (and per open escalation, and per installation project).

Every pass (``reconcile_seconds``) compares the project database — the claims
(``sop_run``, ``Escalation.flow_run_id``) and the start events queued in the outbox —
with the runs in Prefect (read in batches: the unfinished runs of the SOP deployments,
then the owners not among them by id; heartbeats when Prefect's flow-run heartbeats are
on), decides what differs (:func:`decide`, a pure function) and repairs it:

- **created** / **adopted**: a pair without an owner whose last start event (a
  hand-over included) was sent more than ``lost_start_grace_seconds`` ago. An unfinished
  run of its deployment for the ticket (a trigger's run waiting for a slot) is adopted;
  else a run is created from the deployment with an idempotency key (a retried pass gets
  the same run back). Either way the run is **pre-claimed**: the claim row names it
  before it can start, so ``claim_run`` finds it the owner. A created run is held in a
  Scheduled state named ``AwaitingClaim`` until its claim is committed, then released.
- **restarted**: the owner is Crashed or Failed before its SOP finished (also when the
  ticket closed in its last step and the run died before Prefect saw it end). The same run
  is set back to Scheduled (Prefect's retry path, the one a resumed run takes): it
  keeps its id, claim, inputs and cached steps, so it re-runs its body to the step it
  stopped at.
- **replaced**: the owner is stuck in Pending/Submitting past ``run_stuck_seconds``,
  Running without a heartbeat past ``run_heartbeat_lost_seconds`` (its process may still
  be alive somewhere), or unknown to Prefect. A new run takes the claim (compare and set
  in the database) and the old one is cancelled; if the old one wakes, ``complete_step``
  refuses its steps (:class:`tasks.steps.RunReplacedError`). The new run re-runs the
  body; the steps recorded in ``step_record`` are not taken again.
- **rescheduled**: the owner is Scheduled/Late/Resuming ``run_stuck_seconds`` past its
  time: set Scheduled for now (the same run; no new run).
- **cancelled**: an unfinished run of the same deployment for the same pair that is not
  the owner (a duplicate start).
- **gave-up**: a pair restarted or replaced ``reconcile_max_restarts`` times is left to
  a person (recorded once; logged as an error).

A claim of a closed ticket stays supervised until its run is seen Completed or Cancelled
(``SopRun.finished_at``, set by the pass): the ticket needs nothing more, but a run that
died after its last step is restarted so it ends Completed, not Crashed, in the UI.

Each repair is a ``run_repair`` row and an ``aftersales.run.repaired`` event (outbox,
related to both runs) in the transaction that changes the claim. Each pass also delivers
the durable step submissions (``aftersales.submissions.deliver_pending``) when that
module exists.

Several supervisors may run: on PostgreSQL a pass holds an advisory lock (one pass at a
time; the others skip theirs), and every claim change is a compare-and-set, so even two
passes at once could not give a pair two owners. SQLite: one supervisor.

When the Prefect server does not answer (every call bounded by
``prefect_call_timeout_seconds``) a pass does nothing and says so once.
Importing this module connects to nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeVar

from aftersales.clock import Clock, get_clock
from aftersales.settings import get_settings
from models.db import get_engine, session_scope
from models.repository import Supervised

log = logging.getLogger("aftersales.reconciler")

REPAIRED_EVENT = "aftersales.run.repaired"
HELD = "AwaitingClaim"  # a created run waits in this Scheduled state until its claim is stored
ADVISORY_LOCK = 0x4146_5453_0011  # "AFTS" issue 11: one pass at a time on PostgreSQL

Action = Literal[
    "created", "adopted", "restarted", "replaced", "rescheduled", "cancelled", "gave-up", "released"
]
T = TypeVar("T")


# ---------------------------------------------------------------- what the supervisor knows
@dataclass(frozen=True)
class SopDeployment:
    sop: str
    name: str  # "<flow name>/<deployment name>"
    event: str


@lru_cache(maxsize=1)
def sop_deployments() -> dict[str, SopDeployment]:
    """The SOP deployments (``deployments/serve.py``), by SOP: the run each pair needs."""
    from importlib import import_module

    from deployments.serve import DEPLOYMENTS

    out = {}
    for name, (path, event, tags) in DEPLOYMENTS.items():
        sop = next(t.split(":", 1)[1] for t in tags if t.startswith("sop:"))
        mod, attr = path.split(":")
        flow_name = getattr(import_module(mod), attr).name
        out[sop] = SopDeployment(sop, f"{flow_name}/{name}", event)
    return out


def parameters_for(sop: str, ticket_id: str, instance: int, level: str | None) -> dict[str, Any]:
    """The flow parameters of a pair's run (as the start event's trigger fills them)."""
    if sop == "escalation":
        return {"ticket_id": ticket_id, "escalation_id": instance, "level": level or "normal"}
    if sop == "installation":
        return {"project": ticket_id}
    return {"ticket_id": ticket_id}


def pair_of_parameters(sop: str, params: dict[str, Any]) -> tuple[str, str, int] | None:
    ticket = params.get("project") if sop == "installation" else params.get("ticket_id")
    if not ticket:
        return None
    if sop == "escalation":
        try:
            return (sop, str(ticket), int(params.get("escalation_id")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    return (sop, str(ticket), 0)


@dataclass(frozen=True)
class RunView:
    """What the supervisor reads of one flow run."""

    id: str
    state_type: str  # SCHEDULED, PENDING, RUNNING, PAUSED, CANCELLING, COMPLETED, ...
    state_name: str
    state_at: datetime | None
    scheduled_at: datetime | None = None
    pair: tuple[str, str, int] | None = None  # (sop, ticket, instance) from its parameters
    created: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state_type in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class Pair(Supervised):
    """One run the project expects (``models.repository.Supervised``) plus how often the
    supervisor already restarted or replaced it."""

    restarts: int = 0
    gave_up: bool = False

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.sop, self.ticket_id, self.instance)


@dataclass(frozen=True)
class Plan:
    """One repair :func:`decide` asks for."""

    pair: Pair
    action: Action
    reason: str
    run: str | None = None  # the run acted on (restarted, cancelled, replaced, adopted)


@dataclass(frozen=True)
class Bounds:
    grace: timedelta
    stuck: timedelta
    heartbeat_lost: timedelta | None  # None: heartbeats are off
    max_restarts: int


def decide(
    pairs: Iterable[Pair],
    runs: dict[str, RunView],
    unfinished: dict[tuple[str, str, int], list[RunView]],
    heartbeats: dict[str, datetime],
    *,
    now: datetime,
    bounds: Bounds,
    deployed: set[str],
) -> list[Plan]:
    """The repairs a pass makes: at most one per pair (plus the cancellation of its
    duplicates). ``runs`` holds every owner Prefect knows; ``unfinished`` the unfinished
    runs of the SOP deployments by pair."""
    plans: list[Plan] = []
    for p in pairs:
        others = [r for r in unfinished.get(p.key, []) if r.id != p.owner]
        if p.owner is None:
            if p.sop not in deployed or p.start_id is None:
                continue
            sent = p.start_sent or (p.start_created + bounds.grace if p.start_created else None)
            if sent is None or now - sent < bounds.grace:
                continue  # the trigger's run may still come (counted from the LAST start)
            if others:
                oldest = min(others, key=lambda r: (r.created or now, r.id))
                plans.append(
                    Plan(
                        p,
                        "adopted",
                        f"unclaimed {oldest.state_name} run of the deployment",
                        oldest.id,
                    )
                )
            else:
                plans.append(
                    Plan(
                        p,
                        "created",
                        f"no run {int((now - sent).total_seconds())} s after the start event",
                    )
                )
            continue
        for dup in others:
            if dup.state_name == HELD and dup.created and now - dup.created <= bounds.grace:
                continue  # being created right now
            if dup.state_type == "CANCELLING" and now - (dup.state_at or now) <= bounds.stuck:
                continue  # its runner is stopping it
            plans.append(
                Plan(p, "cancelled", f"duplicate {dup.state_name} run; owner {p.owner}", dup.id)
            )
        run = runs.get(p.owner)
        why = _trouble(run, heartbeats, now=now, bounds=bounds)
        if why is None:
            continue
        action, reason = why
        if action == "released":
            plans.append(Plan(p, action, reason, p.owner))
            continue
        if action in ("restarted", "replaced") and p.restarts >= bounds.max_restarts:
            if not p.gave_up:
                plans.append(
                    Plan(p, "gave-up", f"{reason}; restarted {p.restarts} times already", p.owner)
                )
            continue
        if action == "replaced" and p.sop not in deployed:
            continue
        plans.append(Plan(p, action, reason, p.owner))
    return plans


def _trouble(
    run: RunView | None, heartbeats: dict[str, datetime], *, now: datetime, bounds: Bounds
) -> tuple[Action, str] | None:
    if run is None:
        return ("replaced", "the owner run is unknown to Prefect")
    since = run.state_at or now
    age = now - since
    if run.state_type in ("CRASHED", "FAILED"):
        return ("restarted", f"owner {run.state_name} before its SOP finished")
    if run.state_type == "PENDING" and age > bounds.stuck:
        return ("replaced", f"owner {run.state_name} for {int(age.total_seconds())} s")
    if run.state_type == "SCHEDULED":
        if run.state_name == HELD:
            return ("released", "the claim is stored; the held run may start")
        due = run.scheduled_at or since
        if now - due > bounds.stuck:
            late = int((now - due).total_seconds())
            return ("rescheduled", f"owner {run.state_name} {late} s past its time")
    if run.state_type == "RUNNING" and bounds.heartbeat_lost is not None:
        last = max(heartbeats.get(run.id, since), since)
        if now - last > bounds.heartbeat_lost:
            return (
                "replaced",
                f"owner Running without a heartbeat for {int((now - last).total_seconds())} s",
            )
    return None


# ---------------------------------------------------------------- the report
@dataclass(frozen=True)
class Repair:
    ticket_id: str
    sop: str
    instance: int
    action: str
    reason: str
    old_run: str | None
    new_run: str | None


@dataclass
class ReconcileReport:
    at: datetime
    checked: int = 0
    repairs: list[Repair] = field(default_factory=list)
    submissions: int = 0
    skipped: str | None = None  # why the pass did nothing (Prefect down, another instance)
    errors: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.repairs if r.action == action)

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        acts = sorted({r.action for r in self.repairs})
        done = ", ".join(f"{a} {self.count(a)}" for a in acts) or "nothing to repair"
        return f"{self.checked} runs checked; {done}; {self.submissions} submissions delivered"


# ---------------------------------------------------------------- the supervisor
class PrefectDown(RuntimeError):
    pass


class Reconciler:
    """The long-lived run supervisor, beside the SLA service: ``run_forever`` makes a
    pass every ``reconcile_seconds``; ``reconcile_once`` is one pass."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        s = get_settings()
        self.clock = clock or get_clock()
        self.every = s.reconcile_seconds
        self.timeout = s.prefect_call_timeout_seconds
        self.batch = s.reconcile_batch
        hb = _heartbeat_seconds()
        self.bounds = Bounds(
            grace=timedelta(seconds=s.lost_start_grace_seconds),
            stuck=timedelta(seconds=s.run_stuck_seconds),
            heartbeat_lost=(
                timedelta(seconds=max(s.run_heartbeat_lost_seconds, 3 * hb)) if hb else None
            ),
            max_restarts=s.reconcile_max_restarts,
        )
        self._stop = threading.Event()
        self._prefect_down = False
        self._deployments: dict[str, str] = {}  # sop -> deployment id

    # -- one pass
    def reconcile_once(self, now: datetime | None = None) -> ReconcileReport:
        now = now or self.clock.now()
        report = ReconcileReport(at=now)
        with _pass_lock() as mine:
            if not mine:
                report.skipped = "another supervisor holds this pass"
                return report
            pairs = self._pairs()
            report.checked = len(pairs)
            try:
                _run_async(self._pass(pairs, now, report))
            except PrefectDown as exc:
                report.skipped = f"Prefect server not answering: {exc}"
                if not self._prefect_down:
                    log.warning("run supervisor: %s; no repairs until it answers", report.skipped)
                self._prefect_down = True
                return report
            if self._prefect_down:
                log.info("run supervisor: the Prefect server answers again")
            self._prefect_down = False
        report.submissions = self._deliver_submissions(now, report)
        if report.repairs:
            self._send_events(now)
        return report

    def _pairs(self) -> list[Pair]:
        from sqlmodel import func, select

        from models.entities import RunRepair
        from models.repository import supervised_runs

        deps = sop_deployments()
        events = {d.event: d.sop for d in deps.values()}
        with session_scope() as s:
            expected = supervised_runs(s, start_events=events)
            counts: dict[tuple[str, str, int], int] = {}
            gave_up: set[tuple[str, str, int]] = set()
            for sop, ticket, inst, action, n in s.exec(
                select(
                    RunRepair.sop,
                    RunRepair.ticket_id,
                    RunRepair.instance,
                    RunRepair.action,
                    func.count(),
                )
                .where(RunRepair.action.in_(["restarted", "replaced", "gave-up"]))
                .group_by(RunRepair.sop, RunRepair.ticket_id, RunRepair.instance, RunRepair.action)
            ).all():
                if action == "gave-up":
                    gave_up.add((sop, ticket, inst))
                else:
                    counts[(sop, ticket, inst)] = counts.get((sop, ticket, inst), 0) + n
        return [
            Pair(
                **vars(e),
                restarts=counts.get((e.sop, e.ticket_id, e.instance), 0),
                gave_up=(e.sop, e.ticket_id, e.instance) in gave_up,
            )
            for e in expected
        ]

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(aw, self.timeout)
        except (TimeoutError, OSError) as exc:
            raise PrefectDown(str(exc) or type(exc).__name__) from exc
        except Exception as exc:
            import httpx

            if isinstance(exc, httpx.TransportError):
                raise PrefectDown(str(exc) or type(exc).__name__) from exc
            raise

    async def _pass(self, pairs: list[Pair], now: datetime, report: ReconcileReport) -> None:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            await self._call(client.hello())
            await self._load_deployments(client)
            by_dep = {v: k for k, v in self._deployments.items()}
            unfinished, runs = await self._unfinished(client, by_dep)
            missing = [p.owner for p in pairs if p.owner and p.owner not in runs]
            runs.update(await self._by_id(client, missing, by_dep))
            running = [r.id for r in runs.values() if r.state_type == "RUNNING"]
            beats = (
                await self._heartbeats(client, running, now) if self.bounds.heartbeat_lost else {}
            )
            plans = decide(
                pairs, runs, unfinished, beats, now=now, bounds=self.bounds,
                deployed=set(self._deployments),
            )  # fmt: skip
            self._mark_finished(pairs, runs, now)
            for plan in plans:
                try:
                    repair = await self._apply(client, plan, runs, now)
                except PrefectDown:
                    raise
                except Exception as exc:  # noqa: BLE001 - one pair never stops the pass
                    msg = f"{plan.action} {plan.pair.sop} of {plan.pair.ticket_id}: {exc}"
                    log.exception("run supervisor: %s", msg)
                    report.errors.append(msg)
                    continue
                if repair is not None:
                    report.repairs.append(repair)

    @staticmethod
    def _mark_finished(pairs: list[Pair], runs: dict[str, RunView], now: datetime) -> None:
        """A closed ticket's claim whose run ended (Completed, or Cancelled by a person)
        leaves supervision."""
        from models.repository import mark_run_finished

        done = [
            p for p in pairs
            if p.ticket_closed and p.owner and p.owner in runs
            and runs[p.owner].state_type in ("COMPLETED", "CANCELLED")
        ]  # fmt: skip
        if not done:
            return
        with session_scope() as s:
            for p in done:
                mark_run_finished(
                    s, ticket_id=p.ticket_id, sop=p.sop, flow_run_id=p.owner or "", now=now
                )

    async def _load_deployments(self, client: Any) -> None:
        from prefect.exceptions import ObjectNotFound

        for sop, dep in sop_deployments().items():
            if sop in self._deployments:
                continue
            try:
                d = await self._call(client.read_deployment_by_name(dep.name))
            except ObjectNotFound:
                log.debug("deployment %s is not registered yet", dep.name)
                continue
            self._deployments[sop] = str(d.id)

    def _view(self, fr: Any, by_dep: dict[str, str]) -> RunView:
        st = fr.state
        sop = by_dep.get(str(fr.deployment_id)) if fr.deployment_id else None
        pair = pair_of_parameters(sop, fr.parameters or {}) if sop else None
        return RunView(
            id=str(fr.id),
            state_type=st.type.value if st else "SCHEDULED",
            state_name=st.name if st else "",
            state_at=_aware(st.timestamp) if st else None,
            scheduled_at=_aware(st.state_details.scheduled_time)
            if st and st.state_details
            else None,
            pair=pair,
            created=_aware(fr.created),
        )

    async def _unfinished(
        self, client: Any, by_dep: dict[str, str]
    ) -> tuple[dict[tuple[str, str, int], list[RunView]], dict[str, RunView]]:
        from uuid import UUID

        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        if not by_dep:
            return {}, {}
        flt = FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(
                    any_=[
                        StateType.SCHEDULED,
                        StateType.PENDING,
                        StateType.RUNNING,
                        StateType.PAUSED,
                        StateType.CANCELLING,
                    ]  # fmt: skip
                )
            )
        )
        deps = DeploymentFilter(id=DeploymentFilterId(any_=[UUID(d) for d in by_dep]))
        by_pair: dict[tuple[str, str, int], list[RunView]] = {}
        runs: dict[str, RunView] = {}
        offset = 0
        while True:
            page = await self._call(
                client.read_flow_runs(
                    flow_run_filter=flt,
                    deployment_filter=deps,
                    sort=FlowRunSort.ID_DESC,
                    limit=self.batch,
                    offset=offset,
                )
            )
            for fr in page:
                v = self._view(fr, by_dep)
                runs[v.id] = v
                if v.pair is not None:
                    by_pair.setdefault(v.pair, []).append(v)
            if len(page) < self.batch:
                return by_pair, runs
            offset += len(page)

    async def _by_id(
        self, client: Any, ids: list[str], by_dep: dict[str, str]
    ) -> dict[str, RunView]:
        from uuid import UUID

        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import FlowRunSort

        out: dict[str, RunView] = {}
        valid = []
        for i in ids:
            try:
                valid.append(UUID(i))
            except ValueError:
                continue  # not a Prefect run id: unknown, replaced
        for i in range(0, len(valid), self.batch):
            chunk = valid[i : i + self.batch]
            page = await self._call(
                client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                    sort=FlowRunSort.ID_DESC,
                    limit=len(chunk),
                )
            )
            for fr in page:
                v = self._view(fr, by_dep)
                out[v.id] = v
        return out

    async def _heartbeats(
        self, client: Any, running: list[str], now: datetime
    ) -> dict[str, datetime]:
        """The last ``prefect.flow-run.heartbeat`` of each Running run (one read per batch)."""
        from prefect.events.filters import (
            EventFilter,
            EventNameFilter,
            EventOccurredFilter,
            EventResourceFilter,
        )

        assert self.bounds.heartbeat_lost is not None
        out: dict[str, datetime] = {}
        since = now - 4 * self.bounds.heartbeat_lost
        for i in range(0, len(running), self.batch):
            chunk = running[i : i + self.batch]
            flt = EventFilter(
                occurred=EventOccurredFilter(since=since, until=now + timedelta(minutes=5)),
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(
                    id=[f"prefect.flow-run.{r}" for r in chunk], distinct=True
                ),
            )
            page = await self._call(client.read_events(filter=flt, limit=len(chunk)))
            for ev in page.events:
                rid = ev.resource.id.removeprefix("prefect.flow-run.")
                at = _aware(ev.occurred)
                if at and (rid not in out or at > out[rid]):
                    out[rid] = at
        return out

    # -- repairs
    async def _apply(
        self, client: Any, plan: Plan, runs: dict[str, RunView], now: datetime
    ) -> Repair | None:
        from prefect.states import Cancelled, Cancelling, Scheduled

        p = plan.pair
        if plan.action == "created":
            new = await self._create(
                client, p, key=f"aftersales:{p.sop}:{p.ticket_id}:{p.instance}:start:{p.start_id}"
            )
            if not self._record(p, plan, None, new, now, claim="pre"):
                await self._set_state(
                    client, new, Cancelled(message="another run claimed the ticket first")
                )
                log.info(
                    "%s %s: claimed by another run meanwhile; run %s cancelled",
                    p.ticket_id,
                    p.sop,
                    new,
                )
                return None
            await self._release(client, new, now)
            return self._repair(plan, None, new)
        if plan.action == "adopted":
            assert plan.run
            if not self._record(p, plan, None, plan.run, now, claim="pre"):
                return None
            held = runs.get(plan.run)
            if held is not None and held.state_name == HELD:  # an earlier pass created it
                await self._release(client, plan.run, now)
            return self._repair(plan, None, plan.run)
        if plan.action == "released":
            assert plan.run
            await self._release(client, plan.run, now)
            return None  # the creation was recorded; releasing is its second half
        if plan.action == "restarted":
            assert plan.run
            await self._set_state(
                client,
                plan.run,
                Scheduled(
                    scheduled_time=now, message=f"restarted by the run supervisor: {plan.reason}"
                ),
            )
            self._record(p, plan, plan.run, plan.run, now)
            return self._repair(plan, plan.run, plan.run)
        if plan.action == "rescheduled":
            assert plan.run
            await self._set_state(
                client,
                plan.run,
                Scheduled(scheduled_time=now, message=f"rescheduled: {plan.reason}"),
            )
            self._record(p, plan, plan.run, plan.run, now)
            return self._repair(plan, plan.run, plan.run)
        if plan.action == "replaced":
            assert plan.run
            old = plan.run
            new = await self._create(
                client, p, key=f"aftersales:{p.sop}:{p.ticket_id}:{p.instance}:replace:{old}"
            )
            if not self._record(p, plan, old, new, now, claim="transfer"):
                await self._set_state(client, new, Cancelled(message="the claim moved meanwhile"))
                return None
            await self._release(client, new, now)
            if old in runs:
                await self._set_state(
                    client, old, Cancelled(message=f"replaced by run {new}: {plan.reason}")
                )
            return self._repair(plan, old, new)
        if plan.action == "cancelled":
            assert plan.run
            run = runs.get(plan.run)
            state = (
                Cancelling(message=f"duplicate of run {p.owner}")
                if run is not None and run.state_type in ("RUNNING", "PENDING")
                else Cancelled(message=f"duplicate of run {p.owner}")
            )
            await self._set_state(client, plan.run, state)
            self._record(p, plan, plan.run, p.owner, now)
            return self._repair(plan, plan.run, p.owner)
        if plan.action == "gave-up":
            self._record(p, plan, plan.run, None, now)
            log.error("run supervisor gave up on %s %s: %s", p.ticket_id, p.sop, plan.reason)
            return self._repair(plan, plan.run, None)
        raise AssertionError(plan.action)

    async def _create(self, client: Any, p: Pair, *, key: str) -> str:
        from uuid import UUID

        from prefect.states import Scheduled

        dep = self._deployments[p.sop]
        fr = await self._call(
            client.create_flow_run_from_deployment(
                UUID(dep),
                parameters=parameters_for(p.sop, p.ticket_id, p.instance, p.level),
                idempotency_key=key,
                state=Scheduled(
                    scheduled_time=datetime.now(UTC) + timedelta(days=1),
                    name=HELD,
                    message="created by the run supervisor; starts once its claim is stored",
                ),  # fmt: skip
                tags=["supervised"],
            )
        )
        return str(fr.id)

    async def _release(self, client: Any, run_id: str, now: datetime) -> None:
        from prefect.states import Scheduled

        await self._set_state(client, run_id, Scheduled(scheduled_time=now, message="claim stored"))

    async def _set_state(self, client: Any, run_id: str, state: Any) -> None:
        from uuid import UUID

        await self._call(client.set_flow_run_state(UUID(run_id), state, force=True))

    def _record(
        self,
        p: Pair,
        plan: Plan,
        old: str | None,
        new: str | None,
        now: datetime,
        claim: Literal["pre", "transfer"] | None = None,
    ) -> bool:
        """The claim change (if any), the ``run_repair`` row and the event, in one
        transaction; False (nothing written) when the claim changed meanwhile."""
        from models.entities import RunRepair
        from models.repository import preclaim_run, transfer_run

        with session_scope() as s:
            if claim == "pre":
                assert new is not None
                ok = preclaim_run(
                    s, ticket_id=p.ticket_id, sop=p.sop, escalation_id=p.escalation_id,
                    flow_run_id=new, now=now,
                )  # fmt: skip
            elif claim == "transfer":
                assert old is not None and new is not None
                ok = transfer_run(
                    s, ticket_id=p.ticket_id, sop=p.sop, escalation_id=p.escalation_id,
                    old_run=old, new_run=new,
                )  # fmt: skip
            else:
                ok = True
            if not ok:
                return False
            s.add(
                RunRepair(
                    ticket_id=p.ticket_id,
                    sop=p.sop,
                    instance=p.instance,
                    action=plan.action,
                    reason=plan.reason,
                    old_run=old,
                    new_run=new,
                    at=now,
                )  # fmt: skip
            )
            queue_repaired_event(
                s, ticket_id=p.ticket_id, sop=p.sop, instance=p.instance, action=plan.action,
                reason=plan.reason, old_run=old, new_run=new, now=now,
            )  # fmt: skip
        log.warning(
            "run supervisor: %s %s%s %s (%s) old %s new %s",
            p.ticket_id, p.sop, f" escalation {p.instance}" if p.instance else "",
            plan.action, plan.reason, old, new,
        )  # fmt: skip
        return True

    @staticmethod
    def _repair(plan: Plan, old: str | None, new: str | None) -> Repair:
        p = plan.pair
        return Repair(p.ticket_id, p.sop, p.instance, plan.action, plan.reason, old, new)

    def _deliver_submissions(self, now: datetime, report: ReconcileReport) -> int:
        from aftersales.submissions import deliver_pending

        try:
            return int(deliver_pending(now=now) or 0)
        except Exception as exc:  # noqa: BLE001 - delivered on the next pass
            log.warning("step submissions not delivered this pass: %s", exc)
            report.errors.append(f"submissions: {exc}")
            return 0

    def _send_events(self, now: datetime) -> None:
        from aftersales.events import send_outbox_events

        try:
            send_outbox_events(now=now)
        except Exception as exc:  # noqa: BLE001 - the SLA service's courier sends them
            log.debug("repair events left for the courier: %s", exc)

    # -- the loop
    def run_forever(self) -> None:
        log.info("run supervisor started (a pass every %.1f s)", self.every)
        while not self._stop.is_set():
            try:
                report = self.reconcile_once()
                if report.repairs or report.errors:
                    log.info("run supervisor: %s", report.summary())
            except Exception:  # noqa: BLE001 - keep supervising through a DB error
                log.exception("run supervisor pass failed; retrying")
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.run_forever, name="run-supervisor", daemon=True)
        t.start()
        return t


def reconcile_once(now: datetime | None = None) -> ReconcileReport:
    """One supervisor pass (the CLI's ``aftersales supervise --once``)."""
    return Reconciler().reconcile_once(now)


def queue_repaired_event(
    session: Any,
    *,
    ticket_id: str,
    sop: str,
    instance: int,
    action: str,
    reason: str,
    old_run: str | None,
    new_run: str | None,
    now: datetime,
) -> None:
    """``aftersales.run.repaired`` in the outbox, related to both runs (their event feeds)."""
    from aftersales.steps import queue_event
    from models.entities import OutboxEvent

    queue_event(
        session,
        event=REPAIRED_EVENT,
        ticket_id=ticket_id,
        payload={
            "ticket_id": ticket_id,
            "sop": sop,
            "instance": instance,
            "action": action,
            "reason": reason,
            "old_run": old_run,
            "new_run": new_run,
        },  # fmt: skip
        now=now,
        flow_run_id=new_run or old_run,
    )
    if old_run and new_run and old_run != new_run:
        for obj in session.new:
            if (
                isinstance(obj, OutboxEvent)
                and obj.event == REPAIRED_EVENT
                and obj.ticket_id == ticket_id
            ):
                obj.related = [
                    *obj.related,
                    {
                        "prefect.resource.id": f"prefect.flow-run.{old_run}",
                        "prefect.resource.role": "replaced-run",
                    },
                ]


# ---------------------------------------------------------------- helpers
def _heartbeat_seconds() -> int | None:
    """Prefect's flow-run heartbeat interval (PREFECT_FLOWS_HEARTBEAT_FREQUENCY), the same
    setting the runs get from the environment ``aftersales up`` gives every part."""
    try:
        from prefect.settings import get_current_settings

        return get_current_settings().flows.heartbeat_frequency
    except Exception:  # noqa: BLE001
        raw = os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
        return int(raw) if raw else None


def _aware(t: Any) -> datetime | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


class _pass_lock:
    """PostgreSQL: a session advisory lock for one pass (another supervisor skips its pass);
    SQLite: always granted (one supervisor)."""

    def __enter__(self) -> bool:
        from sqlalchemy import text

        self.conn = None
        engine = get_engine()
        if engine.dialect.name != "postgresql":
            return True
        self.conn = engine.connect()
        got = bool(
            self.conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK}
            ).scalar()
        )
        self.conn.commit()
        if not got:
            self.conn.close()
            self.conn = None
        return got

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
                self.conn.commit()
            finally:
                self.conn.close()


def _run_async(coro: Any) -> Any:
    from aftersales.events import _run_async as run

    return run(coro)
