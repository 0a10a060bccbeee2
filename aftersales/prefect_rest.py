"""The four Prefect REST calls a resume needs, over plain httpx.

Importing Prefect costs ~2 s of a cold CLI process; reading a flow run, reading its
input schema and resuming it are three documented endpoints of the Prefect server
(``GET /flow_runs/{id}``, ``GET /flow_runs/{id}/input/{key}``, ``POST
/flow_runs/{id}/resume``), so ``aftersales resume`` answers without it. The server
still validates the run input against the schema the run stored (a REJECT is raised
as :class:`PrefectRestError` with Prefect's reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class PrefectRestError(RuntimeError):
    """The Prefect server is unreachable or refused the call."""


class NoPrefectServer(PrefectRestError):
    def __init__(self) -> None:
        super().__init__(
            "no Prefect server found: start `aftersales up` (it writes "
            "~/.aftersales/server.json) or export PREFECT_API_URL"
        )


@dataclass(frozen=True)
class RunState:
    """A flow run's state as far as a resume cares."""

    run_id: str
    name: str
    state_type: str  # SCHEDULED, RUNNING, PAUSED, COMPLETED …
    state_name: str  # "Suspended", "Paused", …
    pause_key: str | None
    schema_key: str | None

    @property
    def paused(self) -> bool:
        return self.state_type == "PAUSED"


class PrefectRest:
    def __init__(
        self, api_url: str | None = None, timeout: float | None = None, budget: float | None = None
    ) -> None:
        """``timeout`` bounds one call (default ``prefect_call_timeout_seconds``); ``budget``
        (seconds, default none) bounds every call of this client together, retries and
        waits included: past it a call raises :class:`PrefectRestError` at once."""
        import time

        from aftersales.discovery import prefect_api_url
        from aftersales.settings import get_settings

        url = api_url or prefect_api_url()
        if not url:
            raise NoPrefectServer()
        self.url = url.rstrip("/")
        self.timeout = timeout or get_settings().prefect_call_timeout_seconds
        self.deadline = None if budget is None else time.monotonic() + budget
        self.client = httpx.Client(base_url=self.url, timeout=self.timeout)

    def remaining(self) -> float:
        """Seconds left of the budget (the call timeout when there is no budget)."""
        import time

        if self.deadline is None:
            return self.timeout
        return max(0.0, min(self.timeout, self.deadline - time.monotonic()))

    def __enter__(self) -> PrefectRest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    #: answers the Prefect server gives while it is busy (SQLite locked, overloaded);
    #: Prefect's own client retries them the same way
    RETRY_STATUS = (429, 502, 503)

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        import time

        delay = 0.5
        for attempt in range(6):
            left = self.remaining()
            if left <= 0:
                raise PrefectRestError(
                    f"the Prefect server at {self.url} did not answer within the time allowed"
                )
            try:
                r = self.client.request(method, path, timeout=left, **kw)
            except httpx.HTTPError as exc:
                raise PrefectRestError(
                    f"the Prefect server at {self.url} did not answer ({type(exc).__name__}: {exc})"
                ) from None
            if r.status_code not in self.RETRY_STATUS or attempt == 5:
                return r
            if self.remaining() <= delay:
                return r
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
        return r

    def flow_run(self, run_id: str) -> RunState | None:
        r = self._call("GET", f"/flow_runs/{run_id}")
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise PrefectRestError(f"reading run {run_id}: HTTP {r.status_code}")
        body = r.json()
        state = body.get("state") or {}
        details = state.get("state_details") or {}
        keyset = details.get("run_input_keyset") or {}
        return RunState(
            run_id=run_id,
            name=body.get("name", ""),
            state_type=state.get("type", ""),
            state_name=state.get("name", ""),
            pause_key=details.get("pause_key"),
            schema_key=keyset.get("schema"),
        )

    def has_input(self, run_id: str, key: str) -> bool:
        r = self._call("GET", f"/flow_runs/{run_id}/input/{key}")
        if r.status_code not in (200, 404):
            raise PrefectRestError(f"reading the form of run {run_id}: HTTP {r.status_code}")
        return r.status_code == 200

    def resume(self, run_id: str, run_input: dict[str, Any]) -> None:
        r = self._call("POST", f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
        if r.status_code >= 400:
            raise PrefectRestError(f"resuming run {run_id}: HTTP {r.status_code} {r.text[:200]}")
        result = r.json()
        if result.get("status") != "ACCEPT":
            reason = (result.get("details") or {}).get("reason") or result.get("status")
            raise PrefectRestError(f"Prefect did not resume run {run_id}: {reason}")
