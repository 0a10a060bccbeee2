"""complaints and callbacks (issue 7): the complaint record (表4) and its outcome;
customer-history indexes for ESC-IMPORTANT's second complaint; a ticket's parent
ticket; the callback record (CB-2/CB-3) with its one-time survey token hash.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "complaint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", S(length=40), nullable=False),
        sa.Column("cause", S(), nullable=False),
        sa.Column("staff_involved", S(), nullable=False),
        sa.Column("expected_outcome", S(), nullable=False),
        sa.Column("amount_claimed_cny", sa.Float(), nullable=False),
        sa.Column("investigator", S(length=120), nullable=True),
        sa.Column("service_records", S(), nullable=True),
        sa.Column("recording_refs", sa.JSON(), nullable=False),
        sa.Column("photo_refs", sa.JSON(), nullable=False),
        sa.Column("cross_department", sa.Boolean(), nullable=False),
        sa.Column("department", S(length=40), nullable=True),
        sa.Column("verified_by", S(length=120), nullable=True),
        sa.Column("findings", S(), nullable=True),
        sa.Column("solution", S(length=20), nullable=True),
        sa.Column("compensation_cny", sa.Float(), nullable=False),
        sa.Column("solution_details", S(), nullable=True),
        sa.Column("approved_by", S(length=120), nullable=True),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("rejections", sa.Integer(), nullable=False),
        sa.Column("last_rejection", S(), nullable=True),
        sa.Column("informed_at", TS, nullable=True),
        sa.Column("outcome", S(length=20), nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("tracking", S(), nullable=True),
        sa.Column("theme", S(length=120), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id"),
    )
    op.create_table(
        "callback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", S(length=40), nullable=False),
        sa.Column("customer_id", S(length=64), nullable=True),
        sa.Column("method", S(length=20), nullable=False),
        sa.Column("reason", S(length=20), nullable=False),
        sa.Column("plan_month", S(length=7), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reached_at", TS, nullable=True),
        sa.Column("unreachable", sa.Boolean(), nullable=False),
        sa.Column("attitude", sa.Integer(), nullable=True),
        sa.Column("efficiency", sa.Integer(), nullable=True),
        sa.Column("effectiveness", sa.Integer(), nullable=True),
        sa.Column("answer", S(), nullable=True),
        sa.Column("second_call_at", TS, nullable=True),
        sa.Column("complaint_ticket_id", S(length=40), nullable=True),
        sa.Column("survey_token_hash", S(length=64), nullable=True),
        sa.Column("survey_expires_at", TS, nullable=True),
        sa.Column("survey_used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id"),
        sa.UniqueConstraint("survey_token_hash"),
    )
    op.create_index("ix_callback_customer_id", "callback", ["customer_id"])
    with op.batch_alter_table("ticket") as b:
        b.add_column(sa.Column("parent_ticket_id", S(length=40), nullable=True))
        b.create_index("ix_ticket_customer_history", ["customer_id", "created_at"])
        b.create_index("ix_ticket_contact_history", ["contact", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("ticket") as b:
        b.drop_index("ix_ticket_contact_history")
        b.drop_index("ix_ticket_customer_history")
        b.drop_column("parent_ticket_id")
    op.drop_index("ix_callback_customer_id", "callback")
    op.drop_table("callback")
    op.drop_table("complaint")
