"""The installation project SOP (工程售后部作业指导书, spec §6, INS-1..12) as data: its
steps, who takes them, their forms, what each checks and records, and the messages it
sends. ``flows/installation.py`` orders the steps; the clocks are the policy's (rules
``INS-*`` citing ``installation.<step>`` and ``install-checklist.<step>``), with one difference from every other SOP:
their due times are the project's planned dates (the INS-6 plan), armed by the ``plan``
step with :func:`aftersales.sla.arm_until`; the rule's duration is how long before the
planned date the project manager is reminded. No Prefect here.

A project is a ticket as far as the clock goes (``sla_clock`` is keyed by ticket): each
project has one ``ticket`` row with ``sop = installation`` and the project's id.

Side by side: the work instruction lets cabling, grounding and labels run on different
racks at once, and the close-out records likewise. The ``site-work`` and ``close-out``
steps take any of their sections in one submission; each section is completed as its
own step (``install-checklist.cabling`` …, with its own check, record and clock); the
submission is refused — and asked again, naming what was refused and what is still
open — until every section is done. Acceptance (INS-11) checks that every phase is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from aftersales import sla
from aftersales.forms import Form
from aftersales.forms_installation import (
    Acceptance,
    Cabling,
    Cleaning,
    CloseOut,
    Grounding,
    Install,
    Labels,
    Leftover,
    Parts,
    PowerOn,
    SiteWork,
    SystemInstall,
    Tools,
    Unboxing,
)
from aftersales.sla import Deadlines
from aftersales.steps import Message, SopSpec, Step, StepContext, StepOutcome
from models.entities import Channel, SlaClock, Sop, StepRecord, Ticket, TicketStatus
from models.installation import (
    PHASES,
    Cable,
    EquipmentLine,
    EquipmentUnit,
    GroundMeasurement,
    InstallationProject,
    MaterialRecord,
    PartIssue,
    Phase,
    PlannedPhase,
    ProjectCreate,
    Rack,
    Signature,
    SystemTest,
    ToolUse,
    Tray,
)

log = logging.getLogger("aftersales.installation")

SOP = "installation"
CHECKLIST = "install-checklist"  # the side-by-side steps (see INSTALL_CHECKLIST)
START_EVENT = "aftersales.installation.started"
#: Ω: INS-4 "separate ground resistance < 1 Ω"
GROUND_LIMIT_OHMS = 1.0
#: the steps that run side by side, by the step that takes them
SITE_WORK = (Phase.CABLING, Phase.GROUNDING, Phase.LABELS)
CLOSE_OUT = (Phase.PARTS, Phase.LEFTOVER, Phase.CLEANING, Phase.TOOLS)


class ProjectError(ValueError):
    """A project that cannot be created; the message names the field and the rule."""


# ---------------------------------------------------------------- the project
def get_project(session: Session, *, project_id: str) -> InstallationProject:
    from models.repository import NotFoundError

    p = session.get(InstallationProject, project_id)
    if p is None:
        raise NotFoundError(f"installation project {project_id!r} does not exist")
    return p


def planned_at(when: datetime | date, *, tz: Any, day_end: time) -> datetime:
    """A planned date is due at the end of that working day; a time is taken as given."""
    if isinstance(when, datetime):
        return when
    return datetime.combine(when, day_end, tzinfo=tz)


def open_project(
    session: Session, *, data: ProjectCreate, deadlines: Deadlines, now: datetime
) -> InstallationProject:
    """Store the project, its plan (a date alone is due at the end of that day's working
    hours) and equipment list, and its ticket (the clocks' key), and queue the event that
    starts its run, in the caller's transaction."""
    from aftersales.settings import get_settings
    from aftersales.steps import queue_event

    tz, day_end = deadlines.calendar.tz, get_settings().work_periods()[-1][1]

    if session.get(InstallationProject, data.id) or session.get(Ticket, data.id):
        raise ProjectError(f"id: project {data.id!r} already exists")
    ticket = Ticket(
        id=data.id,
        intake_key=f"installation:{data.id}",
        sop=Sop.INSTALLATION,
        channel=Channel.ONLINE,
        customer_name=data.customer,
        contact=data.customer_contact,
        product_model="installation project",
        description=f"{data.name} · {data.site}",
        service_city=data.city,
        status=TicketStatus.IN_PROGRESS,
        created_at=now,
        handler=data.project_manager,
        owner_team="project-management",
    )
    session.add(ticket)
    session.flush()
    project = InstallationProject(
        **data.model_dump(exclude={"id", "plan", "equipment"}),
        id=data.id,
        ticket_id=ticket.id,
        created_at=now,
    )
    session.add(project)
    session.flush()
    for phase, when in data.plan.items():
        session.add(
            PlannedPhase(
                project_id=data.id,
                phase=phase.value,
                clause=PHASES[phase][0],
                planned_at=planned_at(when, tz=tz, day_end=day_end),
            )
        )
    for line in data.equipment:
        session.add(
            EquipmentLine(
                project_id=data.id,
                **line.model_dump(exclude={"serials", "kind"}),
                kind=str(line.kind),
                expected_serials=line.serials,
            )
        )
    queue_event(
        session,
        event=START_EVENT,
        ticket_id=ticket.id,
        payload={"ticket_id": ticket.id, "project": data.id, "sop": SOP},
        now=now,
    )
    session.flush()
    log.info("installation project %s opened (%s lines)", data.id, len(data.equipment))
    return project


def documents_dir(project_id: str) -> Path:
    """Where the project's documents are written (``$AFTERSALES_HOME/installations/<id>``)."""
    from aftersales.settings import get_settings

    return get_settings().home / "installations" / project_id


def _project(sc: StepContext) -> InstallationProject:
    p = sc.session.exec(
        select(InstallationProject).where(InstallationProject.ticket_id == sc.ticket.id)
    ).first()
    assert p is not None, f"ticket {sc.ticket.id} has no installation project"
    return p


def _sign(sc: StepContext, pid: str, document: str, signers: dict[str, str]) -> None:
    for role, name in signers.items():
        row = sc.session.exec(
            select(Signature).where(
                Signature.project_id == pid, Signature.document == document, Signature.role == role
            )
        ).first()
        row = row or Signature(project_id=pid, document=document, role=role, name=name)
        row.name, row.signed_at = name, sc.now
        sc.session.add(row)


def _refuse(problems: list[str]) -> StepOutcome:
    return StepOutcome(done=False, reason="; ".join(problems))


def installed_units(session: Session, pid: str) -> list[EquipmentUnit]:
    """The units placed in a rack at INS-2: the machines and I/O terminals of INS-4/INS-7."""
    return list(
        session.exec(
            select(EquipmentUnit)
            .where(EquipmentUnit.project_id == pid, EquipmentUnit.rack.is_not(None))
            .order_by(EquipmentUnit.rack, EquipmentUnit.position, EquipmentUnit.serial)
        ).all()
    )


# ---------------------------------------------------------------- INS-6 (before): the plan
def plan(sc: StepContext) -> StepOutcome:
    """INS-6: the installation and commissioning plan's date of each phase becomes the
    phase's clock; the project manager is reminded the rule's duration before it."""
    p = _project(sc)
    profile, scale = sc.deadlines.profile, sc.deadlines.time_scale
    for ph in sc.session.exec(select(PlannedPhase).where(PlannedPhase.project_id == p.id)).all():
        rule = profile.rules.get(ph.clause)
        if rule is None or not rule.arms_clock:
            continue
        lead = rule.natural_delta(sc.deadlines.calendar.working_day_seconds() / 3600) / scale
        sla.arm_until(
            sc.session,
            ctx=sc.deadlines,
            ticket_id=sc.ticket.id,
            rule_id=rule.id,
            start=sc.now,
            due=ph.planned_at,
            remind_at=ph.planned_at - lead,
        )
    return StepOutcome()


# ---------------------------------------------------------------- INS-1
def unboxing(sc: StepContext) -> StepOutcome:
    """INS-1: every unit of the delivery checked against the contract list. An input
    error (a unit of no contract line, a unit present without its serial number) refuses
    the submission; what does not match (boxes, quantity, a serial the delivery note does
    not name, a damaged or missing unit) goes into the missing/broken parts report that
    the customer, the engineer and the third party sign with the unboxing report."""
    form = sc.form
    assert isinstance(form, Unboxing)
    p, s = _project(sc), sc.session
    lines = {
        ln.line_no: ln
        for ln in s.exec(select(EquipmentLine).where(EquipmentLine.project_id == p.id)).all()
    }
    problems = []
    for i, u in enumerate(form.units):
        if u.line_no not in lines:
            problems.append(f"units[{i}].line_no: the contract list has no line {u.line_no}")
        elif u.condition != "missing" and not u.serial:
            problems.append(
                f"units[{i}].serial: every unit unboxed gets its serial number "
                f"(line {u.line_no}, {lines[u.line_no].model})"
            )
    if problems:
        return _refuse(problems)
    issues: list[PartIssue] = []

    def issue(
        kind: str, model: str = "", serial: str = "", quantity: int = 1, note: str = ""
    ) -> None:
        issues.append(
            PartIssue(
                project_id=p.id,
                phase="unboxing",
                kind=kind,
                model=model,
                serial=serial,
                quantity=quantity,
                note=note,
                recorded_at=sc.now,
            )  # fmt: skip
        )

    if form.boxes_counted != form.delivery_note_boxes:
        issue("box_count", quantity=abs(form.delivery_note_boxes - form.boxes_counted),
              note=f"清点 {form.boxes_counted} 箱，发货单 {form.delivery_note_boxes} 箱")  # fmt: skip
    for no, line in sorted(lines.items()):
        mine = [u for u in form.units if u.line_no == no]
        present = [u for u in mine if u.condition != "missing"]
        if len(present) < line.quantity:
            issue("missing", line.model, quantity=line.quantity - len(present),
                  note=f"合同第 {no} 行 {line.quantity} {line.unit}，到货 {len(present)}")  # fmt: skip
        elif len(present) > line.quantity:
            issue("extra", line.model, quantity=len(present) - line.quantity,
                  note=f"合同第 {no} 行 {line.quantity} {line.unit}，到货 {len(present)}")  # fmt: skip
        expected = list(line.expected_serials)
        unmatched = [x for x in expected if x not in {u.serial for u in present}]
        for u in present:
            if expected and u.serial not in expected:
                issue("serial_mismatch", line.model, u.serial,
                      note=f"序列号不符：发货单为 {', '.join(unmatched) or '-'}")  # fmt: skip
            if u.condition == "damaged":
                issue("broken", line.model, u.serial, note=u.note)
            s.add(
                EquipmentUnit(
                    project_id=p.id,
                    line_no=no,
                    model=line.model,
                    kind=line.kind,
                    serial=u.serial,
                    condition=u.condition,
                )  # fmt: skip
            )
    s.add_all(issues)
    p.delivery_note_boxes, p.boxes_counted, p.packaging = (
        form.delivery_note_boxes, form.boxes_counted, form.packaging,
    )  # fmt: skip
    s.add(p)
    signers = {"customer": form.customer_signer, "engineer": form.engineer_signer,
               "third_party": form.third_party_signer}  # fmt: skip
    _sign(sc, p.id, "unboxing", signers)
    _sign(sc, p.id, "parts", signers)
    return StepOutcome()


# ---------------------------------------------------------------- INS-2
def install(sc: StepContext) -> StepOutcome:
    """INS-2: racks, devices and trays installed per the design (fixed against vibration);
    every unit unboxed in good condition is placed in a rack; the design's cables."""
    form = sc.form
    assert isinstance(form, Install)
    p, s = _project(sc), sc.session
    units = {
        u.serial: u
        for u in s.exec(select(EquipmentUnit).where(EquipmentUnit.project_id == p.id)).all()
    }
    racks = {r.code for r in form.racks}
    problems = []
    if not form.per_design:
        problems.append(
            "per_design: INS-2 installs per the telecom/vendor standards and the design"
        )
    problems += [
        f"racks: {r.code} is not fixed against vibration (anti_vibration)"
        for r in form.racks
        if not r.anti_vibration
    ]
    for d in form.devices:
        if d.serial not in units:
            problems.append(f"devices: {d.serial} is no unit unboxed at INS-1")
        if d.rack not in racks:
            problems.append(f"devices: {d.serial} is placed in rack {d.rack}, which is not listed")
    placed = {d.serial for d in form.devices}
    problems += [
        f"devices: {u.serial} ({u.model}) unboxed in good condition but not placed"
        for u in units.values()
        if u.condition == "ok" and u.serial not in placed
    ]
    if problems:
        return _refuse(problems)
    for r in form.racks:
        s.add(Rack(project_id=p.id, code=r.code, location=r.location, anti_vibration=True))
    for t in form.trays:
        s.add(Tray(project_id=p.id, code=t.code, kind=t.kind))
    for d in form.devices:
        u = units[d.serial]
        u.rack, u.position = d.rack, d.position
        s.add(u)
    for c in form.cables:
        s.add(Cable(project_id=p.id, code=c.code, kind=c.kind, end_a=c.end_a, end_b=c.end_b))
    p.installed_per_design = True
    s.add(p)
    return StepOutcome()


# ---------------------------------------------------------------- INS-3
def cabling(sc: StepContext) -> StepOutcome:
    """INS-3: every cable of the design laid in a tray of its own kind (power and signal
    never bundled together, in separate trays), neat, without kinks or cuts."""
    form = sc.form
    assert isinstance(form, Cabling)
    p, s = _project(sc), sc.session
    cables = {c.code: c for c in s.exec(select(Cable).where(Cable.project_id == p.id)).all()}
    trays = {t.code: t for t in s.exec(select(Tray).where(Tray.project_id == p.id)).all()}
    problems = [] if form.per_standard else ["per_standard: INS-3 follows the national standards"]
    for c in form.cables:
        cable, tray = cables.get(c.cable), trays.get(c.tray)
        if cable is None:
            problems.append(f"cables: {c.cable} is not a cable of the design (INS-2)")
            continue
        if tray is None:
            problems.append(f"cables: {c.cable} runs in tray {c.tray}, which was not installed")
        elif tray.kind != cable.kind:
            problems.append(
                f"cables: {c.cable} ({cable.kind}) runs in {tray.kind} tray {tray.code}: power "
                "and signal cables run in separate trays"
            )
        if c.bundled_with_other_kind:
            problems.append(f"cables: {c.cable} is bundled with a cable of the other kind")
        if not c.neat:
            problems.append(f"cables: {c.cable} is not neat (kinks or cuts)")
    laid = {c.cable for c in form.cables}
    problems += [f"cables: {code} has no checklist row" for code in cables if code not in laid]
    if problems:
        return _refuse(problems)
    for c in form.cables:
        cable = cables[c.cable]
        cable.tray, cable.neat = c.tray, True
        s.add(cable)
    return StepOutcome()


# ---------------------------------------------------------------- INS-4
def grounding(sc: StepContext) -> StepOutcome:
    """INS-4: a protective-earth resistance for every installed machine and I/O terminal,
    each < 1 Ω. A value >= 1 Ω refuses the step naming the device and the value, and is
    recorded as a defect to fix and measure again; a device without a value refuses it
    too. A passing value later fixes the device's open defects."""
    form = sc.form
    assert isinstance(form, Grounding)
    p, s = _project(sc), sc.session
    devices = {u.serial: u for u in installed_units(s, p.id)}
    given = {m.device: m for m in form.measurements}
    problems = [f"measurements: {d} is not an installed device" for d in given if d not in devices]
    missing = [d for d in devices if d not in given]
    if missing:
        problems.append("measurements: no ground resistance for " + ", ".join(missing))
    failing = [m for m in form.measurements if m.device in devices and m.ohms >= GROUND_LIMIT_OHMS]
    problems += [
        f"{m.device} ({devices[m.device].model}): {m.ohms:g} Ω >= {GROUND_LIMIT_OHMS:g} Ω; "
        "fix the earth and measure again"
        for m in failing
    ]
    for m in failing:  # the defect stays on record until a passing value fixes it
        s.add(GroundMeasurement(project_id=p.id, device=m.device, ohms=m.ohms, passed=False,
                                measured_by=form.by, instrument=form.instrument,
                                measured_at=sc.now))  # fmt: skip
    if problems:
        return _refuse(problems)
    for m in form.measurements:
        row = GroundMeasurement(project_id=p.id, device=m.device, ohms=m.ohms, passed=True,
                                measured_by=form.by, instrument=form.instrument,
                                measured_at=sc.now)  # fmt: skip
        s.add(row)
        s.flush()
        for defect in open_defects(s, p.id, device=m.device):
            defect.fixed_by_id = row.id
            s.add(defect)
    return StepOutcome()


def open_defects(session: Session, pid: str, device: str | None = None) -> list[GroundMeasurement]:
    q = select(GroundMeasurement).where(
        GroundMeasurement.project_id == pid,
        GroundMeasurement.passed.is_(False),
        GroundMeasurement.fixed_by_id.is_(None),
    )
    if device is not None:
        q = q.where(GroundMeasurement.device == device)
    return list(session.exec(q.order_by(GroundMeasurement.id)).all())


# ---------------------------------------------------------------- INS-5
def labels(sc: StepContext) -> StepOutcome:
    """INS-5: every rack, every device and both ends of every cable labelled clearly,
    correctly and firmly: a checklist row for each, all ticked."""
    form = sc.form
    assert isinstance(form, Labels)
    p, s = _project(sc), sc.session
    racks = {r.code: r for r in s.exec(select(Rack).where(Rack.project_id == p.id)).all()}
    devices = {u.serial: u for u in installed_units(s, p.id)}
    cables = {c.code: c for c in s.exec(select(Cable).where(Cable.project_id == p.id)).all()}
    problems = (
        []
        if form.clear_correct_firm
        else ["clear_correct_firm: labels must be clear, correct and firm"]
    )
    rows = {r.code: r for r in form.racks}
    problems += [f"racks: {c} has no label" for c in racks if not (c in rows and rows[c].labelled)]
    problems += [f"racks: {c} is not a rack of the project" for c in rows if c not in racks]
    drows = {d.code: d for d in form.devices}
    problems += [
        f"devices: {d} has no label" for d in devices if not (d in drows and drows[d].labelled)
    ]
    problems += [f"devices: {d} is not an installed device" for d in drows if d not in devices]
    crows = {c.cable: c for c in form.cables}
    for code in cables:
        row = crows.get(code)
        ends = [e for e, ok in (("A", row and row.end_a), ("B", row and row.end_b)) if not ok]
        if ends:
            problems.append(f"cables: {code} end {' and '.join(ends)} not labelled")
    problems += [f"cables: {c} is not a cable of the design" for c in crows if c not in cables]
    if problems:
        return _refuse(problems)
    for r in racks.values():
        r.labelled = True
        s.add(r)
    for d in devices.values():
        d.labelled = True
        s.add(d)
    for c in cables.values():
        c.labelled_a = c.labelled_b = True
        s.add(c)
    return StepOutcome()


# ---------------------------------------------------------------- INS-6 (after) / INS-7
def system(sc: StepContext) -> StepOutcome:
    """INS-6: installed per the plan; the installation test record (every item passed)
    and the commissioning report."""
    form = sc.form
    assert isinstance(form, SystemInstall)
    p, s = _project(sc), sc.session
    problems = [] if form.per_plan else ["per_plan: INS-6 installs per the commissioning plan"]
    problems += [
        f"tests: {t.item} failed ({t.result}); fix and test again"
        for t in form.tests
        if not t.passed
    ]
    if problems:
        return _refuse(problems)
    for t in form.tests:
        s.add(
            SystemTest(project_id=p.id, item=t.item, result=t.result, passed=True, tested_at=sc.now)
        )
    p.tested_by, p.software, p.commissioning_summary = (
        form.by,
        form.software,
        form.commissioning_summary,
    )
    s.add(p)
    _sign(sc, p.id, "test_record", {"engineer": form.by})
    _sign(sc, p.id, "commissioning", {"engineer": form.by})
    return StepOutcome()


def power_on(sc: StepContext) -> StepOutcome:
    """INS-7: every installed device powered on and tested; a failure refuses naming it."""
    form = sc.form
    assert isinstance(form, PowerOn)
    p, s = _project(sc), sc.session
    devices = {u.serial: u for u in installed_units(s, p.id)}
    given = {r.device: r for r in form.results}
    problems = [f"results: {d} is not an installed device" for d in given if d not in devices]
    missing = [d for d in devices if d not in given]
    if missing:
        problems.append("results: no power-on test for " + ", ".join(missing))
    problems += [
        f"results: {r.device} failed the power-on test ({r.note or 'no note'})"
        for r in form.results
        if r.device in devices and not r.passed
    ]
    if problems:
        return _refuse(problems)
    for serial, u in devices.items():
        u.power_on_passed, u.power_on_note, u.power_on_at = True, given[serial].note, sc.now
        s.add(u)
    return StepOutcome()


# ---------------------------------------------------------------- INS-8 / 9 / 10 / 12
def parts(sc: StepContext) -> StepOutcome:
    """INS-8: the missing and broken parts counted during the works join the report."""
    form = sc.form
    assert isinstance(form, Parts)
    p = _project(sc)
    for i in form.issues:
        sc.session.add(PartIssue(project_id=p.id, phase="parts", kind=i.kind, model=i.model,
                                 serial=i.serial, quantity=i.quantity, note=i.note,
                                 recorded_at=sc.now))  # fmt: skip
    _sign(sc, p.id, "parts", {"counted_by": form.by})
    return StepOutcome()


def leftover(sc: StepContext) -> StepOutcome:
    """INS-9 / seed 002 §6.3: the material in/out records; the leftover counted of every
    item equals what came in minus what went out."""
    form = sc.form
    assert isinstance(form, Leftover)
    p = _project(sc)
    balance: dict[str, float] = {}
    units: dict[str, str] = {}
    for m in form.movements:
        balance[m.item] = balance.get(m.item, 0.0) + (
            m.quantity if m.direction == "in" else -m.quantity
        )
        units.setdefault(m.item, m.unit)
    counted = {c.item: c for c in form.leftover}
    problems = [f"movements: {item} went out more than came in ({-b:g} {units[item]})"
                for item, b in balance.items() if b < 0]  # fmt: skip
    problems += [
        f"leftover: {item} has no in/out record" for item in counted if item not in balance
    ]
    for item, b in balance.items():
        got = counted[item].quantity if item in counted else 0.0
        if abs(got - b) > 1e-9:
            problems.append(f"leftover: {item} counted {got:g}, in − out = {b:g} {units[item]}")
    if problems:
        return _refuse(problems)
    for m in form.movements:
        sc.session.add(MaterialRecord(project_id=p.id, direction=m.direction, item=m.item,
                                      quantity=m.quantity, unit=m.unit, on=m.on, by=m.by,
                                      note=m.note))  # fmt: skip
    for c in form.leftover:
        sc.session.add(MaterialRecord(project_id=p.id, direction="leftover", item=c.item,
                                      quantity=c.quantity, unit=c.unit, by=form.by))  # fmt: skip
    _sign(sc, p.id, "materials", {"counted_by": form.by})
    return StepOutcome()


def cleaning(sc: StepContext) -> StepOutcome:
    """INS-10: racks and equipment dust-free, the room tidy, no leftovers or debris."""
    form = sc.form
    assert isinstance(form, Cleaning)
    missing = [n for n in ("racks_dust_free", "room_tidy", "no_leftovers") if not getattr(form, n)]
    if missing:
        return _refuse([f"{n}: INS-10 requires it before acceptance" for n in missing])
    p = _project(sc)
    p.cleaned_by, p.cleaning_note = form.by, form.note
    sc.session.add(p)
    return StepOutcome()


def tools(sc: StepContext) -> StepOutcome:
    """INS-12: the tool usage record."""
    form = sc.form
    assert isinstance(form, Tools)
    p = _project(sc)
    for t in form.tools:
        sc.session.add(ToolUse(project_id=p.id, **t.model_dump()))
    _sign(sc, p.id, "tools", {"recorded_by": form.by})
    return StepOutcome()


# ---------------------------------------------------------------- side by side
def done_steps(session: Session, ticket_id: str) -> dict[str, StepRecord]:
    """The installation steps recorded for the project, by step id."""
    rows = session.exec(
        select(StepRecord).where(
            StepRecord.ticket_id == ticket_id, StepRecord.sop.in_([SOP, CHECKLIST])
        )
    ).all()
    return {r.step: r for r in rows}


def _side_by_side(sections: tuple[Phase, ...]) -> Callable[[StepContext], StepOutcome]:
    """The apply of a step that takes several side-by-side steps in any order: each
    section given is completed as its own step; done when all are recorded."""

    def apply(sc: StepContext) -> StepOutcome:
        from aftersales.steps import complete
        from models.repository import get_sop_run

        form = sc.form
        assert form is not None
        run = get_sop_run(sc.session, ticket_id=sc.ticket.id, sop=Sop.INSTALLATION)
        refused, ignored = [], []
        for phase in sections:
            section = getattr(form, phase.value.replace("-", "_"))
            if section is None:
                continue
            r = complete(sc.session, deadlines=sc.deadlines, sop=CHECKLIST, step=phase.value,
                         ticket_id=sc.ticket.id, now=sc.now, form=section,
                         actor=section.by, flow_run_id=run.flow_run_id if run else None)  # fmt: skip
            if r.already:
                ignored.append(phase.value)
            elif not r.done:
                refused.append(f"{phase.value} refused: {r.reason}")
        done = done_steps(sc.session, sc.ticket.id)
        still = [ph.value for ph in sections if ph.value not in done]
        if still:
            notes = refused + [f"still open: {', '.join(still)}"]
            if ignored:
                notes.append(f"already recorded, not changed: {', '.join(ignored)}")
            return _refuse(notes)
        return StepOutcome()

    return apply


# ---------------------------------------------------------------- INS-11
def acceptance(sc: StepContext) -> StepOutcome:
    """INS-11: only after every other phase is done; the customer accepts and signs the
    system installation acceptance report; the documents are handed over (the flow
    builds them and the archive from the records)."""
    form = sc.form
    assert isinstance(form, Acceptance)
    p = _project(sc)
    done = done_steps(sc.session, sc.ticket.id)
    open_ = [ph.value for ph in Phase if ph is not Phase.ACCEPTANCE and ph.value not in done]
    if open_:
        return _refuse([f"phases not done yet: {', '.join(open_)}"])
    defects = open_defects(sc.session, p.id)
    if defects:
        return _refuse([f"ground defects open: {', '.join(d.device for d in defects)}"])
    if not form.accepted:
        return _refuse([f"accepted: the customer did not accept ({form.remarks or 'no remarks'})"])
    p.accepted_at, p.acceptance_remarks, p.handed_over_to = (
        sc.now,
        form.remarks,
        form.handed_over_to,
    )
    sc.session.add(p)
    _sign(sc, p.id, "acceptance", {"customer": form.customer_signer,
                                    "engineer": form.engineer_signer,
                                    "project_manager": form.project_manager_signer})  # fmt: skip
    t = sc.ticket
    t.status, t.resolved_at = TicketStatus.RESOLVED, t.resolved_at or sc.now
    t.result = f"installation accepted by {form.customer_signer}"
    sc.session.add(t)
    return StepOutcome()


# ---------------------------------------------------------------- progress
@dataclass(frozen=True)
class PhaseProgress:
    """One phase of the project's progress table."""

    phase: str
    clause: str
    title: str
    planned: datetime | None
    state: str  # done | done late | overdue | due soon | open
    done_at: datetime | None
    signed_by: str

    def as_row(self, tz: Any) -> dict[str, str]:
        def fmt(t: datetime | None) -> str:
            return t.astimezone(tz).strftime("%Y-%m-%d %H:%M") if t else ""

        return {
            "phase": f"{self.clause} {self.phase}",
            "阶段": self.title,
            "planned": fmt(self.planned),
            "state": self.state,
            "done": fmt(self.done_at),
            "signed by": self.signed_by,
        }


SIGNATURE_DOCUMENT = {
    Phase.UNBOXING: "unboxing",
    Phase.SYSTEM: "test_record",
    Phase.PARTS: "parts",
    Phase.LEFTOVER: "materials",
    Phase.TOOLS: "tools",
    Phase.ACCEPTANCE: "acceptance",
}


def progress(session: Session, *, project_id: str) -> list[PhaseProgress]:
    """Each phase with its planned date, its state (from its clock and its step record)
    and who signed (the document's signers, or who completed the step)."""
    p = get_project(session, project_id=project_id)
    plan = {
        ph.phase: ph
        for ph in session.exec(select(PlannedPhase).where(PlannedPhase.project_id == p.id)).all()
    }
    clocks = {
        c.clause: c
        for c in session.exec(select(SlaClock).where(SlaClock.ticket_id == p.ticket_id)).all()
    }
    done = done_steps(session, p.ticket_id)
    sigs: dict[str, list[Signature]] = {}
    for sg in session.exec(select(Signature).where(Signature.project_id == p.id)).all():
        sigs.setdefault(sg.document, []).append(sg)
    out = []
    for phase, (clause, title) in PHASES.items():
        rec, clock, ph = done.get(phase.value), clocks.get(clause), plan.get(phase.value)
        planned = ph.planned_at if ph else None
        if rec is not None:
            state = "done late" if planned and rec.completed_at > planned else "done"
        elif clock is not None and str(clock.state) == "breached":
            state = "overdue"
        elif clock is not None and str(clock.state) == "reminded":
            state = "due soon"
        else:
            state = "open"
        doc = SIGNATURE_DOCUMENT.get(phase)
        signed = ", ".join(f"{s.role}: {s.name}" for s in sigs.get(doc, [])) if doc else ""
        if not signed and rec is not None:
            signed = rec.actor
        out.append(PhaseProgress(phase.value, clause, title, planned, state,
                                 rec.completed_at if rec else None, signed))  # fmt: skip
    return out


def _phase(phase: Phase, summary: str, form: type[Form], apply: Any) -> Step:
    return Step(phase.value, "tech_support", summary, form, apply=apply)


#: the flow's steps, in the work instruction's order
INSTALLATION = SopSpec(
    name=SOP,
    title="Installation project (工程项目), spec §6",
    steps=(
        Step("plan", "system", "INS-6: the installation and commissioning plan: each phase's "
             "planned date is its clock", apply=plan),
        _phase(Phase.UNBOXING, "INS-1: boxes against the delivery note, every unit's serial "
               "against the contract list; customer, engineer and third party sign", Unboxing,
               unboxing),
        _phase(Phase.INSTALL, "INS-2: racks, devices and trays installed per the design; the "
               "design's cables with both ends", Install, install),
        Step("site-work", "tech_support", "INS-3/INS-4/INS-5 side by side: cabling, grounding "
             "(every device < 1 Ω) and labels, in any order, any of them per submission",
             SiteWork, apply=_side_by_side(SITE_WORK)),
        _phase(Phase.SYSTEM, "INS-6: installed per the plan; installation test record and "
               "commissioning report", SystemInstall, system),
        _phase(Phase.POWER_ON, "INS-7: every device powered on and tested", PowerOn, power_on),
        Step("close-out", "tech_support", "INS-8/INS-9/INS-10/INS-12 side by side: missing and "
             "broken parts, material in/out and leftover, cleaning, tools, in any order",
             CloseOut, apply=_side_by_side(CLOSE_OUT)),
        Step(Phase.ACCEPTANCE.value, "project_manager", "INS-11: the customer accepts and "
             "signs; the documents are handed over as one archive", Acceptance,
             apply=acceptance,
             messages=(Message("installation_accepted", "project_manager"),
                       Message("installation_accepted", "customer")),
             close_when=[{"accepted": True}]),
    ),
)  # fmt: skip
#: the steps that run side by side, each its own step (clock, record, check), taken
#: through ``site-work`` and ``close-out``; a spec of their own so that the work queue,
#: which follows a run's declared order, sees the flow's steps only
INSTALL_CHECKLIST = SopSpec(
    name=CHECKLIST,
    title="Installation project: the side-by-side checklists (spec §6)",
    steps=(
        _phase(Phase.CABLING, "INS-3: every cable in a tray of its kind, neat, never bundled "
               "with the other kind", Cabling, cabling),
        _phase(Phase.GROUNDING, "INS-4: ground resistance of every machine and I/O terminal "
               "< 1 Ω", Grounding, grounding),
        _phase(Phase.LABELS, "INS-5: every rack, device and both ends of every cable labelled",
               Labels, labels),
        _phase(Phase.PARTS, "INS-8: missing and broken parts counted", Parts, parts),
        _phase(Phase.LEFTOVER, "INS-9: material in/out; leftover = in − out", Leftover,
               leftover),
        _phase(Phase.CLEANING, "INS-10: racks and room clean, no leftovers", Cleaning, cleaning),
        _phase(Phase.TOOLS, "INS-12: tool usage record", Tools, tools),
    ),
)  # fmt: skip
