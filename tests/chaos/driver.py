"""The fault-injection driver (issue 11 §7): the real system under SIGKILL.

:func:`run_chaos` starts ``aftersales up`` as a user does (its own ``AFTERSALES_HOME``,
a fresh project database, its own Prefect server on its own port and ``PREFECT_HOME``,
every notification role routed to a real local HTTP sink), sends tickets through every
SOP over HTTP with scripted human steps (one thread per ticket, retrying as a person
would), while a killer thread driven by ``random.Random(seed)`` SIGKILLs, at random
moments, the ``up`` main process (then runs ``aftersales up`` again, the documented
restart), the Prefect server child and flow-run processes (the runner's children).

When the kills are done and the scripts have submitted everything, it waits (bounded)
for every ticket to reach its scripted state and judges, from the project database,
Prefect and the sink (:class:`ChaosReport`):

* 0 acknowledged intakes lost (every 200/201 ``ticket_id`` is a ticket);
* 0 tickets stuck (each reached its scripted end: closed, every SOP run completed);
* 0 steps applied twice (``step_record`` has no (ticket, sop, step_key, instance) twice);
* 0 notifications delivered twice and none lost: per (role, title, body) the sink holds
  exactly as many messages as ``notification`` rows marked sent, and no row is pending;
* 0 clocks unfired (no armed/reminded clock with ``next_fire_at`` past a bound);
* at most one non-final Prefect run per (ticket, SOP), and the owner in ``sop_run``
  is a completed run.

The seed is printed first; ``CHAOS_SEED`` replays a run's kill schedule (the moments
are seeded; what a kill hits depends on the machine's timing, so a replay is the same
schedule, not the same interleaving).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PROFILE = Path(__file__).with_name("chaos-profile.yaml")
HTTP_TIMEOUT = 15.0  # seconds: one HTTP call to the intake API or Prefect
KINDS = ("up", "prefect-server", "flow-run")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


# ------------------------------------------------------------------ processes (/proc)
# Linux /proc read directly (as tests/test_up.py does): no psutil dependency for a suite.
@dataclass(frozen=True)
class Proc:
    pid: int

    def _read(self, name: str) -> bytes:
        return Path(f"/proc/{self.pid}/{name}").read_bytes()

    def ppid(self) -> int:
        stat = self._read("stat").decode()
        return int(stat.rsplit(")", 1)[1].split()[1])

    def alive(self) -> bool:
        try:
            return self._read("stat").decode().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def cmdline(self) -> list[str]:
        return self._read("cmdline").decode(errors="replace").split("\0")

    def environ_has(self, name: str) -> bool:
        prefix = f"{name}=".encode()
        return any(v.startswith(prefix) for v in self._read("environ").split(b"\0"))

    def kill(self) -> bool:
        try:
            os.kill(self.pid, signal.SIGKILL)
            return True
        except ProcessLookupError:
            return False


def descendants(root: int) -> list[Proc]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(d.name)] = Proc(int(d.name)).ppid()
    out, frontier = [], {root}
    while frontier:
        kids = {pid for pid, pp in parent.items() if pp in frontier}
        out += [Proc(k) for k in sorted(kids)]
        frontier = kids
    return out


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = [p for p in procs if p.alive()]
        if not alive:
            return []
        time.sleep(0.2)
    return [p for p in procs if p.alive()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} chaos: {msg}", flush=True)


# ------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run."""

    seed: int
    database_url: str  # a fresh, empty project database (SQLite file or PostgreSQL)
    workdir: Path
    kills: int = 10  # SIGKILLs in all
    tickets: int = 6  # the scripted mix (see :func:`ticket_mix`)
    kill_gap: tuple[float, float] = (4.0, 16.0)  # seconds between kills (seeded uniform)
    kind_weights: tuple[float, float, float] = (0.15, 0.3, 0.55)  # up, prefect, flow-run
    # after the last kill every ticket is at its end by then: a run a killed runner left
    # in Submitting is replaced after run_stuck_seconds (300), then its steps and the
    # email close clock (90 s in the chaos profile) still take their time on a busy box;
    # a healthy run ends long before (the wait stops when no ticket is pending)
    settle_seconds: float = 600.0
    clock_bound_seconds: float = 60.0  # a clock due longer ago than this is "unfired"
    up_start_seconds: float = 240.0  # one `aftersales up` start, health-gated


@dataclass
class ChaosReport:
    seed: int
    backend: str
    kills: Counter[str] = field(default_factory=Counter)
    kill_misses: int = 0  # a drawn kind with nothing to kill at that moment (redrawn)
    up_restarts: int = 0
    intakes_acked: int = 0
    tickets: int = 0
    lost_intakes: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    steps_twice: list[str] = field(default_factory=list)
    notes_twice: list[str] = field(default_factory=list)
    notes_lost: list[str] = field(default_factory=list)
    clocks_unfired: list[str] = field(default_factory=list)
    runs_not_single: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    steps_submitted: int = 0
    notes_delivered: int = 0
    clocks_fired: int = 0
    wall_seconds: float = 0.0
    settle_seconds: float = 0.0  # last kill -> every ticket at its end

    @property
    def failures(self) -> dict[str, list[str]]:
        return {
            k: v
            for k, v in {
                "lost intakes": self.lost_intakes,
                "stuck tickets": self.stuck,
                "steps applied twice": self.steps_twice,
                "notifications delivered twice": self.notes_twice,
                "notifications not delivered": self.notes_lost,
                "clocks unfired": self.clocks_unfired,
                "runs not single": self.runs_not_single,
                "script errors": self.script_errors,
            }.items()
            if v
        }

    def summary(self) -> str:
        kills = ", ".join(f"{k} {self.kills[k]}" for k in KINDS)
        return (
            f"seed {self.seed} [{self.backend}]: {sum(self.kills.values())} kills ({kills}; "
            f"{self.up_restarts} up restarts), {self.tickets} tickets, {self.intakes_acked} "
            f"intakes acknowledged, {self.steps_submitted} steps submitted, "
            f"{self.notes_delivered} notifications delivered, {self.clocks_fired} clock "
            f"firings; lost {len(self.lost_intakes)}, stuck {len(self.stuck)}, steps twice "
            f"{len(self.steps_twice)}, notifications twice {len(self.notes_twice)}, "
            f"undelivered {len(self.notes_lost)}, clocks unfired {len(self.clocks_unfired)}, "
            f"runs not single {len(self.runs_not_single)}; wall {self.wall_seconds:.0f} s "
            f"(settled {self.settle_seconds:.0f} s after the last kill)"
        )


# ------------------------------------------------------------------ the system
class System:
    """``aftersales up`` in a subprocess; restarted the documented way after a kill."""

    def __init__(self, cfg: ChaosConfig, sink_url: Callable[[str], str]) -> None:
        from aftersales.settings import ROLES

        self.cfg = cfg
        self.prefect_port = free_port()
        self.intake_port = free_port()
        self.prefect_api = f"http://127.0.0.1:{self.prefect_port}/api"
        self.intake = f"http://127.0.0.1:{self.intake_port}"
        home = cfg.workdir / "home"
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AFTERSALES_", "PREFECT_")) and k != "PYTEST_CURRENT_TEST"
        }
        self.env = {
            **keep,
            "AFTERSALES_HOME": str(home),
            "AFTERSALES_DATABASE_URL": cfg.database_url,
            "AFTERSALES_INTAKE_PORT": str(self.intake_port),
            "AFTERSALES_POLICY_FILE": str(PROFILE),
            # recovery at test speed (the defaults are for a day's work)
            "AFTERSALES_RECONCILE_SECONDS": "2",
            "AFTERSALES_LOST_START_GRACE_SECONDS": "20",
            "AFTERSALES_RUN_HEARTBEAT_LOST_SECONDS": "90",
            "AFTERSALES_RECONCILE_MAX_RESTARTS": "50",
            "AFTERSALES_SUBMISSION_STALE_SECONDS": "20",
            "AFTERSALES_NOTIFY_BACKOFF_SECONDS": "0.5",
            "AFTERSALES_UP_RESTART_BACKOFF_SECONDS": "1",
            "AFTERSALES_UP_RESTART_BACKOFF_MAX_SECONDS": "5",
            "AFTERSALES_UP_STOP_SECONDS": "10",
            "AFTERSALES_UP_START_TIMEOUT_SECONDS": str(cfg.up_start_seconds),
            "AFTERSALES_SLA_BOARD_SECONDS": "0",
            "PREFECT_HOME": str(cfg.workdir / "prefect-home"),
            "PREFECT_LOCAL_STORAGE_PATH": str(cfg.workdir / "prefect-storage"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",  # its minimum
        }
        for role in ROLES:
            self.env[f"AFTERSALES_NOTIFY_{role.upper()}"] = sink_url(f"/{role}")
        self.log_path = cfg.workdir / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()  # held while up is down or restarting
        self.starts = 0

    def start(self) -> None:
        """Run ``aftersales up`` until it prints its ready line (retrying a refused start:
        the parts of a killed ``up`` may still hold a port for a moment)."""
        end = time.monotonic() + self.cfg.up_start_seconds * 2
        while True:
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "aftersales.cli", "up", "--port", str(self.prefect_port)],
                    cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.starts += 1
            while time.monotonic() < end:
                text = self.log_path.read_bytes()[offset:].decode(errors="replace")
                if "Intake endpoint" in text:
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.3)
            if time.monotonic() >= end:
                raise RuntimeError(f"`aftersales up` not ready; see {self.log_path}")
            log(f"up exited ({self.proc.returncode}) while starting; again in 2 s")
            time.sleep(2)

    def tree(self) -> list[Proc]:
        return [] if self.proc is None else descendants(self.proc.pid)

    def prefect_server(self) -> Proc | None:
        for p in self.tree():
            with contextlib.suppress(OSError):
                cmd = p.cmdline()
                if "prefect" in cmd and "server" in cmd and "start" in cmd:
                    return p
        return None

    def flow_runs(self) -> list[Proc]:
        found = []
        for p in self.tree():
            with contextlib.suppress(OSError):
                if p.environ_has("PREFECT__FLOW_RUN_ID"):
                    found.append(p)
        return found

    def kill_up(self) -> None:
        """SIGKILL the main process, wait for its parts to go (they get SIGTERM through
        PR_SET_PDEATHSIG), then run ``aftersales up`` again."""
        assert self.proc is not None
        with self.lock:
            parts = self.tree()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            for p in wait_gone(parts, 30):  # a part ignoring SIGTERM: up needs its port
                log(f"part {p.pid} outlived up by 30 s: SIGKILL")
                p.kill()
            self.start()

    def stop(self) -> None:
        parts = self.tree()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in wait_gone(parts, 5):
            p.kill()


# ------------------------------------------------------------------ the scripts
GOOD_CALL = {"caller": "回访-林", "reached": True, "attitude": 5, "efficiency": 4,
             "effectiveness": 5, "answer": "quick and polite"}  # fmt: skip


@dataclass(frozen=True)
class Script:
    """A ticket's intake and the steps people submit, in order; ``sops`` are the SOP
    runs it must end with (each completed); the ticket ends closed."""

    kind: str
    intake: dict[str, Any]
    steps: tuple[tuple[str, dict[str, Any] | None], ...]  # None: read at submit time
    sops: tuple[str, ...]


def ticket_mix(n: int, tag: str) -> list[Script]:
    """``n`` tickets over every SOP: inquiries class A through every step (phone), an
    email inquiry closed by its INQ-CH-EMAIL clock without a reply, a class B inquiry
    handed to repair (REP-1..4) and its callback (CB-2), and one complaint (CMP-1..4;
    one per run: a customer's second complaint within 30 days opens ESC-IMPORTANT)."""

    def inquiry_a(i: int) -> Script:
        return Script("inquiry-a", {
            "channel": "phone", "intake_id": f"chaos-{tag}-{i}", "customer_name": "张伟",
            "contact": "13812345678", "description": f"how do I pair the remote ({i})?",
        }, (
            ("first-response", {"agent": "小吴", "category": "A", "priority": "auto",
                                "complex_issue": False}),
            ("answer", {"answered_from_knowledge_base": True, "answer": "hold the button"}),
            ("solved", {"resolution": "paired", "root_cause": "manual unclear"}),
            ("report", {"agent": "小吴", "via": "phone"}),
            ("feedback", {"outcome": "rated", "attitude": 5, "efficiency": 5,
                          "effectiveness": 5}),
        ), ("inquiry",))  # fmt: skip

    def email_no_reply(i: int) -> Script:
        return Script("inquiry-email", {
            "channel": "email", "email_grade": "important",
            "intake_id": f"<chaos-{tag}-{i}@example.com>", "customer_name": "李娜",
            "contact": "lina@example.com", "description": f"which firmware ({i})?",
        }, (
            ("first-response", {"agent": "小周", "category": "A", "priority": "auto",
                                "complex_issue": False}),
            ("answer", {"answered_from_knowledge_base": True, "answer": "2.1 or later"}),
            ("solved", {"resolution": "firmware 2.1", "root_cause": "docs gap"}),
            ("report", {"agent": "小周", "via": "phone"}),
        ), ("inquiry",))  # fmt: skip

    def repair_b(i: int) -> Script:
        return Script("repair-b", {
            "channel": "phone", "intake_id": f"chaos-{tag}-{i}", "customer_id": "C-1002",
            "customer_name": "李娜", "contact": "13987654321", "product_model": "X200",
            "purchase_date": "2026-03-01", "description": f"X200 will not power on ({i})",
            "service_city": "杭州",
        }, (
            ("first-response", {"agent": "小吴", "category": "B", "priority": "auto",
                                "complex_issue": False}),
            ("review", {"reviewer": "调度-孙", "approved": True, "skill": "hardware"}),
            ("arrival", None),  # the engineer the work order names
            ("diagnosis", {"cause": "fuse", "mode": "on_site", "charge": "free",
                           "cost_cny": 0, "customer_agreed": True}),
            ("confirmation", {"test_passed": True, "customer_signed": True, "signer": "李娜",
                              "device_status": "in service", "test_report": "ok"}),
            ("call", GOOD_CALL),
        ), ("inquiry", "repair", "callback"))  # fmt: skip

    def complaint(i: int) -> Script:
        return Script("complaint", {
            "channel": "phone", "sop": "complaint", "intake_id": f"chaos-{tag}-{i}",
            "customer_id": "C-1001", "customer_name": "张伟", "contact": "13812345678",
            "description": "the engineer was rude",
        }, (
            ("accept", {"agent": "小周", "cause": "rude engineer",
                        "expected_outcome": "apology"}),
            ("investigate", {"investigator": "主管-孙", "service_records": "WO-17",
                             "cross_department": False}),
            ("resolve", {"by": "小周", "kind": "apology", "details": "a phone call"}),
            ("approve", {"supervisor": "主管-孙", "approved": True}),
            ("inform", {"agent": "小周", "via": "phone"}),
            ("close", {"outcome": "accepted", "tracking": "called back", "theme": "attitude"}),
        ), ("complaint",))  # fmt: skip

    makers = [complaint, repair_b, email_no_reply, inquiry_a]
    out = []
    for i in range(n):
        make = makers[i] if i < len(makers) else [repair_b, inquiry_a, email_no_reply][i % 3]
        out.append(make(i))
    return out


class Person:
    """Submits one ticket's intake and steps over HTTP, retrying as a person would."""

    def __init__(self, system: System, script: Script, report: ChaosReport, stop_at: float):
        self.system = system
        self.script = script
        self.report = report
        self.stop_at = stop_at  # monotonic: give up (the ticket will count as stuck)
        self.ticket_id: str | None = None
        self.done = False
        self.error: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            return httpx.post(f"{self.system.intake}{path}", json=body, timeout=HTTP_TIMEOUT)
        except httpx.HTTPError:
            return None  # down (being killed or restarted): try again

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported, never swallowed
            self.error = f"{self.script.kind} {self.ticket_id}: {exc!r}"

    def _run(self) -> None:
        delay = 0.5
        while self.ticket_id is None:
            resp = self._post("/intake", self.script.intake)
            if resp is not None and resp.status_code in (200, 201):
                self.ticket_id = resp.json()["ticket_id"]
                self.report.intakes_acked += 1
            elif resp is not None and resp.status_code < 500 and resp.status_code != 409:
                raise RuntimeError(f"intake refused {resp.status_code}: {resp.text}")
            else:
                self._wait(delay)
                delay = min(delay * 2, 5.0)
        for step, data in self.script.steps:
            body = data if data is not None else {"engineer_id": self._engineer()}
            delay = 0.5
            while True:
                resp = self._post(f"/tickets/{self.ticket_id}/steps/{step}", body)
                if resp is not None and resp.status_code in (200, 202):
                    break
                if resp is not None and resp.status_code == 409:
                    if resp.json().get("code") == "step_done":
                        break  # an earlier attempt's answer was lost: it was taken
                elif resp is not None and resp.status_code not in (500, 502, 503, 504):
                    raise RuntimeError(f"step {step} refused {resp.status_code}: {resp.text}")
                self._wait(delay)
                delay = min(delay * 1.5, 5.0)
            self.report.steps_submitted += 1
        self.done = True

    def _wait(self, seconds: float) -> None:
        if time.monotonic() > self.stop_at:
            raise TimeoutError("the scripted steps were not all taken in time")
        time.sleep(seconds)

    def _engineer(self) -> str:
        from models.db import session_scope
        from models.repository import get_work_order

        while True:
            with session_scope(self.system.cfg.database_url) as s:
                wo = get_work_order(s, ticket_id=self.ticket_id)  # type: ignore[arg-type]
                if wo is not None and wo.engineer_id:
                    return wo.engineer_id
            self._wait(1.0)


# ------------------------------------------------------------------ the killer
class Killer:
    """Seeded SIGKILLs at random moments: ``up``, the Prefect server, flow-run processes."""

    def __init__(self, system: System, cfg: ChaosConfig, report: ChaosReport) -> None:
        self.system = system
        self.cfg = cfg
        self.report = report
        self.rng = random.Random(cfg.seed)
        self.done = threading.Event()
        self.error: str | None = None
        self.last_kill = time.monotonic()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001
            self.error = repr(exc)
        finally:
            self.done.set()

    def _run(self) -> None:
        n = 0
        first = self.rng.sample(KINDS, len(KINDS))  # every kind at least once, seeded order
        while n < self.cfg.kills:
            time.sleep(self.rng.uniform(*self.cfg.kill_gap))
            if first:
                kind = first[0]
            else:
                kind = self.rng.choices(KINDS, weights=self.cfg.kind_weights)[0]
            if self.kill(kind):
                if first:
                    first.pop(0)
                n += 1
                self.report.kills[kind] += 1
                self.last_kill = time.monotonic()
                log(f"kill {n}/{self.cfg.kills}: {kind}")
            else:
                self.report.kill_misses += 1

    def kill(self, kind: str) -> bool:
        s = self.system
        if kind == "up":
            s.kill_up()
            self.report.up_restarts += 1
            return True
        if kind == "prefect-server":
            p = s.prefect_server()
        else:
            runs = s.flow_runs()
            p = self.rng.choice(runs) if runs else None
        return p is not None and p.kill()


# ------------------------------------------------------------------ the judgement
def prefect_runs(api: str, ticket_id: str) -> list[dict[str, Any]]:
    resp = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"name": {"like_": ticket_id}}, "limit": 200},
        timeout=HTTP_TIMEOUT,
    )
    resp.raise_for_status()
    return list(resp.json())


def _sop_of(run: dict[str, Any]) -> str:
    for tag in run.get("tags") or []:
        if tag.startswith("sop:"):
            return str(tag[4:])
    return str(run["name"]).split("-", 1)[0]


def ticket_at_end(cfg: ChaosConfig, api: str, script: Script, ticket_id: str) -> str | None:
    """None when the ticket is at its scripted end, else what is missing."""
    from models.db import session_scope
    from models.entities import TicketStatus
    from models.repository import get_sop_run, get_ticket

    with session_scope(cfg.database_url) as s:
        t = get_ticket(s, ticket_id=ticket_id)
        owners = {sop: get_sop_run(s, ticket_id=ticket_id, sop=sop) for sop in script.sops}  # type: ignore[arg-type]
    if t is None:
        return "no ticket"
    if t.status != TicketStatus.CLOSED:
        return f"status {t.status}"
    runs = {r["id"]: r for r in prefect_runs(api, ticket_id)}
    for sop, owner in owners.items():
        if owner is None:
            return f"no {sop} run recorded"
        r = runs.get(owner.flow_run_id)
        if r is None or (r.get("state_type") or "") != "COMPLETED":
            return f"{sop} owner run {owner.flow_run_id} is {r and r.get('state_type')}"
    return None


def judge(
    cfg: ChaosConfig, system: System, people: list[Person], sink: Any, report: ChaosReport
) -> None:
    from sqlmodel import func, select

    from models.db import session_scope
    from models.entities import (
        ClockState,
        Notification,
        NotificationStatus,
        SlaClock,
        StepRecord,
        Ticket,
    )

    acked = [p.ticket_id for p in people if p.ticket_id]
    with session_scope(cfg.database_url) as s:
        have = set(s.exec(select(Ticket.id)).all())
        report.tickets = len(have)
        report.lost_intakes = [t for t in acked if t not in have]
        twice = s.exec(
            select(StepRecord.ticket_id, StepRecord.sop, StepRecord.step_key,
                   StepRecord.instance, func.count())
            .group_by(StepRecord.ticket_id, StepRecord.sop, StepRecord.step_key,
                      StepRecord.instance)
            .having(func.count() > 1)
        ).all()  # fmt: skip
        report.steps_twice = [f"{t} {sop} {k}#{i} x{n}" for t, sop, k, i, n in twice]
        notes = s.exec(select(Notification)).all()
        now = datetime.now(UTC)
        bound = now - timedelta(seconds=cfg.clock_bound_seconds)
        clocks = s.exec(select(SlaClock)).all()
    report.clocks_fired = sum(c.fire_count for c in clocks)
    report.clocks_unfired = [
        f"{c.ticket_id} {c.rule_id} due {c.next_fire_at:%H:%M:%S}"
        for c in clocks
        if c.state in (ClockState.ARMED, ClockState.REMINDED)
        and c.next_fire_at is not None
        and c.next_fire_at < bound
    ]
    sent: Counter[tuple[str, str, str]] = Counter()
    for n in notes:
        if n.status == NotificationStatus.SENT:
            sent[(n.role, n.title, n.body)] += 1
        else:
            report.notes_lost.append(f"#{n.id} {n.role} {n.template} {n.status}")
    got: Counter[tuple[str, str, str]] = Counter(
        (m.path.strip("/"), str(m.body.get("title", "")), str(m.body.get("message", "")))
        for m in sink.messages()
        if isinstance(m.body, dict)
    )
    report.notes_delivered = sum(got.values())
    for key in set(sent) | set(got):
        if got[key] > sent[key]:
            report.notes_twice.append(f"{key[0]} '{key[1]}' x{got[key]} (sent {sent[key]})")
        elif got[key] < sent[key]:
            report.notes_lost.append(f"{key[0]} '{key[1]}' sent {sent[key]}, got {got[key]}")
    for p in people:
        if not p.ticket_id:
            continue
        live: Counter[str] = Counter()
        for r in prefect_runs(system.prefect_api, p.ticket_id):
            if (r.get("state_type") or "") not in FINAL:
                live[_sop_of(r)] += 1
        report.runs_not_single += [
            f"{p.ticket_id} {sop}: {k} live" for sop, k in live.items() if k > 1
        ]


# ------------------------------------------------------------------ the run
def run_chaos(cfg: ChaosConfig, backend: str) -> ChaosReport:
    from tests.sink import HttpSink

    log(f"seed {cfg.seed} ({backend}; replay with CHAOS_SEED={cfg.seed}); {cfg.kills} kills, "
        f"{cfg.tickets} tickets; workdir {cfg.workdir}")  # fmt: skip
    report = ChaosReport(cfg.seed, backend)
    t0 = time.monotonic()
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    with HttpSink() as sink:
        system = System(cfg, sink.url)
        try:
            system.start()
            log(f"up ready after {time.monotonic() - t0:.0f} s (log {system.log_path})")
            deadline = time.monotonic() + cfg.settle_seconds + cfg.kills * 60
            scripts = ticket_mix(cfg.tickets, f"{backend}-{cfg.seed}")
            people = [Person(system, s, report, deadline) for s in scripts]
            threads = [threading.Thread(target=p.run, daemon=True) for p in people]
            killer = Killer(system, cfg, report)
            kthread = threading.Thread(target=killer.run, daemon=True)
            kthread.start()
            for i, th in enumerate(threads):
                th.start()
                time.sleep(1.0 + i * 0.2)
            kthread.join()
            if killer.error:
                report.script_errors.append(f"killer: {killer.error}")
            last_kill = killer.last_kill
            log(f"kills done ({dict(report.kills)}); waiting for the scripts and the tickets")
            end = last_kill + cfg.settle_seconds
            for th in threads:
                th.join(timeout=max(1.0, end - time.monotonic()))
            report.script_errors += [p.error for p in people if p.error]
            report.script_errors += [
                f"{p.script.kind} {p.ticket_id}: steps not all taken" for p in people
                if not p.done and not p.error
            ]  # fmt: skip
            pending = {p.ticket_id: p.script for p in people if p.ticket_id}
            why: dict[str, str] = {}
            while pending and time.monotonic() < end:
                for tid, script in list(pending.items()):
                    try:
                        reason = ticket_at_end(cfg, system.prefect_api, script, tid)
                    except httpx.HTTPError as exc:
                        reason = f"Prefect: {exc!r}"
                    if reason is None:
                        del pending[tid]
                    else:
                        why[tid] = reason
                time.sleep(2)
            report.settle_seconds = time.monotonic() - last_kill
            report.stuck = [f"{tid} ({pending[tid].kind}): {why.get(tid)}" for tid in pending]
            # the last deliveries (the courier) and firings a moment to land
            time.sleep(5)
            judge(cfg, system, people, sink, report)
        finally:
            system.stop()
    report.wall_seconds = time.monotonic() - t0
    log(report.summary())
    for what, items in report.failures.items():
        log(f"FAILED {what}: {json.dumps(items[:20], ensure_ascii=False)}")
    return report


def seed_from_env() -> int:
    raw = os.environ.get("CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)
