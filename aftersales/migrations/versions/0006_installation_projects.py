"""installation projects (issue 8)

The installation project SOP (spec §6, INS-1..12): the project (customer, site, the three
roles, the INS-6 plan's planned date of each phase), the contract equipment list, the
unboxed units, racks, trays and cables with both ends, the ground measurements, the
installation test record, the missing/broken parts report, material in/out, tools used
and the signatures on each document.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = models.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "installation_project",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("customer", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("customer_contact", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("site", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("city", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("project_manager", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("tech_support", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("service_centre", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("ticket_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivery_note_boxes", sa.Integer(), nullable=True),
        sa.Column("boxes_counted", sa.Integer(), nullable=True),
        sa.Column("packaging", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("installed_per_design", sa.Boolean(), nullable=True),
        sa.Column("tested_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("software", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("commissioning_summary", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("cleaned_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("cleaning_note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("accepted_at", TS, nullable=True),
        sa.Column("acceptance_remarks", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("handed_over_to", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["ticket.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id"),
    )
    op.create_table(
        "installation_cable",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("end_a", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("end_b", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("tray", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("neat", sa.Boolean(), nullable=True),
        sa.Column("labelled_a", sa.Boolean(), nullable=False),
        sa.Column("labelled_b", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "code"),
    )
    op.create_index(
        op.f("ix_installation_cable_project_id"), "installation_cable", ["project_id"], unique=False
    )
    op.create_table(
        "installation_equipment_line",
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("expected_serials", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "line_no"),
    )
    op.create_index(
        op.f("ix_installation_equipment_line_project_id"),
        "installation_equipment_line",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "installation_ground",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("device", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("ohms", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("measured_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("instrument", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("measured_at", TS, nullable=False),
        sa.Column("fixed_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["fixed_by_id"],
            ["installation_ground.id"],
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_installation_ground_project_id"),
        "installation_ground",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "installation_material",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("item", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("on", sa.Date(), nullable=True),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_installation_material_project_id"),
        "installation_material",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "installation_part_issue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_installation_part_issue_project_id"),
        "installation_part_issue",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "installation_phase",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("clause", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("planned_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "phase"),
    )
    op.create_index(
        op.f("ix_installation_phase_project_id"), "installation_phase", ["project_id"], unique=False
    )
    op.create_table(
        "installation_rack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("location", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("anti_vibration", sa.Boolean(), nullable=False),
        sa.Column("labelled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "code"),
    )
    op.create_index(
        op.f("ix_installation_rack_project_id"), "installation_rack", ["project_id"], unique=False
    )
    op.create_table(
        "installation_signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("document", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("signed_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "document", "role"),
    )
    op.create_index(
        op.f("ix_installation_signature_project_id"),
        "installation_signature",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "installation_test",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("item", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("result", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("tested_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_installation_test_project_id"), "installation_test", ["project_id"], unique=False
    )
    op.create_table(
        "installation_tool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("tool", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("taken_on", sa.Date(), nullable=False),
        sa.Column("returned_on", sa.Date(), nullable=False),
        sa.Column("condition", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_installation_tool_project_id"), "installation_tool", ["project_id"], unique=False
    )
    op.create_table(
        "installation_tray",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "code"),
    )
    op.create_index(
        op.f("ix_installation_tray_project_id"), "installation_tray", ["project_id"], unique=False
    )
    op.create_table(
        "installation_unit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("condition", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("rack", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("position", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("labelled", sa.Boolean(), nullable=False),
        sa.Column("power_on_passed", sa.Boolean(), nullable=True),
        sa.Column("power_on_note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("power_on_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["installation_project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "serial"),
    )
    op.create_index(
        op.f("ix_installation_unit_project_id"), "installation_unit", ["project_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_installation_unit_project_id", table_name="installation_unit")
    op.drop_table("installation_unit")
    op.drop_index("ix_installation_tray_project_id", table_name="installation_tray")
    op.drop_table("installation_tray")
    op.drop_index("ix_installation_tool_project_id", table_name="installation_tool")
    op.drop_table("installation_tool")
    op.drop_index("ix_installation_test_project_id", table_name="installation_test")
    op.drop_table("installation_test")
    op.drop_index("ix_installation_signature_project_id", table_name="installation_signature")
    op.drop_table("installation_signature")
    op.drop_index("ix_installation_rack_project_id", table_name="installation_rack")
    op.drop_table("installation_rack")
    op.drop_index("ix_installation_phase_project_id", table_name="installation_phase")
    op.drop_table("installation_phase")
    op.drop_index("ix_installation_part_issue_project_id", table_name="installation_part_issue")
    op.drop_table("installation_part_issue")
    op.drop_index("ix_installation_material_project_id", table_name="installation_material")
    op.drop_table("installation_material")
    op.drop_index("ix_installation_ground_project_id", table_name="installation_ground")
    op.drop_table("installation_ground")
    op.drop_index(
        "ix_installation_equipment_line_project_id", table_name="installation_equipment_line"
    )
    op.drop_table("installation_equipment_line")
    op.drop_index("ix_installation_cable_project_id", table_name="installation_cable")
    op.drop_table("installation_cable")
    op.drop_table("installation_project")
