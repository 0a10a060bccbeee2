"""run supervision (issue 11 §1): every repair the reconciler makes to a ticket's SOP
run is recorded (``run_repair``).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "run_repair",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", S(length=40), nullable=False),
        sa.Column("sop", S(length=20), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("action", S(length=20), nullable=False),
        sa.Column("reason", S(), nullable=False),
        sa.Column("old_run", S(length=64), nullable=True),
        sa.Column("new_run", S(length=64), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_repair_pair", "run_repair", ["ticket_id", "sop", "instance"])


def downgrade() -> None:
    op.drop_index("ix_run_repair_pair", table_name="run_repair")
    op.drop_table("run_repair")
