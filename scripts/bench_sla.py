"""Benchmarks of the SLA clock and the intake path (issue 2). Prints figures, asserts nothing.

    python scripts/bench_sla.py [--only a,b,c,d] [--postgres URL] [--clocks 100000]
        [--window 600] [--c-instances 1,2] [--open 10000]

(a) intake -> first notification received by a real HTTP sink, p50/p99, at a steady rate:
    a1 through the inquiry flow (event -> automation -> runner -> receive_inquiry queues
    INQ-SYNC -> clock service delivers), a2 for the repair_request queued inside the intake
    transaction itself (isolates the clock service's outbox latency).
(b) intake throughput (accept_intake + send_outbox_events) vs raw
    create_flow_run_from_deployment on the same Prefect server, interleaved blocks.
(c) firing at scale (issue 9 §4): N clocks (REP-2 shortened to 40 s, REM-1 15 s before) due
    over a window, fired by real SLA service processes (SystemClock, poll 0.2 s) delivering to
    an HttpSink: firing lateness p50/p99, reminders skipped (must be 0), double fired (0: no
    ticket has two reminded/breached events), due -> received at the sink. Baseline in the
    same run: 1 process; then 2 processes on a fresh database with the same plan (PostgreSQL;
    SQLite runs the baseline only). The per-target rate limit is off (local sink).
(d) RSS of the clock service, the runner (python -m deployments.serve) and the intake API
    (uvicorn) with 100 and with a large number of tickets waiting on humans
    (ticket + armed clocks + a Suspended flow run created directly through the client).

Every backend run gets its own temp dir (PREFECT_HOME, SQLite files), its own Prefect
server subprocess on a free 127.0.0.1 port (on SQLite, or on a fresh PostgreSQL database
for the --postgres run) and fresh project databases; everything is removed afterwards.
Phase a, phases b+c and phase d each get a fresh Prefect server (so a's backlog does not
slow the server b measures, and d's runner does not pick up the runs a/b left scheduled).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TICKET_RE = re.compile(r"TK-[0-9A-F]{12}")


# ===================================================================== helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    k = max(0, math.ceil(p / 100 * len(ys)) - 1)
    return ys[k]


def summary(xs: list[float]) -> dict[str, Any]:
    return {
        "n": len(xs),
        "p50": pct(xs, 50),
        "p99": pct(xs, 99),
        "max": max(xs) if xs else None,
        "mean": statistics.fmean(xs) if xs else None,
    }


def fmt(v: Any, unit: str = "s", nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def stop_proc(proc: subprocess.Popen | None, *, group: bool = False, timeout: float = 20) -> None:
    """Stop a subprocess this script started (and, with group=True, the process group it leads)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def pg_base(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0]


def pg_create(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg_base(admin_url)}/{name}"


def pg_drop_prefix(admin_url: str, prefix: str) -> list[str]:
    import psycopg

    dropped = []
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
            ).fetchall()
        ]
        for n in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
            dropped.append(n)
    return dropped


def clear_engine_cache() -> None:
    """Dispose cached engines (models.db caches one per URL; the cache's name may change)."""
    import models.db as mdb

    for name in ("get_engine", "_engine"):
        fn = getattr(mdb, name, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


# ===================================================================== clock-service child
def clock_service_main(poll: float) -> None:
    """Entry of the clock-service subprocess: the real SlaService, real SystemClock."""
    from aftersales.sla_service import SlaService

    svc = SlaService()
    svc.poll = poll
    signal.signal(signal.SIGTERM, lambda *_: svc.stop())
    signal.signal(signal.SIGINT, lambda *_: svc.stop())
    svc.run_forever()


# ===================================================================== worker (one backend, one server)
class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.backend: str = args._worker
        self.tmp = Path(args._tmp)
        self.admin: str | None = args.postgres
        self.db_prefix: str = args._dbprefix
        self.results: dict[str, Any] = {}
        self.procs: list[tuple[subprocess.Popen, bool]] = []
        self.logs: list[Any] = []
        self.sinks: list[Any] = []
        self.served = False

    # ---------------------------------------------------------------- databases
    def new_project_db(self, tag: str) -> str:
        from aftersales.settings import reset_settings
        from models.db import init_db

        if self.backend == "postgres":
            assert self.admin
            url = pg_create(self.admin, f"{self.db_prefix}_{tag}")
        else:
            url = f"sqlite:///{self.tmp / f'aftersales-{tag}.db'}"
        clear_engine_cache()
        os.environ["AFTERSALES_DATABASE_URL"] = url
        reset_settings()
        init_db(url)
        return url

    def route_to(self, sink: Any) -> None:
        from aftersales.settings import ROLES, reset_settings

        for role in ROLES:
            os.environ[f"AFTERSALES_NOTIFY_{role.upper()}"] = sink.url(f"/{role}")
        reset_settings()

    def new_sink(self) -> Any:
        from tests.sink import HttpSink

        s = HttpSink()
        self.sinks.append(s)
        self.route_to(s)
        return s

    # ---------------------------------------------------------------- subprocesses
    def _spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None, group: bool = False
    ) -> subprocess.Popen:
        logf = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        self.logs.append(logf)
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=logf,
            stderr=logf,
            start_new_session=group,
        )
        self.procs.append((proc, group))
        return proc

    def stop(self, proc: subprocess.Popen | None) -> None:
        for p, g in list(self.procs):
            if p is proc:
                stop_proc(p, group=g)
                self.procs.remove((p, g))

    def start_runner(self, tag: str) -> subprocess.Popen:
        proc = self._spawn(
            f"runner-{tag}",
            [sys.executable, "-m", "deployments.serve"],
            {"PREFECT_RUNNER_POLL_FREQUENCY": "1"},
            group=True,
        )
        from prefect.client.orchestration import get_client

        end = time.monotonic() + 120
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"runner exited early; see {self.tmp}/runner-{tag}.log")
            try:
                with get_client(sync_client=True) as client:
                    autos = client.request("POST", "/automations/filter", json={}).json()
                if (
                    len({a["name"] for a in autos if a["name"].startswith("start on aftersales")})
                    >= 2
                ):
                    return proc
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.5)
        raise RuntimeError("deployments were not served within 120 s")

    def start_clock_service(self, tag: str, poll: float) -> subprocess.Popen:
        return self._spawn(
            f"clock-{tag}",
            [sys.executable, str(Path(__file__).resolve()), "--_clock-service", str(poll)],
        )

    def start_api(self, tag: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = self._spawn(
            f"api-{tag}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aftersales.api:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
        )
        base = f"http://127.0.0.1:{port}"
        if not wait_http(f"{base}/health", 60, proc):
            raise RuntimeError("intake API did not start")
        return proc, base

    def cleanup(self) -> None:
        for p, g in reversed(self.procs):
            stop_proc(p, group=g)
        self.procs.clear()
        for s in self.sinks:
            s.close()
        for f in self.logs:
            f.close()
        clear_engine_cache()

    # ---------------------------------------------------------------- intake helpers
    @staticmethod
    def payload(channel: str, intake_id: str, sop: str = "inquiry") -> dict[str, Any]:
        p: dict[str, Any] = {
            "channel": channel,
            "intake_id": intake_id,
            "sop": sop,
            "customer_name": "Bench Customer",
            "contact": f"bench-{intake_id}@example.com",
            "product_model": "X200",
            "description": f"benchmark intake {intake_id}: device does not power on",
        }
        return p

    def intake(self, data: dict[str, Any], emit: Any) -> tuple[str, float]:
        from datetime import UTC, datetime

        from aftersales.intake import accept_intake, parse_payload
        from aftersales.runtime import deadlines

        now = datetime.now(UTC)
        res = accept_intake(
            parse_payload(data),
            ctx=deadlines(),
            now=now,
            send=lambda *, now, ticket_id: emit(now=now, ticket_ids=[ticket_id]),
        )
        return res.ticket_id, now.timestamp()

    def paced_intakes(
        self,
        *,
        rate: float,
        seconds: float,
        channel: str,
        sop: str,
        prefix: str,
        emit: Any,
        mem_floor_mb: float = 3000,
    ) -> dict[str, Any]:
        n = int(rate * seconds)
        t0 = time.monotonic()
        out: dict[str, float] = {}
        behind: list[float] = []
        call: list[float] = []
        stopped = None
        for i in range(n):
            target = t0 + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                behind.append(-delay)
            if i % 10 == 0 and mem_available_mb() < mem_floor_mb:
                stopped = f"stopped after {i} intakes: MemAvailable < {mem_floor_mb:.0f} MB"
                log(stopped)
                break
            c0 = time.monotonic()
            tid, t_in = self.intake(self.payload(channel, f"{prefix}-{i}", sop), emit)
            call.append(time.monotonic() - c0)
            out[tid] = t_in
        elapsed = time.monotonic() - t0
        return {
            "tickets": out,
            "achieved_rate": len(out) / elapsed,
            "call": summary(call),
            "max_behind": max(behind) if behind else 0.0,
            "stopped": stopped,
        }

    # ================================================================ (a)
    def phase_a(self) -> None:
        from aftersales.events import send_outbox_events
        from aftersales.settings import reset_settings

        a = self.args
        res: dict[str, Any] = {}
        url = self.new_project_db("a")
        from aftersales.demo import seed_reference_data

        seed_reference_data()
        sink = self.new_sink()
        os.environ["AFTERSALES_NOTIFY_BACKOFF_SECONDS"] = "0.2"
        reset_settings()
        clock = self.start_clock_service("a", 0.1)
        runner = self.start_runner("a")
        self.served = True
        log(f"(a1) runner + clock service up; {a.rate}/s inquiry intakes for {a.seconds}s")
        time.sleep(2)
        run = self.paced_intakes(
            rate=a.rate,
            seconds=a.seconds,
            channel="online",
            sop="inquiry",
            prefix=f"a1-{uuid.uuid4().hex[:6]}",
            emit=send_outbox_events,
        )
        tickets: dict[str, float] = run["tickets"]
        log(
            f"(a1) {len(tickets)} intakes at {run['achieved_rate']:.2f}/s; waiting for INQ-SYNC posts"
        )

        def got() -> dict[str, float]:
            first: dict[str, float] = {}
            for m in sink.messages("/sync_group"):
                mt = TICKET_RE.search(
                    str(m.body.get("title", "")) if isinstance(m.body, dict) else ""
                )
                if mt and mt.group(0) in tickets and mt.group(0) not in first:
                    first[mt.group(0)] = m.received_at
            return first

        end = time.monotonic() + a.drain
        last_n = -1
        peak_mem_low = mem_available_mb()
        while time.monotonic() < end:
            n = len(got())
            peak_mem_low = min(peak_mem_low, mem_available_mb())
            if n >= len(tickets):
                break
            if n != last_n:
                last_n = n
            time.sleep(1)
        first = got()
        lat = [first[t] - tickets[t] for t in first]
        res["a1"] = {
            "intakes": len(tickets),
            "rate_target": a.rate,
            "rate_achieved": run["achieved_rate"],
            "intake_call": run["call"],
            "delivered": len(first),
            "latency": summary(lat),
            "drain_limit_s": a.drain,
            "stopped": run["stopped"],
            "min_mem_available_mb": round(peak_mem_low),
        }
        res["a1"]["breakdown"] = self._a1_breakdown(tickets, first)
        log(f"(a1) delivered {len(first)}/{len(tickets)}; latency {summary(lat)}")

        # a2: notification queued inside the intake transaction (repair_request to dispatch).
        self.stop(runner)  # the repair flows would otherwise load the machine; events still go out
        log(
            f"(a2) runner stopped; {a.rate}/s repair intakes for {a.seconds2}s (clock service poll 0.1)"
        )
        run2 = self.paced_intakes(
            rate=a.rate,
            seconds=a.seconds2,
            channel="phone",
            sop="repair",
            prefix=f"a2-{uuid.uuid4().hex[:6]}",
            emit=send_outbox_events,
        )
        t2: dict[str, float] = run2["tickets"]

        def got2() -> dict[str, float]:
            first: dict[str, float] = {}
            for m in sink.messages("/dispatch"):
                mt = TICKET_RE.search(
                    str(m.body.get("title", "")) if isinstance(m.body, dict) else ""
                )
                if mt and mt.group(0) in t2 and mt.group(0) not in first:
                    first[mt.group(0)] = m.received_at
            return first

        sink.wait_for(lambda: len(got2()) >= len(t2), timeout=60, interval=0.5)
        f2 = got2()
        lat2 = [f2[t] - t2[t] for t in f2]
        res["a2"] = {
            "intakes": len(t2),
            "rate_achieved": run2["achieved_rate"],
            "intake_call": run2["call"],
            "delivered": len(f2),
            "latency": summary(lat2),
        }
        log(f"(a2) delivered {len(f2)}/{len(t2)}; latency {summary(lat2)}")
        self.stop(clock)
        res["project_db"] = "postgres" if url.startswith("postgres") else "sqlite"
        self.results["a"] = res

    def _a1_breakdown(self, tickets: dict[str, float], first: dict[str, float]) -> dict[str, Any]:
        """Where the a1 time goes: event->flow run created, created->running, running->queued, queued->received."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.sorting import FlowRunSort
        from sqlmodel import select

        from models.db import session_scope
        from models.entities import Notification

        runs: dict[str, Any] = {}
        try:
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("inquiry/inquiry")
                from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

                offset = 0
                while True:
                    page = client.read_flow_runs(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                        limit=200,
                        offset=offset,
                    )
                    for fr in page:
                        tid = (fr.parameters or {}).get("ticket_id")
                        if tid in tickets and tid not in runs:
                            runs[tid] = fr
                    if len(page) < 200:
                        break
                    offset += 200
        except Exception as exc:  # noqa: BLE001
            return {"error": str(exc)}
        with session_scope() as s:
            queued = {
                n.ticket_id: n.created_at.timestamp()
                for n in s.exec(
                    select(Notification).where(Notification.template == "sync_group_post")
                ).all()
            }
        created, started, to_queue, outbox = [], [], [], []
        picked, spawned = [], []
        states: dict[str, int] = {}
        with get_client(sync_client=True) as client:
            history = {}
            for tid, fr in runs.items():
                try:
                    history[tid] = {
                        h.type.value: h.timestamp.timestamp()
                        for h in reversed(client.read_flow_run_states(fr.id))
                    }
                except Exception:  # noqa: BLE001
                    pass
        for tid, t_in in tickets.items():
            fr = runs.get(tid)
            if fr is None:
                states["no flow run"] = states.get("no flow run", 0) + 1
                continue
            st = fr.state.name if fr.state else "?"
            states[st] = states.get(st, 0) + 1
            created.append(fr.created.timestamp() - t_in)
            h = history.get(tid, {})
            if "PENDING" in h:
                picked.append(h["PENDING"] - fr.created.timestamp())
                if "RUNNING" in h:
                    spawned.append(h["RUNNING"] - h["PENDING"])
            if fr.start_time:
                started.append(fr.start_time.timestamp() - fr.created.timestamp())
                if tid in queued:
                    to_queue.append(queued[tid] - fr.start_time.timestamp())
            if tid in queued and tid in first:
                outbox.append(first[tid] - queued[tid])
        return {
            "intake->run created": summary(created),
            "created->Pending (runner pickup)": summary(picked),
            "Pending->Running (process start)": summary(spawned),
            "created->run started": summary(started),
            "started->INQ-SYNC queued": summary(to_queue),
            "queued->sink received": summary(outbox),
            "run states": states,
        }

    # ================================================================ (b)
    def phase_b(self) -> None:
        """Raw flow-run creation vs intake, on a quiet server, in two rounds (raw,intake / intake,raw).
        The intake is timed twice: until accept_intake returned (event accepted by the server) and
        until the server's automation has created every triggered flow run."""
        from prefect.client.orchestration import get_client

        from aftersales.events import send_outbox_events

        n = self.args.n
        if not self.served:
            self.new_project_db("b")
            self.new_sink()
            runner = self.start_runner("b")  # registers the deployments and their triggers
            self.served = True
            self.stop(runner)
        log(
            f"(b) {n} accept_intake+emit vs {n} raw create_flow_run_from_deployment (runner stopped)"
        )
        tag = uuid.uuid4().hex[:6]
        t = {"raw": 0.0, "calls": 0.0, "e2e": 0.0, "noemit": 0.0}
        done = {"raw": 0, "intake": 0, "noemit": 0}
        e2e_missing = 0
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("inquiry/inquiry")

            def count() -> int:
                return int(
                    client.request(
                        "POST",
                        "/flow_runs/count",
                        json={"deployments": {"id": {"any_": [str(dep.id)]}}},
                    ).json()
                )

            def quiet(max_s: float = 60) -> int:
                last, end = count(), time.monotonic() + max_s
                while time.monotonic() < end:
                    time.sleep(2)
                    c = count()
                    if c == last:
                        return c
                    last = c
                return last

            def raw(k: int) -> None:
                t0 = time.perf_counter()
                for j in range(k):
                    client.create_flow_run_from_deployment(
                        dep.id, parameters={"ticket_id": f"raw-{tag}-{done['raw'] + j}"}
                    )
                t["raw"] += time.perf_counter() - t0
                done["raw"] += k

            def intake(k: int) -> None:
                nonlocal e2e_missing
                c0 = quiet()
                t0 = time.perf_counter()
                for j in range(k):
                    self.intake(
                        self.payload("online", f"b-{tag}-{done['intake'] + j}"), send_outbox_events
                    )
                t["calls"] += time.perf_counter() - t0
                done["intake"] += k
                end = time.monotonic() + 180
                while time.monotonic() < end and count() - c0 < k:
                    time.sleep(0.2)
                e2e_missing += max(0, k - (count() - c0))
                t["e2e"] += time.perf_counter() - t0

            # warm-up both paths (imports, connections)
            self.intake(self.payload("online", f"b-warm-{tag}"), send_outbox_events)
            client.create_flow_run_from_deployment(dep.id, parameters={"ticket_id": "warm"})
            half = n // 2
            quiet()
            raw(half)
            intake(half)
            intake(n - half)
            quiet()
            raw(n - half)
            t0 = time.perf_counter()
            for j in range(n):
                self.intake(self.payload("online", f"bn-{tag}-{j}"), None)
            t["noemit"] = time.perf_counter() - t0
        r_r, r_c, r_e, r_n = n / t["raw"], n / t["calls"], n / t["e2e"], n / t["noemit"]
        self.results["b"] = {
            "n": n,
            "raw_create_per_s": r_r,
            "intake_per_s": r_c,
            "ratio": r_c / r_r,
            "intake_e2e_per_s": r_e,
            "ratio_e2e": r_e / r_r,
            "e2e_runs_missing": e2e_missing,
            "intake_no_emit_per_s": r_n,
            "emit_ms_per_intake": (t["calls"] / n - t["noemit"] / n) * 1000,
        }
        log(
            f"(b) raw create {r_r:.1f}/s; intake {r_c:.1f}/s (ratio {r_c / r_r:.2f}); intake incl. "
            f"triggered run creation {r_e:.1f}/s (ratio {r_e / r_r:.2f}); without emit {r_n:.1f}/s"
        )

    # ================================================================ (c)
    def phase_c(self) -> None:
        """(c) firing at scale: N clocks due over a window, fired by 1 (baseline) and by 2
        SLA service processes, each on a fresh project database, the same sink and plan."""
        from aftersales.settings import reset_settings

        prof = self.tmp / "bench-profile.yaml"
        prof.write_text(
            "name: bench\nextends: default\nreminders:\n  response_minutes: 0.25\n"
            'rules:\n  - {id: "REP-2:same-city", duration: 40, unit: seconds}\n'
        )
        os.environ["AFTERSALES_POLICY_FILE"] = str(prof)
        os.environ["AFTERSALES_NOTIFY_BACKOFF_SECONDS"] = "0.5"
        # the sink is local and takes any rate: the per-target token bucket (default 50/s)
        # would make the figure the configured rate, not the service's
        os.environ["AFTERSALES_NOTIFY_RATE_PER_TARGET"] = "0"
        reset_settings()
        instances = [int(x) for x in self.args.c_instances.split(",") if x.strip()]
        if self.backend == "sqlite":  # SQLite: one instance is the supported set-up
            instances = [1]
        runs = {}
        for k in instances:
            runs[str(k)] = self._c_round(k)
            Path(self.args._out).write_text(json.dumps({**self.results, "c": runs}, default=str))
        base = runs.get("1")
        ratios = {}
        if base:
            for k, r in runs.items():
                if k == "1":
                    continue
                ratios[k] = {
                    f"{m}_{q}": (r[m][q] / base[m][q]) if base[m][q] and r[m][q] else None
                    for m in ("fire_lateness", "due_to_sink")
                    for q in ("p50", "p99")
                }
        self.results["c"] = {"runs": runs, "ratio_vs_1_instance": ratios}
        os.environ.pop("AFTERSALES_POLICY_FILE", None)
        os.environ.pop("AFTERSALES_NOTIFY_RATE_PER_TARGET", None)
        reset_settings()

    def _c_round(self, n_services: int) -> dict[str, Any]:
        from datetime import UTC, datetime, timedelta

        from sqlalchemy import func
        from sqlmodel import select

        from aftersales.runtime import deadlines
        from models.db import session_scope
        from models.entities import (
            Channel,
            ClockState,
            Notification,
            NotificationStatus,
            OutboxEvent,
            Priority,
            SlaClock,
            Sop,
            SopRun,
            Ticket,
        )

        N, window = self.args.clocks, self.args.window
        self.new_project_db(f"c{n_services}")
        sink = self.new_sink()
        ctx = deadlines()
        rule = ctx.profile.rule("REP-2:same-city")
        ids = [f"TK-{0xB0000000 + i:012X}" for i in range(N)]
        log(f"(c/{n_services}) {N} tickets; clocks due over {window:.0f}s; {n_services} services")
        now = datetime.now(UTC)
        t0 = time.monotonic()
        for k in range(0, N, 2000):
            chunk = ids[k : k + 2000]
            with session_scope() as s:
                s.add_all(
                    [
                        Ticket(id=tid, intake_key=f"bench-c:{tid}", sop=Sop.REPAIR,
                               channel=Channel.PHONE, customer_name="Bench",
                               contact="bench@example.com", description="bench clock",
                               priority=Priority.URGENT, created_at=now)
                        for tid in chunk
                    ]
                )  # fmt: skip
                s.flush()
                s.add_all(
                    [
                        SopRun(ticket_id=tid, sop=Sop.REPAIR, flow_run_id=str(uuid.uuid4()),
                               created_at=now)
                        for tid in chunk
                    ]
                )  # fmt: skip
        t_tickets = time.monotonic() - t0
        services = [self.start_clock_service(f"c{n_services}-{i}", 0.2) for i in range(n_services)]
        # the first reminder is due 20 s + an estimate of the clock insert after now
        base = datetime.now(UTC) + timedelta(seconds=20 + N / 4000)
        t0 = time.monotonic()
        for k in range(0, N, 2000):
            rows = []
            for i in range(k, min(N, k + 2000)):
                due = base + timedelta(seconds=15 + i * window / N)
                start = due - timedelta(seconds=40)
                remind = ctx.remind_at(rule, due, start)
                rows.append(
                    SlaClock(ticket_id=ids[i], rule_id=rule.id, clause=rule.clause, instance=0,
                             profile=ctx.profile.name, kind=rule.kind, unit=str(rule.unit),
                             duration=float(rule.duration or 0), state=ClockState.ARMED,
                             started_at=start, due_at=due, remind_at=remind,
                             next_fire_at=remind or due)
                )  # fmt: skip
            with session_scope() as s:
                s.add_all(rows)
        t_arm = time.monotonic() - t0
        armed_end = datetime.now(UTC)
        log(
            f"(c/{n_services}) tickets {t_tickets:.0f}s, clocks {t_arm:.0f}s; first reminder "
            f"{(base - armed_end).total_seconds():+.1f}s after arming ended"
        )

        def count(q: Any) -> int:
            with session_scope() as s:
                return int(s.exec(q).one())

        unfired = (
            select(func.count())
            .select_from(SlaClock)
            .where(SlaClock.rule_id == rule.id, SlaClock.next_fire_at.is_not(None))
        )
        undelivered = (
            select(func.count())
            .select_from(Notification)
            .where(Notification.status == NotificationStatus.PENDING)
        )
        end = time.monotonic() + (base - datetime.now(UTC)).total_seconds() + window + 40
        while time.monotonic() < end + self.args.c_wait and count(unfired) > 0:
            time.sleep(2)
        drain = time.monotonic() + self.args.c_wait
        while time.monotonic() < drain and count(undelivered) > 0:
            time.sleep(2)
        time.sleep(1)
        for p in services:
            self.stop(p)
        with session_scope() as s:
            clocks = list(s.exec(select(SlaClock).where(SlaClock.rule_id == rule.id)).all())
            fired_events = s.exec(
                select(OutboxEvent.ticket_id, OutboxEvent.event, func.count())
                .where(
                    OutboxEvent.event.in_(["aftersales.sla.reminded", "aftersales.sla.breached"])
                )
                .group_by(OutboxEvent.ticket_id, OutboxEvent.event)
            ).all()
            n_pending = s.exec(undelivered).one()
            n_failed = s.exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == NotificationStatus.FAILED)
            ).one()
            n_sent = s.exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == NotificationStatus.SENT)
            ).one()
        rem = [(c.reminded_at - c.remind_at).total_seconds() for c in clocks
               if c.reminded_at and c.remind_at]  # fmt: skip
        brc = [(c.breached_at - c.due_at).total_seconds() for c in clocks
               if c.breached_at and c.due_at]  # fmt: skip
        skipped = sum(1 for c in clocks if c.remind_at and c.breached_at and not c.reminded_at)
        late_rem = sum(
            1 for c in clocks if c.reminded_at and c.due_at and c.reminded_at >= c.due_at
        )
        marked_late = sum(1 for c in clocks if c.fired_late_seconds is not None)
        double_fired = sum(1 for _, _, n in fired_events if n > 1)
        by_tid = {c.ticket_id: c for c in clocks}
        seen: Counter[tuple[str, str]] = Counter()
        to_sink = []
        for m in sink.messages():
            title = str(m.body.get("title", "")) if isinstance(m.body, dict) else ""
            mt = TICKET_RE.search(title)
            if not mt or mt.group(0) not in by_tid:
                continue
            c = by_tid[mt.group(0)]
            seen[(m.path, c.ticket_id)] += 1
            moment = c.remind_at if "REM-1" in title else c.due_at
            if moment is not None and seen[(m.path, c.ticket_id)] == 1:
                to_sink.append(m.received_at - moment.timestamp())
        return {
            "services": n_services,
            "clocks": N,
            "window_s": window,
            "tickets_s": t_tickets,
            "arm_s": t_arm,
            "first_remind_after_arming_s": (base - armed_end).total_seconds(),
            "clocks_not_fired": sum(1 for c in clocks if c.next_fire_at is not None),
            "reminded": len(rem),
            "breached": len(brc),
            "fire_lateness": summary(rem + brc),
            "remind_lateness": summary(rem),
            "breach_lateness": summary(brc),
            "reminders_skipped": skipped,
            "reminders_after_due": late_rem,
            "clocks_marked_late": marked_late,
            "double_fired": double_fired,
            "sink_messages": sum(seen.values()),
            "sink_duplicates": sum(n - 1 for n in seen.values() if n > 1),
            "due_to_sink": summary(to_sink),
            "notifications_sent": n_sent,
            "notifications_pending": n_pending,
            "notifications_failed": n_failed,
        }

    # ================================================================ (d)
    def phase_d(self) -> None:
        import asyncio

        import httpx
        from prefect.client.orchestration import get_client
        from prefect.states import Suspended

        from aftersales import sla
        from aftersales.settings import reset_settings
        from models.db import session_scope
        from models.entities import Sop, SopRun
        from models.repository import ticket_id_for

        large = self.args.open_pg if self.backend == "postgres" else self.args.open_sqlite
        os.environ.pop("AFTERSALES_POLICY_FILE", None)
        reset_settings()
        self.new_project_db("d")
        from aftersales.demo import seed_reference_data

        seed_reference_data()
        sink = self.new_sink()
        runner = self.start_runner("d")
        clock = self.start_clock_service("d", 1.0)
        api, base = self.start_api("d")
        procs = {"clock service": clock, "runner": runner, "intake API": api}
        with get_client(sync_client=True) as client:
            dep_id = client.read_deployment_by_name("inquiry/inquiry").id
        tag = uuid.uuid4().hex[:6]
        opened: list[str] = []
        timings: dict[str, Any] = {}
        anomalies = {"claimed_by_executed_run": 0}

        async def create_runs(tids: list[str]) -> dict[str, str]:
            conc = 8 if self.backend == "sqlite" else 24
            sem = asyncio.Semaphore(conc)
            out: dict[str, str] = {}
            async with get_client() as client:

                async def one(tid: str) -> None:
                    async with sem:
                        for attempt in range(4):
                            try:
                                fr = await client.create_flow_run_from_deployment(
                                    dep_id,
                                    parameters={"ticket_id": tid},
                                    name=f"inquiry-{tid}",
                                    tags=["sop:inquiry", "bench:open"],
                                    state=Suspended(
                                        timeout_seconds=None, pause_key="first-response"
                                    ),
                                )
                                out[tid] = str(fr.id)
                                return
                            except Exception:  # noqa: BLE001
                                if attempt == 3:
                                    raise
                                await asyncio.sleep(0.5 * (attempt + 1))

                await asyncio.gather(*(one(t) for t in tids))
            return out

        def create_tickets(idxs: range) -> None:
            from concurrent.futures import ThreadPoolExecutor
            from datetime import UTC, datetime

            def one(i: int) -> None:
                tid, _ = self.intake(self.payload("email", f"d-{tag}-{i}"), None)
                with (
                    session_scope() as s
                ):  # the inquiry run posted INQ-SYNC and waits for first-response
                    sla.meet(s, ticket_id=tid, at=datetime.now(UTC), rule_ids=["INQ-SYNC"])
                    # claimed by its run (placeholder id, replaced below once the run exists), so the
                    # clock service's lost-start scan does not re-emit its start event
                    s.add(
                        SopRun(
                            ticket_id=tid,
                            sop=Sop.INQUIRY,
                            flow_run_id="pending",
                            created_at=datetime.now(UTC),
                        )
                    )

            workers = 1 if self.backend == "sqlite" else 4
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(one, idxs))

        def open_tickets(lo: int, hi: int) -> None:
            tids = [ticket_id_for(f"email:d-{tag}-{i}") for i in range(lo, hi)]
            t0 = time.monotonic()
            th_err: list[BaseException] = []

            def tk() -> None:
                try:
                    create_tickets(range(lo, hi))
                except BaseException as exc:  # noqa: BLE001
                    th_err.append(exc)

            th = threading.Thread(target=tk)
            th.start()
            runs = asyncio.run(create_runs(tids))
            t_runs = time.monotonic() - t0
            th.join()
            if th_err:
                raise th_err[0]
            t_all = time.monotonic() - t0
            from datetime import UTC, datetime

            now = datetime.now(UTC)
            from sqlmodel import select

            with session_scope() as s:
                rows = s.exec(select(SopRun).where(SopRun.ticket_id.in_(tids))).all()
                for r in rows:
                    if r.flow_run_id == "pending":
                        r.flow_run_id = runs[r.ticket_id]
                        r.created_at = now
                        s.add(r)
                    else:  # a run the runner executed claimed it first
                        anomalies["claimed_by_executed_run"] += 1
            opened.extend(tids)
            timings[f"{hi}"] = {
                "suspended_runs_per_s": (hi - lo) / t_runs,
                "tickets_and_runs_s": t_all,
            }
            log(
                f"(d) opened {hi} tickets ({hi - lo} new: runs {(hi - lo) / t_runs:.1f}/s, total {t_all:.0f}s)"
            )

        def exercise_and_measure(level: int) -> dict[str, Any]:
            import random

            with httpx.Client(base_url=base, timeout=30) as h:
                for tid in random.sample(opened, min(20, len(opened))):
                    h.get(f"/tickets/{tid}")
                new = []
                for j in range(3):
                    r = h.post("/intake", json=self.payload("online", f"d-live-{tag}-{level}-{j}"))
                    new.append(r.json().get("ticket_id"))
            # the 3 live intakes run through the runner and suspend at first-response
            sink.wait_for(
                lambda: (
                    sum(
                        1
                        for m in sink.messages("/sync_group")
                        if any(t in str(m.body) for t in new)
                    )
                    >= 3
                ),
                timeout=120,
                interval=1,
            )
            time.sleep(self.args.settle)
            samples: dict[str, list[int]] = {k: [] for k in procs}
            for _ in range(3):
                for k, p in procs.items():
                    v = rss_kb(p.pid)
                    if v is not None:
                        samples[k].append(v)
                time.sleep(1)
            with get_client(sync_client=True) as client:
                n_susp = client.request(
                    "POST",
                    "/flow_runs/count",
                    json={"flow_runs": {"state": {"name": {"any_": ["Suspended"]}}}},
                ).json()
                n_all = client.request("POST", "/flow_runs/count", json={}).json()
            from sqlalchemy import func
            from sqlmodel import select

            from models.entities import SlaClock, Ticket

            with session_scope() as s:
                n_t = s.exec(select(func.count()).select_from(Ticket)).one()
                n_c = s.exec(
                    select(func.count())
                    .select_from(SlaClock)
                    .where(SlaClock.next_fire_at.is_not(None))
                ).one()
            return {
                "rss_kb": {k: int(statistics.median(v)) if v else None for k, v in samples.items()},
                "tickets": n_t,
                "armed_clocks": n_c,
                "suspended_runs": n_susp,
                "all_runs": n_all,
            }

        log(f"(d) level 100 then {large} (backend {self.backend})")
        time.sleep(5)
        open_tickets(0, 100)
        m100 = exercise_and_measure(100)
        log(f"(d) at 100: {m100}")
        open_tickets(100, large)
        mL = exercise_and_measure(large)
        log(f"(d) at {large}: {mL}")
        ratio = {
            k: (mL["rss_kb"][k] / m100["rss_kb"][k])
            if m100["rss_kb"][k] and mL["rss_kb"][k]
            else None
            for k in procs
        }
        self.results["d"] = {
            "large": large,
            "at_100": m100,
            "at_large": mL,
            "ratio": ratio,
            "timings": timings,
            "anomalies": anomalies,
        }

    def run(self) -> None:
        only = self.args.only
        try:
            for ph in ("a", "b", "c", "d"):
                if ph in only:
                    t0 = time.monotonic()
                    try:
                        getattr(self, f"phase_{ph}")()
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        import traceback

                        traceback.print_exc()
                        self.results.setdefault(ph, {})["error"] = f"{type(exc).__name__}: {exc}"
                    self.results.setdefault(ph, {})["phase_seconds"] = time.monotonic() - t0
                    Path(self.args._out).write_text(json.dumps(self.results, default=str))
        finally:
            self.cleanup()
            Path(self.args._out).write_text(json.dumps(self.results, default=str))


# ===================================================================== parent
def start_prefect_server(tmp: Path, db_url: str) -> tuple[subprocess.Popen, str, Any]:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
        "PREFECT_API_URL": api,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    logf = open(tmp / f"prefect-server-{port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp,
        env=env,
        stdout=logf,
        stderr=logf,
        start_new_session=True,
    )
    if not wait_http(f"{api}/health", 120, proc):
        stop_proc(proc, group=True)
        logf.close()
        raise RuntimeError(f"prefect server did not start; see {tmp}")
    return proc, api, logf


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-sla-{backend}-"))
    tag = uuid.uuid4().hex[:8]
    prefect_prefix = f"prefect_bench_x_{tag}"
    db_prefix = f"aftersales_bench_{tag}"
    results: dict[str, Any] = {"backend": backend}
    # a fresh Prefect server per group: the runs a leaves behind (and its event backlog) would
    # otherwise slow the server that b measures, and d's runner would pick up b's scheduled runs
    groups = [g for g in (["a"], ["b", "c"], ["d"]) if set(g) & set(args.only)]
    try:
        for gi, group in enumerate(groups):
            phases = [p for p in group if p in args.only]
            if backend == "postgres":
                pdb = pg_create(args.postgres, f"{prefect_prefix}_{gi}")
                prefect_db = "postgresql+asyncpg://" + pdb.split("://", 1)[1]
                results["prefect_server_db"] = "postgresql (prefect server start, fresh database)"
            else:
                prefect_db = f"sqlite+aiosqlite:///{tmp / f'prefect-{gi}.db'}"
                results["prefect_server_db"] = "sqlite (prefect server start, temp file)"
            server = logf = None
            try:
                t0 = time.monotonic()
                server, api, logf = start_prefect_server(tmp, prefect_db)
                log(
                    f"[{backend}] Prefect server ({prefect_db.split(':')[0]}) at {api} in "
                    f"{time.monotonic() - t0:.0f}s; phases {','.join(phases)}"
                )
                out = tmp / f"results-{gi}.json"
                env = {
                    **os.environ,
                    "PREFECT_API_URL": api,
                    "PREFECT_HOME": str(tmp / "prefect-home"),
                    "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "prefect-storage"),
                    "AFTERSALES_HOME": str(tmp / "home"),
                    "PREFECT_LOGGING_LEVEL": "WARNING",
                }
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--_worker",
                    backend,
                    "--_tmp",
                    str(tmp),
                    "--_out",
                    str(out),
                    "--_dbprefix",
                    db_prefix,
                    "--only",
                    ",".join(phases),
                    "--clocks",
                    str(args.clocks),
                    "--open",
                    str(args.open_pg),
                    "--open-sqlite",
                    str(args.open_sqlite),
                    "--rate",
                    str(args.rate),
                    "--seconds",
                    str(args.seconds),
                    "--seconds2",
                    str(args.seconds2),
                    "--drain",
                    str(args.drain),
                    "--n",
                    str(args.n),
                    "--window",
                    str(args.window),
                    "--c-instances",
                    args.c_instances,
                    "--c-wait",
                    str(args.c_wait),
                    "--settle",
                    str(args.settle),
                ]
                if args.postgres:
                    cmd += ["--postgres", args.postgres]
                worker = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
                try:
                    worker.wait(timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    log(f"[{backend}] worker exceeded {args.timeout}s; stopping it")
                    results.setdefault("errors", []).append(f"group {phases} timed out")
                finally:
                    stop_proc(worker, group=True, timeout=30)
                if out.exists():
                    results.update(json.loads(out.read_text()))
            finally:
                stop_proc(server, group=True)
                if logf:
                    logf.close()
    finally:
        if backend == "postgres" and args.postgres:
            pg_drop_prefix(args.postgres, db_prefix)
            pg_drop_prefix(args.postgres, prefect_prefix)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    return results


def print_report(all_res: list[dict[str, Any]]) -> None:
    print("\n" + "=" * 100)
    print(
        f"SLA clock and intake benchmark — {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for r in all_res:
        b = r["backend"]
        print(f"\n### backend: project DB {b}; Prefect server DB: {r.get('prefect_server_db')}")
        a = r.get("a", {})
        if "a1" in a:
            a1 = a["a1"]
            L = a1["latency"]
            print(
                f"(a1) intake -> INQ-SYNC post at sink via inquiry flow: {a1['delivered']}/{a1['intakes']} "
                f"delivered (target rate {a1['rate_target']}/s, achieved {a1['rate_achieved']:.2f}/s); "
                f"p50 {fmt(L['p50'])} p99 {fmt(L['p99'])} max {fmt(L['max'])}"
                + (f"; {a1['stopped']}" if a1.get("stopped") else "")
            )
            bd = a1.get("breakdown", {})
            for k, v in bd.items():
                if isinstance(v, dict) and "p50" in v:
                    print(f"       {k:28s} p50 {fmt(v['p50'])} p99 {fmt(v['p99'])} (n={v['n']})")
                else:
                    print(f"       {k:28s} {v}")
        if "a2" in a:
            a2 = a["a2"]
            L = a2["latency"]
            print(
                f"(a2) intake -> repair_request (queued in intake tx) at sink: {a2['delivered']}/{a2['intakes']}; "
                f"p50 {fmt(L['p50'])} p99 {fmt(L['p99'])} max {fmt(L['max'])}; "
                f"intake call p50 {fmt(a2['intake_call']['p50'])}"
            )
        if a.get("error"):
            print(f"(a) ERROR {a['error']}")
        bb = r.get("b", {})
        if "ratio" in bb:
            print(
                f"(b) raw flow-run creation {bb['raw_create_per_s']:.1f}/s; intake+emit "
                f"{bb['intake_per_s']:.1f}/s -> ratio {bb['ratio']:.2f}x (target >= 0.8x)"
            )
            print(
                f"       intake until the triggered run exists {bb['intake_e2e_per_s']:.1f}/s -> ratio "
                f"{bb['ratio_e2e']:.2f}x (missing runs {bb['e2e_runs_missing']}); intake without emit "
                f"{bb['intake_no_emit_per_s']:.1f}/s; emit costs {bb['emit_ms_per_intake']:.0f} ms/intake"
            )
        elif bb.get("error"):
            print(f"(b) ERROR {bb['error']}")
        c = r.get("c", {})
        for k, cr in c.get("runs", {}).items():
            print(
                f"(c) {cr['clocks']} clocks due over {cr['window_s']:.0f}s, {k} SLA service "
                f"process(es): reminded {cr['reminded']}, breached {cr['breached']}, not fired "
                f"{cr['clocks_not_fired']}; reminders skipped {cr['reminders_skipped']} (after due "
                f"{cr['reminders_after_due']}), double fired {cr['double_fired']}, marked late "
                f"{cr['clocks_marked_late']}"
            )
            for m in ("fire_lateness", "remind_lateness", "breach_lateness", "due_to_sink"):
                v = cr[m]
                print(
                    f"       {m:18s} p50 {fmt(v['p50'])} p99 {fmt(v['p99'])} "
                    f"max {fmt(v['max'])} (n={v['n']})"
                )
            print(
                f"       sink received {cr['sink_messages']} (duplicates {cr['sink_duplicates']}); "
                f"sent {cr['notifications_sent']}, pending {cr['notifications_pending']}, "
                f"failed {cr['notifications_failed']}"
            )
        for k, rr in c.get("ratio_vs_1_instance", {}).items():
            print(
                f"(c) {k} processes vs 1 (same run): "
                + ", ".join(f"{m} {fmt(v, 'x', 2)}" for m, v in rr.items())
            )
        if c.get("error"):
            print(f"(c) ERROR {c['error']}")
        d = r.get("d", {})
        if "ratio" in d:
            print(
                f"(d) RSS with 100 vs {d['large']} tickets waiting on humans "
                f"(suspended runs {d['at_100']['suspended_runs']} -> {d['at_large']['suspended_runs']}, "
                f"armed clocks {d['at_100']['armed_clocks']} -> {d['at_large']['armed_clocks']}):"
            )
            for k, v in d["ratio"].items():
                a_, l_ = d["at_100"]["rss_kb"][k], d["at_large"]["rss_kb"][k]
                print(
                    f"       {k:16s} {a_ / 1024:7.1f} MB -> {l_ / 1024:7.1f} MB  ratio {v:.3f}x (target <= 1.1x)"
                    if a_ and l_
                    else f"       {k:16s} -"
                )
            for k, v in d.get("timings", {}).items():
                print(f"       open {k}: {v}")
            if d.get("anomalies", {}).get("claimed_by_executed_run"):
                print(
                    f"       NOTE: {d['anomalies']['claimed_by_executed_run']} tickets already had an inquiry "
                    "run claimed by a run the runner executed (created Scheduled, not Suspended)"
                )
        elif d.get("error"):
            print(f"(d) ERROR {d['error']}")
    print("=" * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="a,b,c,d")
    ap.add_argument(
        "--postgres", default=None, help="admin URL; fresh databases are created and dropped"
    )
    ap.add_argument("--clocks", type=int, default=100_000, help="(c) armed clocks")
    ap.add_argument("--window", type=float, default=600.0, help="(c) clocks due over seconds")
    ap.add_argument(
        "--c-instances", default="1,2", help="(c) SLA service processes per round (1 = baseline)"
    )
    ap.add_argument(
        "--open", dest="open_pg", type=int, default=10000, help="(d) open tickets on PostgreSQL"
    )
    ap.add_argument(
        "--open-sqlite",
        type=int,
        default=1000,
        help="(d) open tickets on SQLite (Prefect-on-SQLite creates ~14 runs/s)",
    )
    ap.add_argument("--rate", type=float, default=5.0, help="(a) intakes per second")
    ap.add_argument("--seconds", type=float, default=30.0, help="(a1) seconds of inquiry intakes")
    ap.add_argument("--seconds2", type=float, default=20.0, help="(a2) seconds of repair intakes")
    ap.add_argument("--drain", type=float, default=180.0, help="(a1) max wait for deliveries")
    ap.add_argument("--n", type=int, default=200, help="(b) calls per path")
    ap.add_argument("--c-wait", type=float, default=120.0, help="(c) extra wait for firing/outbox")
    ap.add_argument("--settle", type=float, default=10.0, help="(d) seconds of ticks before RSS")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per backend and server group")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_tmp", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_dbprefix", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--_clock-service", dest="clock_service", type=float, default=None, help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]

    if args.clock_service is not None:
        clock_service_main(args.clock_service)
        return

    def _term(*_: Any) -> None:  # run the finally blocks (stop subprocesses, drop databases)
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    if args._worker:
        Worker(args).run()
        return

    backends = ([] if args.skip_sqlite else ["sqlite"]) + (["postgres"] if args.postgres else [])
    all_res = []
    for b in backends:
        t0 = time.monotonic()
        log(f"=== backend {b}")
        r = run_backend(b, args)
        r["seconds"] = time.monotonic() - t0
        all_res.append(r)
        log(f"=== backend {b} done in {r['seconds']:.0f}s")
    print_report(all_res)
    if os.environ.get("BENCH_SLA_JSON"):
        Path(os.environ["BENCH_SLA_JSON"]).write_text(json.dumps(all_res, indent=1, default=str))


if __name__ == "__main__":
    main()
