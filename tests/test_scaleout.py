"""The scale-out topology (issue 9 §5) on one machine, as real processes: Prefect API
replicas and services apart on PostgreSQL + Redis, the launcher and two workers, two SLA
services, the reconciler, the intake API with two workers. One repair ticket goes end to
end over HTTP (intake, every human step) while one worker and one SLA service are killed
with SIGKILL: the ticket completes, no notification reaches the sink twice, no clock due
is left unfired."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import (
    E2E_PROFILE,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_admin_url,
)
from tests.test_up import Up

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
REDIS_URL = os.environ.get("AFTERSALES_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _ports_pair() -> int:
    """A port p with p and p+1 free (the two API replicas)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = int(s.getsockname()[1])
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _skip_without_stores() -> str:
    try:
        import prefect_redis  # noqa: F401
        import redis
    except ImportError:
        pytest.skip("prefect-redis not installed (pip install -e '.[scale]')")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL} (AFTERSALES_TEST_REDIS_URL): {exc}")
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL not reachable (AFTERSALES_TEST_POSTGRES_URL)")
    return admin


class Topology:
    def __init__(self, up: Up, intake: str, db_url: str, sink: Any) -> None:
        self.up, self.intake, self.db_url, self.sink = up, intake, db_url, sink


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    import redis

    from tests.sink import HttpSink

    admin = _skip_without_stores()
    tmp = tmp_path_factory.mktemp("scale")
    db_url = fresh_postgres_database(admin)
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    r.flushdb()
    sink = HttpSink()
    sink.__enter__()
    intake_port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AFTERSALES_", "PREFECT_API_URL", "PREFECT_UI_API_URL"))
    }
    from aftersales.settings import ROLES

    env.update({f"AFTERSALES_NOTIFY_{role.upper()}": sink.url(f"/{role}") for role in ROLES})
    env.update(
        AFTERSALES_HOME=str(tmp / "home"),
        AFTERSALES_DATABASE_URL=db_url,
        AFTERSALES_SCALE_REDIS_URL=REDIS_URL,
        AFTERSALES_INTAKE_PORT=str(intake_port),
        AFTERSALES_PUBLIC_BASE_URL=f"http://127.0.0.1:{intake_port}",
        AFTERSALES_POLICY_FILE=str(E2E_PROFILE),
        AFTERSALES_NOTIFY_BACKOFF_SECONDS="0.2",
        AFTERSALES_CLOCK_POLL_SECONDS="0.5",
        AFTERSALES_SLA_BOARD_SECONDS="0",
        AFTERSALES_UP_RESTART_BACKOFF_SECONDS="1",
        AFTERSALES_UP_STOP_SECONDS="15",
        AFTERSALES_UP_START_TIMEOUT_SECONDS="240",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    up = Up(env, "--port", str(_ports_pair()), command="scale-out")
    try:
        up.wait_ready(timeout=300)
        yield Topology(up, f"http://127.0.0.1:{intake_port}", db_url, sink)
    finally:
        up.stop()
        sink.close()
        r.flushdb()
        drop_postgres_database(admin, db_url)
        drop_postgres_database(admin, db_url + "_prefect")


def _utc(at: datetime | None) -> datetime:
    assert at is not None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _waiting(api: httpx.Client, ticket_id: str) -> list[str]:
    resp = api.get(f"/tickets/{ticket_id}")
    return [w["step"] for w in resp.json().get("waiting", [])] if resp.status_code == 200 else []


def _submit(api: httpx.Client, ticket_id: str, step: str, form: dict[str, Any]) -> None:
    end = time.monotonic() + 150
    while step not in _waiting(api, ticket_id):
        assert time.monotonic() < end, f"{ticket_id} never waited for {step}"
        time.sleep(1)
    resp = api.post(f"/tickets/{ticket_id}/steps/{step}", json=form)
    assert resp.status_code in (200, 202), resp.text


def test_repair_ticket_completes_across_the_topology_while_a_worker_and_an_sla_service_are_killed_ISSUE9_5(
    topology: Topology,
) -> None:
    from aftersales.settings import reset_settings
    from models.db import _engine, session_scope
    from models.entities import ACTIVE_CLOCK_STATES
    from models.repository import clocks_for, get_ticket, notifications_for

    up = topology.up
    names = " ".join(up.err)
    for part in ("prefect-api-1", "prefect-api-2", "prefect-services", "launcher", "worker-1",
                 "worker-2", "sla-clock-1", "sla-clock-2", "intake"):  # fmt: skip
        assert f"started {part} (pid" in names, part
    api = httpx.Client(base_url=topology.intake, timeout=30)
    resp = api.post(
        "/intake",
        json={
            "channel": "online",
            "sop": "repair",
            "intake_id": f"scale-{time.time_ns()}",
            "customer_id": "C-1002",
            "customer_name": "李娜",
            "contact": "13987654321",
            "product_model": "X200",
            "purchase_date": (datetime.now(UTC) - timedelta(days=90)).date().isoformat(),
            "description": "app crashes on start",
        },
    )
    assert resp.status_code == 201, resp.text
    ticket_id = resp.json()["ticket_id"]
    # SIGKILL one worker and one SLA service while the ticket runs; the supervisor
    # restarts them, the other worker and service carry on meanwhile
    (w1,) = up.pids("worker-1")
    (c1,) = up.pids("sla-clock-1")
    os.kill(w1, signal.SIGKILL)
    os.kill(c1, signal.SIGKILL)
    _submit(
        api,
        ticket_id,
        "review",
        {"reviewer": "调度-孙", "approved": True, "skill": "software", "service_city": "上海"},
    )
    _submit(api, ticket_id, "arrival", {"engineer_id": "E-03"})
    _submit(api, ticket_id, "diagnosis", {"cause": "corrupt flash", "mode": "on_site",
                                         "charge": "free", "cost_cny": 0,
                                         "customer_agreed": True})  # fmt: skip
    _submit(api, ticket_id, "confirmation", {"test_passed": True, "customer_signed": True,
                                            "signer": "李娜", "device_status": "in service",
                                            "test_report": "ok"})  # fmt: skip
    # read the topology's database (already migrated by it; no migration from here)
    os.environ["AFTERSALES_DATABASE_URL"] = topology.db_url
    reset_settings()
    _engine.cache_clear()
    end = time.monotonic() + 150
    while True:
        with session_scope() as s:
            status = str(get_ticket(s, ticket_id=ticket_id).status)
        if status.endswith(("resolved", "closed")):
            break
        assert time.monotonic() < end, f"{ticket_id} not completed: {status}"
        time.sleep(1)
    assert len(up.pids("worker-1")) == 2 and len(up.pids("sla-clock-1")) == 2  # restarted
    time.sleep(3)  # the couriers' last round
    # no clock left unfired: none active whose moment has passed
    now = datetime.now(UTC)
    with session_scope() as s:
        late = [
            (c.rule_id, c.state)
            for c in clocks_for(s, ticket_id=ticket_id)
            if c.state in ACTIVE_CLOCK_STATES
            and _utc(c.remind_at if c.state == "armed" and c.remind_at else c.due_at)
            < now - timedelta(seconds=5)
        ]
        rows = notifications_for(s, ticket_id=ticket_id)
        keys = Counter(n.dedupe_key for n in rows)
    assert late == []
    assert [k for k, n in keys.items() if n > 1] == []
    # no notification delivered twice to its target
    got = Counter(
        (m.path, m.body.get("title"), m.body.get("message"))
        for m in topology.sink.messages()
        if m.delivered and isinstance(m.body, dict)
    )
    assert got and [k for k, n in got.items() if n > 1] == []
