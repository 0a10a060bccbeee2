"""How long a user waits for `aftersales intake` and `aftersales resume` (issue 10).

Starts the whole system the way a user does (`aftersales up`, in a temporary home, on
free ports), then runs each command as a cold process (a new `.venv/bin/aftersales`
every time) and prints the wall time of every run, the median, and the ratio to a
baseline measured in the same run: `aftersales --help`, a cold process that imports
the CLI and exits. Nothing is exported: the commands find the system through the
`server.json` that `aftersales up` writes.

    nice -n 10 .venv/bin/python scripts/cli_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "aftersales")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - t0, proc


def wait_for(what: str, check, timeout: float = 180) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aftersales-latency-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AFTERSALES_"))} | {
        "AFTERSALES_HOME": str(home),
        "AFTERSALES_INTAKE_PORT": str(free_port()),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = open(home / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [EXE, "up", "--port", str(free_port())], env=env, stdout=log, stderr=log,
        start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    try:
        info = home / "server.json"
        wait_for("aftersales up to write server.json", info.exists)
        api = json.loads(info.read_text())["api_url"]
        import httpx

        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the intake endpoint", healthy)
        time.sleep(5)  # let serve() register the deployments and their triggers
        base = [timed(["--help"], env)[0] for _ in range(opts.runs)]

        def settle(tid: str, step: str) -> None:
            """Each command starts or moves a flow run (a new process on this machine):
            the next measurement waits until that run is suspended again, so every
            figure is the command alone, not the command racing the previous run."""
            wait_for(f"{tid} to wait for {step}", lambda: _run_suspended(env, tid, step))

        intakes, tickets = [], []
        for i in range(opts.runs):
            secs, proc = timed(
                ["intake", "--channel", "online", "--name", "张伟", "--contact", "13812345678",
                 "--description", "no power", "--intake-id", f"latency-{i}"],
                env,
            )  # fmt: skip
            assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
            intakes.append(secs)
            tickets.append(json.loads(proc.stdout)["ticket_id"])
            settle(tickets[-1], "first-response")
        resumes = []
        for tid in tickets:
            secs, proc = timed(
                ["resume", tid, "first-response", "--set", "agent=小吴", "--set", "category=A",
                 "--set", "priority=auto", "--set", "complex_issue=false"],
                env,
            )  # fmt: skip
            assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
            resumes.append(secs)
            settle(tid, "answer")
        print(f"load average while measuring: {os.getloadavg()[0]:.2f} (2 cores)")
        b = statistics.median(base)
        print(f"baseline `aftersales --help` (cold): median {b:.3f} s  runs {fmt(base)}")
        for name, xs in (("intake", intakes), ("resume", resumes)):
            m = statistics.median(xs)
            print(
                f"`aftersales {name}` (cold, server found via server.json): median {m:.3f} s "
                f"= {m / b:.2f}x baseline; max {max(xs):.3f} s  runs {fmt(xs)}"
            )
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()


def _run_suspended(env: dict[str, str], tid: str, step: str) -> bool:
    """The ticket's run is Suspended at ``step`` with its form published."""
    import httpx

    info = json.loads((Path(env["AFTERSALES_HOME"]) / "server.json").read_text())
    api = info["prefect_api_url"]
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": [f"inquiry-{tid}"]}}},
        timeout=5,
    ).json()
    for r in runs:
        details = r["state"]["state_details"]
        schema = (details.get("run_input_keyset") or {}).get("schema")
        if r["state"]["type"] == "PAUSED" and details.get("pause_key") == step and schema:
            got = httpx.get(f"{api}/flow_runs/{r['id']}/input/{schema}", timeout=5)
            return got.status_code == 200
    return False


def fmt(xs: list[float]) -> str:
    return " ".join(f"{x:.3f}" for x in xs)


if __name__ == "__main__":
    main()
