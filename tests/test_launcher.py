"""Issue 9: runs of a process work pool whose job command is ``aftersales.launch_client``
start as forks of the launcher daemon; a suspended run resumes the same way; with the
daemon down the client falls back to the stock ``python -m prefect.engine``.

A real Prefect server (the session harness), a real ``prefect worker`` subprocess, a real
daemon subprocess. The probe flow records its pid and its parent's pid: a fork of the
daemon has the daemon as parent; the stock fallback (the client ``exec``s the engine) has
the worker as parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow

ROOT = Path(__file__).resolve().parent.parent


@flow(name="launcher-probe")
def launcher_probe(marker_dir: str, suspend: bool = False) -> str:
    """Writes ``<pid>`` containing its parent's pid; optionally suspends once."""
    Path(marker_dir, f"{os.getpid()}").write_text(str(os.getppid()))
    if suspend:
        from prefect.flow_runs import suspend_flow_run

        suspend_flow_run(timeout=600)
    return "done"


def _wait(pred, timeout: float, what: str, proc_logs: list[Path]) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.3)
    logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in proc_logs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _state(run_id: uuid.UUID) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(run_id)
    return fr.state.type.value if fr.state else "NONE"


@pytest.fixture
def pool_env(prefect_server: str, tmp_path: Path) -> Iterator[dict]:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "AFTERSALES_LAUNCHER_SOCKET": str(tmp_path / "launcher.sock"),
    }
    yield env


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_runs_and_resumes_fork_from_the_daemon_and_fall_back_without_it(
    pool_env: dict, tmp_path: Path
) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from aftersales.launcher import ensure_work_pool, launch_command, worker_command

    sock = Path(pool_env["AFTERSALES_LAUNCHER_SOCKET"])
    pool = f"launcher-test-{uuid.uuid4().hex[:6]}"
    markers = tmp_path / "markers"
    markers.mkdir()
    daemon_log, worker_log = tmp_path / "daemon.log", tmp_path / "worker.log"
    logs = [daemon_log, worker_log]

    daemon = _start(
        [sys.executable, "-m", "aftersales.launcher", "daemon", "--socket", str(sock)],
        pool_env,
        daemon_log,
    )
    worker = None
    try:
        _wait(sock.exists, 90, "the daemon's socket", logs)
        ensure_work_pool(name=pool, concurrency_limit=2, command=launch_command(sock))
        dep_id = (
            Flow.from_source(source=str(ROOT), entrypoint="tests/test_launcher.py:launcher_probe")
            .to_deployment(name="probe", work_pool_name=pool)  # type: ignore[union-attr]
            .apply()
        )
        worker = _start(worker_command(pool=pool, limit=2), pool_env, worker_log)

        with get_client(sync_client=True) as client:
            run = client.create_flow_run_from_deployment(
                dep_id, parameters={"marker_dir": str(markers), "suspend": True}
            )
        _wait(lambda: _state(run.id) == "PAUSED", 120, "the run to suspend", logs)
        first = {p.name: int(p.read_text()) for p in markers.iterdir()}
        assert list(first.values()) == [daemon.pid], first  # forked by the daemon

        # the suspended run's process exits (Prefect's worker must see it end before the
        # run is resumed: it keys its slot by the run id and stops on a second acquire)
        child = int(next(iter(first)))
        t0 = time.monotonic()
        _wait(lambda: not _alive(child), 60, "the suspended run's process to exit", logs)
        print(f"suspended child exited {time.monotonic() - t0:.2f}s after PAUSED was seen")
        time.sleep(2)  # the worker notices the client's exit (it polls every 0.1 s)
        resume_flow_run(run.id)
        _wait(lambda: _state(run.id) == "COMPLETED", 120, "the resumed run to complete", logs)
        second = {p.name: int(p.read_text()) for p in markers.iterdir()} | {}
        resumed = {k: v for k, v in second.items() if k not in first}
        assert list(resumed.values()) == [daemon.pid], second  # the resume forked too

        # the daemon goes away (SIGTERM: it stops listening, removes its socket)
        _stop(daemon)
        assert daemon.returncode == 0
        assert not sock.exists()
        for p in markers.iterdir():
            p.unlink()
        with get_client(sync_client=True) as client:
            run2 = client.create_flow_run_from_deployment(
                dep_id, parameters={"marker_dir": str(markers)}
            )
        _wait(lambda: _state(run2.id) == "COMPLETED", 120, "the stock fallback run", logs)
        parents = [int(p.read_text()) for p in markers.iterdir()]
        assert parents == [worker.pid]  # the client exec'd the engine under the worker
    finally:
        _stop(daemon)
        if worker is not None:
            _stop(worker)
