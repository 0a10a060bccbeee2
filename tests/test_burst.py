"""Issue 9: a burst of intakes drains under the run limit; intake events go over one
long-lived events client.

The burst: N inquiry intakes through the HTTP API (``create_app`` with its real sender:
the stored start event goes to the Prefect server, whose trigger creates the run) while
the stack's runner (``python -m deployments.serve``, limit ``AFTERSALES_RUN_CONCURRENCY``)
starts them. Every ticket gets exactly one run, no run crashes, every run reaches its first
human step (suspended: it holds no slot, or the burst could not drain past the limit),
and no more than the limit ran at once (from the runs' state histories). N=30 in CI;
``AFTERSALES_BURST_N=1000`` by hand (and ``AFTERSALES_BURST_BACKENDS=sqlite,postgres``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

LIMIT = 4
# CI: 30 intakes at once. 100 on the test harness's SQLite Prefect server left 24 tickets
# without a run after 600 s (its trigger action answered 503, the run supervisor's passes
# timed out while it did not answer): issue 9's open finding, run by hand with N=100/1000
N = int(os.environ.get("AFTERSALES_BURST_N", "30"))
BACKENDS = os.environ.get("AFTERSALES_BURST_BACKENDS", "sqlite").split(",")


@pytest.fixture(scope="module", autouse=True)
def run_limit() -> Iterator[None]:
    """Set before the module's stack starts its runner (autouse fixtures come first)."""
    old = os.environ.get("AFTERSALES_RUN_CONCURRENCY")
    os.environ["AFTERSALES_RUN_CONCURRENCY"] = str(LIMIT)
    yield
    if old is None:
        os.environ.pop("AFTERSALES_RUN_CONCURRENCY", None)
    else:
        os.environ["AFTERSALES_RUN_CONCURRENCY"] = old


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
def test_burst_of_intakes_drains_under_the_run_limit(stack) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from sqlmodel import select

    from aftersales.api import create_app
    from aftersales.events import LINK
    from models.db import session_scope
    from models.entities import SopRun, StepRecord

    api = TestClient(create_app())
    t0 = time.monotonic()
    tickets = []
    for i in range(N):
        r = api.post(
            "/intake",
            json={
                "channel": "online",
                "intake_id": f"burst-{stack.backend}-{i}",
                "customer_name": "Burst Tester",
                "contact": "13900000000",
                "description": f"burst question {i}",
            },
        )
        assert r.status_code == 201, r.text
        tickets.append(r.json()["ticket_id"])
    accept_s = time.monotonic() - t0
    # one long-lived websocket for N intakes (and the stack's SLA service and supervisor
    # threads), not one per send: a new one only after a failed one (an overloaded server
    # refused a websocket handshake once at load 22: 2 connects, 1 dropped)
    why = f"{LINK.connects} connects, {LINK.drops} dropped, {LINK.slow} slow sends"
    assert LINK.connects <= 1 + LINK.drops, why
    assert LINK.connects <= max(1, N // 20), why

    want = set(tickets)
    # the runs start after the intakes: each spawn costs ~3 CPU-s (BENCHMARKS.md, run
    # starts), so 2 shared cores need minutes for 100; the bound counts from the last intake
    deadline = time.monotonic() + max(600, N * 6)
    runs: dict = {}
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["inquiry"])),
                limit=200,
                offset=0,
                sort=FlowRunSort.ID_DESC,
            )
            offset = 200
            while len(found) == offset:
                found += client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["inquiry"])),
                    limit=200,
                    offset=offset,
                    sort=FlowRunSort.ID_DESC,
                )
                offset += 200
        runs, cancelled = {}, []
        for fr in found:
            if fr.parameters.get("ticket_id") not in want:
                continue
            if fr.state_type.value in ("CANCELLED", "CANCELLING", "COMPLETED"):
                # a duplicate: it saw another owner and stopped, or the supervisor stopped
                # it (an inquiry's owner cannot complete here: it waits for a person)
                cancelled.append(fr)
            else:
                runs.setdefault(fr.parameters["ticket_id"], []).append(fr)
        crashed = [
            fr.name
            for frs in runs.values()
            for fr in frs
            if fr.state_type.value in ("CRASHED", "FAILED")
        ]
        assert not crashed, crashed
        settled = [frs for frs in runs.values() if frs[0].state_type.value == "PAUSED"]
        if len(runs) == N and len(settled) == N:
            break
        time.sleep(2)
    drain_s = time.monotonic() - t0
    assert set(runs) == want, f"{len(want - set(runs))} tickets have no run"
    assert all(len(frs) == 1 for frs in runs.values()), "a ticket got two runs"
    assert all(frs[0].state_type.value == "PAUSED" for frs in runs.values())
    # the run each ticket's claim names is the one that made progress: a late trigger run
    # the supervisor cancelled (it had created the run already) may have started, seen
    # another owner and stopped, but it recorded no step
    with session_scope() as s:
        owners = {r.ticket_id: r.flow_run_id for r in s.exec(select(SopRun)).all()}
        stepped = {r.flow_run_id for r in s.exec(select(StepRecord)).all()}
    assert all(owners.get(t) == str(frs[0].id) for t, frs in runs.items())
    assert not {str(fr.id) for fr in cancelled} & stepped, "a cancelled duplicate took a step"

    intervals = []
    with get_client(sync_client=True) as client:
        for frs in runs.values():
            states = sorted(client.read_flow_run_states(frs[0].id), key=lambda s: s.timestamp)
            for a, b in zip(states, states[1:], strict=False):
                if a.type.value == "RUNNING":
                    intervals.append((a.timestamp, b.timestamp))
    assert len(intervals) >= N
    peak = max_overlap(intervals)
    print(
        f"burst {stack.backend}: {N} intakes accepted in {accept_s:.1f}s, drained in "
        f"{drain_s:.1f}s, peak concurrent runs {peak} (limit {LIMIT})"
    )
    assert peak <= LIMIT
