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
    # where customers reach the survey endpoint (POST /surveys/{token}), for survey links
    public_base_url: str = "http://127.0.0.1:8088"
    # at most this many callback runs at once (a month of completions never floods the box)
    callback_concurrency: int = 4
    intake_host: str = "127.0.0.1"
    intake_port: int = 8088
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
    # sent gets its start event queued again (the server or its triggers dropped it)
    lost_start_grace_seconds: float = 60.0
    clock_batch: int = 500
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
