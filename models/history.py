"""Imported ticket history (issue 3) and the working-period table (issue 12).

Rows of ``history_ticket`` come from ``aftersales import FILE`` (CSV, XLSX or
Parquet from another tool). The quality, speed and replay reports read
``history_ticket`` together with the live ``ticket`` table (see
:mod:`aftersales.report_sql`).

* Enumerated fields are stored as their lower-case values in plain string
  columns (not database enums), so this table adds no PostgreSQL enum types.
* Instants are stored as **integer microseconds since 1970-01-01 UTC**
  (``BIGINT``, :class:`EpochMicros`) on every backend, so the reports compare
  and subtract them in SQL exactly and without parsing text (SQLite has no
  timestamp type: parsing its text timestamps cost more than the rest of a
  monthly report). The model still reads and writes timezone-aware datetimes.
  In SQL: ``to_timestamp(created_at / 1e6)`` (PostgreSQL),
  ``datetime(created_at / 1000000, 'unixepoch')`` (SQLite).
* ``import_batch`` records the SHA-256 of every imported file: importing the
  same file again adds nothing. ``source_line`` is the line of the file a row
  came from (the header is line 1).
* ``working_period`` holds the working periods of a :class:`WorkCalendar`
  (written by :func:`aftersales.working_periods.fill_working_periods`) with
  the working time accumulated before each one, so that working-day deadlines
  are two index lookups in a query; ``working_calendar`` records which days
  each calendar's periods cover.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, Index
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime

SOPS = ("inquiry", "repair", "complaint", "callback", "installation")
CHANNELS = ("phone", "online", "email", "social")
PRIORITIES = ("urgent", "important", "normal")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_micros(t: datetime) -> int:
    """Microseconds since 1970-01-01 UTC of an aware datetime (exact)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r} cannot be stored; pass an aware one")
    return (t - EPOCH) // MICROSECOND


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


class EpochMicros(TypeDecorator[datetime]):
    """An aware datetime stored as BIGINT microseconds since the epoch (UTC)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: int | None, dialect: Any) -> datetime | None:
        return None if value is None else from_micros(value)


def _ts(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


def _us(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(EpochMicros(), nullable=nullable)


# ---------------------------------------------------------------- import batches
class ImportBatch(SQLModel, table=True):
    """One imported file; ``sha256`` is unique, so a re-import is recognised."""

    __tablename__ = "import_batch"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True, max_length=64)
    filename: str = Field(max_length=300)
    rows_imported: int = 0
    rows_skipped: int = 0  # already stored (same ticket_id from an earlier file)
    rows_rejected: int = 0
    imported_at: datetime = Field(sa_column=_ts(nullable=False))


# ---------------------------------------------------------------- history tickets
class HistoryTicketBase(SQLModel):
    ticket_id: str = Field(min_length=1, max_length=64)
    sop: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    category: str | None = Field(default=None, max_length=60)
    priority: str = Field(max_length=20)
    satisfaction: float | None = Field(default=None, ge=0, le=10)  # QA-1 0-10 scale
    handler: str | None = Field(default=None, max_length=120)
    team: str | None = Field(default=None, max_length=60)
    customer_id: str | None = Field(default=None, max_length=64)
    # optional survey columns (CB-3): each dimension 1-5 as asked; ``satisfaction`` above
    # is their mean x 2 when the file gave no score of its own (spec, conflicts table)
    satisfaction_attitude: int | None = Field(default=None, ge=1, le=5)
    satisfaction_efficiency: int | None = Field(default=None, ge=1, le=5)  # SPD-2 speed
    satisfaction_effectiveness: int | None = Field(default=None, ge=1, le=5)
    # optional complaint columns (CMP-3/CMP-4): what the improvement report groups by
    product_model: str | None = Field(default=None, max_length=120)
    root_cause: str | None = Field(default=None, max_length=2000)
    complaint_theme: str | None = Field(default=None, max_length=120)
    solution: str | None = Field(
        default=None, max_length=20
    )  # apology|compensation|repair|process_change
    compensation_cny: float | None = Field(default=None, ge=0)


class HistoryTicketCreate(HistoryTicketBase):
    created_at: datetime
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None


class HistoryTicket(HistoryTicketBase, table=True):
    __tablename__ = "history_ticket"
    __table_args__ = (
        Index("ix_history_ticket_created_at", "created_at"),
        Index("ix_history_ticket_sop_created_at", "sop", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(unique=True, min_length=1, max_length=64)
    # the import batch (import_batch.id) the row came with; written in the same transaction
    # as the batch row, so no per-row foreign-key check (it cost 40 % of a PostgreSQL import)
    batch_id: int | None = Field(default=None, index=True)
    source_line: int | None = None  # line of the imported file (header = 1)
    created_at: datetime = Field(sa_column=_us(nullable=False))
    first_response_at: datetime | None = Field(default=None, sa_column=_us())
    resolved_at: datetime | None = Field(default=None, sa_column=_us())
    closed_at: datetime | None = Field(default=None, sa_column=_us())


class HistoryTicketPublic(HistoryTicketBase):
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


# ---------------------------------------------------------------- working periods
class WorkingCalendar(SQLModel, table=True):
    """A calendar whose working periods are in ``working_period``, and the days they cover."""

    __tablename__ = "working_calendar"

    key: str = Field(primary_key=True, max_length=64)  # see aftersales.working_periods
    description: str = Field(max_length=500)
    first_day: date  # covered local days, inclusive
    last_day: date


class WorkingPeriod(SQLModel, table=True):
    """One working period of one calendar, in UTC microseconds.

    ``cum_start_us`` is the working time of the calendar before the period (from
    an arbitrary origin, so it may be negative), ``cum_end_us`` the same after it.
    """

    __tablename__ = "working_period"
    __table_args__ = (Index("ix_working_period_cum_end", "calendar_key", "cum_end_us"),)

    calendar_key: str = Field(primary_key=True, max_length=64, foreign_key="working_calendar.key")
    start_us: int = Field(sa_column=Column(BigInteger(), primary_key=True))
    end_us: int = Field(sa_column=Column(BigInteger(), nullable=False))
    cum_start_us: int = Field(sa_column=Column(BigInteger(), nullable=False))
    cum_end_us: int = Field(sa_column=Column(BigInteger(), nullable=False))
    day: date
