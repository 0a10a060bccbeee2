"""The fuzz targets (payload parsing, forms, the policy loader, the history import, the
calendar and the HTTP API's refusals) never talk to Prefect: intake is called with
``send=None`` (the start event stays in the outbox) and no fuzzed ticket has a run. So
this package does without the session's Prefect test server: a fuzz-only CI job starts
in seconds instead of waiting on it (under load its start alone timed out at 60 s).
In a session that also runs other packages, theirs still gets the real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """No Prefect server for the fuzz package (see the module doc)."""
    yield ""
