"""``aftersales up``: the whole system on one machine, each part a supervised child.

The parts (issue 11 §5) are separate child processes, each restarted when it dies:

* the Prefect server (on SQLite), unless one already answers on the port: then it is
  reused. A port that is listening is never taken for a free one: ``up`` waits for its
  ``/health`` (``AFTERSALES_UP_REUSE_WAIT_SECONDS``) and refuses when it never answers;
* the runner serving the SOP deployments (``aftersales serve``; its Prefect webserver's
  ``/health`` says it polls);
* the SLA clock service (``aftersales clock run``);
* the reconciler (``aftersales supervise``) when that command is installed;
* the intake API (``aftersales api``).

The supervisor is a small loop over :class:`subprocess.Popen` (:class:`Supervisor`), not
a library: supervisord and circus are daemons with their own configuration files and
control sockets (circus needs ZeroMQ), honcho restarts nothing, and none of them has a
health check that gates start-up or a per-part backoff read from our settings. Each child
runs in its own process group, so stopping a part stops what it started; on Linux it
also gets SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a killed ``up``
leaves no orphan parts behind.

A second ``up`` on the same data (same ``AFTERSALES_HOME``, or the same database from
another home) refuses to start and names the running one: an OS lock (``flock`` through
the ``filelock`` package) held for the supervisor's life, with a JSON sidecar saying
who holds it. The lock goes with the process, so a crashed ``up`` never blocks the next.

SIGTERM/SIGINT stop every part within ``AFTERSALES_UP_STOP_SECONDS`` (SIGTERM to each
part's process group, SIGKILL after the bound). The "Intake endpoint … SLA clock
running" line is printed only after every part answers its health check.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import httpx

from aftersales import discovery

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("aftersales.up")
HEALTH_TIMEOUT = 2.0  # seconds: one health probe of a part


class UpError(RuntimeError):
    """``up`` cannot start: the message says why and what to do."""


class AlreadyRunning(UpError):
    """Another ``up`` holds this data."""


# ------------------------------------------------------------------ parts
@dataclass(frozen=True)
class Part:
    """One child process of the system."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's env
    health_url: str | None = None  # GET answering 200 = up; None: alive for the grace
    # parts start stage by stage, each once the earlier stages answer their health
    # checks (0: the Prefect server(s); clients started earlier lose their event and
    # cancellation connections for good)
    stage: int = 1


def cli(*args: str) -> tuple[str, ...]:
    """An ``aftersales`` command in this interpreter (the venv's, whatever PATH says)."""
    return (sys.executable, "-m", "aftersales.cli", *args)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    """Something accepts connections on the port (answering or not)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def healthy(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def reuse_or_start_prefect(host: str, port: int, wait_seconds: float) -> bool:
    """True when a Prefect server already answers on the port (reuse it), False when the
    port is free (start one). A port that is listening but silent is waited for up to
    ``wait_seconds`` (a busy server answers slowly); never mistaken for a free port."""
    if not listening(host, port):
        return False
    url = f"http://{host}:{port}/api/health"
    end = time.monotonic() + wait_seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        # one probe may take as long as the server needs, within the bound
        if healthy(url, timeout=max(1.0, left)):
            return True
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    raise UpError(
        f"port {port} is in use but {url} did not answer within {wait_seconds:g} s "
        "(AFTERSALES_UP_REUSE_WAIT_SECONDS); stop what holds the port or pass --port"
    )


def prefect_server_part(host: str, port: int) -> Part:
    return Part(
        "prefect-server",
        (sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)),
        health_url=f"http://{host}:{port}/api/health",
        stage=0,
    )


def reconciler_installed() -> bool:
    """``aftersales supervise`` (the reconciler) is a command of this installation."""
    from aftersales.cli import app

    names = {
        c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        for c in app.registered_commands
    }
    return "supervise" in names


# ------------------------------------------------------------------ supervisor
def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """A part's running state."""

    part: Part
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic
    deaths: int = 0  # consecutive quick deaths (backoff exponent)
    restart_at: float | None = None
    restarts: int = 0
    recovering: bool = False  # restarted, its health check not passed yet
    next_probe: float = 0.0
    _log: IO[bytes] | None = None


@dataclass(frozen=True)
class Backoff:
    first: float
    cap: float
    reset_after: float

    def delay(self, deaths: int) -> float:
        return min(self.cap, self.first * (2 ** max(0, deaths - 1)))


class Supervisor:
    """Starts the parts, restarts a dead one with backoff (logged), stops them all.

    Every call is made from one thread (the main one): children are spawned from it, so
    ``PR_SET_PDEATHSIG`` (tied to the spawning thread) fires only when ``up`` ends."""

    def __init__(
        self,
        parts: Sequence[Part],
        *,
        log_dir: Path,
        backoff: Backoff,
        env: dict[str, str] | None = None,
        alive_grace: float = 3.0,
    ) -> None:
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names must be unique: {names}")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = [Child(p, log_dir / f"{p.name}.log") for p in parts]
        self.backoff = backoff
        self.env = dict(os.environ if env is None else env)
        self.alive_grace = alive_grace
        self.stopping = False

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.part.name == name)

    def _spawn(self, c: Child) -> None:
        if c._log is None:
            c._log = open(c.log_path, "ab")  # noqa: SIM115 - kept for the child's life
        c.proc = subprocess.Popen(
            c.part.argv,
            cwd=ROOT,
            env={**self.env, **c.part.env},
            stdin=subprocess.DEVNULL,
            stdout=c._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
        )
        c.started = time.monotonic()
        c.restart_at = None
        log.info("started %s (pid %d, log %s)", c.part.name, c.proc.pid, c.log_path)

    def start_all(self, timeout: float, stop: threading.Event) -> None:
        """Start the parts stage by stage, each stage once the earlier ones are healthy."""
        for stage in sorted({c.part.stage for c in self.children}):
            batch = [c for c in self.children if c.part.stage == stage]
            for c in batch:
                self._spawn(c)
            self.wait_healthy(timeout, stop, batch)

    def step(self) -> None:
        """Reap dead parts and restart the ones whose backoff has passed."""
        now = time.monotonic()
        for c in self.children:
            if self.stopping:
                return
            if c.proc is None:  # a later stage, not started yet
                continue
            code = c.proc.poll() if c.proc is not None and c.restart_at is None else None
            if c.proc is not None and code is not None:
                c.recovering = False
                ran = now - c.started
                c.deaths = 1 if ran >= self.backoff.reset_after else c.deaths + 1
                delay = self.backoff.delay(c.deaths)
                c.restart_at = now + delay
                log.warning(
                    "%s (pid %d) exited with %s after %.1f s; restarting in %.1f s (see %s)",
                    c.part.name, c.proc.pid, code, ran, delay, c.log_path,
                )  # fmt: skip
            if c.restart_at is not None and now >= c.restart_at:
                c.restarts += 1
                self._spawn(c)
                c.recovering = True
            elif c.recovering and now >= c.next_probe:
                c.next_probe = now + 1.0
                if self.is_up(c):
                    c.recovering = False
                    log.info(
                        "%s is up again (pid %d, restart %d, %.1f s after its start)",
                        c.part.name, c.proc.pid, c.restarts, time.monotonic() - c.started,
                    )  # fmt: skip

    def is_up(self, c: Child) -> bool:
        if c.proc is None or c.proc.poll() is not None or c.restart_at is not None:
            return False
        if c.part.health_url is None:
            return time.monotonic() - c.started >= self.alive_grace
        return healthy(c.part.health_url)

    def wait_healthy(
        self, timeout: float, stop: threading.Event, children: list[Child] | None = None
    ) -> None:
        """Until every part answers its health check (restarting the ones that die)."""
        end = time.monotonic() + timeout
        pending = list(self.children if children is None else children)
        while pending:
            self.step()
            pending = [c for c in pending if not self.is_up(c)]
            if not pending:
                return
            if stop.is_set():
                raise UpError("stopped while starting")
            if time.monotonic() > end:
                names = ", ".join(f"{c.part.name} (log {c.log_path})" for c in pending)
                raise UpError(
                    f"not healthy within {timeout:g} s (AFTERSALES_UP_START_TIMEOUT_SECONDS): "
                    f"{names}"
                )
            stop.wait(0.3)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(0.2)

    def stop_all(self, bound: float) -> None:
        """SIGTERM to every part's process group; SIGKILL to what is left after the bound."""
        self.stopping = True
        live = [c for c in reversed(self.children) if c.proc is not None]
        for c in live:
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGTERM)
        end = time.monotonic() + bound
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s: SIGKILL", c.part.name, bound)
        for c in live:  # the group too: a part's own children must not outlive it
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=5)
            if c._log is not None:
                c._log.close()
                c._log = None


# ------------------------------------------------------------------ one per data
class InstanceLock:
    """OS locks (flock) on this data: one in ``AFTERSALES_HOME`` and one keyed by the
    database URL (so another home on the same database is refused too). Each lock has a
    JSON sidecar naming its holder (filelock truncates the lock file itself)."""

    def __init__(self, home: Path, database_url: str) -> None:
        key = hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self.paths = [
            home / "up.lock",
            Path(tempfile.gettempdir()) / f"aftersales-up-{key}.lock",
        ]
        self._locks: list[object] = []

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_suffix(".json")

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path), timeout=0, thread_local=False)
            try:
                lock.acquire()
            except Timeout:
                self.release()
                raise AlreadyRunning(self._refusal(path)) from None
            self._locks.append(lock)

    def _refusal(self, path: Path) -> str:
        holder = None
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self._sidecar(path).read_text())
            holder = discovery.ServerInfo(**data)
        who = holder.describe() if holder else "its details are not written yet (starting)"
        return (
            f"another `aftersales up` already runs on this data (lock {path}): {who}. "
            "Stop it first (SIGTERM to its pid), or use another AFTERSALES_HOME and database."
        )

    def announce(self, info: discovery.ServerInfo) -> None:
        for path in self.paths:
            side = self._sidecar(path)
            tmp = side.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(info)))
            tmp.replace(side)

    def release(self) -> None:
        for path, lock in zip(self.paths, self._locks, strict=False):
            self._sidecar(path).unlink(missing_ok=True)
            lock.release()  # type: ignore[attr-defined]
        self._locks.clear()


# ------------------------------------------------------------------ demo sink
class _PrintSink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            msg = json.loads(body)
            print(f"[notify {self.path.strip('/')}] {msg.get('title')}: {msg.get('message')}")
        except ValueError:
            print(f"[notify {self.path}] {body[:200]!r}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def start_demo_sink() -> int:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _PrintSink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    from aftersales.settings import ROLES

    for role in ROLES:
        os.environ.setdefault(
            f"AFTERSALES_NOTIFY_{role.upper()}", f"json://127.0.0.1:{port}/{role}"
        )
    return port


# ------------------------------------------------------------------ the command
@dataclass(frozen=True)
class Plan:
    """What to start and what to print once it is up."""

    parts: list[Part]
    prefect_api_url: str
    intake_url: str
    env: dict[str, str]  # exported for the supervisor and every part


def base_env(prefect_api_url: str) -> dict[str, str]:
    """The environment of every part. Prefect's home (its SQLite database, profiles and
    result storage) is the project home's ``prefect/`` unless the user set
    ``PREFECT_HOME``: two systems on one machine never share (and run) each other's runs."""
    from aftersales.settings import get_settings

    env = {
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_UI_API_URL": prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if "PREFECT_HOME" not in os.environ:
        env["PREFECT_HOME"] = str(get_settings().home / "prefect")
    return env


def plan_single(port: int, host: str = "127.0.0.1") -> Plan:
    """The embedded profile: Prefect server (started or reused), runner, SLA service,
    reconciler (when installed), intake API."""
    from aftersales.settings import get_settings

    s = get_settings()
    api = f"http://{host}:{port}/api"
    if listening(s.intake_host, s.intake_port):
        raise UpError(
            f"the intake port {s.intake_host}:{s.intake_port} is in use by another process "
            "(AFTERSALES_INTAKE_PORT)"
        )
    parts: list[Part] = []
    if reuse_or_start_prefect(host, port, s.up_reuse_wait_seconds):
        print(f"Prefect server already running at {api}: reused")
    else:
        parts.append(prefect_server_part(host, port))
    runner_port = free_port()
    parts.append(
        Part(
            "runner",
            cli("serve"),
            env={
                "PREFECT_RUNNER_SERVER_ENABLE": "true",
                "PREFECT_RUNNER_SERVER_HOST": "127.0.0.1",
                "PREFECT_RUNNER_SERVER_PORT": str(runner_port),
            },
            health_url=f"http://127.0.0.1:{runner_port}/health",
        )
    )
    parts.append(Part("sla-clock", cli("clock", "run")))
    if reconciler_installed():
        parts.append(Part("reconciler", cli("supervise")))
    intake = f"http://{s.intake_host}:{s.intake_port}"
    parts.append(
        Part(
            "intake",
            cli("api", "--host", s.intake_host, "--port", str(s.intake_port)),
            health_url=f"{intake}/health",
        )
    )
    return Plan(parts, api, intake, base_env(api))


def _install_stop_signals(stop: threading.Event) -> None:
    def _handler(signum: int, _frame: object) -> None:
        log.info("%s: stopping every part", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def _setup_logging() -> None:
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s up: %(message)s", "%H:%M:%S"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def supervise(
    make_plan: Callable[[], Plan],
    *,
    prepare: Callable[[Plan], None] | None = None,
    after_up: Callable[[Plan], None] | None = None,
) -> int:
    """Lock the data, plan, prepare (schema, seed), start the parts, wait for health,
    announce, supervise until SIGTERM/SIGINT; stop every part within the bound."""
    from aftersales.settings import get_settings, reset_settings

    _setup_logging()
    stop = threading.Event()
    _install_stop_signals(stop)
    s = get_settings()
    lock = InstanceLock(s.home, s.resolved_database_url)
    lock.acquire()  # AlreadyRunning names the running one
    started_at = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    sup: Supervisor | None = None
    try:
        plan = make_plan()
        os.environ.update(plan.env)  # this process (seed, demo) and every part
        reset_settings()
        s = get_settings()
        info = discovery.ServerInfo(
            pid=os.getpid(),
            prefect_api_url=plan.prefect_api_url,
            api_url=plan.intake_url,
            database_url=s.resolved_database_url,
            started_at=started_at,
        )
        lock.announce(info)
        if prepare is not None:
            prepare(plan)
        sup = Supervisor(
            plan.parts,
            log_dir=s.home / "logs",
            backoff=Backoff(
                s.up_restart_backoff_seconds,
                s.up_restart_backoff_max_seconds,
                s.up_restart_reset_seconds,
            ),
            alive_grace=s.up_alive_grace_seconds,
        )
        sup.start_all(s.up_start_timeout_seconds, stop)
        if after_up is not None:  # e.g. deployments applied, the demo started
            after_up(plan)
        print(
            f"Intake endpoint: {plan.intake_url}/intake  (SLA clock running; "
            f"{len(plan.parts)} parts up: {', '.join(p.name for p in plan.parts)})",
            flush=True,
        )
        print(f"Commands find this system through {discovery.write(info)}", flush=True)
        sup.run(stop)
        return 0
    except UpError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if sup is not None:
            sup.stop_all(get_settings().up_stop_seconds)
        discovery.remove(os.getpid())
        lock.release()
        log.info("stopped")


def _prepare_single(plan: Plan) -> None:
    from aftersales.demo import seed_reference_data
    from models.db import init_db

    init_db()
    seed_reference_data()


def run_up(demo: bool, port: int) -> int:
    if demo:
        start_demo_sink()

    def _demo(_plan: Plan) -> None:
        from aftersales.demo import run_demo_script

        threading.Thread(target=run_demo_script, daemon=True).start()

    try:
        return supervise(
            lambda: plan_single(port), prepare=_prepare_single, after_up=_demo if demo else None
        )
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 3
