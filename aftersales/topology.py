"""``aftersales scale-out``: the distributed topology on one machine (issue 9 §5).

The same pieces a multi-machine installation runs (``docs/SCALE.md``), each a separate
supervised child process (:class:`aftersales.up.Supervisor`):

* Prefect API replicas (``prefect server start --no-services``, one port each:
  ``--port``, ``--port``+1, …) on PostgreSQL with Redis messaging (``prefect-redis``);
  the schema is migrated once before they start, so two replicas never race a migration;
* Prefect's background services apart (``prefect server services start``);
* the launcher daemon (``python -m aftersales.launcher daemon``) and workers of the
  ``process`` work pool ``aftersales`` (``prefect worker start``) whose job command
  hands each run to it; the pool and deployments applied by
  ``python -m aftersales.launcher pool``;
* SLA services (``aftersales clock run``), sharing the clocks on PostgreSQL;
* reconcilers (``aftersales supervise``) when installed;
* the intake API (uvicorn, several worker processes).

Each client-side part talks to one API replica (round robin), as it would behind a
load balancer on several machines. Needs ``AFTERSALES_DATABASE_URL`` on PostgreSQL and
Redis at ``AFTERSALES_SCALE_REDIS_URL``; Prefect's own tables live in a database of
their own beside the project's (``<name>_prefect``, created when missing).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from aftersales.launcher import worker_command
from aftersales.up import (
    Part,
    Plan,
    UpError,
    base_env,
    cli,
    free_port,
    listening,
    reconciler_installed,
    supervise,
)

ONE_SHOT_TIMEOUT = 300.0  # seconds: schema migration, work pool and deployments


@dataclass(frozen=True)
class ScaleUrls:
    """Where the topology's shared stores are."""

    project_db: str  # the project's PostgreSQL database (SQLAlchemy URL)
    prefect_db: str  # Prefect's database, asyncpg driver
    redis_url: str


def prefect_database_url(project_url: str) -> str:
    """Prefect's database beside the project's: same server, ``<name>_prefect``, asyncpg."""
    parts = urlsplit(project_url)
    name = parts.path.lstrip("/") or "aftersales"
    return urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{name}_prefect", "", ""))


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named by the URL when missing."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, connect_timeout=5, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def check_stores() -> ScaleUrls:
    """PostgreSQL for the project and Redis, reachable; else an error naming the setting."""
    import redis

    from aftersales.settings import get_settings

    s = get_settings()
    db = s.resolved_database_url
    if not db.startswith("postgresql"):
        raise UpError(
            f"scale-out needs AFTERSALES_DATABASE_URL on PostgreSQL (several processes share "
            f"the clocks); it is {db.split(':', 1)[0]}"
        )
    try:
        redis.Redis.from_url(s.scale_redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise UpError(
            f"Redis at AFTERSALES_SCALE_REDIS_URL={s.scale_redis_url} is not reachable: {exc}"
        ) from exc
    return ScaleUrls(db, prefect_database_url(db), s.scale_redis_url)


def prefect_server_env(urls: ScaleUrls) -> dict[str, str]:
    """Prefect server settings for several API processes and the services apart (names
    checked against prefect 3.8.8 and prefect-redis 0.3.0)."""
    return {
        "PREFECT_API_DATABASE_CONNECTION_URL": urls.prefect_db,
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": urls.redis_url,
        "PREFECT_SERVER_DOCKET_URL": urls.redis_url,
        # migrated once before the replicas start (`prefect server database upgrade`)
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    }


def _one_shot(argv: list[str], env: dict[str, str], what: str) -> None:
    from aftersales.up import ROOT

    try:
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=ONE_SHOT_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise UpError(f"{what} did not finish within {ONE_SHOT_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise UpError(f"{what} failed ({done.returncode}): {' | '.join(tail)}")


def plan_scale_out(port: int) -> Plan:
    """Every part of the topology; the Prefect schema migrated once first."""
    import os

    from aftersales.settings import get_settings

    s = get_settings()
    urls = check_stores()
    host = "127.0.0.1"
    ports = [port + i for i in range(s.scale_api_replicas)]
    busy = [p for p in ports if listening(host, p)]
    if listening(s.intake_host, s.intake_port):
        busy.append(s.intake_port)
    if busy:
        raise UpError(
            f"ports in use by other processes: {busy} (pass --port / AFTERSALES_INTAKE_PORT)"
        )
    apis = [f"http://{host}:{p}/api" for p in ports]
    server_env = prefect_server_env(urls)
    ensure_database(urls.prefect_db.replace("+asyncpg", ""))
    env = {**os.environ, **base_env(apis[0]), **server_env}
    _one_shot(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env,
        "Prefect schema migration",
    )
    parts: list[Part] = []
    for i, p in enumerate(ports, 1):
        parts.append(
            Part(
                f"prefect-api-{i}",
                (sys.executable, "-m", "prefect", "server", "start", "--no-services",
                 "--host", host, "--port", str(p)),
                env=server_env,
                health_url=f"{apis[i - 1]}/health",
                stage=0,
            )
        )  # fmt: skip
    parts.append(
        Part(
            "prefect-services",
            (sys.executable, "-m", "prefect", "server", "services", "start"),
            env=server_env,
            stage=0,
        )
    )

    def api(i: int) -> dict[str, str]:
        """Client parts spread over the replicas (a load balancer's job on several machines)."""
        url = apis[i % len(apis)]
        return {"PREFECT_API_URL": url, "PREFECT_UI_API_URL": url}

    # the launcher daemon (issue 9): each run and resume is a fork of an imported
    # process; the pool's job command (its stdlib client) reaches it on this socket
    parts.append(Part("launcher", (sys.executable, "-m", "aftersales.launcher", "daemon")))
    for i in range(s.scale_workers):
        wport = free_port()
        argv = worker_command(
            pool=s.work_pool, limit=s.run_concurrency, name=f"aftersales-worker-{i + 1}"
        )
        parts.append(
            Part(
                f"worker-{i + 1}",
                (*argv, "--with-healthcheck"),
                env={**api(i), "PREFECT_WORKER_WEBSERVER_HOST": host,
                     "PREFECT_WORKER_WEBSERVER_PORT": str(wport)},
                health_url=f"http://{host}:{wport}/health",
            )
        )  # fmt: skip
    for i in range(s.scale_sla_services):
        parts.append(Part(f"sla-clock-{i + 1}", cli("clock", "run"), env=api(i)))
    if reconciler_installed():
        for i in range(s.scale_reconcilers):
            parts.append(Part(f"reconciler-{i + 1}", cli("supervise"), env=api(i)))
    intake = f"http://{s.intake_host}:{s.intake_port}"
    parts.append(
        Part(
            "intake",
            (sys.executable, "-m", "uvicorn", "--factory", "aftersales.api:create_app",
             "--host", s.intake_host, "--port", str(s.intake_port),
             "--workers", str(s.scale_intake_workers), "--no-access-log",
             "--log-level", "warning"),
            env=api(1),
            health_url=f"{intake}/health",
        )
    )  # fmt: skip
    return Plan(parts, apis[0], intake, base_env(apis[0]))


def deploy_to_pool(plan: Plan) -> None:
    """The work pool (its job command: the launcher client) and the SOP deployments in it
    (``python -m aftersales.launcher pool``), once the API answers; the workers poll the
    pool meanwhile."""
    import os

    _one_shot(
        [sys.executable, "-m", "aftersales.launcher", "pool"],
        {**os.environ, **plan.env},
        "work pool and deployments (python -m aftersales.launcher pool)",
    )


def _prepare(plan: Plan) -> None:
    from aftersales.demo import seed_reference_data
    from models.db import init_db

    init_db()
    seed_reference_data()


def run_scale_out(port: int) -> int:
    from aftersales.up import AlreadyRunning

    try:
        return supervise(lambda: plan_scale_out(port), prepare=_prepare, after_up=deploy_to_pool)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 3
