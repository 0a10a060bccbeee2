"""The forms of the installation project SOP (spec §6, INS-1..12), as plain pydantic
models like ``aftersales.forms``: the Prefect runtime turns each into a ``RunInput``,
the CLI and the HTTP API validate against the same class.

A form checks what one submission can check on its own (a value's range, a name given,
no code twice); what needs the project's records (every device measured, every cable
end labelled, each serial on the contract) is the step's check in
``tasks/installation.py``, which refuses the submission naming the item and the rule.

The work instruction lets cabling (INS-3), grounding (INS-4) and labels (INS-5) run side
by side, and the close-out records (INS-8, INS-9 with the material in/out, INS-10,
INS-12) likewise: :class:`SiteWork` and :class:`CloseOut` each take any of their
sections in one submission, in any order, until all are done.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from aftersales.forms import Form


def _name() -> str:
    return Field(min_length=1, max_length=120)  # type: ignore[no-any-return]


def _code() -> str:
    return Field(min_length=1, max_length=40)  # type: ignore[no-any-return]


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {v!r} is listed twice")
        seen.add(v)


# ---------------------------------------------------------------- INS-1
class UnboxedUnit(Form):
    """One unit taken out of its box: the contract line it belongs to, its serial number
    and its condition ('missing': the contract line's unit is not in the delivery)."""

    line_no: int = Field(ge=1, description="the contract equipment list's line")
    serial: str = Field(default="", max_length=120, description="empty only when missing")
    condition: Literal["ok", "damaged", "missing"]
    note: str = Field(default="", max_length=400)


class Unboxing(Form):
    """INS-1: boxes counted against the delivery note, appearance and packaging checked,
    model, quantity and serial number of every unit checked against the contract list;
    the customer, the engineer and the third party sign the unboxing report and the
    missing/broken parts report."""

    delivery_note_boxes: int = Field(ge=0, le=100_000, description="boxes on the delivery note")
    boxes_counted: int = Field(ge=0, le=100_000, description="boxes counted on site")
    packaging: str = Field(min_length=1, max_length=1000, description="appearance and packaging")
    units: list[UnboxedUnit] = Field(min_length=1)
    customer_signer: str = Field(min_length=1, max_length=120, description="the customer")
    engineer_signer: str = Field(min_length=1, max_length=120, description="the engineer")
    third_party_signer: str = Field(
        min_length=1, max_length=120, description="the third party (carrier / vendor)"
    )
    by: str = Field(min_length=1, max_length=120, description="who entered it")

    @model_validator(mode="after")
    def _serials(self) -> Unboxing:
        _unique([u.serial for u in self.units if u.serial], "serial")
        return self


# ---------------------------------------------------------------- INS-2
class RackIn(Form):
    code: str = _code()
    location: str = Field(min_length=1, max_length=200)
    anti_vibration: bool = Field(description="fixed per the design's anti-vibration requirement")


class TrayIn(Form):
    code: str = _code()
    kind: Literal["power", "signal"]


class PlacementIn(Form):
    serial: str = Field(min_length=1, max_length=120)
    rack: str = _code()
    position: str = Field(min_length=1, max_length=40, description="e.g. U10-U12")


class CableIn(Form):
    code: str = _code()
    kind: Literal["power", "signal"]
    end_a: str = Field(min_length=1, max_length=120)
    end_b: str = Field(min_length=1, max_length=120)

    @model_validator(mode="after")
    def _two_ends(self) -> CableIn:
        if self.end_a == self.end_b:
            raise ValueError(f"cable {self.code}: end_a and end_b are the same ({self.end_a})")
        return self


class Install(Form):
    """INS-2: racks, devices and cable trays installed per the telecom and vendor
    standards and the design; the design's cables with both ends."""

    racks: list[RackIn] = Field(min_length=1)
    trays: list[TrayIn] = Field(min_length=1)
    devices: list[PlacementIn] = Field(min_length=1)
    cables: list[CableIn] = Field(default_factory=list)
    per_design: bool = Field(description="positions and fixing as the design documents say")
    by: str = _name()

    @model_validator(mode="after")
    def _codes(self) -> Install:
        _unique([r.code for r in self.racks], "rack")
        _unique([t.code for t in self.trays], "tray")
        _unique([d.serial for d in self.devices], "device")
        _unique([c.code for c in self.cables], "cable")
        return self


# ---------------------------------------------------------------- INS-3 / INS-4 / INS-5
class CableLaid(Form):
    cable: str = _code()
    tray: str = _code()
    neat: bool = Field(description="neat and clear, no kinks or cuts")
    bundled_with_other_kind: bool = Field(
        description="tied together with a cable of the other kind (power with signal)"
    )


class Cabling(Form):
    """INS-3: every cable laid in a tray of its kind (power and signal never bundled
    together, in separate trays), neat, per the national cabling standards."""

    cables: list[CableLaid] = Field(min_length=1)
    per_standard: bool = Field(description="per the national cabling design/acceptance standards")
    by: str = _name()

    @model_validator(mode="after")
    def _once(self) -> Cabling:
        _unique([c.cable for c in self.cables], "cable")
        return self


class GroundValue(Form):
    device: str = Field(min_length=1, max_length=120, description="the device's serial number")
    ohms: float = Field(ge=0, le=1_000_000, allow_inf_nan=False, description="resistance in Ω")


class Grounding(Form):
    """INS-4: the protective-earth resistance of every machine and I/O terminal, each
    separately < 1 Ω."""

    measurements: list[GroundValue] = Field(min_length=1)
    instrument: str = Field(default="", max_length=120, description="the earth tester used")
    by: str = _name()

    @model_validator(mode="after")
    def _once(self) -> Grounding:
        _unique([m.device for m in self.measurements], "device")
        return self


class LabelCheck(Form):
    code: str = Field(min_length=1, max_length=120, description="rack code or device serial")
    labelled: bool


class CableLabel(Form):
    cable: str = _code()
    end_a: bool = Field(description="end A labelled")
    end_b: bool = Field(description="end B labelled")


class Labels(Form):
    """INS-5: every rack, every device and both ends of every cable labelled, clearly,
    correctly and firmly."""

    racks: list[LabelCheck] = Field(min_length=1)
    devices: list[LabelCheck] = Field(min_length=1)
    cables: list[CableLabel] = Field(default_factory=list)
    clear_correct_firm: bool
    by: str = _name()


class SiteWork(Form):
    """INS-3, INS-4 and INS-5 side by side: any of them in one submission, in any order;
    each is checked and recorded on its own; the phase is done when all three are."""

    cabling: Cabling | None = None
    grounding: Grounding | None = None
    labels: Labels | None = None

    @model_validator(mode="after")
    def _something(self) -> SiteWork:
        if self.cabling is None and self.grounding is None and self.labels is None:
            raise ValueError("cabling, grounding, labels: give at least one")
        return self


# ---------------------------------------------------------------- INS-6 / INS-7
class SystemTestIn(Form):
    item: str = Field(min_length=1, max_length=200)
    result: str = Field(min_length=1, max_length=400)
    passed: bool


class SystemInstall(Form):
    """INS-6 (after): all software and hardware installed per the installation and
    commissioning plan; the installation test record and the commissioning report."""

    software: str = Field(min_length=1, max_length=2000, description="what was installed")
    tests: list[SystemTestIn] = Field(min_length=1)
    commissioning_summary: str = Field(min_length=1, max_length=4000)
    per_plan: bool = Field(description="installed per the installation and commissioning plan")
    by: str = _name()


class PowerOnResult(Form):
    device: str = Field(min_length=1, max_length=120)
    passed: bool
    note: str = Field(default="", max_length=400)


class PowerOn(Form):
    """INS-7: every device powered on and tested per the vendor documents and the plan."""

    results: list[PowerOnResult] = Field(min_length=1)
    by: str = _name()

    @model_validator(mode="after")
    def _once(self) -> PowerOn:
        _unique([r.device for r in self.results], "device")
        return self


# ---------------------------------------------------------------- INS-8 / 9 / 10 / 12
class PartIn(Form):
    model: str = Field(min_length=1, max_length=120)
    serial: str = Field(default="", max_length=120)
    kind: Literal["missing", "broken"]
    quantity: int = Field(default=1, ge=1, le=100_000)
    note: str = Field(default="", max_length=400)


class Parts(Form):
    """INS-8: the missing and broken parts counted during the works (none: an empty list)."""

    issues: list[PartIn] = Field(default_factory=list)
    by: str = _name()


class Movement(Form):
    direction: Literal["in", "out"] = Field(description="in: brought to site; out: used/taken")
    item: str = Field(min_length=1, max_length=200)
    quantity: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    unit: str = Field(default="个", min_length=1, max_length=20)
    on: date
    by: str = _name()
    note: str = Field(default="", max_length=400)


class Count(Form):
    item: str = Field(min_length=1, max_length=200)
    quantity: float = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    unit: str = Field(default="个", min_length=1, max_length=20)


class Leftover(Form):
    """INS-9 with seed 002 §6.3: the spare parts and material in/out records, and the
    leftover counted at the end, which must equal in − out for every item."""

    movements: list[Movement] = Field(min_length=1)
    leftover: list[Count] = Field(default_factory=list)
    by: str = _name()

    @model_validator(mode="after")
    def _once(self) -> Leftover:
        _unique([c.item for c in self.leftover], "leftover item")
        return self


class Cleaning(Form):
    """INS-10: racks and equipment dust-free, the room tidy, no leftovers or debris."""

    racks_dust_free: bool
    room_tidy: bool
    no_leftovers: bool
    note: str = Field(default="", max_length=1000)
    by: str = _name()


class ToolIn(Form):
    tool: str = Field(min_length=1, max_length=120)
    user: str = _name()
    taken_on: date
    returned_on: date
    condition: str = Field(default="good", min_length=1, max_length=120)

    @model_validator(mode="after")
    def _order(self) -> ToolIn:
        if self.returned_on < self.taken_on:
            raise ValueError(f"tool {self.tool}: returned_on is before taken_on")
        return self


class Tools(Form):
    """INS-12: the tool usage record."""

    tools: list[ToolIn] = Field(min_length=1)
    by: str = _name()


class CloseOut(Form):
    """INS-8, INS-9 (with the material in/out), INS-10 and INS-12 side by side: any of
    them in one submission, in any order, until all four are done."""

    parts: Parts | None = None
    leftover: Leftover | None = None
    cleaning: Cleaning | None = None
    tools: Tools | None = None

    @model_validator(mode="after")
    def _something(self) -> CloseOut:
        if all(x is None for x in (self.parts, self.leftover, self.cleaning, self.tools)):
            raise ValueError("parts, leftover, cleaning, tools: give at least one")
        return self


# ---------------------------------------------------------------- INS-11
class Acceptance(Form):
    """INS-11: the system installation acceptance report signed with the customer; the
    installed-equipment list, the asset list and the project documents handed over."""

    accepted: bool = Field(description="the customer accepts the installation")
    customer_signer: str = _name()
    engineer_signer: str = _name()
    project_manager_signer: str = _name()
    handed_over_to: str = Field(
        min_length=1, max_length=120, description="who received the project documents"
    )
    remarks: str = Field(default="", max_length=2000)
    by: str = _name()
