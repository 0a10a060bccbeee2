"""soprun.finished_at: when the supervisor saw the SOP's run finish. A claim of a closed
ticket stays supervised until then, so a run killed after its last step (the ticket
already closed) is restarted and completes instead of staying Crashed (chaos seed 4242).
Claims of tickets closed before this revision are taken as finished.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("soprun") as b:
        b.add_column(sa.Column("finished_at", models.db.UTCDateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE soprun SET finished_at = created_at WHERE ticket_id IN "
        "(SELECT id FROM ticket WHERE status = 'CLOSED')"
    )


def downgrade() -> None:
    with op.batch_alter_table("soprun") as b:
        b.drop_column("finished_at")
