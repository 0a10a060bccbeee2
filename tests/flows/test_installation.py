"""An installation project end to end (spec §6) on a real Prefect server, runner, SLA
service, database (SQLite and PostgreSQL) and HTTP sink: the project is created from a
contract equipment list (CSV) by the CLI, its run ``install-<id>`` takes every step
through the forms people submit, the unboxing phase passes its planned date and is
escalated to the customer service centre, a failing ground value is refused and measured
again, and the signed acceptance hands over the documents as one archive."""

from __future__ import annotations

import json
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from aftersales.clock import get_clock
from aftersales.humansteps import resume_step
from models.db import session_scope
from models.entities import ClockState, TicketStatus
from models.installation import GroundMeasurement
from models.repository import clocks_for, get_sop_run, get_ticket
from tasks.installation import documents_dir
from tests import installation_sample as sample
from tests.conftest import Stack
from tests.flows.test_end_to_end import escalations, flow_run, notes, submit, wait, waits_for

pytestmark = pytest.mark.e2e


def artifacts(prefix: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.request(
            "POST",
            "/artifacts/filter",
            json={"artifacts": {"key": {"like_": prefix}}, "sort": "CREATED_DESC", "limit": 200},
        ).json()


def create_from_files(tmp: Path, pid: str, unboxing_in: timedelta) -> dict[str, Any]:
    """The project header (YAML) and the contract equipment list (CSV, Chinese headers)."""
    now = get_clock().now()
    head = sample.project(pid, now + timedelta(days=2))
    head["plan"]["unboxing"] = (now + unboxing_in).isoformat()  # due during the test
    del head["equipment"]
    (tmp / "project.yaml").write_text(yaml.safe_dump(head, allow_unicode=True), encoding="utf-8")
    (tmp / "equipment.csv").write_text(
        "序号,型号,名称,数量,单位,类型,序列号\n"
        "1,X200,服务器,4,台,device,SRV-001;SRV-002;SRV-003;SRV-004\n"
        "2,T10,I/O终端,2,台,io_terminal,\n",
        encoding="utf-8",
    )
    from aftersales.cli import app as cli

    res = CliRunner().invoke(
        cli,
        [
            "project",
            "create",
            "--project",
            str(tmp / "project.yaml"),
            "--equipment",
            str(tmp / "equipment.csv"),
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


def test_installation_project_from_equipment_list_to_signed_acceptance_INS_1_to_INS_12(
    stack: Stack, tmp_path: Path
) -> None:
    pid = f"P-E2E-{stack.backend.upper()}-{time.time_ns() % 10**6}"
    created = create_from_files(tmp_path, pid, unboxing_in=timedelta(seconds=12))
    assert created == {"project": pid, "ticket_id": pid, "lines": 2, "units": 6,
                       "run": f"install-{pid}"}  # fmt: skip

    # INS-1's planned date passes before the unboxing is entered: the customer service
    # centre's manager is escalated to, through the escalation process
    wait(
        lambda: any(pid in str(m.body) for m in stack.sink.messages("/cs_manager")),
        120,
        "the INS-1 overdue escalation at the CS manager's sink",
    )
    submit(pid, "step-in", {"by": "客服经理-孙", "action": "与工程师重新安排开箱时间并告知客户"})

    submit(pid, "unboxing", sample.unboxing())
    submit(pid, "install", sample.install())
    # side by side, in any order: labels first, then cabling with a failing ground value
    submit(pid, "site-work", {"labels": sample.labels()})
    submit(pid, "site-work-2", {"cabling": sample.cabling(),
                                "grounding": sample.grounding({"SRV-003": 1.3})})  # fmt: skip
    submit(pid, "site-work-3", {"grounding": sample.grounding({"SRV-003": 0.8})})
    submit(pid, "system", sample.system())
    submit(pid, "power-on", sample.power_on())
    submit(pid, "close-out", {"tools": sample.tools(), "cleaning": sample.cleaning()})
    submit(pid, "close-out-2", {"parts": sample.parts(), "leftover": sample.leftover()})
    wait(lambda: waits_for(pid, "acceptance"), 120, "the run waiting for acceptance")
    with pytest.raises(Exception, match="customer_signer"):  # the form is checked first
        resume_step(pid, "acceptance", {"accepted": True})
    submit(pid, "acceptance", sample.acceptance())

    with session_scope() as s:
        run = get_sop_run(s, ticket_id=pid, sop="installation")
    assert run is not None
    wait(lambda: flow_run(run.flow_run_id).state.is_completed(), 180, "the project run completed")
    fr = flow_run(run.flow_run_id)
    assert fr.name == f"install-{pid}" and "sop:installation" in fr.tags

    with session_scope() as s:
        t = get_ticket(s, ticket_id=pid)
        clocks = {c.rule_id: c for c in clocks_for(s, ticket_id=pid) if c.instance == 0}
        grounds = s.exec(select(GroundMeasurement).where(GroundMeasurement.project_id == pid))
        defects = [(g.device, g.ohms, g.fixed_by_id is not None) for g in grounds if not g.passed]
    assert t.status == TicketStatus.CLOSED
    assert clocks["INS-1"].state == ClockState.BREACHED
    assert {c.state for r, c in clocks.items() if r != "INS-1"} == {ClockState.MET}
    assert defects == [("SRV-003", 1.3, True)]
    assert escalations(pid) == [("INS-1", "cs_manager", "acted")]
    assert notes(pid) == [
        ("cs_manager", "phase_overdue"),  # INS-1 past its planned date
        ("handler", "escalation_progress"),  # the CS manager stepped in
        ("project_manager", "installation_accepted"),  # INS-11
        ("customer", "installation_accepted"),
    ]

    # the progress table and every document, linked from the run; the archive handed over
    progress = artifacts(f"install-progress-{pid.lower()}")[0]
    rows = progress["data"] if isinstance(progress["data"], list) else json.loads(progress["data"])
    assert [r["state"] for r in rows] == ["done late"] + ["done"] * 11
    assert "customer: 张伟" in rows[0]["signed by"] and "third_party" in rows[0]["signed by"]
    links = {a["key"] for a in artifacts(f"install-{pid.lower()}-%")}
    assert {f"install-{pid.lower()}-{k}-pdf" for k in
            ("unboxing", "parts", "test-record", "commissioning", "materials", "tools",
             "installed", "assets", "acceptance")} <= links  # fmt: skip
    assert f"install-{pid.lower()}-archive" in links
    archive = documents_dir(pid) / f"{pid}-工程文档.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert (
        f"{pid}/系统安装验收报告.pdf" in names
        and len([n for n in names if n.endswith(".pdf")]) == 9
    )
    from aftersales.api import create_app

    api = TestClient(create_app())
    got = api.get(f"/projects/{pid}/documents/{archive.name}")
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    view = api.get(f"/projects/{pid}").json()
    assert view["progress"][3]["state"] == "done" and f"{pid}-acceptance.pdf" in view["documents"]


def test_the_demo_project_plays_through_with_one_ground_value_measured_again(
    stack: Stack,
) -> None:
    """``aftersales up --demo``'s installation project: 2 racks, 6 devices, SRV-003's
    1.6 Ω refused and measured again, accepted."""
    from aftersales.demo import play_installation

    said: list[str] = []
    pid = play_installation(said.append)
    with session_scope() as s:
        run = get_sop_run(s, ticket_id=pid, sop="installation")
    assert run is not None
    wait(lambda: flow_run(run.flow_run_id).state.is_completed(), 180, "the demo project accepted")
    with session_scope() as s:
        grounds = list(
            s.exec(select(GroundMeasurement).where(GroundMeasurement.project_id == pid)).all()
        )
    assert sorted((g.device, g.ohms) for g in grounds if not g.passed) == [("SRV-003", 1.6)]
    assert len([g for g in grounds if g.passed]) == 6
    assert not any("never waited" in line for line in said), said
