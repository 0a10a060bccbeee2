"""``aftersales up`` supervises its parts (issue 11 §5), as real processes.

One ``up`` (reusing the session's Prefect server) serves the first three tests: a second
``up`` on the same data refuses naming it; its runner killed with SIGKILL is restarted
within the backoff and answers its health check again; SIGTERM ends every part within
the bound. Then a Prefect server that answers slowly (SIGSTOPped while ``up`` starts) is
waited for and reused, never taken for a free port, and a silent port is refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT

STOP_BOUND = 10.0  # AFTERSALES_UP_STOP_SECONDS in these tests
BACKOFF = 1.0  # AFTERSALES_UP_RESTART_BACKOFF_SECONDS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class Up:
    """One ``aftersales up`` process; its stdout and stderr collected line by line."""

    def __init__(self, env: dict[str, str], *args: str, command: str = "up") -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aftersales.cli", command, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _pump(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.out + self.err)

    def wait_for(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            if self.proc.poll() is not None and not pred():
                time.sleep(0.3)  # the pumps may still hold the last lines
                if pred():
                    return
                raise AssertionError(
                    f"up exited ({self.proc.returncode}) before {what}:\n{self.text()}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.text()}")

    def wait_ready(self, timeout: float = 150) -> None:
        self.wait_for(lambda: any("Intake endpoint" in x for x in self.out), timeout, "ready")

    def pids(self, part: str) -> list[int]:
        """Every pid the supervisor started for the part, in order."""
        pat = re.compile(rf"started {re.escape(part)} \(pid (\d+)")
        return [int(m.group(1)) for x in self.err if (m := pat.search(x))]

    def all_pids(self) -> list[int]:
        return [
            int(m.group(1)) for x in self.err if (m := re.search(r"started \S+ \(pid (\d+)", x))
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_BOUND + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _env(tmp: Path, prefect_api: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AFTERSALES_NOTIFY_") and k != "AFTERSALES_POLICY_FILE"
    }
    env.update(
        AFTERSALES_HOME=str(tmp / "home"),
        AFTERSALES_DATABASE_URL=f"sqlite:///{tmp / 'aftersales.db'}",
        AFTERSALES_INTAKE_PORT=str(_free_port()),
        AFTERSALES_UP_RESTART_BACKOFF_SECONDS=str(BACKOFF),
        AFTERSALES_UP_STOP_SECONDS=str(STOP_BOUND),
        AFTERSALES_UP_ALIVE_GRACE_SECONDS="2",
        AFTERSALES_SLA_BOARD_SECONDS="0",
        PREFECT_API_URL=prefect_api,
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def _port(prefect_api: str) -> str:
    return str(urlsplit(prefect_api).port)


@pytest.fixture(scope="module")
def running(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    up = Up(_env(tmp, prefect_server), "--port", _port(prefect_server))
    try:
        up.wait_ready()
        yield up
    finally:
        up.stop()


def test_second_up_on_the_same_data_refuses_naming_the_first_ISSUE11_5(
    running: Up, prefect_server: str
) -> None:
    env = dict(running.env)
    env["AFTERSALES_INTAKE_PORT"] = str(_free_port())  # refused by the lock, not by a port
    second = subprocess.run(
        [sys.executable, "-m", "aftersales.cli", "up", "--port", _port(prefect_server)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"pid {running.proc.pid} since " in second.stderr
    assert f"intake http://127.0.0.1:{env['AFTERSALES_INTAKE_PORT']}" not in second.stderr
    assert "SLA clock running" not in second.stdout
    # another home on the same database is the same data: refused too
    other = {**env, "AFTERSALES_HOME": env["AFTERSALES_HOME"] + "-other"}
    third = subprocess.run(
        [sys.executable, "-m", "aftersales.cli", "up", "--port", _port(prefect_server)],
        cwd=ROOT, env=other, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert third.returncode == 3 and f"pid {running.proc.pid}" in third.stderr
    assert running.proc.poll() is None  # the first one is untouched


def test_runner_killed_with_sigkill_is_restarted_within_the_backoff_ISSUE11_5(
    running: Up,
) -> None:
    (first,) = running.pids("runner")
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    running.wait_for(lambda: len(running.pids("runner")) == 2, BACKOFF + 5, "runner restarted")
    assert time.monotonic() - killed <= BACKOFF + 5
    assert any(f"runner (pid {first}) exited with -9" in x for x in running.err)
    # the new runner serves again: its health check answers (deployments registered)
    running.wait_for(lambda: any("runner is up again" in x for x in running.err), 90, "runner up")
    assert running.proc.poll() is None
    others = [p for p in running.all_pids() if p != first]
    assert all(_alive(p) for p in others)  # nothing else was restarted


def test_sigterm_ends_every_part_within_the_bound_ISSUE11_5(running: Up) -> None:
    pids = [p for p in running.all_pids() if _alive(p)]
    assert len(pids) >= 3  # runner, SLA clock, intake (+ reconciler when installed)
    home = Path(running.env["AFTERSALES_HOME"])
    assert (home / "server.json").exists()
    t0 = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    running.proc.wait(timeout=STOP_BOUND + 10)
    took = time.monotonic() - t0
    assert took <= STOP_BOUND + 5, took
    assert [p for p in pids if _alive(p)] == []
    assert not (home / "server.json").exists()  # commands no longer find it


def test_slow_existing_prefect_server_is_waited_for_and_reused_not_a_port_clash_ISSUE11_5(
    prefect_server: str, tmp_path: Path
) -> None:
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances[None].server_process
    assert server is not None
    up = None
    os.kill(server.pid, signal.SIGSTOP)  # listening, answering nothing
    try:
        up = Up(_env(tmp_path, prefect_server), "--port", _port(prefect_server))
        time.sleep(5)
        assert up.proc.poll() is None, up.text()  # still waiting, not "port in use"
    finally:
        os.kill(server.pid, signal.SIGCONT)
    try:
        up.wait_ready()
        assert any("already running" in x and "reused" in x for x in up.out)
        assert up.pids("prefect-server") == []
        assert "in use" not in up.text()
    finally:
        up.stop()


def test_a_silent_port_is_never_taken_for_a_free_one_ISSUE11_5(
    prefect_server: str, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # listens, never accepts nor answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        env = _env(tmp_path, prefect_server, AFTERSALES_UP_REUSE_WAIT_SECONDS="2")
        done = subprocess.run(
            [sys.executable, "-m", "aftersales.cli", "up", "--port", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port} is in use but" in done.stderr and "within 2 s" in done.stderr
    assert "started" not in done.stderr  # no part was started
