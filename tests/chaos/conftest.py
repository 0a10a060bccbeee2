"""The chaos suite runs its own Prefect server inside ``aftersales up``: the session's
test harness (tests/conftest.py) is not started for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> str:
    return ""  # `aftersales up` in tests/chaos/driver.py starts and owns the server
