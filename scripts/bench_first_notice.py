"""Benchmark (issue 9, bench (a)): intake -> first notification received at a real HTTP
sink, p50/p99, at a steady rate (target p99 <= 2 s at 20 intakes/s for 60 s), with the
processes a user runs.

    nice -n 5 python scripts/bench_first_notice.py [--rate 20] [--seconds 60]
        [--backends sqlite,postgres] [--postgres postgresql://root@127.0.0.1:5432/test]

Per backend (the project database; the Prefect server runs on its own SQLite file):
  - a Prefect server (``prefect server start``) that receives the intakes' start events;
  - the intake API as ``aftersales up`` runs it: ``uvicorn aftersales.api:create_app``;
  - the SLA service as ``aftersales clock run`` (default settings: its courier delivers
    the outbox, notify_concurrency 8, 50 messages/s per target URL);
  - a local HTTP sink (``tests.sink.HttpSink``) every role routes to (Apprise ``json://``).
The load: ``--rate`` intakes per second for ``--seconds``, each an inquiry (``POST
/intake`` over a socket, ``--clients`` threads on a fixed schedule). The first notification of
an inquiry is its INQ-SYNC post to the sync group, queued in the intake's transaction;
the time is from just before the POST to the sink's receipt of that ticket's post.

Not started: the runner (no SOP deployment is served, so the start events create no
runs) and the run supervisor. The first notification needs no flow run; with the runner,
every intake would also start a flow process on the same 2 cores (bench (d) prices a
start). A narrower set-up than ``aftersales up`` for that reason, labelled as such.

Baseline in the same run: one Apprise ``json://`` notify from this process to the same
sink, repeated (the floor of any delivery); and the POST /intake response time itself.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

TICKET_RE = re.compile(r"TK-[0-9A-F]{12}")
HTTP_TIMEOUT_S = 30.0  # every intake POST gives up after this


@dataclass
class Sent:
    ticket_id: str | None
    sent_at: float  # wall clock (time.time) just before the POST, as the sink stamps receipts
    call_s: float
    status: int


@dataclass
class Result:
    backend: str
    sent: int
    accepted: int
    achieved_rate: float
    delivered: int
    latency: dict
    call: dict
    floor: dict
    load: str


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def floor_notify(sink_url: str, n: int = 50) -> list[float]:
    """Baseline: one Apprise json:// notify from this process to the sink, n times."""
    import apprise

    out = []
    for i in range(n):
        ap = apprise.Apprise()
        ap.add(sink_url)
        t0 = time.monotonic()
        ap.notify(title=f"floor {i}", body="floor")
        out.append(time.monotonic() - t0)
    return out


def run_backend(backend: str, args: argparse.Namespace) -> Result:
    import httpx

    from aftersales.settings import ROLES, reset_settings
    from scripts.bench_sla import (
        free_port,
        log,
        pg_create,
        pg_drop_prefix,
        start_prefect_server,
        stop_proc,
        summary,
        wait_http,
    )
    from tests.sink import HttpSink

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-first-{backend}-"))
    prefix = f"bench_first_{uuid.uuid4().hex[:6]}"
    if backend == "postgres":
        db_url = pg_create(args.postgres, f"{prefix}_db")
    else:
        db_url = f"sqlite:///{tmp / 'aftersales.db'}"
    procs: list[tuple[subprocess.Popen, bool]] = []
    logs = []
    sink = HttpSink()
    sink.__enter__()
    try:
        server, api, slog = start_prefect_server(tmp, f"sqlite+aiosqlite:///{tmp / 'prefect.db'}")
        procs.append((server, True))
        logs.append(slog)
        os.environ.update(
            {
                "PREFECT_API_URL": api,
                "AFTERSALES_HOME": str(tmp / "home"),
                "AFTERSALES_DATABASE_URL": db_url,
            }
        )
        for role in ROLES:
            os.environ[f"AFTERSALES_NOTIFY_{role.upper()}"] = sink.url(f"/{role}")
        reset_settings()
        from aftersales.demo import seed_reference_data
        from models.db import init_db

        init_db(db_url)
        seed_reference_data()

        def spawn(name: str, cmd: list[str]) -> subprocess.Popen:
            f = open(tmp / f"{name}.log", "ab")  # noqa: SIM115
            logs.append(f)
            p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=f, stderr=f)
            procs.append((p, False))
            return p

        spawn("sla", [sys.executable, "-m", "aftersales.cli", "clock", "run"])
        port = free_port()
        api_proc = spawn(
            "api",
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
        if not wait_http(f"{base}/health", 60, api_proc):
            raise RuntimeError(f"intake API did not start; see {tmp}/api.log")
        floor = floor_notify(sink.url("/floor"))
        time.sleep(3)  # SLA service up and idle
        n = int(args.rate * args.seconds)
        tag = uuid.uuid4().hex[:6]
        sent: list[Sent] = []
        lock = threading.Lock()
        client = httpx.Client(base_url=base, timeout=HTTP_TIMEOUT_S)

        def post(i: int, at: float) -> None:
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = {
                "channel": "online",
                "intake_id": f"first-{tag}-{i}",
                "customer_name": "Bench Customer",
                "contact": f"bench-{i}@example.com",
                "description": f"benchmark question {i}",
            }
            t_wall = time.time()
            c0 = time.monotonic()
            try:
                r = client.post("/intake", json=body)
                status = r.status_code
                tid = r.json().get("ticket_id") if status == 201 else None
            except httpx.HTTPError:
                status, tid = 0, None
            with lock:
                sent.append(Sent(tid, t_wall, time.monotonic() - c0, status))

        log(f"{backend}: {n} intakes at {args.rate}/s for {args.seconds}s (load {loadavg()})")
        t0 = time.monotonic() + 0.5
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            for i in range(n):
                pool.submit(post, i, t0 + i / args.rate)
        elapsed = max(s.sent_at for s in sent) - min(s.sent_at for s in sent)
        load = loadavg()
        tickets = {s.ticket_id: s.sent_at for s in sent if s.ticket_id}

        def first() -> dict[str, float]:
            got: dict[str, float] = {}
            for m in sink.messages("/sync_group"):
                title = str(m.body.get("title", "")) if isinstance(m.body, dict) else ""
                mt = TICKET_RE.search(title)
                if mt and mt.group(0) in tickets and mt.group(0) not in got:
                    got[mt.group(0)] = m.received_at
            return got

        sink.wait_for(lambda: len(first()) >= len(tickets), timeout=args.drain, interval=0.5)
        got = first()
        lat = [got[t] - tickets[t] for t in got]
        client.close()
        res = Result(
            backend=backend,
            sent=len(sent),
            accepted=len(tickets),
            achieved_rate=(len(sent) - 1) / elapsed if elapsed > 0 else 0.0,
            delivered=len(got),
            latency=summary(lat),
            call=summary([s.call_s for s in sent]),
            floor=summary(floor),
            load=load,
        )
        log(f"{backend}: {res}")
        return res
    finally:
        for p, g in reversed(procs):
            stop_proc(p, group=g)
        for f in logs:
            f.close()
        sink.close()
        if backend == "postgres":
            pg_drop_prefix(args.postgres, prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the posts")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument(
        "--clients", type=int, default=64, help="client threads (POSTs in flight at most)"
    )
    ap.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    args = ap.parse_args()
    results = [run_backend(b, args) for b in args.backends.split(",")]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    print(
        f"\nbench_first_notice: {args.rate}/s for {args.seconds}s, cores {os.cpu_count()}; "
        "runner and run supervisor not started (see the module doc)"
    )
    print(
        f"{'backend':9} {'sent':>5} {'201':>5} {'rate/s':>7} {'delivered':>9} "
        f"{'p50 s':>7} {'p99 s':>7} {'max s':>7} {'p99/2s':>7} {'POST p99':>8} "
        f"{'floor p50':>9} {'p50/floor':>9} {'load (1/5/15 min)':>18}"
    )
    for r in results:
        p99 = r.latency["p99"]
        p50 = r.latency["p50"]
        fl = r.floor["p50"]
        print(
            f"{r.backend:9} {r.sent:5d} {r.accepted:5d} {r.achieved_rate:7.2f} "
            f"{r.delivered:5d}/{r.accepted:<3d} {f(p50):>7} {f(p99):>7} "
            f"{f(r.latency['max']):>7} {(f(p99 / 2.0) if p99 else '-'):>7} "
            f"{f(r.call['p99']):>8} {f(fl):>9} "
            f"{(f'{p50 / fl:.0f}x' if p50 and fl else '-'):>9} {r.load:>18}"
        )
    print(
        "latency: POST start -> INQ-SYNC post received at the sink; p99/2s: the p99 over the "
        "2 s target (<= 1 meets it); floor: one Apprise notify to the sink from the bench "
        "process (baseline, same run); POST p99: the intake call's own response time"
    )


if __name__ == "__main__":
    main()
