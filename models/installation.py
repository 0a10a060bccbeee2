"""Installation projects (工程项目, spec §6, INS-1..12): SQLModel families.

A project is a multi-day job at a customer's site: its customer and site, the contract
equipment list (model, quantity and — once unboxed — serial numbers), the racks,
devices, trays and cables with both ends, the three roles of spec §6 (project
management, after-sales technical support, customer service centre), the planned date
of each phase (the installation and commissioning plan, INS-6) and every record a step
leaves: measurements, checklists, missing/broken parts, material in/out, tools used and
the signatures on each document.

The project's clocks live in ``sla_clock`` like every other deadline; that table is
keyed by ticket, so each project has one ``ticket`` row (``sop = installation``, the
same id as the project), created with the project. Its flow run is
``install-<project>``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime

PROJECT_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,38}$")


def _ts(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class Phase(StrEnum):
    """The phases of the work instruction (seed 002 §4), in its order; each is a step of
    the ``installation`` SOP and has a planned date (INS-6)."""

    UNBOXING = "unboxing"
    INSTALL = "install"
    CABLING = "cabling"
    GROUNDING = "grounding"
    LABELS = "labels"
    SYSTEM = "system"
    POWER_ON = "power-on"
    PARTS = "parts"
    LEFTOVER = "leftover"
    CLEANING = "cleaning"
    ACCEPTANCE = "acceptance"
    TOOLS = "tools"


#: phase -> (clause, Chinese name of the work instruction's section)
PHASES: dict[Phase, tuple[str, str]] = {
    Phase.UNBOXING: ("INS-1", "设备发货与开箱验货"),
    Phase.INSTALL: ("INS-2", "设备安装"),
    Phase.CABLING: ("INS-3", "综合布线"),
    Phase.GROUNDING: ("INS-4", "设备接地"),
    Phase.LABELS: ("INS-5", "设备、线缆标签制作"),
    Phase.SYSTEM: ("INS-6", "系统安装"),
    Phase.POWER_ON: ("INS-7", "设备上电测试"),
    Phase.PARTS: ("INS-8", "缺坏件情况登记"),
    Phase.LEFTOVER: ("INS-9", "余料清点"),
    Phase.CLEANING: ("INS-10", "机房、设备的清洁"),
    Phase.ACCEPTANCE: ("INS-11", "工程验收"),
    Phase.TOOLS: ("INS-12", "工具使用"),
}


class DeviceKind(StrEnum):
    """What a contract line is: a machine or an I/O terminal (both grounded, INS-4)."""

    DEVICE = "device"
    IO_TERMINAL = "io_terminal"


class CableKind(StrEnum):
    """Seed 002 §4.3.1: power cables and signal cables (SCSI, network, PCM …)."""

    POWER = "power"
    SIGNAL = "signal"


# ---------------------------------------------------------------- equipment list
class EquipmentLineBase(SQLModel):
    line_no: int = Field(ge=1)
    model: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=400)
    quantity: int = Field(ge=1, le=10_000)
    unit: str = Field(default="台", max_length=20)
    kind: DeviceKind = DeviceKind.DEVICE


class EquipmentLineCreate(EquipmentLineBase):
    """One line of the contract equipment list; ``serials`` are the ones the delivery
    note or packing list names, when it names any (checked at unboxing, INS-1)."""

    serials: list[str] = Field(default_factory=list)

    @field_validator("serials")
    @classmethod
    def _clean_serials(cls, v: list[str]) -> list[str]:
        out = [s.strip() for s in v if s.strip()]
        dup = sorted({s for s in out if out.count(s) > 1})
        if dup:
            raise ValueError(f"serial {dup[0]!r} is listed twice")
        return out

    @model_validator(mode="after")
    def _not_more_serials_than_units(self) -> EquipmentLineCreate:
        if len(self.serials) > self.quantity:
            raise ValueError(
                f"{len(self.serials)} serial numbers for a quantity of {self.quantity}"
            )
        return self


class EquipmentLine(EquipmentLineBase, table=True):
    __tablename__ = "installation_equipment_line"
    __table_args__ = (UniqueConstraint("project_id", "line_no"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    kind: str = Field(default="device", max_length=20)
    expected_serials: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


# ---------------------------------------------------------------- the project
class ProjectBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    customer: str = Field(min_length=1, max_length=200, description="the customer (organisation)")
    customer_contact: str = Field(
        min_length=1, max_length=200, description="the customer's contact person and phone"
    )
    site: str = Field(min_length=1, max_length=300, description="the installation site")
    city: str = Field(min_length=1, max_length=60)
    # the three roles of spec §6
    project_manager: str = Field(
        min_length=1, max_length=120, description="project management: controls and supervises"
    )
    tech_support: str = Field(
        min_length=1,
        max_length=120,
        description="after-sales technical support: plans, implements, records",
    )
    service_centre: str = Field(
        min_length=1, max_length=120, description="customer service centre: tracks and checks"
    )


class ProjectCreate(ProjectBase):
    """A project as created over HTTP or by ``aftersales project create``: the header,
    the installation and commissioning plan (a planned date for every phase, INS-6) and
    the contract equipment list."""

    id: str = Field(description="the project code, e.g. P-2026-001")
    plan: dict[Phase, datetime | date]
    equipment: list[EquipmentLineCreate] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _code(cls, v: str) -> str:
        v = v.strip()
        if not PROJECT_ID.match(v):
            raise ValueError(
                "must be 3-39 upper-case letters, digits or '-', starting with a letter or "
                "digit (e.g. P-2026-001)"
            )
        if v.startswith("TK-"):
            raise ValueError("'TK-' is reserved for ticket ids")
        return v

    @field_validator("plan")
    @classmethod
    def _every_phase(cls, v: dict[Phase, datetime | date]) -> dict[Phase, datetime | date]:
        missing = [p.value for p in Phase if p not in v]
        if missing:
            raise ValueError("no planned date for phase " + ", ".join(missing))
        for p, when in v.items():
            if isinstance(when, datetime) and when.tzinfo is None:
                raise ValueError(f"{p.value}: a time must carry a UTC offset (+08:00)")
        return v

    @model_validator(mode="after")
    def _lines(self) -> ProjectCreate:
        seen: dict[int, int] = {}
        serials: dict[str, int] = {}
        for i, line in enumerate(self.equipment):
            if line.line_no in seen:
                raise ValueError(f"equipment[{i}].line_no: {line.line_no} repeats")
            seen[line.line_no] = i
            for s in line.serials:
                if s in serials:
                    raise ValueError(f"equipment[{i}].serials: {s!r} is also on another line")
                serials[s] = i
        return self


class InstallationProject(ProjectBase, table=True):
    __tablename__ = "installation_project"

    id: str = Field(primary_key=True, max_length=40)
    ticket_id: str = Field(foreign_key="ticket.id", max_length=40, unique=True)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    # INS-1
    delivery_note_boxes: int | None = None
    boxes_counted: int | None = None
    packaging: str | None = None
    # INS-2
    installed_per_design: bool | None = None
    # INS-6 (after): the installation test record's tester and the commissioning report
    tested_by: str | None = Field(default=None, max_length=120)
    software: str | None = None
    commissioning_summary: str | None = None
    # INS-10
    cleaned_by: str | None = Field(default=None, max_length=120)
    cleaning_note: str | None = None
    # INS-11
    accepted_at: datetime | None = Field(default=None, sa_column=_ts())
    acceptance_remarks: str | None = None
    handed_over_to: str | None = Field(default=None, max_length=120)


class ProjectPublic(SQLModel):
    id: str
    name: str
    customer: str
    site: str
    city: str
    project_manager: str
    tech_support: str
    service_centre: str
    created_at: datetime
    accepted_at: datetime | None


class PlannedPhase(SQLModel, table=True):
    """INS-6: the planned date of one phase (the due time of its clock)."""

    __tablename__ = "installation_phase"
    __table_args__ = (UniqueConstraint("project_id", "phase"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    phase: str = Field(max_length=20)
    clause: str = Field(max_length=10)
    planned_at: datetime = Field(sa_column=_ts(nullable=False))


# ---------------------------------------------------------------- the site
class EquipmentUnit(SQLModel, table=True):
    """One unboxed unit of a contract line (INS-1), then where it was installed (INS-2),
    its labels (INS-5) and its power-on test (INS-7)."""

    __tablename__ = "installation_unit"
    __table_args__ = (UniqueConstraint("project_id", "serial"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    line_no: int
    model: str = Field(max_length=120)
    kind: str = Field(default="device", max_length=20)
    serial: str = Field(max_length=120)
    condition: str = Field(default="ok", max_length=20)  # ok | damaged
    rack: str | None = Field(default=None, max_length=40)
    position: str | None = Field(default=None, max_length=40)
    labelled: bool = False
    power_on_passed: bool | None = None
    power_on_note: str | None = None
    power_on_at: datetime | None = Field(default=None, sa_column=_ts())


class Rack(SQLModel, table=True):
    __tablename__ = "installation_rack"
    __table_args__ = (UniqueConstraint("project_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    code: str = Field(max_length=40)
    location: str = Field(max_length=200)
    anti_vibration: bool = True
    labelled: bool = False


class Tray(SQLModel, table=True):
    """A cable tray (走线槽): power and signal cables run in separate trays (INS-3)."""

    __tablename__ = "installation_tray"
    __table_args__ = (UniqueConstraint("project_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    code: str = Field(max_length=40)
    kind: str = Field(max_length=10)  # power | signal


class Cable(SQLModel, table=True):
    """A cable of the design with both ends; how it was laid (INS-3) and labelled (INS-5)."""

    __tablename__ = "installation_cable"
    __table_args__ = (UniqueConstraint("project_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    code: str = Field(max_length=40)
    kind: str = Field(max_length=10)  # power | signal
    end_a: str = Field(max_length=120)
    end_b: str = Field(max_length=120)
    tray: str | None = Field(default=None, max_length=40)
    neat: bool | None = None
    labelled_a: bool = False
    labelled_b: bool = False


class GroundMeasurement(SQLModel, table=True):
    """INS-4: one measured protective-earth resistance. A value >= 1 Ω is a defect: it
    stays recorded (``passed = False``) until a later measurement of the same device
    passes, which is linked as its fix."""

    __tablename__ = "installation_ground"

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    device: str = Field(max_length=120)
    ohms: float
    passed: bool
    measured_by: str = Field(max_length=120)
    instrument: str = Field(default="", max_length=120)
    measured_at: datetime = Field(sa_column=_ts(nullable=False))
    fixed_by_id: int | None = Field(default=None, foreign_key="installation_ground.id")


class SystemTest(SQLModel, table=True):
    """INS-6 (after): one line of the installation test record (安装测试记录)."""

    __tablename__ = "installation_test"

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    item: str = Field(max_length=200)
    result: str = Field(max_length=400)
    passed: bool
    tested_at: datetime = Field(sa_column=_ts(nullable=False))


class PartIssue(SQLModel, table=True):
    """A line of the missing/broken parts report (缺坏件报告): found at unboxing (INS-1:
    a box count or serial number that does not match, a missing or damaged unit) or
    counted during the works (INS-8)."""

    __tablename__ = "installation_part_issue"

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    phase: str = Field(max_length=20)  # unboxing | parts
    kind: str = Field(max_length=30)  # missing | broken | serial_mismatch | extra | box_count
    model: str = Field(default="", max_length=120)
    serial: str = Field(default="", max_length=120)
    quantity: int = 1
    note: str = ""
    recorded_at: datetime = Field(sa_column=_ts(nullable=False))


class MaterialRecord(SQLModel, table=True):
    """Spare parts and material in/out (备件、材料进出记录, seed 002 §6.3) and the leftover
    counted at the end (INS-9)."""

    __tablename__ = "installation_material"

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    direction: str = Field(max_length=10)  # in | out | leftover
    item: str = Field(max_length=200)
    quantity: float
    unit: str = Field(default="个", max_length=20)
    on: date | None = None
    by: str = Field(default="", max_length=120)
    note: str = ""


class ToolUse(SQLModel, table=True):
    """INS-12: the tool usage record (工具使用记录)."""

    __tablename__ = "installation_tool"

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    tool: str = Field(max_length=120)
    user: str = Field(max_length=120)
    taken_on: date
    returned_on: date
    condition: str = Field(default="good", max_length=120)


class Signature(SQLModel, table=True):
    """Who signed which document, in which role, when."""

    __tablename__ = "installation_signature"
    __table_args__ = (UniqueConstraint("project_id", "document", "role"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: str = Field(foreign_key="installation_project.id", max_length=40, index=True)
    document: str = Field(max_length=40)
    role: str = Field(max_length=40)
    name: str = Field(max_length=120)
    signed_at: datetime = Field(sa_column=_ts(nullable=False))


TABLES: tuple[Any, ...] = (
    InstallationProject,
    PlannedPhase,
    EquipmentLine,
    EquipmentUnit,
    Rack,
    Tray,
    Cable,
    GroundMeasurement,
    SystemTest,
    PartIssue,
    MaterialRecord,
    ToolUse,
    Signature,
)
