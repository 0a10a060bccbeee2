"""Test fixtures: one Prefect test harness per session (a real Prefect server on
SQLite), a fresh project database per test, and — for flow tests — the whole
stack: a runner serving the deployments, the SLA clock service and a real HTTP
sink receiving the Apprise notifications."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
_TMP = Path(tempfile.mkdtemp(prefix="aftersales-tests-"))
os.environ["AFTERSALES_HOME"] = str(_TMP / "home")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_TMP / "prefect-storage")

PG_URL = os.environ.get("AFTERSALES_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """A real Prefect server (the test harness) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # 180 s: a fresh server migrates its database first, which took over 60 s on the
    # shared 2-core box at load 14 (tests/test_burst.py errored there)
    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


def _use_database(url: str) -> None:
    from aftersales.settings import reset_settings
    from models.db import init_db

    os.environ["AFTERSALES_DATABASE_URL"] = url
    reset_settings()
    init_db(url)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'aftersales.db'}"
    _use_database(url)
    yield url
    privacy_harvest(url, "sqlite_db")


def postgres_admin_url() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True):
            return PG_URL
    except Exception:  # noqa: BLE001
        return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = postgres_admin_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL not reachable at {PG_URL} (set AFTERSALES_TEST_POSTGRES_URL); "
            ".ci/run runs these tests where it is"
        )
    return url


def fresh_postgres_database(admin_url: str) -> str:
    import psycopg

    name = f"aftersales_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    from models.db import _engine

    _engine.cache_clear()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    url = fresh_postgres_database(postgres_server)
    _use_database(url)
    yield url
    privacy_harvest(url, "postgres_db")
    drop_postgres_database(postgres_server, url)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL (skipped with a reason when unreachable)."""
    return request.getfixturevalue(f"{request.param}_db")


@pytest.fixture
def sink() -> Iterator:
    from tests.sink import HttpSink

    with HttpSink() as s:
        yield s


def route_roles_to(sink: object) -> None:
    from aftersales.settings import ROLES, reset_settings

    for role in ROLES:
        os.environ[f"AFTERSALES_NOTIFY_{role.upper()}"] = sink.url(f"/{role}")  # type: ignore[attr-defined]
    reset_settings()


E2E_PROFILE = ROOT / "tests" / "data" / "e2e-profile.yaml"


def _wait_for_deployments(api_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Serve registers the deployments and their triggers (automations) at start-up."""
    import time

    from prefect.client.orchestration import get_client

    from deployments.serve import DEPLOYMENTS

    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"runner exited early; see {log_path}")
        with get_client(sync_client=True) as client:
            autos = client.request("POST", "/automations/filter", json={}).json()
        if len({a["name"] for a in autos if a["name"].startswith("start on aftersales")}) >= len(
            DEPLOYMENTS
        ):
            return
        time.sleep(0.5)
    raise RuntimeError(f"deployments were not served within 90 s; see {log_path}")


class Stack:
    """Everything a ticket touches: Prefect server, runner, database, clock service, sink."""

    def __init__(
        self,
        backend: str,
        db_url: str,
        api_url: str,
        sink: object,
        service: object,
        runner_pid: int = 0,
    ):
        self.backend = backend
        self.runner_pid = runner_pid  # the runner serving the deployments
        self.db_url = db_url
        self.api_url = api_url
        self.sink = sink
        self.service = service


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, prefect_server: str) -> Iterator[Stack]:
    """The SOP deployments served by a real Prefect runner subprocess (as ``aftersales serve``),
    the SLA clock service in a thread, notifications to a real HTTP sink; one per backend."""
    from aftersales.settings import reset_settings
    from aftersales.sla_service import SlaService
    from tests.sink import HttpSink

    admin = None
    if request.param == "postgres":
        admin = postgres_admin_url()
        if admin is None:
            pytest.skip(
                f"PostgreSQL not reachable at {PG_URL} (set AFTERSALES_TEST_POSTGRES_URL); "
                ".ci/run runs this test where it is"
            )
        db_url = fresh_postgres_database(admin)
    else:
        db_url = f"sqlite:///{_TMP / f'e2e-{uuid.uuid4().hex[:6]}.db'}"
    saved = dict(os.environ)
    os.environ["AFTERSALES_POLICY_FILE"] = str(E2E_PROFILE)
    os.environ["AFTERSALES_NOTIFY_BACKOFF_SECONDS"] = "0.2"
    sink = HttpSink()
    sink.__enter__()
    route_roles_to(sink)
    _use_database(db_url)
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log_path = _TMP / f"runner-{request.param}.log"
    log = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    _wait_for_deployments(prefect_server, proc, log_path)
    service = SlaService()
    service.poll = 0.2
    thread = service.start_thread()
    # the run supervisor, as `aftersales up` runs it: a start event the server's triggers
    # dropped gets its run, a crashed run is restarted, stored submissions are delivered
    from aftersales.reconciler import Reconciler

    supervisor = Reconciler()
    supervisor.every = 2.0
    supervisor_thread = supervisor.start_thread()
    try:
        yield Stack(request.param, db_url, prefect_server, sink, service, proc.pid)
    finally:
        supervisor.stop()
        supervisor_thread.join(timeout=20)
        service.stop()
        thread.join(timeout=10)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        sink.close()
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()
        privacy_harvest(db_url, f"stack[{request.param}]")
        if admin is not None:
            drop_postgres_database(admin, db_url)


# ---------------------------------------------------------------- personal-data scan
# tests/zz_privacy (collected last) scans what the session left for the personal values
# it submitted (issue 11 §9). The fixtures above hand it each project database before
# dropping it; nothing is collected unless the scan is part of the session.


def privacy_harvest(url: str, label: str) -> None:
    from tests.zz_privacy.scan import REGISTRY

    REGISTRY.harvest_database(url, label)


def pytest_configure(config: pytest.Config) -> None:
    """The chaos suite's seed, chosen once per session (``CHAOS_SEED`` or random); the
    chaos tests read it back, and the terminal summary prints it."""
    from tests.chaos.driver import seed_from_env

    os.environ["CHAOS_SEED"] = str(seed_from_env())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the chaos seed at the end of every run that ran a chaos test, pass or fail
    (a passing test's own prints are captured, so CI's output would not show it)."""
    ran = (r for key, rs in terminalreporter.stats.items() if key != "deselected" for r in rs)
    if any("tests/chaos/" in getattr(r, "nodeid", "") for r in ran):
        seed = os.environ["CHAOS_SEED"]
        terminalreporter.write_line(f"chaos seed: {seed} (replay with CHAOS_SEED={seed})")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.zz_privacy.scan import REGISTRY, watch_record_writes

    scan = [i for i in items if "zz_privacy" in i.nodeid]
    if not scan:
        return
    REGISTRY.enabled = True
    watch_record_writes()
    others = [i for i in items if "zz_privacy" not in i.nodeid]
    if any("stack" in getattr(i, "fixturenames", ()) for i in others):
        # the scan's own ticket (tests/zz_privacy/test_a_ticket_to_scan.py) is for a run alone
        reason = "the session's end-to-end suites submit tickets; the scan reads theirs"
        for item in scan:
            if item.name.startswith("test_alone_"):
                item.add_marker(pytest.mark.skip(reason=reason))
