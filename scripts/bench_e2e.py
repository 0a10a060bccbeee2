"""Benchmark (issue 9 §6, bench (e)): end to end, tickets per core-hour.

    nice -n 10 python scripts/bench_e2e.py [--tickets 20] [--every 6] [--profiles up,scale-out]

For each profile the system is started as a user starts it (``aftersales up`` on its
embedded default, a SQLite file; ``aftersales scale-out`` on a fresh PostgreSQL database
and Redis), then a scripted operator drives repair tickets at a steady rate over HTTP:
``POST /intake`` every ``--every`` seconds, then each human step (review, arrival,
diagnosis, confirmation; ``engineer`` when nobody was free for REP-2) as soon as
``GET /tickets/{id}`` shows a run waiting for it, until the ticket is resolved (REP-4 done;
the CB callback it hands over to is days later and not driven: for an online ticket its
run waits for the customer's survey, whose link is never stored; its run's start and
suspend still happen in the window and are counted). One warm-up ticket goes first and
is not counted.

CPU: user+system of every process of the system, read from ``/proc/<pid>/stat`` over the
process tree of the ``aftersales`` command (each process's own time plus the time of the
children it has reaped: flow-run processes end inside the tree and are reaped by the
runner, the worker or the launcher daemon), summed at the start and at the end of the
measured window; for scale-out also the PostgreSQL backends serving its two databases
(sampled every second; ``pg_stat_activity``), printed apart and in the total. Redis's CPU
is not counted (shared server, a few ms). Tickets per core-hour = tickets / (CPU-s / 3600).

Also: wall-clock throughput (tickets completed / window) and per-ticket latency
(intake → resolved, p50/p99). The baseline is the embedded default measured in the same
run; the scale-out figures are printed as ratios against it.
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import httpx  # noqa: E402
import psutil  # noqa: E402

HTTP_TIMEOUT = 30.0  # seconds, every call to the intake API
STEP_WAIT = 300.0  # seconds a ticket may wait for its run to ask the next step
CALLBACK = ("call", "survey", "second-call")
POLL = 2.0  # seconds between the operator's reads of a ticket (GET /tickets/{id})
REDIS_URL = os.environ.get("AFTERSALES_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")

STEPS: tuple[tuple[str, dict[str, object]], ...] = (
    ("review", {"reviewer": "调度-孙", "approved": True, "skill": "software",
                "service_city": "上海"}),
    ("engineer", {"engineer_id": "E-03"}),  # REP-2 by hand when nobody was free
    ("arrival", {"engineer_id": "E-03"}),
    ("diagnosis", {"cause": "corrupt flash", "mode": "on_site", "charge": "free",
                   "cost_cny": 0, "customer_agreed": True}),
    ("confirmation", {"test_passed": True, "customer_signed": True, "signer": "李娜",
                      "device_status": "in service", "test_report": "ok"}),
)  # fmt: skip


def proc_cpu(pid: int) -> float:
    """user+system of a process and of the children it has reaped, in seconds."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu(root: int) -> float:
    """CPU of the root and of every live descendant (ended ones counted by their parent)."""
    total = 0.0
    top = psutil.Process(root)
    for proc in [top, *top.children(recursive=True)]:
        try:
            total += proc_cpu(proc.pid)
        except psutil.Error:
            continue  # ended between the listing and the read: counted by its parent
    return total


class PgBackends:
    """CPU of the PostgreSQL backends serving the named databases, sampled every second
    (a backend's time is lost only for its last second if it ends in the window)."""

    def __init__(self, admin_url: str, dbnames: list[str]) -> None:
        self.admin, self.dbnames = admin_url, dbnames
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        import psycopg

        with psycopg.connect(self.admin, connect_timeout=5, autocommit=True) as conn:
            pids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s)", (self.dbnames,)
                )
            ]
        for pid in pids:
            try:
                cpu = proc_cpu(pid)
            except psutil.Error:
                continue
            self.first.setdefault(pid, cpu)
            self.last[pid] = cpu

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a missed sample only
                print(f"pg sample failed: {exc}", file=sys.stderr)

    def start(self) -> None:
        self.sample()
        self.thread.start()

    def finish(self) -> float:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sample()
        return sum(self.last[p] - self.first[p] for p in self.last)


@dataclass
class Result:
    profile: str
    tickets: int
    completed: int
    window_s: float
    cpu_tree_s: float
    cpu_pg_s: float
    load_before: float
    load_after: float
    latencies: list[float] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return self.cpu_tree_s + self.cpu_pg_s

    @property
    def per_core_hour(self) -> float:
        return self.completed / (self.cpu_s / 3600) if self.cpu_s else 0.0

    @property
    def per_hour_wall(self) -> float:
        return self.completed / (self.window_s / 3600) if self.window_s else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports_pair() -> int:
    for _ in range(50):
        p = free_port()
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


def drive_ticket(api: httpx.Client, tag: str) -> float | None:
    """One repair ticket through every human step it asks (``STEPS``, and ``engineer``
    when nobody was free for REP-2); seconds from intake to resolved."""
    t0 = time.monotonic()
    resp = api.post(
        "/intake",
        json={
            "channel": "online", "sop": "repair", "intake_id": tag, "customer_id": "C-1002",
            "customer_name": "李娜", "contact": "13987654321", "product_model": "X200",
            "purchase_date": (datetime.now(UTC) - timedelta(days=90)).date().isoformat(),
            "description": "app crashes on start",
        },
    )  # fmt: skip
    if resp.status_code != 201:
        print(f"{tag}: intake {resp.status_code} {resp.text[:200]}", file=sys.stderr)
        return None
    tid = resp.json()["ticket_id"]
    forms = dict(STEPS)
    done: set[str] = set()
    last = time.monotonic()
    while True:
        r = api.get(f"/tickets/{tid}")
        if r.status_code == 200:
            view = r.json()
            if view["ticket"]["status"] in ("resolved", "closed"):
                return time.monotonic() - t0
            for w in view.get("waiting", []):
                step = w["step"]
                if w.get("escalation_id") is not None:
                    continue  # an escalation's step (a supervisor's), not the repair's
                if step in done:
                    continue
                if step in CALLBACK:
                    continue  # the CB callback after resolution: not the repair's steps
                if step not in forms:
                    print(f"{tag}: asked an unscripted step {step}", file=sys.stderr)
                    return None
                p = api.post(f"/tickets/{tid}/steps/{step}", json=forms[step])
                if p.status_code not in (200, 202):
                    print(f"{tag}: {step} {p.status_code} {p.text[:200]}", file=sys.stderr)
                    return None
                done.add(step)
                last = time.monotonic()
        if time.monotonic() - last > STEP_WAIT:
            print(f"{tag}: stuck after {sorted(done)}", file=sys.stderr)
            return None
        time.sleep(POLL)


def run_profile(profile: str, n: int, every: float, workdir: Path) -> Result:
    from aftersales.settings import ROLES
    from tests.conftest import (
        drop_postgres_database,
        fresh_postgres_database,
        postgres_admin_url,
    )
    from tests.sink import HttpSink
    from tests.test_up import Up

    home = workdir / profile
    home.mkdir(parents=True, exist_ok=True)
    intake_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("AFTERSALES_", "PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_HOME")
        )
    }
    sink = HttpSink()
    sink.__enter__()
    env.update({f"AFTERSALES_NOTIFY_{r.upper()}": sink.url(f"/{r}") for r in ROLES})
    env.update(
        AFTERSALES_HOME=str(home / "home"),
        PREFECT_HOME=str(home / "prefect-home"),  # its own Prefect database
        AFTERSALES_INTAKE_PORT=str(intake_port),
        AFTERSALES_PUBLIC_BASE_URL=f"http://127.0.0.1:{intake_port}",
        AFTERSALES_UP_START_TIMEOUT_SECONDS="300",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    admin = postgres_admin_url() if profile == "scale-out" else None
    db_url = None
    if profile == "scale-out":
        if admin is None:
            raise SystemExit("scale-out needs PostgreSQL (AFTERSALES_TEST_POSTGRES_URL)")
        import redis

        redis.Redis.from_url(REDIS_URL, socket_timeout=3).flushdb()
        db_url = fresh_postgres_database(admin)
        env.update(AFTERSALES_DATABASE_URL=db_url, AFTERSALES_SCALE_REDIS_URL=REDIS_URL)
        up = Up(env, "--port", str(ports_pair()), command="scale-out")
    else:
        env.update(AFTERSALES_DATABASE_URL=f"sqlite:///{home / 'aftersales.db'}")
        up = Up(env, "--port", str(free_port()))
    pg = None
    try:
        up.wait_ready(timeout=400)
        api = httpx.Client(base_url=f"http://127.0.0.1:{intake_port}", timeout=HTTP_TIMEOUT)
        stamp = time.time_ns()
        warm = drive_ticket(api, f"bench-{profile}-{stamp}-warm")
        print(f"[{profile}] warm-up ticket: {warm}", flush=True)
        if db_url is not None and admin is not None:
            name = db_url.rsplit("/", 1)[1]
            pg = PgBackends(admin.replace("postgresql+psycopg", "postgresql"),
                            [name, f"{name}_prefect"])  # fmt: skip
            pg.start()
        load0 = os.getloadavg()[0]
        cpu0 = tree_cpu(up.proc.pid)
        t0 = time.monotonic()
        lat: list[float | None] = [None] * n

        def one(i: int) -> None:
            with httpx.Client(base_url=api.base_url, timeout=HTTP_TIMEOUT) as c:
                lat[i] = drive_ticket(c, f"bench-{profile}-{stamp}-{i}")

        threads = []
        for i in range(n):
            th = threading.Thread(target=one, args=(i,), daemon=True)
            th.start()
            threads.append(th)
            time.sleep(every)
        for th in threads:
            th.join()
        window = time.monotonic() - t0
        cpu1 = tree_cpu(up.proc.pid)
        pg_cpu = pg.finish() if pg is not None else 0.0
        done = [x for x in lat if x is not None]
        return Result(profile, n, len(done), window, cpu1 - cpu0, pg_cpu, load0,
                      os.getloadavg()[0], done)  # fmt: skip
    finally:
        up.stop()
        sink.close()
        if admin is not None and db_url is not None:
            drop_postgres_database(admin, db_url)
            drop_postgres_database(admin, db_url + "_prefect")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=20)
    ap.add_argument("--every", type=float, default=6.0, help="seconds between intakes")
    ap.add_argument("--profiles", default="up,scale-out")
    ap.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aftersales-bench-e2e-"))
    results: list[Result] = []
    for profile in args.profiles.split(","):
        print(f"[{profile}] {args.tickets} repair tickets, one every {args.every:g} s", flush=True)
        results.append(run_profile(profile, args.tickets, args.every, work))
        print(f"[{profile}] {json.dumps(asdict(results[-1]))}", flush=True)  # kept if cut later
    base = results[0]
    print(f"\nbaseline: {base.profile} (same run); {args.tickets} tickets each")
    print("profile     done  window_s  cpu_s(tree+pg)      tickets/core-h  tickets/h(wall)  "
          "p50_s  p99_s  load")  # fmt: skip
    for r in results:
        print(
            f"{r.profile:<11} {r.completed:>2}/{r.tickets:<2} {r.window_s:>7.1f}  "
            f"{r.cpu_s:>7.1f} ({r.cpu_tree_s:.1f}+{r.cpu_pg_s:.1f})  "
            f"{r.per_core_hour:>12.0f}  {r.per_hour_wall:>14.0f}  {r.pct(0.5):>6.1f} "
            f"{r.pct(0.99):>6.1f}  {r.load_before:.1f}-{r.load_after:.1f}"
        )
    for r in results[1:]:
        print(
            f"{r.profile} / {base.profile}: tickets per core-hour "
            f"{r.per_core_hour / base.per_core_hour:.2f}x, wall throughput "
            f"{r.per_hour_wall / base.per_hour_wall:.2f}x, p50 latency "
            f"{r.pct(0.5) / base.pct(0.5):.2f}x, p99 {r.pct(0.99) / base.pct(0.99):.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0 if all(r.completed == r.tickets for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
