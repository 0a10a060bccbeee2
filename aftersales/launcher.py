"""The launcher daemon (issue 9): flow runs and resumes start as a ``fork`` of a process
that has already imported Prefect and the project, not as a new interpreter.

A stock run start (``python -m prefect.engine`` from a worker, or the runner's ``spawn``
process under ``serve``) imports Prefect and the project again: seconds of CPU for every
start and every resume of a suspended run. The daemon imports them once, listens on a
Unix socket, and for each request from ``aftersales.launch_client`` (the job command of
the ``aftersales`` process work pool) forks a child that takes the client's environment,
working directory and stdin/stdout/stderr, then runs Prefect's own engine entry point
(``prefect.engine`` as ``__main__``: ``load_flow_run`` / ``load_flow`` / ``run_flow`` with
``PREFECT__FLOW_RUN_ID``). The client waits for the child's exit status (relayed by the
daemon) and forwards SIGTERM, so to the worker the client *is* the flow run process.
No Prefect source is patched: the work pool's ``command`` job variable is Prefect's
supported extension point.

Entry points (``aftersales up`` / scale-out wire these):

    python -m aftersales.launcher daemon [--socket PATH]   # the fork server
    python -m aftersales.launcher pool                     # work pool + deployments
    python -m aftersales.launcher worker                   # prefect worker, limited

The daemon must not start threads or open connections before it forks (a forked child
gets only the forking thread; a shared connection would be used by two processes): it
imports modules only. Children are reaped in the single-threaded loop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from aftersales.launch_client import HEADER

log = logging.getLogger("aftersales.launcher")

ROOT = Path(__file__).resolve().parent.parent
# imported once in the daemon, shared copy-on-write by every child
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.deployments.steps",
    "prefect.client.orchestration",
    "prefect.events.clients",
    "prefect.logging.handlers",
    "prefect.input.run_input",
    "flows.inquiry",
    "flows.repair",
    "flows.complaint",
    "flows.callback",
    "flows.escalation",
    "flows.installation",
    "flows.quality",
    "flows.improvement",
)
# a client that connects must hand over its request within this
REQUEST_TIMEOUT_SECONDS = 5.0
REQUEST_MAX_BYTES = 16 * 1024 * 1024


@dataclass
class _Child:
    pid: int
    conn: socket.socket


@dataclass
class Launcher:
    """The fork server. ``serve_forever`` returns after SIGTERM/SIGINT once the running
    children have exited (a second signal forwards SIGTERM to them)."""

    socket_path: Path
    preload: tuple[str, ...] = PRELOAD
    children: dict[int, _Child] = field(default_factory=dict)
    started: int = 0
    _stopping: int = 0

    def load(self) -> None:
        from importlib import import_module

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "aftersales")
        for name in self.preload:
            import_module(name)
        alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        if alive:  # a fork would copy a process whose other threads vanish in the child
            raise RuntimeError(f"threads started while preloading: {alive}")

    def _bind(self) -> socket.socket:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a stale socket left by a daemon that died
            else:
                raise SystemExit(f"a launcher daemon is already listening on {path}")
            finally:
                probe.close()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        os.chmod(path, 0o600)
        srv.listen(128)
        srv.setblocking(False)
        return srv

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        self.load()
        srv = self._bind()
        sel = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)}
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through wake_w
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        sel.register(srv, selectors.EVENT_READ, "accept")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        listening = True
        print(f"launcher: pid {os.getpid()} listening on {self.socket_path}", flush=True)
        if ready is not None:
            ready.set()
        try:
            while listening or self.children:
                if listening and self._stopping:
                    sel.unregister(srv)
                    srv.close()
                    self.socket_path.unlink(missing_ok=True)
                    listening = False  # new runs fall back to the stock engine
                for key, _ in sel.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept(srv, sel, [srv.fileno(), wake_r, wake_w])
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_r, 512):
                                pass
                    else:  # a client closed its end before its child exited: it was killed
                        self._client_gone(key.data, sel)
                self._reap(sel)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, h in handlers.items():
                signal.signal(s, h)
            if listening:
                srv.close()
                self.socket_path.unlink(missing_ok=True)
            sel.close()
            os.close(wake_r)
            os.close(wake_w)

    def _on_stop(self, *_: object) -> None:
        self._stopping += 1
        if self._stopping > 1:
            for pid in list(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def _accept(self, srv: socket.socket, sel: selectors.BaseSelector, close: list[int]) -> None:
        try:
            conn, _ = srv.accept()
        except BlockingIOError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_TIMEOUT_SECONDS)
            head, fds, _flags, _addr = socket.recv_fds(conn, HEADER.size, 3)
            while len(head) < HEADER.size:
                more = conn.recv(HEADER.size - len(head))
                if not more:
                    raise ConnectionError("client closed before its request")
                head += more
            (size,) = HEADER.unpack(head)
            if size > REQUEST_MAX_BYTES or len(fds) != 3:
                raise ValueError(f"bad request: {size} bytes, {len(fds)} descriptors")
            body = bytearray()
            while len(body) < size:
                chunk = conn.recv(min(65536, size - len(body)))
                if not chunk:
                    raise ConnectionError("client closed mid-request")
                body.extend(chunk)
            req = json.loads(body)
            env = {str(k): str(v) for k, v in req["env"].items()}
            cwd = str(req["cwd"])
        except (OSError, ValueError, KeyError, ConnectionError) as exc:
            print(f"launcher: refused a request: {exc}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()  # the client falls back to the stock engine
            return
        pid = os.fork()
        if pid == 0:  # the child never returns
            _run_child(
                env,
                cwd,
                fds,
                close + [conn.fileno()] + [c.conn.fileno() for c in self.children.values()],
            )
        for fd in fds:
            os.close(fd)
        self.started += 1
        conn.setblocking(True)
        conn.settimeout(REQUEST_TIMEOUT_SECONDS)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            pass  # the client is gone: _client_gone kills the child on the next round
        conn.setblocking(False)
        self.children[pid] = _Child(pid, conn)
        sel.register(conn, selectors.EVENT_READ, pid)

    def _client_gone(self, pid: int, sel: selectors.BaseSelector) -> None:
        child = self.children.get(pid)
        if child is None:
            return
        try:
            data = child.conn.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # the client sends nothing after its request; ignore
        sel.unregister(child.conn)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # its supervisor killed the client; do as it meant

    def _reap(self, sel: selectors.BaseSelector) -> None:
        while self.children:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            status = os.waitstatus_to_exitcode(wstatus)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(child.conn)
            try:
                child.conn.setblocking(True)
                child.conn.settimeout(REQUEST_TIMEOUT_SECONDS)
                child.conn.sendall(json.dumps({"status": status}).encode() + b"\n")
            except OSError:
                pass
            child.conn.close()


def _run_child(env: dict[str, str], cwd: str, fds: list[int], close: list[int]) -> None:
    """In the forked child: become the flow run process the client stands for, run
    Prefect's engine entry point, then exit without returning into the daemon."""
    code = 1
    try:
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = ["prefect.engine"]
        code = _engine_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported, then the exit status says it
        traceback.print_exc()
        code = 1
    finally:
        _exit(code)


def _engine_main() -> int:
    """What ``python -m prefect.engine`` does, in this already-imported process."""
    import runpy
    import warnings

    import prefect.context
    from prefect.logging.configuration import setup_logging

    from aftersales.settings import reset_settings

    # settings and logging as a fresh interpreter would build them from this environment
    prefect.context.refresh_global_settings_context()
    reset_settings()
    setup_logging(incremental=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules"
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=False)
    return 0


def _exit(code: int) -> None:
    """A normal interpreter exit (threads joined, atexit: Prefect drains its log and event
    workers there), without unwinding into the daemon's stack."""
    try:
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def launch_command(socket_path: Path | None = None) -> str:
    """The job ``command`` of the work pool: this interpreter runs the stdlib client."""
    cmd = f"{sys.executable} -m aftersales.launch_client"
    return f"{cmd} --socket {socket_path}" if socket_path else cmd


def ensure_work_pool(
    *, name: str, concurrency_limit: int, command: str | None = None, timeout: float = 30.0
) -> None:
    """Create or update the process work pool: its concurrency limit (how many runs start
    at once; a suspended run holds no slot: the server counts Pending/Running/Cancelling)
    and its job ``command`` (the launcher client)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = command or launch_command()
    with get_client(sync_client=True) as client:
        client._client.timeout = timeout  # noqa: SLF001 - httpx client of the sync client
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=template,
                    concurrency_limit=concurrency_limit,
                )
            )
        except ObjectAlreadyExists:
            client.update_work_pool(
                name,
                WorkPoolUpdate(base_job_template=template, concurrency_limit=concurrency_limit),
            )


def worker_command(*, pool: str, limit: int, name: str | None = None) -> list[str]:
    """The worker that hands each run of the pool to its job command (the client)."""
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    cmd += ["--limit", str(limit)]
    return cmd + (["--name", name] if name else [])


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m aftersales.launcher", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("daemon", help="the fork server")
    d.add_argument("--socket", type=Path, default=None)
    sub.add_parser("pool", help="create/update the work pool and deploy the SOPs into it")
    w = sub.add_parser("worker", help="start a prefect worker on the pool, limited")
    w.add_argument("--name", default=None)
    args = p.parse_args(argv)

    from aftersales.settings import get_settings

    s = get_settings()
    if args.cmd == "daemon":
        Launcher(args.socket or s.resolved_launcher_socket).serve_forever()
        return 0
    if args.cmd == "pool":
        from deployments.serve import deploy_to_pool

        ensure_work_pool(
            name=s.work_pool,
            concurrency_limit=s.run_concurrency,
            command=launch_command(s.resolved_launcher_socket),
            timeout=s.prefect_call_timeout_seconds,
        )
        for dep in deploy_to_pool(s.work_pool):
            print(f"deployed {dep} to work pool {s.work_pool}")
        return 0
    cmd = worker_command(pool=s.work_pool, limit=s.run_concurrency, name=args.name)
    os.execv(cmd[0], cmd)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
