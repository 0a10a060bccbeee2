"""The installation project SOP (spec §6) on the step model, without Prefect: each step
driven through ``aftersales.steps.complete`` (the call the flow makes) against a real
database, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from aftersales import forms_installation as fi
from aftersales import sla, steps
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import ClockState, TicketStatus
from models.installation import (
    EquipmentUnit,
    GroundMeasurement,
    PartIssue,
    Phase,
    Signature,
)
from models.repository import clocks_for, escalations_for, get_ticket, notifications_for, sla_board
from tasks.installation import open_project, progress
from tests import installation_sample as sample

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday
FORMS: dict[str, type[Any]] = {
    "unboxing": fi.Unboxing,
    "install": fi.Install,
    "site-work": fi.SiteWork,
    "cabling": fi.Cabling,
    "grounding": fi.Grounding,
    "labels": fi.Labels,
    "system": fi.SystemInstall,
    "power-on": fi.PowerOn,
    "close-out": fi.CloseOut,
    "acceptance": fi.Acceptance,
}


@pytest.fixture
def ctx(any_db: str) -> sla.Deadlines:
    return deadlines("default")


def new_project(
    ctx: sla.Deadlines, pid: str = "P-2026-001", step: timedelta = timedelta(days=1)
) -> str:
    with session_scope() as s:
        open_project(s, data=sample.project_create(pid, T0, step), deadlines=ctx, now=T0)
    do(ctx, pid, "plan", T0)
    return pid


def do(
    ctx: sla.Deadlines,
    pid: str,
    step: str,
    at: datetime,
    data: dict[str, Any] | None = None,
    key: str | None = None,
) -> steps.StepResult:
    form = FORMS[step].model_validate(data) if data is not None else None
    sop = "install-checklist" if step in ("cabling", "grounding", "labels") else "installation"
    with session_scope() as s:
        return steps.complete(
            s, deadlines=ctx, sop=sop, step=step, ticket_id=pid, now=at, form=form, key=key
        )


def through_install(ctx: sla.Deadlines, pid: str) -> None:
    assert do(ctx, pid, "unboxing", T0 + timedelta(hours=2), sample.unboxing()).done
    assert do(ctx, pid, "install", T0 + timedelta(hours=30), sample.install()).done


def test_the_plan_arms_one_clock_per_phase_due_on_its_planned_date_INS_6(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx)
    planned = sample.plan(T0)
    with session_scope() as s:
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=pid)}
        t = get_ticket(s, ticket_id=pid)
    assert set(clocks) == {f"INS-{i}" for i in range(1, 13)}
    assert t.sop == "installation" and t.handler == "项目经理-刘"
    grounding = clocks["INS-4"]
    assert grounding.due_at == datetime.fromisoformat(planned["grounding"])
    # the rule's duration (1 day) is the reminder's lead, not the deadline
    assert grounding.remind_at == grounding.due_at - timedelta(days=1)
    assert all(c.state == ClockState.ARMED for c in clocks.values())


def test_unboxing_puts_serial_and_count_mismatches_into_the_parts_report_with_three_signers_INS_1(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx)
    units = sample.unboxing()["units"]
    units[1] = {"line_no": 1, "serial": "SRV-999", "condition": "ok"}  # not on the note
    units[4] = {"line_no": 2, "serial": "IO-001", "condition": "damaged", "note": "外壳凹陷"}
    units[5] = {"line_no": 2, "condition": "missing"}
    r = do(ctx, pid, "unboxing", T0 + timedelta(hours=2),
           sample.unboxing(units=units, boxes_counted=5))  # fmt: skip
    assert r.done and r.stopped == ("INS-1",)
    with session_scope() as s:
        issues = sorted(
            (i.kind, i.model, i.serial, i.quantity)
            for i in s.exec(select(PartIssue).where(PartIssue.project_id == pid)).all()
        )
        signers = {
            (g.document, g.role): g.name
            for g in s.exec(select(Signature).where(Signature.project_id == pid)).all()
        }
        serials = [u.serial for u in s.exec(select(EquipmentUnit)).all()]
    assert issues == [
        ("box_count", "", "", 1),
        ("broken", "T10", "IO-001", 1),
        ("missing", "T10", "", 1),
        ("serial_mismatch", "X200", "SRV-999", 1),
    ]
    assert signers[("parts", "customer")] == "张伟"
    assert signers[("parts", "engineer")] == "王工"
    assert signers[("parts", "third_party")] == "物流-顺达 赵师傅"
    assert ("unboxing", "third_party") in signers
    assert "SRV-999" in serials and len(serials) == 5


@pytest.mark.parametrize(
    ("units", "reason"),
    [
        ([{"line_no": 1, "serial": "", "condition": "ok"}], "units[0].serial: every unit unboxed"),
        ([{"line_no": 7, "serial": "X", "condition": "ok"}], "units[0].line_no: the contract list"),
    ],
)
def test_unboxing_refuses_a_unit_without_serial_or_contract_line_and_records_nothing_INS_1(
    ctx: sla.Deadlines, units: list[dict[str, Any]], reason: str
) -> None:
    pid = new_project(ctx)
    r = do(ctx, pid, "unboxing", T0, sample.unboxing(units=units))
    assert not r.done and reason in r.reason
    with session_scope() as s:
        assert s.exec(select(EquipmentUnit)).all() == []
        assert s.exec(select(PartIssue)).all() == []
        assert next(c for c in clocks_for(s, ticket_id=pid) if c.rule_id == "INS-1").state == (
            ClockState.ARMED
        )


def test_a_ground_value_of_1_ohm_or_more_is_refused_recorded_as_defect_and_fixed_by_a_new_measurement_INS_4(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx)
    through_install(ctx, pid)
    at = T0 + timedelta(days=3)
    r = do(ctx, pid, "grounding", at, sample.grounding({"SRV-003": 1.4, "IO-002": 1.0}))
    assert not r.done
    assert "SRV-003 (X200): 1.4 Ω >= 1 Ω" in r.reason and "IO-002 (T10): 1 Ω >= 1 Ω" in r.reason
    with session_scope() as s:
        rows = s.exec(select(GroundMeasurement).where(GroundMeasurement.project_id == pid)).all()
        assert sorted((m.device, m.ohms, m.passed) for m in rows) == [
            ("IO-002", 1.0, False),
            ("SRV-003", 1.4, False),
        ]
    # a device left out refuses the step the same way
    partial = sample.grounding()
    partial["measurements"] = partial["measurements"][:-1]
    r = do(ctx, pid, "grounding", at, partial)
    assert not r.done and "no ground resistance for IO-002" in r.reason
    r = do(ctx, pid, "grounding", at + timedelta(hours=1), sample.grounding({"SRV-003": 0.6}))
    assert r.done and r.stopped == ("INS-4",)
    with session_scope() as s:
        rows = s.exec(select(GroundMeasurement).where(GroundMeasurement.project_id == pid)).all()
        defects = [m for m in rows if not m.passed]
        fixes = {m.id: m for m in rows if m.passed}
    assert len(defects) == 2 and all(d.fixed_by_id in fixes for d in defects)
    assert fixes[next(d for d in defects if d.device == "SRV-003").fixed_by_id].ohms == 0.6


def test_site_work_takes_cabling_grounding_and_labels_in_any_order_until_all_are_done_INS_3_4_5(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx)
    through_install(ctx, pid)
    at = T0 + timedelta(days=3)
    r = do(ctx, pid, "site-work", at, {"labels": sample.labels()}, key="site-work")
    assert not r.done and "still open: cabling, grounding" in r.reason
    r = do(ctx, pid, "site-work", at, {"grounding": sample.grounding({"SRV-002": 2.5}),
                                       "cabling": sample.cabling()}, key="site-work-2")  # fmt: skip
    assert not r.done
    assert "grounding refused: SRV-002 (X200): 2.5 Ω >= 1 Ω" in r.reason
    assert "still open: grounding" in r.reason
    r = do(ctx, pid, "site-work", at, {"grounding": sample.grounding()}, key="site-work-3")
    assert r.done
    with session_scope() as s:
        clocks = {c.rule_id: c.state for c in clocks_for(s, ticket_id=pid)}
        rows = {p.phase: p.state for p in progress(s, project_id=pid)}
    assert clocks["INS-3"] == clocks["INS-4"] == clocks["INS-5"] == ClockState.MET
    assert rows["cabling"] == rows["grounding"] == rows["labels"] == "done"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {
                "cables": [
                    {
                        "cable": "PW-R1",
                        "tray": "TS1",
                        "neat": True,
                        "bundled_with_other_kind": False,
                    }
                ]
            },  # fmt: skip
            "PW-R1 (power) runs in signal tray TS1: power and signal cables run in separate trays",
        ),
        (
            {
                "cables": [
                    {
                        "cable": "NET-1",
                        "tray": "TS1",
                        "neat": False,
                        "bundled_with_other_kind": True,
                    }
                ]
            },  # fmt: skip
            "NET-1 is bundled with a cable of the other kind",
        ),
    ],
)
def test_cabling_refuses_mixed_trays_bundles_and_missing_rows_INS_3(
    ctx: sla.Deadlines, change: dict[str, Any], reason: str
) -> None:
    pid = new_project(ctx)
    through_install(ctx, pid)
    r = do(ctx, pid, "cabling", T0 + timedelta(days=3), sample.cabling(**change))
    assert not r.done and reason in r.reason
    assert "PW-R2 has no checklist row" in r.reason


def test_labels_need_both_ends_of_every_cable_INS_5(ctx: sla.Deadlines) -> None:
    pid = new_project(ctx)
    through_install(ctx, pid)
    data = sample.labels()
    data["cables"][2]["end_b"] = False
    r = do(ctx, pid, "labels", T0 + timedelta(days=3), data)
    assert not r.done and r.reason == "cables: NET-1 end B not labelled"


def test_leftover_must_equal_in_minus_out_INS_9(ctx: sla.Deadlines) -> None:
    pid = new_project(ctx)
    data = sample.leftover()
    data["leftover"][0]["quantity"] = 25
    r = do(ctx, pid, "close-out", T0 + timedelta(days=5), {"leftover": data}, key="close-out")
    assert not r.done and "leftover: 超五类网线 counted 25, in − out = 30 米" in r.reason


def test_acceptance_waits_for_every_phase_then_closes_the_project_INS_11(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx)
    through_install(ctx, pid)
    r = do(ctx, pid, "acceptance", T0 + timedelta(days=4), sample.acceptance())
    assert not r.done and "phases not done yet: cabling, grounding, labels, system" in r.reason
    at = T0 + timedelta(days=3)
    assert do(ctx, pid, "site-work", at, {"cabling": sample.cabling(), "grounding":
              sample.grounding(), "labels": sample.labels()}).done  # fmt: skip
    assert do(ctx, pid, "system", at, sample.system()).done
    assert do(ctx, pid, "power-on", at, sample.power_on()).done
    assert do(ctx, pid, "close-out", at, {"parts": sample.parts(), "leftover": sample.leftover(),
              "cleaning": sample.cleaning(), "tools": sample.tools()}).done  # fmt: skip
    r = do(ctx, pid, "acceptance", at, sample.acceptance(accepted=False, remarks="机柜门变形"))
    assert not r.done and "the customer did not accept (机柜门变形)" in r.reason
    r = do(ctx, pid, "acceptance", at, sample.acceptance(), key="acceptance-2")
    assert r.done and r.closed
    with session_scope() as s:
        t = get_ticket(s, ticket_id=pid)
        clocks = clocks_for(s, ticket_id=pid)
        notes = [(n.role, n.template) for n in notifications_for(s, ticket_id=pid)]
        rows = progress(s, project_id=pid)
    assert t.status == TicketStatus.CLOSED
    assert {c.state for c in clocks} == {ClockState.MET}  # every phase before its date
    assert notes == [("project_manager", "installation_accepted"),
                     ("customer", "installation_accepted")]  # fmt: skip
    assert [r.state for r in rows] == ["done"] * len(Phase)
    accept = next(r for r in rows if r.phase == "acceptance")
    assert accept.signed_by == "customer: 张伟, engineer: 王工, project_manager: 项目经理-刘"


def test_a_phase_past_its_planned_date_reminds_the_project_manager_then_escalates_and_shows_on_the_board_INS_6(
    ctx: sla.Deadlines,
) -> None:
    pid = new_project(ctx, step=timedelta(days=2))  # INS-1 due T0 + 2 days, reminded 1 day before
    due = datetime.fromisoformat(sample.plan(T0, timedelta(days=2))["unboxing"])
    with session_scope() as s:
        rep = sla.fire_due(s, ctx=ctx, now=due - timedelta(hours=2))
    assert len(rep.reminded) == 1 and not rep.breached
    with session_scope() as s:
        rep = sla.fire_due(s, ctx=ctx, now=due + timedelta(minutes=5))
    assert len(rep.breached) == 1
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=pid)
        notes = [(n.role, n.template) for n in notifications_for(s, ticket_id=pid)]
        board = {r.ticket_id: r for r in sla_board(s)}
        rows = {p.phase: p.state for p in progress(s, project_id=pid)}
    assert [(e.rule_id, e.escalated_to, e.level) for e in esc] == [
        ("INS-1", "cs_manager", "normal")
    ]
    assert notes == [
        ("project_manager", "reminder"),
        ("tech_support", "reminder"),
        ("cs_manager", "phase_overdue"),
    ]
    assert board[pid].state == "breached" and board[pid].owner == "项目经理-刘"
    assert rows["unboxing"] == "overdue" and rows["install"] == "open"
