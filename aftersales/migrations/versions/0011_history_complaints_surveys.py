"""history rows carry exported surveys and complaints (issue 7 §5): the three CB-3
dimensions (1-5 each) and the complaint's product model, root cause, theme, solution
and compensation, all optional.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString

COLUMNS = (
    ("satisfaction_attitude", sa.Integer()),
    ("satisfaction_efficiency", sa.Integer()),
    ("satisfaction_effectiveness", sa.Integer()),
    ("product_model", S(length=120)),
    ("root_cause", S(length=2000)),
    ("complaint_theme", S(length=120)),
    ("solution", S(length=20)),
    ("compensation_cny", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("history_ticket") as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("history_ticket") as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
