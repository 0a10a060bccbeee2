"""One settings object for the whole project, built lazily from the environment.

Every variable is prefixed ``AFTERSALES_``; nothing here connects to a server,
reads a database or loads a Prefect block at import time.
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROLES = (
    "handler",
    "team_lead",
    "supervisor",
    "tech_support",
    "cs_manager",
    "operations_director",
    "pr",
    "sync_group",
    "dispatch",
    "engineer",
    "customer",
    "project_manager",  # installation projects (spec §6): phase reminders
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".aftersales")
    database_url: str | None = None  # default: sqlite file under ``home``
    timezone: str = "Asia/Shanghai"
    # Working periods of a working day, "HH:MM-HH:MM" comma separated.
    working_hours: str = "09:00-18:00"
    # What the calendar does for a year neither a calendar file nor chinese-calendar covers:
    # "statutory" (old name "weekends", same meaning) counts weekends and the statutory
    # holidays of the `holidays` package as days off and warns that make-up workdays
    # are unknown; "error" refuses to compute the deadline.
    calendar_unknown_year: Literal["statutory", "weekends", "error"] = "statutory"
    # State Council holiday arrangements as YAML calendar files (or directories of
    # them), comma separated; they take precedence over both packages.
    calendar_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    policy_profile: str = "default"
    policy_file: Path | None = None
    # Apprise URLs per role, comma separated, e.g. AFTERSALES_NOTIFY_TEAM_LEAD=json://host/path
    notify_handler: str = ""
    notify_team_lead: str = ""
    notify_supervisor: str = ""
    notify_tech_support: str = ""
    notify_cs_manager: str = ""
    notify_operations_director: str = ""
    notify_pr: str = ""
    notify_sync_group: str = ""
    notify_dispatch: str = ""
    notify_engineer: str = ""
    notify_customer: str = ""
    notify_project_manager: str = ""
    notify_max_attempts: int = 5
    notify_backoff_seconds: float = 2.0
    # Apprise connect and read timeout of one delivery (cto/rto on the URL)
    notify_timeout_seconds: float = 4.0
    # After the fast retries (notify_max_attempts) a message is not given up: it is retried
    # with the exponential backoff capped at this many seconds until its target answers
    # (issue 11 §4); only an unroutable one (no route, invalid URL) is terminal.
    notify_retry_max_seconds: float = Field(default=300.0, gt=0)
    # Fallback Apprise URLs per role (comma separated), tried after notify_fallback_after
    # failed attempts of the role's own route, e.g. AFTERSALES_NOTIFY_FALLBACK_TEAM_LEAD=…
    notify_fallback_after: int = Field(default=3, ge=0)
    notify_fallback_handler: str = ""
    notify_fallback_team_lead: str = ""
    notify_fallback_supervisor: str = ""
    notify_fallback_tech_support: str = ""
    notify_fallback_cs_manager: str = ""
    notify_fallback_operations_director: str = ""
    notify_fallback_pr: str = ""
    notify_fallback_sync_group: str = ""
    notify_fallback_dispatch: str = ""
    notify_fallback_engineer: str = ""
    notify_fallback_customer: str = ""
    notify_fallback_project_manager: str = ""
    # A courier's claim on outbox rows lasts this long; a crashed courier's rows are
    # taken over after it (must exceed one round's deliveries)
    notify_lease_seconds: float = Field(default=120.0, gt=0)
    # outbox deliveries in flight at once (one ticket's messages stay in order)
    notify_concurrency: int = Field(default=8, ge=1)
    # at most this many messages per second to one target URL (token bucket; 0 = no limit)
    notify_rate_per_target: float = Field(default=50.0, ge=0)
    # a clock that fires more than this many seconds after its moment (the SLA service was
    # down) records its lateness and says so in its message (issue 11 §4, issue 9 §4)
    late_fire_seconds: float = Field(default=60.0, ge=0)
    # where customers reach the survey endpoint (POST /surveys/{token}), for survey links
    public_base_url: str = "http://127.0.0.1:8088"
    # at most this many callback runs at once (a month of completions never floods the box)
    callback_concurrency: int = 4
    # Issue 9: at most this many flow runs (starts and resumes) execute at once on this
    # machine (sized for 2 cores): the runner's `limit` for `serve`, the work pool's
    # concurrency limit and the worker's --limit. A suspended run holds no slot.
    run_concurrency: int = Field(default=4, ge=1)
    # Issue 9: the launcher daemon (aftersales.launcher) forks flow runs from an
    # already-imported process; it listens on this Unix socket (default <home>/launcher.sock;
    # the stdlib client reads the same variable, AFTERSALES_LAUNCHER_SOCKET)
    launcher_socket: Path | None = None
    # Issue 9: the work pool the SOP deployments run in (prefect.yaml work_pool.name)
    work_pool: str = "aftersales"
    intake_host: str = "127.0.0.1"
    intake_port: int = 8088
    # an intake with neither intake_id nor received_at is deduplicated by its content
    # within windows of this many seconds (this window and the previous: a client's retry
    # across a boundary is still one ticket)
    intake_dedupe_window_seconds: float = Field(default=600, gt=0)
    # intake waits at most this long for the best-effort send of the start event (the SLA
    # service sends it later); a Prefect server that is down never delays an intake more
    intake_send_timeout_seconds: float = Field(default=2.0, ge=0)
    # a human-step submission held "delivering" longer than this (the process resuming
    # it died) is pending again for the run's ask or the reconciler's deliver_pending
    submission_stale_seconds: float = Field(default=120, gt=0)
    # the HTTP API refuses a request body larger than this (413, code payload_too_large)
    api_max_body_bytes: int = Field(default=65_536, ge=1_024)
    clock_poll_seconds: float = 1.0
    # every call to the Prefect server (events, tags, artifacts, reads) gives up after this
    prefect_call_timeout_seconds: float = 10.0
    # a stored event the server did not take is retried with backoff up to this interval
    event_retry_max_seconds: float = 60.0
    # a step's task (one database transaction) gives up after this
    step_timeout_seconds: float = 60.0
    # the sla-board artifact (every open ticket's next due clock) is refreshed this often
    sla_board_seconds: float = 60.0
    sla_board_limit: int = 500
    # an SOP run that has not claimed its ticket this long after its start event was
    # sent (the server or its triggers dropped it) is created by the run supervisor
    lost_start_grace_seconds: float = 60.0
    clock_batch: int = 500
    # The run supervisor (aftersales/reconciler.py, `aftersales supervise`, issue 11 §1):
    # one pass this often compares every open ticket's SOP runs with Prefect and repairs
    # them; a ticket whose start event was sent lost_start_grace_seconds ago (counted from
    # the LAST start event, a hand-over included) and has no run gets one created
    reconcile_seconds: float = Field(default=10.0, gt=0)
    # a run in Pending/Submitting/Cancelling this long is replaced (a new run takes the
    # claim); one Scheduled/Late/Resuming this long past its time is rescheduled
    run_stuck_seconds: float = Field(default=300.0, gt=0)
    # with PREFECT_FLOWS_HEARTBEAT_FREQUENCY set, a Running run without a heartbeat this
    # long (and at least 3 heartbeat intervals) is lost and replaced
    run_heartbeat_lost_seconds: float = Field(default=90.0, gt=0)
    # a ticket's SOP run is restarted or replaced at most this many times; then the
    # supervisor records "gave-up" and leaves it to a person
    reconcile_max_restarts: int = Field(default=5, ge=0)
    # flow runs read from Prefect per call (ids per filter, page size)
    reconcile_batch: int = Field(default=200, ge=1, le=200)
    # `aftersales up` (issue 11 §5): a part that dies is restarted after this delay,
    # doubled at each further death up to the max; a part that ran for the reset time
    # starts again from the first delay
    up_restart_backoff_seconds: float = Field(default=1.0, gt=0)
    up_restart_backoff_max_seconds: float = Field(default=30.0, gt=0)
    up_restart_reset_seconds: float = Field(default=60.0, gt=0)
    # every part must answer its health check within this after it is started
    up_start_timeout_seconds: float = Field(default=180.0, gt=0)
    # a part without a health endpoint (SLA service, reconciler) counts as up once it
    # has lived this long
    up_alive_grace_seconds: float = Field(default=3.0, ge=0)
    # a Prefect port already listening is waited for this long to answer /health (then
    # reused); it is never taken for a free port
    up_reuse_wait_seconds: float = Field(default=60.0, gt=0)
    # SIGTERM/SIGINT: every part gets SIGTERM and is SIGKILLed after this bound
    up_stop_seconds: float = Field(default=20.0, gt=0)
    # `aftersales scale-out` (issue 9 §5): how many of each part on this machine, and
    # the Redis that carries Prefect's messaging (prefect-redis) and docket
    scale_api_replicas: int = Field(default=2, ge=1)
    scale_workers: int = Field(default=2, ge=1)
    scale_sla_services: int = Field(default=2, ge=1)
    scale_reconcilers: int = Field(default=1, ge=0)
    scale_intake_workers: int = Field(default=2, ge=1)
    scale_redis_url: str = "redis://127.0.0.1:6379/0"
    # Demo only: divide every policy duration by this factor (1 = real time).
    time_scale: float = 1.0
    # Default product warranty (REP-1) when the product catalogue gives none.
    warranty_months: int = 12
    reports_dir: Path = Path("reports")
    # History import (issue 12): rows per chunk; row errors listed at most (counts stay
    # exact); SQLite page cache of the import connection in KiB.
    import_chunk_rows: int = Field(default=50_000, ge=100)
    import_max_errors: int = Field(default=10_000, ge=0)
    import_sqlite_cache_kib: int = Field(default=65_536, ge=2_048)

    @field_validator("calendar_files", mode="before")
    @classmethod
    def _split_paths(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("time_scale")
    @classmethod
    def _positive_scale(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("time_scale must be > 0")
        return v

    @property
    def resolved_launcher_socket(self) -> Path:
        return self.launcher_socket or self.home / "launcher.sock"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'aftersales.db'}"

    def work_periods(self) -> list[tuple[time, time]]:
        periods: list[tuple[time, time]] = []
        for chunk in self.working_hours.split(","):
            try:
                start_s, end_s = chunk.strip().split("-")
                start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
            except ValueError as exc:
                raise ValueError(
                    f"AFTERSALES_WORKING_HOURS: {chunk!r} is not HH:MM-HH:MM ({exc})"
                ) from exc
            if end <= start:
                raise ValueError(f"AFTERSALES_WORKING_HOURS: {chunk!r} ends before it starts")
            periods.append((start, end))
        return periods

    def routes(self, role: str) -> list[str]:
        if role not in ROLES:
            raise ValueError(f"unknown recipient role {role!r}; known roles: {', '.join(ROLES)}")
        raw: str = getattr(self, f"notify_{role}")
        return [u.strip() for u in raw.split(",") if u.strip()]

    def fallback_routes(self, role: str) -> list[str]:
        """The role's fallback Apprise URLs (``AFTERSALES_NOTIFY_FALLBACK_<ROLE>``)."""
        if role not in ROLES:
            raise ValueError(f"unknown recipient role {role!r}; known roles: {', '.join(ROLES)}")
        raw: str = getattr(self, f"notify_fallback_{role}")
        return [u.strip() for u in raw.split(",") if u.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
