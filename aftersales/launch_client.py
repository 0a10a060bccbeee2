"""The job command of the ``aftersales`` process work pool (issue 9): hand the flow run to
the launcher daemon (``aftersales.launcher``), which forks it from an already-imported
process, instead of starting a new interpreter that imports Prefect and the project.

    python -m aftersales.launch_client [--socket PATH]

Standard library only (this is the per-run cost): no Prefect, no pydantic, no project
imports. The worker starts this with the flow run's environment (``PREFECT__FLOW_RUN_ID``,
the control-channel port and token, the settings); it is forwarded with the working
directory and this process's stdin/stdout/stderr (as file descriptors) over the Unix
socket. The client waits for the child's exit status and exits with it (a child killed by
a signal kills the client with the same signal), and forwards SIGTERM/SIGINT to the child.
If the daemon is not running it ``exec``s the stock ``python -m prefect.engine``.

The socket: ``--socket``, else ``AFTERSALES_LAUNCHER_SOCKET``, else
``$AFTERSALES_HOME/launcher.sock`` (``~/.aftersales/launcher.sock``), the same default
as ``Settings.resolved_launcher_socket``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

# connecting to the daemon and handing over the request (not the run itself)
CONNECT_TIMEOUT_SECONDS = 5.0
HEADER = struct.Struct("!Q")  # length of the JSON request that follows


def socket_path(argv: list[str]) -> Path:
    if "--socket" in argv:
        i = argv.index("--socket")
        if i + 1 >= len(argv):
            raise SystemExit("launch_client: --socket needs a path")
        return Path(argv[i + 1])
    if os.environ.get("AFTERSALES_LAUNCHER_SOCKET"):
        return Path(os.environ["AFTERSALES_LAUNCHER_SOCKET"])
    home = os.environ.get("AFTERSALES_HOME")
    return (Path(home) if home else Path.home() / ".aftersales") / "launcher.sock"


def stock_engine() -> None:
    """The daemon is not there: run the flow the stock way (this never returns)."""
    if os.environ.get("AFTERSALES_LAUNCHER_REQUIRED") == "1":
        print("launch_client: the launcher daemon is required but not reachable", file=sys.stderr)
        raise SystemExit(1)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine"])


def _read_line(sock: socket.socket, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf.extend(chunk)
    i = buf.index(b"\n")
    line = bytes(buf[:i])
    del buf[: i + 1]
    return line


def _exit_like(status: int) -> int:
    """Exit as the child did: its code, or the signal that killed it."""
    if status < 0:
        sig = -status
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = socket_path(argv)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_SECONDS)
    try:
        sock.connect(str(path))
        request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
        socket.send_fds(sock, [HEADER.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        buf = bytearray()
        first = _read_line(sock, buf)
    except OSError:
        sock.close()
        stock_engine()
        return 1  # not reached
    if first is None:  # the daemon refused before forking: nothing runs yet
        sock.close()
        stock_engine()
        return 1
    pid = int(json.loads(first)["pid"])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sock.settimeout(None)  # the run takes as long as it takes; the daemon reports its end
    line = _read_line(sock, buf)
    if line is None:
        print(
            f"launch_client: the launcher daemon went away while flow run process {pid} ran; "
            "its exit status is unknown",
            file=sys.stderr,
        )
        return 1
    return _exit_like(int(json.loads(line)["status"]))


if __name__ == "__main__":
    raise SystemExit(main())
