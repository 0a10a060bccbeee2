"""step_record keeps what the step decided (value, closed, paused, hand-over), so a replacement
run that re-runs the flow body (issue 11 §1) branches as the first run did.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("step_record") as b:
        b.add_column(
            sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        b.add_column(sa.Column("closed", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(
            sa.Column("handed_over", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("step_record") as b:
        b.drop_column("handed_over")
        b.drop_column("paused")
        b.drop_column("closed")
        b.drop_column("value")
