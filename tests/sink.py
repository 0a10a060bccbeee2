"""A real local HTTP sink that receives Apprise ``json://`` notifications in tests.

``HttpSink`` runs a ``ThreadingHTTPServer`` on 127.0.0.1 (an ephemeral port)
in a background thread and records every request. Apprise's ``json://`` plugin
POSTs a JSON object ``{"version": "1.0", "title": ..., "message": ...,
"attachments": [...], "type": "info"}`` to the URL's path, so
``sink.url("/team_lead")`` is the Apprise URL for one role and
``sink.messages("/team_lead")`` what that role received (``.body["title"]``).

    with HttpSink() as sink:
        sink.fail_next(2)            # the next two requests get HTTP 500
        ...
        assert sink.wait_for(lambda: len(sink.messages()) == 1, timeout=5)
        assert sink.messages()[0].body["title"] == "..."
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class _QuickServer(ThreadingHTTPServer):
    """ThreadingHTTPServer without the reverse-DNS lookup (``socket.getfqdn``) that
    ``HTTPServer.server_bind`` does, which can stall for seconds in a sandbox."""

    request_queue_size = 128  # a busy endpoint queues connections instead of refusing

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the sink saw it; ``status`` is what the sink answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when the body is not JSON
    status: int
    received_at: float = field(default_factory=time.time)

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


# Every request any HttpSink of this process received, in arrival order, kept after the
# sink closes: the personal-data scan (tests/zz_privacy) reads it at the end of the session.
ARCHIVE: list[tuple[str, ReceivedRequest]] = []  # (sink address "127.0.0.1:port", request)
_ARCHIVE_LOCK = threading.Lock()


class HttpSink:
    """Records POSTs; can be told to answer the next N requests with HTTP 500."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._fail_remaining = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                text = raw.decode("utf-8", errors="replace")
                try:
                    body: Any = json.loads(text) if text else None
                except ValueError:
                    body = text
                with sink._lock:
                    failing = sink._fail_remaining > 0
                    if failing:
                        sink._fail_remaining -= 1
                    status = 500 if failing else 200
                    received = ReceivedRequest(
                        method=self.command,
                        path=self.path.split("?", 1)[0],
                        headers={k: v for k, v in self.headers.items()},
                        body=body,
                        status=status,
                    )
                    sink._requests.append(received)
                with _ARCHIVE_LOCK:
                    ARCHIVE.append((f"{sink.host}:{sink.port}", received))
                reply = b'{"error": "sink told to fail"}' if failing else b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = _handle
            do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # keep test output quiet

        self._server = _QuickServer((host, port), Handler)  # port: restart on the same one
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"http-sink-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    # -- addresses -----------------------------------------------------------

    def url(self, path: str = "/role") -> str:
        """The Apprise URL that posts JSON to ``path`` on this sink."""
        if not path.startswith("/"):
            path = "/" + path
        return f"json://{self.host}:{self.port}{path}"

    # -- control -------------------------------------------------------------

    def fail_next(self, n: int) -> None:
        """Answer the next ``n`` requests (any path) with HTTP 500."""
        with self._lock:
            self._fail_remaining = n

    def clear(self) -> None:
        """Forget recorded requests and any pending failures."""
        with self._lock:
            self._requests.clear()
            self._fail_remaining = 0

    # -- inspection ----------------------------------------------------------

    def requests(self, path: str | None = None) -> list[ReceivedRequest]:
        """Every request received (including those answered with 500)."""
        with self._lock:
            items = list(self._requests)
        return [r for r in items if path is None or r.path == path]

    def messages(self, path: str | None = None) -> list[ReceivedRequest]:
        """The requests the sink accepted (2xx), oldest first; ``.body`` is the
        Apprise payload (``title``, ``message``, ``type``, ``version``)."""
        return [r for r in self.requests(path) if r.delivered]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02
    ) -> bool:
        """Poll ``predicate`` until it is true (returns True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
