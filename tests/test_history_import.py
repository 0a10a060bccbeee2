"""History import (issue 3 §1): CSV/XLSX, validation by row, mapping, idempotent, atomic."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from aftersales.history import (
    HistoryFileError,
    Mapping,
    import_file,
    load_tickets,
    parse_file,
)

DATA = Path(__file__).parent / "data"
HEADER = (
    "ticket_id,sop,channel,category,priority,created_at,first_response_at,resolved_at,"
    "closed_at,satisfaction,handler,team,customer_id"
)


def write(tmp_path: Path, name: str, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def count(url: str, table: str) -> int:
    from models.db import session_scope

    with session_scope(url) as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_good_csv_is_imported_and_a_reimport_adds_nothing(any_db: str) -> None:
    first = import_file(DATA / "history-good.csv")
    assert (first.imported, first.rejected, first.already_imported) == (3, 0, False)
    again = import_file(DATA / "history-good.csv")
    assert again.already_imported and again.imported == 0
    assert count(any_db, "history_ticket") == 3
    assert count(any_db, "import_batch") == 1


def test_naive_timestamp_is_read_as_asia_shanghai(sqlite_db: str) -> None:
    import_file(DATA / "history-good.csv")
    df = load_tickets()
    h2 = df.set_index("ticket_id").loc["H-2"]
    # "2026-08-02 10:00:00" without offset = 10:00 in Shanghai = 02:00 UTC
    assert h2["created_at"] == pd.Timestamp("2026-08-02T02:00:00Z")
    h3 = df.set_index("ticket_id").loc["H-3"]
    assert h3["created_at"] == pd.Timestamp("2026-08-03T01:00:00Z")  # "Z" kept as UTC


def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_imported(
    any_db: str,
) -> None:
    res = import_file(DATA / "history-bad.csv")
    msgs = [str(e) for e in res.errors]
    assert "line 3: channel: 'fax' is not one of phone, online, email, social" in msgs
    assert any(
        m.startswith("line 4: created_at: '2026-13-01 09:00' is not an ISO 8601 timestamp")
        for m in msgs
    )
    assert "line 6: first_response_at: is before created_at" in msgs
    assert "line 6: satisfaction: 11 is outside 0-10 (--scale 10)" in msgs
    assert "line 7: ticket_id: 'B-1' repeats line 2" in msgs
    assert (
        "line 7: sop: 'visit' is not one of inquiry, repair, complaint, callback, installation"
        in msgs
    )
    assert "line 7: created_at: is required" in msgs
    assert res.imported == 1 and res.rejected == 4  # line 5 is blank, not a row
    assert count(any_db, "history_ticket") == 1


def test_missing_column_refuses_the_whole_file(sqlite_db: str, tmp_path: Path) -> None:
    header = HEADER.replace(",priority", "")
    p = write(
        tmp_path,
        "nopriority.csv",
        "X-1,inquiry,online,A,2026-08-01T09:00:00+08:00,,,,,a,t,c",
        header=header,
    )
    with pytest.raises(HistoryFileError, match=r"missing column\(s\) priority"):
        import_file(p)
    assert count(sqlite_db, "history_ticket") == 0
    assert count(sqlite_db, "import_batch") == 0


def test_cli_import_exit_codes_and_messages(sqlite_db: str, tmp_path: Path) -> None:
    from aftersales.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["import", str(DATA / "history-good.csv")])
    assert ok.exit_code == 0, ok.output
    assert "3 imported" in ok.output
    bad = runner.invoke(app, ["import", str(DATA / "history-bad.csv"), "--json"])
    assert bad.exit_code == 1
    out = json.loads(bad.stdout)
    assert out["imported"] == 1 and out["rejected"] == 4
    assert {
        "line": 3,
        "column": "channel",
        "reason": "'fax' is not one of phone, online, email, social",
    } in out["errors"]
    again = runner.invoke(app, ["import", str(DATA / "history-bad.csv")])
    assert again.exit_code == 0 and "already imported" in again.output  # nothing to do
    p = write(tmp_path, "x.csv", "a", header="ticket_id")
    missing = runner.invoke(app, ["import", str(p)])
    assert missing.exit_code == 2
    assert "missing column(s) sop, channel, category, priority" in missing.output


def test_ticket_already_stored_from_another_file_is_skipped(sqlite_db: str, tmp_path: Path) -> None:
    import_file(DATA / "history-good.csv")
    p = write(
        tmp_path,
        "more.csv",
        "H-1,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,,alice,north,C-1",
        "H-9,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,,alice,north,C-1",
    )
    res = import_file(p)
    assert (res.imported, res.skipped_existing) == (1, 1)
    assert count(sqlite_db, "history_ticket") == 4


def test_a_database_error_imports_nothing(any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import aftersales.history as h

    real = h._records

    def broken(df: pd.DataFrame, batch_id: int | None) -> list[dict]:
        rows = real(df, batch_id)
        return [*rows, dict(rows[0])]  # duplicate ticket_id -> IntegrityError on insert

    monkeypatch.setattr(h, "_records", broken)
    with pytest.raises(Exception, match="(?i)unique"):
        import_file(DATA / "history-good.csv")
    assert count(any_db, "history_ticket") == 0
    assert count(any_db, "import_batch") == 0


def test_scale_5_survey_scores_are_doubled(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "five.csv",
        "S-1,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,4.5,a,t,c",
        "S-2,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,1,a,t,c",
        "S-3,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,6,a,t,c",
    )
    parsed = parse_file(p, scale=5)
    assert list(parsed.frame["satisfaction"]) == [9.0, 2.0]
    assert [str(e) for e in parsed.errors] == ["line 4: satisfaction: 6 is outside 0-5 (--scale 5)"]


def test_xlsx_import_with_date_cells(any_db: str, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "ticket_id": ["X-1", "X-2"],
            "sop": ["inquiry", "Repair"],
            "channel": ["phone", "email"],
            "category": ["A", "B"],
            "priority": ["normal", "urgent"],
            "created_at": [datetime(2026, 8, 1, 9, 0), datetime(2026, 8, 2, 9, 0)],
            "first_response_at": [datetime(2026, 8, 1, 9, 0, 20), None],
            "resolved_at": [None, None],
            "closed_at": [None, None],
            "satisfaction": [9, None],
            "handler": ["alice", "bob"],
            "team": ["north", "south"],
            "customer_id": [1001, 1002],
        }
    )
    p = tmp_path / "history.xlsx"
    df.to_excel(p, index=False)
    res = import_file(p)
    assert (res.imported, res.rejected) == (2, 0), res.errors
    got = load_tickets().set_index("ticket_id")
    assert got.loc["X-1", "created_at"] == pd.Timestamp("2026-08-01T01:00:00Z")
    assert got.loc["X-2", "sop"] == "repair"
    assert got.loc["X-1", "customer_id"] == "1001"


MAPPING = """
columns:
  ticket_id: Ticket No
  sop: Type
  channel: Source
  category: Problem
  priority: Level
  created_at: Opened
  first_response_at: First reply
  resolved_at: Solved
  closed_at: Closed
  satisfaction: CSAT
  handler: Agent
  team: Group
  customer_id: Customer
values:
  sop: {Question: inquiry, Fault: repair, Complaint: complaint}
  priority: {P1: urgent, P2: important, P3: normal}
satisfaction_scale: 5
"""


def test_mapping_file_loads_another_tools_export(sqlite_db: str, tmp_path: Path) -> None:
    mp = tmp_path / "mapping.yaml"
    mp.write_text(MAPPING, encoding="utf-8")
    res = import_file(DATA / "history-othertool.csv", mapping=Mapping.load(mp))
    assert (res.imported, res.rejected) == (3, 0), res.errors
    df = load_tickets().set_index("ticket_id").sort_index()
    assert list(df["sop"]) == ["inquiry", "repair", "complaint"]
    assert list(df["priority"]) == ["normal", "urgent", "important"]
    assert df.loc["OT-1", "satisfaction"] == 8.0  # 4 of 5 -> 8 of 10


def test_unknown_canonical_column_in_mapping_is_refused(tmp_path: Path) -> None:
    mp = tmp_path / "m.yaml"
    mp.write_text("columns: {ticket: Ticket No}", encoding="utf-8")
    with pytest.raises(HistoryFileError, match="unknown canonical column"):
        Mapping.load(mp)


def test_loader_unites_history_and_live_tickets(any_db: str) -> None:
    from models.db import session_scope
    from models.entities import Category, Channel, Priority, Sop, Ticket

    import_file(DATA / "history-good.csv")
    with session_scope() as s:
        s.add(
            Ticket(
                id="T-LIVE",
                intake_key="k-1",
                sop=Sop.REPAIR,
                channel=Channel.PHONE,
                customer_name="张三",
                contact="13812345678",
                description="broken",
                category=Category.B,
                priority=Priority.URGENT,
                created_at=datetime(2026, 8, 5, 1, 0, tzinfo=UTC),
                first_response_at=datetime(2026, 8, 5, 1, 5, tzinfo=UTC),
                owner_team="east",
                handler="carol",
                satisfaction=10,
            )
        )
    df = load_tickets()
    assert len(df) == 4
    live = df.set_index("ticket_id").loc["T-LIVE"]
    assert (live["sop"], live["channel"], live["category"], live["priority"]) == (
        "repair",
        "phone",
        "B",
        "urgent",
    )
    assert (live["team"], live["handler"], live["source"]) == ("east", "carol", "live")
    assert "contact" not in df.columns and "customer_name" not in df.columns
    only_aug_1 = load_tickets(
        datetime(2026, 7, 31, 16, tzinfo=UTC), datetime(2026, 8, 1, 16, tzinfo=UTC)
    )
    assert list(only_aug_1["ticket_id"]) == ["H-1"]


def test_file_hash_is_recorded(sqlite_db: str) -> None:
    res = import_file(DATA / "history-good.csv")
    assert res.sha256 == hashlib.sha256((DATA / "history-good.csv").read_bytes()).hexdigest()
