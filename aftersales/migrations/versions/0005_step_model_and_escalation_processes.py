"""step model and escalation processes (issue 6)

Step records, the Prefect event outbox, escalations as processes (trigger, parent,
state, who acted and when, their run), the ticket's service city and the three
survey dimensions (CB-3).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "step_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("sop", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("step_key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("completed_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "sop", "step_key", "instance"),
    )
    op.create_index("ix_step_record_ticket_id", "step_record", ["ticket_id"])
    op.create_table(
        "outbox_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("ticket_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_event_ticket_id", "outbox_event", ["ticket_id"])
    op.create_index("ix_outbox_event_due", "outbox_event", ["sent_at", "next_attempt_at"])
    state = sa.Enum("OPEN", "ACTED", "JOINED", name="escalationstate")
    state.create(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("escalation") as b:
        b.add_column(
            sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True)
        )
        b.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("state", state, nullable=False, server_default="OPEN"))
        b.add_column(
            sa.Column("acted_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        b.add_column(sa.Column("acted_at", TS, nullable=True))
        b.add_column(
            sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        b.create_foreign_key("fk_escalation_parent", "escalation", ["parent_id"], ["id"])
    with op.batch_alter_table("ticket") as b:
        b.add_column(
            sa.Column("service_city", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True)
        )
        for dim in ("attitude", "efficiency", "effectiveness"):
            b.add_column(sa.Column(f"satisfaction_{dim}", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket") as b:
        for dim in ("attitude", "efficiency", "effectiveness"):
            b.drop_column(f"satisfaction_{dim}")
        b.drop_column("service_city")
    with op.batch_alter_table("escalation") as b:
        b.drop_constraint("fk_escalation_parent", type_="foreignkey")
        for col in ("flow_run_id", "acted_at", "acted_by", "state", "parent_id", "trigger"):
            b.drop_column(col)
    sa.Enum(name="escalationstate").drop(op.get_bind(), checkfirst=True)
    op.drop_index("ix_outbox_event_due", "outbox_event")
    op.drop_index("ix_outbox_event_ticket_id", "outbox_event")
    op.drop_table("outbox_event")
    op.drop_index("ix_step_record_ticket_id", "step_record")
    op.drop_table("step_record")
