"""Imported ticket history (issue 3): one family Base / Create / table / Public.

Rows come from ``aftersales import FILE`` (CSV or XLSX from another tool). The
quality, speed and replay reports read ``history_ticket`` together with the live
``ticket`` table (see :func:`aftersales.history.load_tickets`).

Enumerated fields are stored as their lower-case values in plain string columns
(not database enums), so this table adds no PostgreSQL enum types. Timestamps
are timezone-aware (``UTCDateTime``). ``import_batch`` records the SHA-256 of
every imported file: importing the same file again adds nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime

SOPS = ("inquiry", "repair", "complaint", "callback", "installation")
CHANNELS = ("phone", "online", "email", "social")
PRIORITIES = ("urgent", "important", "normal")


def _ts(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


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


class HistoryTicketCreate(HistoryTicketBase):
    created_at: datetime
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None


class HistoryTicket(HistoryTicketBase, table=True):
    __tablename__ = "history_ticket"
    __table_args__ = (Index("ix_history_ticket_created_at", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(unique=True, min_length=1, max_length=64)
    batch_id: int | None = Field(default=None, foreign_key="import_batch.id", index=True)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    first_response_at: datetime | None = Field(default=None, sa_column=_ts())
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    closed_at: datetime | None = Field(default=None, sa_column=_ts())


class HistoryTicketPublic(HistoryTicketBase):
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
