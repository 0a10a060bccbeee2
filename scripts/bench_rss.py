"""Benchmark (issue 9 §6, bench (f)): RSS of each long-lived process, 100 against
100,000 open tickets on PostgreSQL.

    nice -n 10 python scripts/bench_rss.py [--sizes 100,100000] [--seconds 120]

For each size: a fresh PostgreSQL database, migrated and seeded with the demo's reference
data, then ``N`` open repair tickets, each with one armed REP-2 clock due days ahead
(``next_fire_at`` in the future: nothing fires in the window), bulk-inserted through the
models' tables (SQLAlchemy ``insert`` of ``Ticket`` / ``SlaClock`` in batches). Then
``aftersales up`` runs on that database for ``--seconds``: its Prefect server, the runner
(``aftersales serve``), the SLA service (``aftersales clock run``, sla-board every
``--board`` seconds), the reconciler (``aftersales supervise``) and the intake API
(``aftersales api``). Meanwhile a client calls what a user calls: ``GET /queue?limit=50``
(the work queue) and ``GET /tickets/{id}`` every 5 s. The RSS of each process
(``/proc/<pid>/status`` VmRSS, every 2 s) is printed as its peak and its last sample per
size, and the ratio of the peaks (100,000 / 100). Target: ≤ 1.1x.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import httpx  # noqa: E402
import psutil  # noqa: E402

HTTP_TIMEOUT = 60.0  # seconds, each call to the intake API (the queue may be slow at 100k)
BATCH = 10_000  # rows per insert statement batch

PARTS = {  # a process of the `up` tree -> its name, by a piece of its command line
    "prefect server start": "prefect-server",
    "aftersales.cli serve": "runner (serve)",
    "aftersales.cli clock run": "sla-clock",
    "aftersales.cli supervise": "reconciler",
    "aftersales.cli api": "intake-api",
    "aftersales.cli up": "up (supervisor)",
}


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def children(root: int) -> list[int]:
    """The root and every live descendant."""
    top = psutil.Process(root)
    return [top.pid, *(p.pid for p in top.children(recursive=True))]


def part_of(pid: int) -> str | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return next((name for key, name in PARTS.items() if key in cmd), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, n: int) -> float:
    """Migrate, reference data, ``n`` open tickets with an armed clock; seconds taken."""
    from sqlalchemy import insert

    from aftersales.demo import seed_reference_data
    from aftersales.settings import reset_settings
    from models.db import _engine, init_db, session_scope
    from models.entities import Channel, ClockState, SlaClock, Sop, Ticket, TicketStatus

    os.environ["AFTERSALES_DATABASE_URL"] = url
    reset_settings()
    _engine.cache_clear()
    t0 = time.monotonic()
    init_db()
    seed_reference_data()
    now = datetime.now(UTC)
    for lo in range(0, n, BATCH):
        hi = min(n, lo + BATCH)
        tickets = [
            {
                "id": f"T-RSS-{i:07d}", "intake_key": f"rss-{i}", "sop": Sop.REPAIR,
                "channel": Channel.ONLINE, "customer_name": "Bench Customer",
                "contact": "bench@example.com", "product_model": "X200",
                "description": "seeded for bench_rss", "status": TicketStatus.IN_PROGRESS,
                "created_at": now - timedelta(minutes=i % 600), "service_city": "上海",
            }
            for i in range(lo, hi)
        ]  # fmt: skip
        clocks = [
            {
                "ticket_id": f"T-RSS-{i:07d}", "rule_id": "REP-2:other-city", "clause": "REP-2",
                "instance": 0, "profile": "default", "kind": "response", "unit": "hours",
                "duration": 48.0, "state": ClockState.ARMED,
                "started_at": now - timedelta(minutes=i % 600),
                "due_at": now + timedelta(days=2, minutes=i % 600),
                "remind_at": now + timedelta(days=1, minutes=i % 600),
                "next_fire_at": now + timedelta(days=1, minutes=i % 600),
            }
            for i in range(lo, hi)
        ]  # fmt: skip
        with session_scope() as s:
            s.execute(insert(Ticket), tickets)
            s.execute(insert(SlaClock), clocks)
    return time.monotonic() - t0


@dataclass
class Sizing:
    n: int
    seed_s: float
    load: list[float] = field(default_factory=list)
    peak: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    queue_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_size(n: int, seconds: float, board: float, work: Path) -> Sizing:
    from aftersales.settings import ROLES
    from tests.conftest import drop_postgres_database, fresh_postgres_database, postgres_admin_url
    from tests.sink import HttpSink
    from tests.test_up import Up

    admin = postgres_admin_url()
    if admin is None:
        raise SystemExit("PostgreSQL not reachable (AFTERSALES_TEST_POSTGRES_URL)")
    url = fresh_postgres_database(admin)
    sink = HttpSink()
    sink.__enter__()
    up: Up | None = None
    try:
        took = seed(url, n)
        print(f"[{n}] seeded in {took:.1f} s", flush=True)
        out = Sizing(n, took)
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("AFTERSALES_", "PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_HOME")
            )
        }
        env.update({f"AFTERSALES_NOTIFY_{r.upper()}": sink.url(f"/{r}") for r in ROLES})
        env.update(
            AFTERSALES_HOME=str(work / f"home-{n}"),
            PREFECT_HOME=str(work / f"prefect-home-{n}"),  # its own Prefect database
            AFTERSALES_DATABASE_URL=url,
            AFTERSALES_INTAKE_PORT=str(port),
            AFTERSALES_SLA_BOARD_SECONDS=str(board),
            AFTERSALES_UP_START_TIMEOUT_SECONDS="300",
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        up = Up(env, "--port", str(free_port()))
        up.wait_ready(timeout=400)
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HTTP_TIMEOUT) as c:
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        r = c.get("/queue", params={"limit": 50})
                        if r.status_code != 200:
                            out.errors.append(f"/queue {r.status_code} {r.text[:120]}")
                        out.queue_s.append(time.monotonic() - t0)
                        c.get("/tickets/T-RSS-0000000")
                    except httpx.HTTPError as exc:
                        out.errors.append(f"/queue {type(exc).__name__}")
                    stop.wait(5)

        th = threading.Thread(target=client, daemon=True)
        th.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for pid in children(up.proc.pid):
                name = part_of(pid)
                if name is None:
                    continue
                try:
                    mb = rss_mb(pid)
                except psutil.Error:
                    continue
                out.peak[name] = max(out.peak.get(name, 0.0), mb)
                out.last[name] = mb
            out.load.append(os.getloadavg()[0])
            time.sleep(2)
        stop.set()
        th.join(timeout=HTTP_TIMEOUT + 5)
        errs = [x for x in up.err if "Traceback" in x or "Error" in x][:5]
        out.errors += errs
        return out
    finally:
        if up is not None:
            up.stop()
        sink.close()
        from models.db import _engine, get_engine

        get_engine().dispose()  # this process's pool onto the database being dropped
        _engine.cache_clear()
        drop_postgres_database(admin, url)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,100000")
    ap.add_argument("--seconds", type=float, default=120.0, help="run time per size")
    ap.add_argument("--board", type=float, default=20.0, help="sla-board every N s")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aftersales-bench-rss-"))
    sizes = [int(x) for x in args.sizes.split(",")]
    res = [run_size(n, args.seconds, args.board, work) for n in sizes]
    base = res[0]
    print(f"\n{args.seconds:g} s per size; RSS MB peak (last sample); baseline N={base.n}")
    head = "process".ljust(18) + "".join(f"N={r.n:<18}" for r in res) + "ratio of peaks"
    print(head)
    for name in PARTS.values():
        if name not in base.peak:
            continue
        cells = "".join(f"{r.peak.get(name, 0):7.1f} ({r.last.get(name, 0):6.1f})    " for r in res)
        ratios = " ".join(
            f"{r.peak.get(name, 0) / base.peak[name]:.2f}x" for r in res[1:] if base.peak[name]
        )
        print(f"{name:<18}{cells}{ratios}")
    for r in res:
        q = sorted(r.queue_s)
        med = q[len(q) // 2] if q else float("nan")
        print(
            f"N={r.n}: seeded {r.seed_s:.1f} s, GET /queue median {med:.2f} s ({len(q)} calls), "
            f"load {min(r.load, default=0):.1f}-{max(r.load, default=0):.1f}, "
            f"errors {r.errors[:3]}"
        )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in res], indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
