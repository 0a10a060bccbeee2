"""The run supervisor (issue 11 §1) against the real Prefect test server and a real
database: the SOP deployments are registered (no runner, no triggers), so the runs it
creates or restarts stay where it put them and each repair can be read back from
Prefect, from ``run_repair`` and from the outbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlmodel import select

from aftersales import forms, steps
from aftersales.intake import accept_intake, parse_payload
from aftersales.reconciler import (
    HELD,
    REPAIRED_EVENT,
    Reconciler,
    ReconcileReport,
    reconcile_once,
    sop_deployments,
)
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import OutboxEvent, RunRepair, StepRecord
from models.repository import get_sop_run, transfer_run

GRACE = timedelta(seconds=60)  # lost_start_grace_seconds (default)


@pytest.fixture(scope="module")
def deployed(prefect_server: str) -> dict[str, str]:
    """The SOP deployments as ``aftersales serve`` registers them, without their triggers
    (no event in these tests starts a run behind the supervisor's back)."""
    from importlib import import_module

    from deployments.serve import DEPLOYMENTS

    ids = {}
    for name, (path, _event, tags) in DEPLOYMENTS.items():
        mod, attr = path.split(":")
        ids[name] = str(
            getattr(import_module(mod), attr).to_deployment(name=name, tags=tags).apply()
        )
    return ids


@pytest.fixture
def db(sqlite_db: str, deployed: dict[str, str]) -> Iterator[str]:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    yield sqlite_db


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def intake(now: datetime, *, sop: str = "inquiry", sent_ago: timedelta | None = 2 * GRACE) -> str:
    """A ticket whose start event was sent ``sent_ago`` before ``now`` (and never became
    a run: the trigger dropped it)."""
    payload = {
        "channel": "phone",
        "intake_id": f"rec-{now.timestamp()}-{os.urandom(3).hex()}",
        "customer_name": "张伟",
        "contact": "13812345678",
        "description": "X200 will not power on",
        "sop": sop,
    }
    tid = accept_intake(parse_payload(payload), ctx=deadlines(), now=now - 5 * GRACE).ticket_id
    if sent_ago is not None:
        with session_scope() as s:
            for ev in s.exec(select(OutboxEvent).where(OutboxEvent.ticket_id == tid)):
                ev.sent_at = now - sent_ago
                s.add(ev)
    return tid


def runs_of(ticket_id: str, sop: str = "inquiry") -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    name = sop_deployments()[sop].name.split("/", 1)[1]
    with client() as c:
        runs = c.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
    return [r for r in runs if (r.parameters or {}).get("ticket_id") == ticket_id]


def owner(ticket_id: str, sop: str = "inquiry") -> str | None:
    with session_scope() as s:
        row = get_sop_run(s, ticket_id=ticket_id, sop=sop)  # type: ignore[arg-type]
        return row.flow_run_id if row else None


def repairs(ticket_id: str) -> list[RunRepair]:
    with session_scope() as s:
        return list(
            s.exec(select(RunRepair).where(RunRepair.ticket_id == ticket_id).order_by(RunRepair.id))
        )


def repaired_events(ticket_id: str) -> list[OutboxEvent]:
    with session_scope() as s:
        return list(
            s.exec(
                select(OutboxEvent).where(
                    OutboxEvent.ticket_id == ticket_id, OutboxEvent.event == REPAIRED_EVENT
                )
            )
        )


def state_of(run_id: str) -> Any:
    with client() as c:
        return c.read_flow_run(UUID(run_id)).state


def force(run_id: str, state: Any) -> None:
    with client() as c:
        c.set_flow_run_state(UUID(run_id), state, force=True)


def supervised(now: datetime) -> tuple[str, str]:
    """A ticket whose run the supervisor created and pre-claimed."""
    tid = intake(now)
    report = reconcile_once(now)
    assert [r.action for r in report.repairs if r.ticket_id == tid] == ["created"]
    run = owner(tid)
    assert run is not None
    return tid, run


# ---------------------------------------------------------------- a start that never became a run
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_lost_start_gets_one_run_created_and_preclaimed_and_a_second_pass_adds_none(
    backend: str, request: pytest.FixtureRequest, deployed: dict[str, str]
) -> None:
    request.getfixturevalue(f"{backend}_db")
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    now = datetime.now(UTC)
    tid = intake(now)

    first = reconcile_once(now)
    assert first.skipped is None, first.summary()
    assert [(r.ticket_id, r.action) for r in first.repairs] == [(tid, "created")]
    runs = runs_of(tid)
    assert len(runs) == 1
    run = runs[0]
    assert owner(tid) == str(run.id)  # pre-claimed: claim_run will find it the owner
    assert run.state.type.value == "SCHEDULED" and run.state.name != HELD  # released
    assert run.parameters == {"ticket_id": tid}
    assert [(r.action, r.new_run) for r in repairs(tid)] == [("created", str(run.id))]
    (ev,) = repaired_events(tid)
    assert ev.payload["action"] == "created" and ev.payload["new_run"] == str(run.id)
    assert {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.role": "flow-run",
    } in ev.related

    second = reconcile_once(now + timedelta(seconds=11))
    assert [r for r in second.repairs if r.ticket_id == tid] == []
    assert len(runs_of(tid)) == 1
    assert owner(tid) == str(run.id)


def test_the_grace_counts_from_the_last_start_event_not_from_the_ticket(db: str) -> None:
    now = datetime.now(UTC)
    tid = intake(now, sent_ago=timedelta(seconds=10))  # the ticket is 5 min old
    report = reconcile_once(now)
    assert [r for r in report.repairs if r.ticket_id == tid] == []
    assert runs_of(tid) == []
    report = reconcile_once(now + GRACE)
    assert [r.action for r in report.repairs if r.ticket_id == tid] == ["created"]


def test_an_unclaimed_run_of_the_deployment_is_adopted_not_duplicated(db: str) -> None:
    """A trigger's run waiting for a slot (Scheduled, not claimed yet) is pre-claimed
    instead of a second run being created."""
    now = datetime.now(UTC)
    tid = intake(now)
    with client() as c:
        waiting = c.create_flow_run_from_deployment(
            UUID(deployed_id("inquiry")), parameters={"ticket_id": tid}
        )
    report = reconcile_once(now)
    assert [(r.action, r.new_run) for r in report.repairs if r.ticket_id == tid] == [
        ("adopted", str(waiting.id))
    ]
    assert owner(tid) == str(waiting.id)
    assert len(runs_of(tid)) == 1


def deployed_id(sop: str) -> str:
    with client() as c:
        return str(c.read_deployment_by_name(sop_deployments()[sop].name).id)


# ---------------------------------------------------------------- a dead owner
def test_a_crashed_owner_is_restarted_in_place_and_recorded(db: str) -> None:
    from prefect.states import Crashed

    now = datetime.now(UTC)
    tid, run = supervised(now)
    force(run, Crashed(message="process killed"))

    report = reconcile_once(now + timedelta(seconds=10))
    (rep,) = [r for r in report.repairs if r.ticket_id == tid]
    assert (rep.action, rep.old_run, rep.new_run) == ("restarted", run, run)
    assert "Crashed" in rep.reason
    st = state_of(run)
    assert st.type.value == "SCHEDULED"  # Prefect's retry path: the same run, its inputs kept
    assert owner(tid) == run
    assert [r.action for r in repairs(tid)] == ["created", "restarted"]
    assert [e.payload["action"] for e in repaired_events(tid)] == ["created", "restarted"]
    # nothing more to do while it waits for its runner
    assert [
        r for r in reconcile_once(now + timedelta(seconds=20)).repairs if r.ticket_id == tid
    ] == []


def test_a_run_killed_after_its_last_step_closed_the_ticket_is_restarted_then_leaves_supervision(
    db: str,
) -> None:
    """Chaos seed 4242: the callback's last step closed the ticket, then its process was
    killed before Prefect saw the run end. The run is restarted (it re-runs its body, every
    step recorded, and completes); once Completed, the claim leaves supervision."""
    from prefect.states import Completed, Crashed

    from models.entities import SopRun, Ticket, TicketStatus

    now = datetime.now(UTC)
    tid, run = supervised(now)
    with session_scope() as s:
        t = s.get(Ticket, tid)
        t.status = TicketStatus.CLOSED
        s.add(t)
    force(run, Crashed(message="process killed after the last step"))

    report = reconcile_once(now + timedelta(seconds=10))
    (rep,) = [r for r in report.repairs if r.ticket_id == tid]
    assert (rep.action, rep.old_run, rep.new_run) == ("restarted", run, run)
    assert state_of(run).type.value == "SCHEDULED"

    force(run, Completed())
    report = reconcile_once(now + timedelta(seconds=20))
    assert [r for r in report.repairs if r.ticket_id == tid] == []
    with session_scope() as s:
        claim = s.exec(select(SopRun).where(SopRun.ticket_id == tid)).one()
        assert claim.finished_at is not None and claim.flow_run_id == run
    checked = reconcile_once(now + timedelta(seconds=30)).checked
    force(run, Crashed(message="after it finished: no longer watched"))
    again = reconcile_once(now + timedelta(seconds=40))
    assert [r for r in again.repairs if r.ticket_id == tid] == [] and again.checked == checked


def test_a_run_that_keeps_failing_is_given_up_after_the_bound(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.states import Failed

    from aftersales.settings import reset_settings

    monkeypatch.setenv("AFTERSALES_RECONCILE_MAX_RESTARTS", "1")
    reset_settings()
    try:
        now = datetime.now(UTC)
        tid, run = supervised(now)
        force(run, Failed(message="boom"))
        assert [r.action for r in reconcile_once(now).repairs if r.ticket_id == tid] == [
            "restarted"
        ]
        force(run, Failed(message="boom again"))
        assert [r.action for r in reconcile_once(now).repairs if r.ticket_id == tid] == ["gave-up"]
        assert state_of(run).type.value == "FAILED"  # left for a person
        assert [r for r in reconcile_once(now).repairs if r.ticket_id == tid] == []  # once
    finally:
        monkeypatch.delenv("AFTERSALES_RECONCILE_MAX_RESTARTS")
        reset_settings()


def test_a_stuck_pending_owner_is_replaced_and_the_claim_moves(db: str) -> None:
    from prefect.states import Pending

    from aftersales.settings import get_settings

    now = datetime.now(UTC)
    tid, old = supervised(now)
    force(old, Pending(name="Submitting"))
    assert [
        r for r in reconcile_once(now + timedelta(seconds=30)).repairs if r.ticket_id == tid
    ] == []

    later = now + timedelta(seconds=get_settings().run_stuck_seconds + 30)
    (rep,) = [r for r in reconcile_once(later).repairs if r.ticket_id == tid]
    assert rep.action == "replaced" and rep.old_run == old and rep.new_run not in (None, old)
    assert owner(tid) == rep.new_run
    assert state_of(old).type.value == "CANCELLED"
    assert state_of(rep.new_run).type.value == "SCHEDULED"
    assert {r.id for r in runs_of(tid)} == {UUID(old), UUID(rep.new_run)}
    (ev,) = [e for e in repaired_events(tid) if e.payload["action"] == "replaced"]
    assert {r["prefect.resource.id"] for r in ev.related} == {
        f"prefect.flow-run.{old}",
        f"prefect.flow-run.{rep.new_run}",
    }
    assert [
        r for r in reconcile_once(later + timedelta(seconds=10)).repairs if r.ticket_id == tid
    ] == []


def test_a_duplicate_run_is_cancelled_and_the_owner_kept(db: str) -> None:
    now = datetime.now(UTC)
    tid, run = supervised(now)
    with client() as c:
        dup = c.create_flow_run_from_deployment(
            UUID(deployed_id("inquiry")), parameters={"ticket_id": tid}
        )
    (rep,) = [r for r in reconcile_once(now).repairs if r.ticket_id == tid]
    assert (rep.action, rep.old_run, rep.new_run) == ("cancelled", str(dup.id), run)
    assert state_of(str(dup.id)).type.value == "CANCELLED"
    assert state_of(run).type.value == "SCHEDULED"
    assert owner(tid) == run


# ---------------------------------------------------------------- exactly one run makes progress
def _step_flow() -> Any:
    from prefect import flow

    from tasks.steps import complete_step

    @flow(name="reconciler-step-probe", persist_result=False)
    def probe(ticket_id: str) -> str:
        return complete_step("inquiry", "receive", "receive", ticket_id).key

    return probe


def _run_as(flow_obj: Any, ticket_id: str) -> tuple[str, Any]:
    from prefect.flow_engine import run_flow

    with client() as c:
        fr = c.create_flow_run(flow_obj, parameters={"ticket_id": ticket_id})
    state = run_flow(
        flow_obj, flow_run=fr, parameters={"ticket_id": ticket_id}, return_type="state"
    )
    return str(fr.id), state


def test_only_the_recorded_owner_applies_a_step(db: str) -> None:
    """A run the claim moved away from (it woke after being replaced) is refused in
    complete_step's transaction: nothing recorded, the run stops without retrying; the
    owner then applies the step."""
    now = datetime.now(UTC)
    tid, run = supervised(now)
    probe = _step_flow()

    stale, state = _run_as(probe, tid)
    assert state.is_failed()
    assert "does not own inquiry" in str(state.message) or "RunReplacedError" in str(state.message)
    with session_scope() as s:
        recorded = select(StepRecord).where(
            StepRecord.ticket_id == tid, StepRecord.sop == "inquiry"
        )
        assert s.exec(recorded).all() == []
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with client() as c:
        tasks = c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(stale)])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=50,
        )
    assert [t.run_count for t in tasks if t.name.startswith("complete_step")] == [1]  # no retries

    # the claim moves to a new run (as a replacement does): that run's step is applied
    from prefect.flow_engine import run_flow

    with client() as c:
        fr = c.create_flow_run(probe, parameters={"ticket_id": tid})
    with session_scope() as s:
        assert transfer_run(
            s, ticket_id=tid, sop="inquiry", escalation_id=None, old_run=run, new_run=str(fr.id)
        )
    state = run_flow(probe, flow_run=fr, parameters={"ticket_id": tid}, return_type="state")
    assert state.is_completed(), state.message
    with session_scope() as s:
        (rec,) = s.exec(recorded).all()
    assert rec.flow_run_id == str(fr.id)


# ---------------------------------------------------------------- class B hand-over
def test_a_class_B_hand_over_gets_exactly_one_repair_run(db: str) -> None:
    """The repair start is counted from the hand-over (the ticket is minutes old): a trigger's
    run that comes within the grace is the only repair run; no second one is created."""
    now = datetime.now(UTC)
    tid, _inq = supervised(now)
    ctx = deadlines()
    with session_scope() as s:
        steps.complete(s, deadlines=ctx, sop="inquiry", step="receive", ticket_id=tid, now=now)
    with session_scope() as s:
        r = steps.complete(
            s, deadlines=ctx, sop="inquiry", step="first-response", ticket_id=tid, now=now,
            form=forms.FirstResponse(agent="小吴", category="B", priority="auto", complex_issue=False),
        )  # fmt: skip
    assert r.handed_over == "repair"
    with session_scope() as s:  # the courier sent the repair start just now
        (start,) = s.exec(
            select(OutboxEvent).where(
                OutboxEvent.ticket_id == tid, OutboxEvent.event == steps.START_EVENTS["repair"]
            )
        ).all()
        start.sent_at = now
        s.add(start)

    assert [
        r for r in reconcile_once(now + timedelta(seconds=30)).repairs if r.sop == "repair"
    ] == []
    # the trigger's run arrives and claims (as claim_run does)
    with client() as c:
        trig = c.create_flow_run_from_deployment(
            UUID(deployed_id("repair")), parameters={"ticket_id": tid}
        )
    from models.repository import claim_sop_run

    with session_scope() as s:
        claim_sop_run(s, ticket_id=tid, sop="repair", flow_run_id=str(trig.id), now=now)  # type: ignore[arg-type]
    for dt in (GRACE + timedelta(seconds=1), 3 * GRACE):
        report = reconcile_once(now + dt)
        assert [r for r in report.repairs if r.ticket_id == tid and r.sop == "repair"] == []
    assert [str(r.id) for r in runs_of(tid, "repair")] == [str(trig.id)]
    assert owner(tid, "repair") == str(trig.id)


def test_a_class_B_hand_over_whose_start_was_dropped_gets_one_repair_run(db: str) -> None:
    now = datetime.now(UTC)
    tid, _inq = supervised(now)
    ctx = deadlines()
    with session_scope() as s:
        steps.complete(s, deadlines=ctx, sop="inquiry", step="receive", ticket_id=tid, now=now)
        steps.complete(
            s, deadlines=ctx, sop="inquiry", step="first-response", ticket_id=tid, now=now,
            form=forms.FirstResponse(agent="小吴", category="B", priority="auto", complex_issue=False),
        )  # fmt: skip
        for ev in s.exec(select(OutboxEvent).where(OutboxEvent.ticket_id == tid)):
            ev.sent_at = ev.sent_at or now
            s.add(ev)
    later = now + GRACE + timedelta(seconds=1)
    created = [r for r in reconcile_once(later).repairs if r.sop == "repair"]
    assert [(r.ticket_id, r.action) for r in created] == [(tid, "created")]
    assert [
        r for r in reconcile_once(later + timedelta(seconds=10)).repairs if r.sop == "repair"
    ] == []
    (run,) = runs_of(tid, "repair")
    assert owner(tid, "repair") == str(run.id)


# ---------------------------------------------------------------- Prefect down, several supervisors
def test_prefect_down_means_no_repairs_and_one_warning(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    now = datetime.now(UTC)
    tid = intake(now)
    sup = Reconciler()
    sup.timeout = 3.0
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with caplog.at_level("WARNING", logger="aftersales.reconciler"):
            first: ReconcileReport = sup.reconcile_once(now)
            second = sup.reconcile_once(now)
    assert first.skipped and "Prefect server not answering" in first.skipped
    assert second.skipped and not first.repairs and not second.repairs
    assert len([r for r in caplog.records if "not answering" in r.getMessage()]) == 1
    assert owner(tid) is None and repairs(tid) == []
    assert [r.action for r in sup.reconcile_once(now).repairs if r.ticket_id == tid] == ["created"]


def test_two_supervisors_on_postgresql_take_turns(
    postgres_db: str, deployed: dict[str, str]
) -> None:
    import threading

    from aftersales.demo import seed_reference_data

    seed_reference_data()
    now = datetime.now(UTC)
    tids = [intake(now) for _ in range(3)]
    reports: list[ReconcileReport] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        reports.append(Reconciler().reconcile_once(now))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    created = [r.ticket_id for rep in reports for r in rep.repairs if r.action == "created"]
    assert sorted(created) == sorted(tids)  # each once, whichever supervisor made the pass
    for tid in tids:
        assert len(runs_of(tid)) == 1 and owner(tid) == str(runs_of(tid)[0].id)
