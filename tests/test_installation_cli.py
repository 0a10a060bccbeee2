"""Creating an installation project (spec §6) from a contract equipment list: the CLI
(CSV and XLSX) and the HTTP endpoint; a bad list is reported row by row and nothing of
the project is stored."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from openpyxl import Workbook
from sqlmodel import select
from typer.testing import CliRunner

from aftersales.cli import app as cli
from models.db import session_scope
from models.entities import OutboxEvent, Ticket
from models.installation import EquipmentLine, InstallationProject, PlannedPhase
from tests import installation_sample as sample

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def header(tmp: Path, pid: str) -> Path:
    head = sample.project(pid, T0)
    del head["equipment"]
    path = tmp / "project.yaml"
    path.write_text(yaml.safe_dump(head, allow_unicode=True), encoding="utf-8")
    return path


def stored() -> tuple[int, int, int, int]:
    with session_scope() as s:
        return (
            len(s.exec(select(InstallationProject)).all()),
            len(s.exec(select(EquipmentLine)).all()),
            len(s.exec(select(Ticket)).all()),
            len(s.exec(select(OutboxEvent)).all()),
        )


def test_a_bad_equipment_file_is_reported_row_by_row_and_nothing_is_stored(
    any_db: str, tmp_path: Path
) -> None:
    bad = tmp_path / "equipment.csv"
    bad.write_text(
        "line_no,model,quantity,kind,serials\n"
        "1,X200,4,device,SRV-001;SRV-002\n"
        "2,,2,device,\n"  # no model
        "3,T10,0,io_terminal,\n"  # quantity 0
        "4,T10,two,device,\n"  # not a number
        "1,X300,1,device,\n"  # line_no repeats line 2
        "6,X200,1,device,SRV-002\n"  # a serial of line 2 again
        "7,X200,1,device,A;B\n"  # more serials than units
        "8,X200,1,printer,\n",  # unknown kind
        encoding="utf-8",
    )
    res = CliRunner().invoke(
        cli,
        [
            "project",
            "create",
            "--project",
            str(header(tmp_path, "P-BAD-1")),
            "--equipment",
            str(bad),
        ],  # fmt: skip
    )
    assert res.exit_code == 1
    errors = [
        ln.removeprefix("error: ") for ln in res.output.splitlines() if ln.startswith("error")
    ]
    assert errors[:7] == [
        "line 3: model: String should have at least 1 character",
        "line 4: quantity: Input should be greater than or equal to 1",
        "line 5: quantity: Input should be a valid integer, unable to parse string as an integer",
        "line 6: line_no: 1 repeats line 2",
        "line 7: serials: 'SRV-002' repeats line 2",
        "line 8: serials: 2 serial numbers for a quantity of 1",
        "line 9: kind: 'printer' is not device or io_terminal",
    ]
    assert errors[7].endswith("equipment.csv: nothing stored")
    assert stored() == (0, 0, 0, 0)


def test_an_xlsx_equipment_list_creates_the_project_its_plan_and_its_start_event(
    sqlite_db: str, tmp_path: Path
) -> None:
    book = Workbook()
    ws = book.active
    ws.append(["序号", "型号", "名称", "数量", "单位", "类型", "序列号"])
    ws.append([1, "X200", "服务器", 4, "台", "device", "SRV-001 SRV-002 SRV-003 SRV-004"])
    ws.append([2, "T10", "I/O终端", 2, "台", "I/O终端", None])
    path = tmp_path / "equipment.xlsx"
    book.save(path)
    res = CliRunner().invoke(
        cli,
        [
            "project",
            "create",
            "--project",
            str(header(tmp_path, "P-XLSX-1")),
            "--equipment",
            str(path),
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.splitlines()[-1])["units"] == 6
    with session_scope() as s:
        lines = s.exec(select(EquipmentLine).order_by(EquipmentLine.line_no)).all()
        phases = s.exec(select(PlannedPhase)).all()
        event = s.exec(select(OutboxEvent)).one()
        t = s.get(Ticket, "P-XLSX-1")
    assert [(ln.model, ln.quantity, ln.kind, len(ln.expected_serials)) for ln in lines] == [
        ("X200", 4, "device", 4),
        ("T10", 2, "io_terminal", 0),
    ]
    assert len(phases) == 12 and {p.clause for p in phases} == {f"INS-{i}" for i in range(1, 13)}
    assert event.event == "aftersales.installation.started"
    assert event.payload["project"] == "P-XLSX-1"
    assert t is not None and t.sop == "installation" and t.status == "in_progress"
    again = CliRunner().invoke(
        cli,
        [
            "project",
            "create",
            "--project",
            str(header(tmp_path, "P-XLSX-1")),
            "--equipment",
            str(path),
        ],  # fmt: skip
    )
    assert again.exit_code == 2 and "project 'P-XLSX-1' already exists" in again.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.csv", "model,qty_missing\nX200,1\n", "missing column quantity"),
        ("list.txt", "model,quantity\n", "not a .csv or .xlsx file"),
        ("list.csv", "", "empty file"),
    ],
)
def test_an_unreadable_equipment_file_is_refused_as_a_whole(
    sqlite_db: str, tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    res = CliRunner().invoke(
        cli,
        [
            "project",
            "create",
            "--project",
            str(header(tmp_path, "P-X-1")),
            "--equipment",
            str(path),
        ],  # fmt: skip
    )
    assert res.exit_code == 2 and message in res.output
    assert stored() == (0, 0, 0, 0)


def test_http_creates_a_project_and_lists_every_bad_field_otherwise(sqlite_db: str) -> None:
    from aftersales.api import create_app

    api = TestClient(create_app())
    body = sample.project("P-HTTP-1", T0)
    bad = {**body, "id": "tk-1", "plan": {"unboxing": "2026-11-24"},
           "equipment": [{"line_no": 1, "model": "X200", "quantity": 0}]}  # fmt: skip
    resp = api.post("/projects", json=bad)
    assert resp.status_code == 422
    got = {(e["field"], e["rule"]) for e in resp.json()["errors"]}
    assert ("id", "must be 3-39 upper-case letters, digits or '-', starting with a letter or "
            "digit (e.g. P-2026-001)") in got  # fmt: skip
    assert ("equipment.0.quantity", "Input should be greater than or equal to 1") in got
    assert any(f == "plan" and r.startswith("no planned date for phase install") for f, r in got)
    assert resp.json()["code"] == "invalid_project" and stored() == (0, 0, 0, 0)
    ok = api.post("/projects", json=body)
    assert ok.status_code == 201, ok.text
    assert [r["state"] for r in ok.json()["progress"]] == ["open"] * 12
    assert api.post("/projects", json=body).status_code == 409
    assert api.get("/projects/P-NONE").status_code == 404
    assert api.get("/projects/P-HTTP-1/documents/..%2Fsecret").status_code == 404
