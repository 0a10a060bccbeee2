"""Benchmark (issue 9 §2, bench (d)): what one flow-run start and one resume of a
suspended run cost, stock Prefect against the project's launcher (a fork of an
already-imported daemon), in the same run against the same Prefect server.

    nice -n 10 python scripts/bench_starts.py [--runs 20] [--concurrency 4]

Three ways to start the same runs, one after the other:
  serve     the Runner of ``prefect.serve`` (``aftersales up`` / ``serve`` today): a
            ``spawn`` interpreter per run (the baseline);
  worker    ``prefect worker`` on a process pool with the stock job command
            (``python -m prefect.engine``);
  launcher  ``prefect worker`` on a process pool whose job command is
            ``aftersales.launch_client`` (forks of ``python -m aftersales.launcher daemon``).

The probe flow imports what an SOP flow imports (``tasks.steps``), suspends once and
completes when resumed: the figures are the start/resume overhead of a run with the
project's imports, the SOP's own steps excluded (a narrower figure than a ticket's cost).
CPU-seconds: user+system of the runner/worker process and of all its waited children
(/proc/<pid>/stat utime, stime, cutime, cstime), plus the daemon's for the launcher,
divided by the number of starts (or resumes). The Prefect server's CPU is printed apart.
Pending->Running: from each run's state history (the start latency once a slot is free).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prefect import flow  # noqa: E402

from tasks.steps import SopRun  # noqa: E402,F401 - what an SOP flow file imports

TICK = os.sysconf("SC_CLK_TCK")


@flow(name="start-probe")
def start_probe(n: int) -> int:
    from prefect.flow_runs import suspend_flow_run

    suspend_flow_run(timeout=3600)
    return n


def cpu_seconds(pid: int) -> float:
    """user+system of a process and of its children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def group_cpu_seconds(pgid: int) -> float:
    """The Prefect server's CPU: every process of its session (it runs uvicorn apart)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == pgid:
                    total += sum(int(x) for x in fields[11:13]) / TICK
            except (OSError, IndexError, ValueError):
                continue
    return total


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


def pct(xs: list[float], p: float) -> float:
    from scripts.bench_sla import pct as _pct

    return _pct(xs, p) or float("nan")


def start_latencies(client, ids: list[uuid.UUID], which: int) -> list[float]:  # noqa: ANN001
    """Pending->Running of each run's first start (``which`` 0) or of its resume (1: the
    first Pending after the Paused state to the next Running)."""
    out = []
    for rid in ids:
        states = sorted(client.read_flow_run_states(rid), key=lambda s: s.timestamp)
        if which:
            paused = [i for i, s in enumerate(states) if s.type.value == "PAUSED"]
            if not paused:
                continue
            states = states[paused[0] :]
        pend = next((s.timestamp for s in states if s.type.value == "PENDING"), None)
        run = next(
            (
                s.timestamp
                for s in states
                if s.type.value == "RUNNING" and pend and s.timestamp >= pend
            ),
            None,
        )
        if pend is not None and run is not None:
            out.append((run - pend).total_seconds())
    return out


def wait_states(client, ids: list[uuid.UUID], want: str, timeout: float) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = [client.read_flow_run(i).state for i in ids]
        if all(s is not None and s.type.value == want for s in states):
            return
        bad = [s.type.value for s in states if s and s.type.value in ("CRASHED", "FAILED")]
        if bad:
            raise RuntimeError(f"runs ended {bad}")
        time.sleep(0.5)
    raise RuntimeError(f"runs not all {want} within {timeout} s")


def wait_quiet(pids: list[int], settle: float = 3.0) -> None:
    """Until the run processes have exited and been waited for (CPU lands in cutime)."""
    time.sleep(settle)


def measure(mode: str, args: argparse.Namespace, env: dict, tmp: Path) -> dict:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from aftersales.launcher import ensure_work_pool, launch_command, worker_command

    sock = tmp / f"launcher-{mode}.sock"
    logf = open(tmp / f"{mode}.log", "ab")  # noqa: SIM115
    procs: list[subprocess.Popen] = []
    probe = Flow.from_source(source=str(ROOT), entrypoint="scripts/bench_starts.py:start_probe")
    if mode == "serve":
        code = (
            "import sys; sys.path.insert(0, '.');"
            "from scripts.bench_starts import start_probe;"
            f"start_probe.serve(name='probe-serve', limit={args.concurrency})"
        )
        runner = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=logf, stderr=logf
        )
        procs.append(runner)
        with get_client(sync_client=True) as client:
            for _ in range(240):
                try:
                    dep = client.read_deployment_by_name("start-probe/probe-serve")
                    break
                except Exception:  # noqa: BLE001 - not registered yet
                    time.sleep(0.5)
            dep_id = dep.id
        watched = [runner.pid]
    else:
        pool = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
        command = launch_command(sock) if mode == "launcher" else None
        ensure_work_pool(name=pool, concurrency_limit=args.concurrency, command=command)
        if mode == "worker":  # the stock job command
            from prefect.client.schemas.actions import WorkPoolUpdate
            from prefect.workers.process import ProcessWorker

            with get_client(sync_client=True) as client:
                client.update_work_pool(
                    pool,
                    WorkPoolUpdate(base_job_template=ProcessWorker.get_default_base_job_template()),
                )
        dep_id = probe.to_deployment(name=f"probe-{mode}", work_pool_name=pool).apply()  # type: ignore[union-attr]
        watched = []
        if mode == "launcher":
            daemon = subprocess.Popen(
                [sys.executable, "-m", "aftersales.launcher", "daemon", "--socket", str(sock)],
                cwd=ROOT,
                env=env,
                stdout=logf,
                stderr=logf,
            )
            procs.append(daemon)
            watched.append(daemon.pid)
            while not sock.exists():
                if daemon.poll() is not None:
                    raise RuntimeError("launcher daemon exited")
                time.sleep(0.2)
        worker = subprocess.Popen(
            worker_command(pool=pool, limit=args.concurrency),
            cwd=ROOT,
            env=env,
            stdout=logf,
            stderr=logf,
        )
        procs.append(worker)
        watched.append(worker.pid)
    time.sleep(4)  # the worker/runner is up
    res: dict = {"mode": mode}
    try:
        with get_client(sync_client=True) as client:
            # the idle rate: what the watched processes burn polling with no run at all,
            # so the per-start figure can be given with and without it
            i0, it0 = sum(cpu_seconds(p) for p in watched), time.monotonic()
            time.sleep(args.idle)
            idle_rate = (sum(cpu_seconds(p) for p in watched) - i0) / (time.monotonic() - it0)
            res["idle_rate"] = idle_rate
            c0 = sum(cpu_seconds(p) for p in watched)
            by0 = {p: cpu_seconds(p) for p in watched}
            s0 = group_cpu_seconds(int(env["_SERVER_PID"]))
            t0 = time.monotonic()
            ids = [
                client.create_flow_run_from_deployment(dep_id, parameters={"n": i}).id
                for i in range(args.runs)
            ]
            wait_states(client, ids, "PAUSED", 900)
            res["start_wall"] = time.monotonic() - t0
            res["load_start"] = loadavg()
            wait_quiet(watched)
            c1 = sum(cpu_seconds(p) for p in watched)
            start_window = time.monotonic() - t0
            s1 = group_cpu_seconds(int(env["_SERVER_PID"]))
            t1 = time.monotonic()
            for i in ids:
                resume_flow_run(i)
            wait_states(client, ids, "COMPLETED", 900)
            res["resume_wall"] = time.monotonic() - t1
            res["load_resume"] = loadavg()
            wait_quiet(watched)
            c2 = sum(cpu_seconds(p) for p in watched)
            by2 = {p: cpu_seconds(p) for p in watched}
            resume_window = time.monotonic() - t1
            s2 = group_cpu_seconds(int(env["_SERVER_PID"]))
            res["cpu_start"] = (c1 - c0) / args.runs
            res["cpu_resume"] = (c2 - c1) / args.runs
            # where the CPU goes: each watched process with the children it waited for (the
            # daemon reaps the forked runs; the worker its job commands), start+resume per run
            names = ["daemon", "worker"] if mode == "launcher" else [mode]
            res["by_process"] = {
                n: (by2[p] - by0[p]) / args.runs for n, p in zip(names, watched, strict=True)
            }
            res["net_start"] = (c1 - c0 - idle_rate * start_window) / args.runs
            res["net_resume"] = (c2 - c1 - idle_rate * resume_window) / args.runs
            res["server_cpu_start"] = (s1 - s0) / args.runs
            res["server_cpu_resume"] = (s2 - s1) / args.runs
            res["p2r_start"] = start_latencies(client, ids, 0)
            res["p2r_resume"] = start_latencies(client, ids, 1)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        logf.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--modes", default="serve,worker,launcher")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    args = ap.parse_args()

    from scripts.bench_sla import start_prefect_server, stop_proc

    tmp = Path(tempfile.mkdtemp(prefix="bench-starts-"))
    server, api, slog = start_prefect_server(tmp, f"sqlite+aiosqlite:///{tmp / 'prefect.db'}")
    os.environ["PREFECT_API_URL"] = api
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "AFTERSALES_HOME": str(tmp / "home"),
        "_SERVER_PID": str(server.pid),
    }
    from prefect.settings import PREFECT_API_URL, temporary_settings

    results = []
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            for mode in args.modes.split(","):
                print(f"[{time.strftime('%H:%M:%S')}] {mode}: {args.runs} runs", flush=True)
                results.append(measure(mode, args, env, tmp))
                print(f"[{time.strftime('%H:%M:%S')}] {results[-1]}", flush=True)
    finally:
        stop_proc(server, group=True)
        slog.close()
    base = results[0]
    print(
        f"\nbench_starts: {args.runs} runs, concurrency {args.concurrency}, cores {os.cpu_count()}"
    )
    head = (
        f"{'mode':9} {'CPU/start':>9} {'CPU/resume':>10} {'x less CPU':>11} "
        f"{'P->R p50':>8} {'p99':>6} {'resume p50':>10} {'p99':>6} "
        f"{'wall st':>7} {'wall rs':>7} {'srv CPU/st':>10} {'load':>9}"
    )
    print(head)
    for r in results:
        ratio = (base["cpu_start"] + base["cpu_resume"]) / max(
            1e-9, r["cpu_start"] + r["cpu_resume"]
        )
        print(
            f"{r['mode']:9} {r['cpu_start']:9.2f} {r['cpu_resume']:10.2f} {ratio:10.1f}x "
            f"{pct(r['p2r_start'], 50):8.2f} {pct(r['p2r_start'], 99):6.2f} "
            f"{pct(r['p2r_resume'], 50):10.2f} {pct(r['p2r_resume'], 99):6.2f} "
            f"{r['start_wall']:7.1f} {r['resume_wall']:7.1f} {r['server_cpu_start']:10.2f} "
            f"{r['load_start']:>4}/{r['load_resume']:<4}"
        )
    print("\nthe same, net of each mode's idle polling (idle CPU-s/s x the window):")
    print(f"{'mode':9} {'idle CPU/s':>10} {'net/start':>9} {'net/resume':>10} {'x less CPU':>11}")
    for r in results:
        net = r["net_start"] + r["net_resume"]
        ratio = (base["net_start"] + base["net_resume"]) / max(1e-9, net)
        print(
            f"{r['mode']:9} {r['idle_rate']:10.3f} {r['net_start']:9.2f} "
            f"{r['net_resume']:10.2f} {ratio:10.1f}x"
        )
    print("\nstart+resume CPU-s per run by process (with the children it waited for):")
    for r in results:
        parts = ", ".join(f"{n} {v:.2f}" for n, v in r["by_process"].items())
        print(f"{r['mode']:9} {parts}")
    print(
        "CPU in seconds per run (runner/worker + children [+ daemon]); x less CPU: the serve "
        "baseline's start+resume CPU over the mode's; P->R: Pending->Running seconds; wall: "
        "all runs to Paused / to Completed; load: 1-min load average after starts/resumes"
    )


if __name__ == "__main__":
    main()
