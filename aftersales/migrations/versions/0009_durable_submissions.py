"""durable human-step submissions (issue 11 §2): every form a person submits is stored
before any Prefect call, then applied exactly once by the run that asks for the step.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "step_submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", S(length=120), nullable=False),
        sa.Column("ticket_id", S(length=40), nullable=False),
        sa.Column("sop", S(length=20), nullable=False),
        sa.Column("step", S(length=40), nullable=False),
        sa.Column("step_key", S(length=60), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("actor", S(length=120), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("state", S(length=12), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("applied_key", S(length=60), nullable=True),
        sa.Column("flow_run_id", S(length=64), nullable=True),
        sa.Column("reason", S(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index(
        "ix_step_submission_pending", "step_submission", ["ticket_id", "state", "sop", "step"]
    )


def downgrade() -> None:
    op.drop_index("ix_step_submission_pending", "step_submission")
    op.drop_table("step_submission")
