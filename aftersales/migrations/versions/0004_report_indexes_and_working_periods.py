"""report indexes and working periods (issue 12)

* ``history_ticket`` instants become BIGINT microseconds since the epoch (UTC),
  converted exactly from the stored timestamps; ``source_line`` is added; the
  ``created_at`` index is rebuilt on the new column (the month window of every
  report) and ``(sop, created_at)`` is added (the complaints of a month, whose
  working-day deadlines are looked up). The foreign key ``batch_id ->
  import_batch.id`` is dropped: the import writes a batch and its rows in one
  transaction, and the per-row check cost 40 % of a PostgreSQL import (the
  ``batch_id`` index stays).
* ``working_calendar`` / ``working_period``: the working periods a calendar
  writes, with the working time accumulated before each one, indexed by
  ``(calendar_key, start_us)`` (primary key) and ``(calendar_key, cum_end_us)``
  for the two lookups of a working-time deadline.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANTS = ("created_at", "first_response_at", "resolved_at", "closed_at")
#: names for SQLite's unnamed constraints when a batch operation reflects the table
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
BATCH_FK = "history_ticket_batch_id_fkey"  # PostgreSQL's name, and the convention's


def _to_micros(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); whole seconds exactly, then the digits
        return (
            f"(unixepoch(substr({col}, 1, 19)) * 1000000"
            f" + CAST(substr({col} || '000000', 21, 6) AS INTEGER))"
        )
    return f"CAST(EXTRACT(EPOCH FROM {col}) * 1000000 AS BIGINT)"


def _from_micros(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"(datetime({col} / 1000000, 'unixepoch') || '.' || printf('%06d', {col} % 1000000))"
    return f"(TIMESTAMPTZ 'epoch' + {col} * INTERVAL '1 microsecond')"


def _swap_instants(
    new_type: sa.types.TypeEngine,
    plain_type: sa.types.TypeEngine,
    convert: Callable[[str, str], str],
    *,
    with_report_index: bool,
) -> None:
    """Replace the four instant columns by ``new_type`` ones holding ``convert(old)``; the
    report index on ``(sop, created_at)`` exists after an upgrade, not after a downgrade."""
    dialect = op.get_bind().dialect.name
    for col in INSTANTS:
        op.add_column("history_ticket", sa.Column(f"{col}_new", new_type, nullable=True))
    op.execute(
        "UPDATE history_ticket SET "
        + ", ".join(
            f"{col}_new = CASE WHEN {col} IS NULL THEN NULL ELSE {convert(col, dialect)} END"
            for col in INSTANTS
        )
    )
    # SQLite rebuilds the table (it cannot drop or rename indexed columns in place);
    # PostgreSQL alters it in place (a rebuild would rename the id sequence)
    recreate = "always" if dialect == "sqlite" else "never"
    with op.batch_alter_table(
        "history_ticket", schema=None, recreate=recreate, naming_convention=NAMING
    ) as b:
        b.drop_index("ix_history_ticket_created_at")
        if not with_report_index:
            b.drop_index("ix_history_ticket_sop_created_at")
        for col in INSTANTS:
            b.drop_column(col)
        for col in INSTANTS:
            b.alter_column(
                f"{col}_new",
                new_column_name=col,
                existing_type=plain_type,
                nullable=col != "created_at",
            )
    with op.batch_alter_table("history_ticket", schema=None) as b:
        b.create_index("ix_history_ticket_created_at", ["created_at"], unique=False)
        if with_report_index:
            b.create_index("ix_history_ticket_sop_created_at", ["sop", "created_at"], unique=False)


def upgrade() -> None:
    op.create_table(
        "working_calendar",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "working_period",
        sa.Column("calendar_key", sa.String(length=64), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("cum_start_us", sa.BigInteger(), nullable=False),
        sa.Column("cum_end_us", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["calendar_key"], ["working_calendar.key"]),
        sa.PrimaryKeyConstraint("calendar_key", "start_us"),
    )
    op.create_index(
        "ix_working_period_cum_end", "working_period", ["calendar_key", "cum_end_us"], unique=False
    )
    op.add_column("history_ticket", sa.Column("source_line", sa.Integer(), nullable=True))
    with op.batch_alter_table("history_ticket", schema=None, naming_convention=NAMING) as b:
        b.drop_constraint(BATCH_FK, type_="foreignkey")
    _swap_instants(sa.BigInteger(), sa.BigInteger(), _to_micros, with_report_index=True)


def downgrade() -> None:
    _swap_instants(
        models.db.UTCDateTime(timezone=True),
        sa.DateTime(timezone=True),
        _from_micros,
        with_report_index=False,
    )
    with op.batch_alter_table("history_ticket", schema=None, naming_convention=NAMING) as b:
        b.drop_column("source_line")
        b.create_foreign_key(BATCH_FK, "import_batch", ["batch_id"], ["id"])
    op.drop_index("ix_working_period_cum_end", table_name="working_period")
    op.drop_table("working_period")
    op.drop_table("working_calendar")
