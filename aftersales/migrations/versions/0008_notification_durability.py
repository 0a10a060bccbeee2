"""notification durability (issue 11 §4, issue 9 §4): a courier's lease on an outbox row
(``claimed_until``/``claimed_by``) so concurrent couriers never send one row twice and a
crashed courier's claim expires; the route that delivered (``delivered_via``); a row held
until an earlier one is delivered (``after_id``: a late breach after its late REM-1
reminder); how late a clock fired after an outage (``late_seconds`` on the message,
``fired_late_seconds`` on the clock).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("notification") as b:
        b.add_column(sa.Column("claimed_until", TS, nullable=True))
        b.add_column(sa.Column("claimed_by", S(length=80), nullable=True))
        b.add_column(sa.Column("delivered_via", S(length=20), nullable=True))
        b.add_column(sa.Column("after_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("late_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("sla_clock") as b:
        b.add_column(sa.Column("fired_late_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sla_clock") as b:
        b.drop_column("fired_late_seconds")
    with op.batch_alter_table("notification") as b:
        b.drop_column("late_seconds")
        b.drop_column("after_id")
        b.drop_column("delivered_via")
        b.drop_column("claimed_by")
        b.drop_column("claimed_until")
