"""End to end (issue 11 §1): a real runner serving the deployments (the ``stack``
fixture), the SLA service and the run supervisor in threads. The flow-run process of a
running ticket's run is killed with SIGKILL; the supervisor brings the run back and the
ticket continues from the step it was taking."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from aftersales.humansteps import resume_step
from models.db import session_scope
from models.entities import RunRepair, StepRecord
from models.repository import get_sop_run
from tests.conftest import Stack
from tests.flows.test_end_to_end import flow_run, submit, wait, waits_for

pytestmark = pytest.mark.e2e


def run_process(run_id: str, runner_pid: int) -> int | None:
    """The pid of the process executing the flow run: a child of the runner, started with
    PREFECT__FLOW_RUN_ID in its environment (not a helper process that inherited it)."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == runner_pid and needle in (d / "environ").read_bytes().split(b"\0"):
                return int(d.name)
        except OSError:
            continue
    return None


def test_a_killed_flow_run_process_is_brought_back_and_the_ticket_continues(stack: Stack) -> None:
    from aftersales.api import create_app
    from aftersales.reconciler import Reconciler

    sup = Reconciler()
    sup.every = 1.0
    # a process killed before its engine took the run leaves it Scheduled ("Resuming"),
    # which the supervisor reschedules after run_stuck_seconds (300 s): 20 s here
    sup.bounds = replace(sup.bounds, stuck=timedelta(seconds=20))
    thread = sup.start_thread()
    try:
        api = TestClient(create_app())
        resp = api.post(
            "/intake",
            json={
                "channel": "online",
                "sop": "repair",
                "intake_id": f"kill-{stack.backend}-{time.time_ns()}",
                "customer_id": "C-1002",
                "customer_name": "李娜",
                "contact": "13987654321",
                "product_model": "X200",
                "purchase_date": "2024-01-10",
                "description": "app crashes on start",
            },
        )
        assert resp.status_code in (200, 201), resp.text
        tid = resp.json()["ticket_id"]
        wait(lambda: waits_for(tid, "review"), 180, "repair run waiting for review")
        with session_scope() as s:
            sop_run = get_sop_run(s, ticket_id=tid, sop="repair")  # type: ignore[arg-type]
            assert sop_run is not None
            run_id = sop_run.flow_run_id

        def repaired() -> list[tuple[str, str | None]]:
            with session_scope() as s:
                rows = s.exec(
                    select(RunRepair)
                    .where(RunRepair.ticket_id == tid, RunRepair.sop == "repair")
                    .order_by(RunRepair.id)
                ).all()
                return [(r.action, r.new_run) for r in rows]

        # under load the trigger's run may have waited past the grace: it was adopted
        # (pre-claimed), or a second start was cancelled; never doubled
        before = repaired()
        assert all(a in ("adopted", "cancelled") for a, _ in before), before
        # the suspended attempt's process may still be shutting down after the run turned
        # Paused; the process to kill is the one the resume starts, so wait for it to go
        wait(
            lambda: run_process(run_id, stack.runner_pid) is None,
            90,
            "the suspended attempt's process to exit",
        )
        # the review resumes the run: a new process takes the step; kill it mid-way
        resume_step(tid, "review", {"reviewer": "调度-孙", "approved": True, "skill": "software"})
        pid = None
        end = time.monotonic() + 90
        while pid is None and time.monotonic() < end:
            pid = run_process(run_id, stack.runner_pid)
            if pid is None:
                time.sleep(0.01)
        assert pid is not None, "the resumed run's process never appeared"
        os.kill(pid, signal.SIGSTOP)  # frozen where it is (still importing), then killed
        with session_scope() as s:
            applied = s.exec(
                select(StepRecord).where(StepRecord.ticket_id == tid, StepRecord.step == "review")
            ).all()
        os.kill(pid, signal.SIGKILL)
        assert applied == [], "the process had applied the review before it was stopped"

        killed_in = flow_run(run_id).state
        try:
            wait(lambda: len(repaired()) > len(before), 180, "the supervisor to repair the run")
        except AssertionError as exc:
            now_in = flow_run(run_id).state
            raise AssertionError(f"{exc} (killed in {killed_in}; now {now_in})") from None
        fix = repaired()[len(before)]
        # Crashed (its engine had started): restarted in place; still Scheduled: rescheduled
        assert fix in (("restarted", run_id), ("rescheduled", run_id)) or fix[0] == "replaced", fix
        # the ticket continues: the review is applied once and the run asks for the arrival
        wait(lambda: waits_for(tid, "arrival"), 240, "the repaired run to wait for the arrival")
        with session_scope() as s:
            reviews = s.exec(
                select(StepRecord).where(StepRecord.ticket_id == tid, StepRecord.step == "review")
            ).all()
            owner = get_sop_run(s, ticket_id=tid, sop="repair")  # type: ignore[arg-type]
        assert len(reviews) == 1
        assert owner is not None and flow_run(owner.flow_run_id).state.is_paused()
        submit(tid, "arrival", {"engineer_id": "E-03"})
        wait(lambda: waits_for(tid, "diagnosis"), 180, "the run to move on to the diagnosis")
        # one run of the repair deployment makes progress: every other is finished
        others: list[Any] = []
        with session_scope() as s:
            owner = get_sop_run(s, ticket_id=tid, sop="repair")  # type: ignore[arg-type]
        assert owner is not None
        for _action, new in repaired():
            if new and new != owner.flow_run_id:
                others.append(flow_run(new))
        assert all(o.state.is_final() for o in others)
    finally:
        sup.stop()
        thread.join(timeout=20)
