"""Benchmark (issue 9 §3, bench (b)): intakes accepted per second and SOP runs created
per second through the project's path, against raw ``create_flow_run_from_deployment``
on the same Prefect server in the same run.

    nice -n 10 python scripts/bench_intake.py [--n 300]

The project's path: ``POST /intake`` on the intake API (``create_app()`` with its real
sender: ticket + clocks + stored start event in one transaction, then the event over the
process's one long-lived events client), the Prefect server's deployment trigger turning
each event into a run. The SOP deployments are registered in a work pool nobody works
(``deploy_to_pool``), so runs stay Scheduled: this measures creation, not execution.
The HTTP calls go through FastAPI's in-process TestClient (no socket): a narrower figure
than a client over the network. Project database: SQLite in a temp dir.

Third block, the measured alternative that keeps the event in the UI: the same intakes
(events still sent to the server, so they show in its event feed) with the deployments'
triggers paused, and the run supervisor (``aftersales.reconciler.Reconciler``, as
``aftersales supervise`` runs it, ``lost_start_grace_seconds=0``) creating each ticket's
run directly with ``create_flow_run_from_deployment`` (held, claim stored, released),
pass after pass until every ticket has its run. Fresh project database for that block.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def count_runs(client, deployment_id) -> int:  # noqa: ANN001
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.count_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--wait", type=float, default=300, help="seconds to wait for the runs")
    args = ap.parse_args()
    from scripts.bench_sla import start_prefect_server, stop_proc

    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    server, api, slog = start_prefect_server(tmp, f"sqlite+aiosqlite:///{tmp / 'prefect.db'}")
    os.environ["PREFECT_API_URL"] = api
    os.environ["AFTERSALES_HOME"] = str(tmp / "home")
    os.environ["AFTERSALES_DATABASE_URL"] = f"sqlite:///{tmp / 'aftersales.db'}"
    try:
        from fastapi.testclient import TestClient
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from aftersales.api import create_app
        from aftersales.demo import seed_reference_data
        from aftersales.events import LINK
        from aftersales.launcher import ensure_work_pool
        from deployments.serve import deploy_to_pool
        from models.db import init_db

        init_db()
        seed_reference_data()
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            ensure_work_pool(name="bench-idle", concurrency_limit=4)
            deploy_to_pool("bench-idle")
            dep = client.read_deployment_by_name("inquiry/inquiry")
            raw_dep = client.read_deployment_by_name("callback/callback")
            time.sleep(3)  # the triggers are loaded by the server's automation service
            load0 = Path("/proc/loadavg").read_text().split()[0]
            # baseline: raw create_flow_run_from_deployment, sequential
            t0 = time.monotonic()
            for i in range(args.n):
                client.create_flow_run_from_deployment(
                    raw_dep.id, parameters={"ticket_id": f"RAW-{i}"}
                )
            raw_rate = args.n / (time.monotonic() - t0)
            # the project's path
            http = TestClient(create_app())
            before = count_runs(client, dep.id)
            t1 = time.monotonic()
            for i in range(args.n):
                r = http.post(
                    "/intake",
                    json={
                        "channel": "online",
                        "intake_id": f"bench-{i}",
                        "customer_name": "Bench",
                        "contact": "13900000000",
                        "description": f"bench question {i}",
                    },
                )
                assert r.status_code == 201, r.text
            accepted_s = time.monotonic() - t1
            deadline = time.monotonic() + args.wait
            made = 0
            while time.monotonic() < deadline:
                made = count_runs(client, dep.id) - before
                if made >= args.n:
                    break
                time.sleep(0.2)
            created_s = time.monotonic() - t1
            load1 = Path("/proc/loadavg").read_text().split()[0]
            print(
                f"raw {raw_rate:.1f}/s; accepted {args.n / accepted_s:.1f}/s; triggers made "
                f"{made}/{args.n} runs in {created_s:.1f}s (load {load0}->{load1})",
                flush=True,
            )
            sup = supervisor_block(client, args, tmp, http_app=create_app)
            load2 = Path("/proc/loadavg").read_text().split()[0]
    finally:
        stop_proc(server, group=True)
        slog.close()
    acc_rate = args.n / accepted_s
    run_rate = made / created_s
    print(f"\nbench_intake: n={args.n}, cores {os.cpu_count()}, load {load0}->{load1}->{load2}")
    print(f"raw create_flow_run_from_deployment : {raw_rate:7.1f}/s (baseline)")
    print(f"intakes accepted (POST /intake)     : {acc_rate:7.1f}/s  {acc_rate / raw_rate:.2f}x")
    print(
        f"runs created by the triggers        : {run_rate:7.1f}/s  {run_rate / raw_rate:.2f}x "
        f"({made}/{args.n} runs within {created_s:.1f}s of the first intake)"
    )
    print(
        f"supervisor path, triggers paused    : intakes accepted {sup.accept_rate:.1f}/s "
        f"({sup.accept_rate / raw_rate:.2f}x); runs created by the supervisor "
        f"{sup.create_rate:7.1f}/s  {sup.create_rate / raw_rate:.2f}x "
        f"({sup.made}/{args.n} runs, {sup.passes} passes, {sup.create_s:.1f}s); intake->all "
        f"runs {sup.end_to_end_rate:.1f}/s ({sup.end_to_end_rate / raw_rate:.2f}x)"
    )
    print(f"events websockets opened by the intake process: {LINK.connects}")


@dataclass
class SupervisorFigures:
    accept_rate: float  # intakes accepted per second (triggers paused)
    create_rate: float  # runs created per second by the supervisor's passes
    end_to_end_rate: float  # intakes turned into runs per second, first intake to last run
    made: int
    passes: int
    create_s: float


def supervisor_block(client, args: argparse.Namespace, tmp: Path, *, http_app) -> SupervisorFigures:  # noqa: ANN001
    """The run supervisor creating the runs (triggers paused; fresh project database)."""
    from uuid import UUID

    from fastapi.testclient import TestClient

    from aftersales.demo import seed_reference_data
    from aftersales.reconciler import Reconciler
    from aftersales.settings import reset_settings
    from models.db import init_db
    from scripts.bench_sla import clear_engine_cache

    # read through the REST route: the client's read_automations() sends a limit the
    # server refuses (422) in 3.8.8
    for a in client.request("POST", "/automations/filter", json={}).json():
        if a["name"].startswith("start on aftersales"):
            client.pause_automation(UUID(a["id"]))
    url = f"sqlite:///{tmp / 'aftersales-supervisor.db'}"
    clear_engine_cache()
    os.environ["AFTERSALES_DATABASE_URL"] = url
    os.environ["AFTERSALES_LOST_START_GRACE_SECONDS"] = "0"
    reset_settings()
    init_db(url)
    seed_reference_data()
    dep = client.read_deployment_by_name("inquiry/inquiry")
    before = count_runs(client, dep.id)
    http = TestClient(http_app())
    t0 = time.monotonic()
    for i in range(args.n):
        r = http.post(
            "/intake",
            json={
                "channel": "online",
                "intake_id": f"bench-sup-{i}",
                "customer_name": "Bench",
                "contact": "13900000000",
                "description": f"bench question {i}",
            },
        )
        assert r.status_code == 201, r.text
    accepted_s = time.monotonic() - t0
    sup = Reconciler()
    t1 = time.monotonic()
    passes = made = 0
    deadline = t1 + args.wait
    while time.monotonic() < deadline:
        report = sup.reconcile_once()
        passes += 1
        if report.skipped:
            print(f"supervisor pass skipped: {report.skipped}", flush=True)
        made = count_runs(client, dep.id) - before
        if made >= args.n:
            break
    create_s = time.monotonic() - t1
    return SupervisorFigures(
        accept_rate=args.n / accepted_s,
        create_rate=made / create_s,
        end_to_end_rate=made / (time.monotonic() - t0),
        made=made,
        passes=passes,
        create_s=create_s,
    )


if __name__ == "__main__":
    main()
