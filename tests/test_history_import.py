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


def generated(path: Path, n: int, *, repeat: dict[int, int] | None = None) -> Path:
    """``n`` good rows (time-ordered ids); ``repeat`` gives row k the id of row j."""
    repeat = repeat or {}
    rows = []
    for k in range(n):
        j = repeat.get(k, k)
        minute = k % 50
        rows.append(
            f"G-{j:05d},inquiry,online,A,normal,2026-08-01T09:{minute:02d}:00+08:00,"
            f"2026-08-01T09:{minute:02d}:20+08:00,,,{k % 11},h{k % 7},t{k % 3},C-{k}"
        )
    return write(path.parent, path.name, *rows)


def _fail_on(url: str, ticket_id: str) -> None:
    """A real database error: a trigger that refuses one ticket id."""
    from models.db import session_scope

    with session_scope(url) as s:
        if url.startswith("sqlite"):
            s.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON history_ticket "
                    f"WHEN NEW.ticket_id = '{ticket_id}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
                )
            )
        else:
            s.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.ticket_id = '{ticket_id}' THEN "
                    "RAISE EXCEPTION 'refused by trigger'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            s.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON history_ticket "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def test_a_database_error_in_a_later_chunk_imports_nothing(any_db: str, tmp_path: Path) -> None:
    """Chunks 1-2 are written, chunk 3 fails in the database: the one transaction rolls
    all of it back, the import batch included."""
    path = generated(tmp_path / "big.csv", 350)
    _fail_on(any_db, "G-00250")
    with pytest.raises(Exception, match="refused by trigger"):
        import_file(path, chunk_rows=100)
    assert count(any_db, "history_ticket") == 0
    assert count(any_db, "import_batch") == 0


def test_streamed_chunks_find_repeats_across_chunks_and_keep_the_counts(
    any_db: str, tmp_path: Path
) -> None:
    # row 230 (line 232) repeats row 10 (line 12), two chunks earlier; row 40 repeats row 39
    path = generated(tmp_path / "rep.csv", 300, repeat={230: 10, 40: 39})
    seen: list[tuple[int, int]] = []
    res = import_file(path, chunk_rows=100, progress=lambda done, total: seen.append((done, total)))
    msgs = [str(e) for e in res.errors]
    assert msgs == [
        "line 42: ticket_id: 'G-00039' repeats line 41",
        "line 232: ticket_id: 'G-00010' repeats line 12",
    ]
    assert (res.rows_read, res.imported, res.rejected, res.skipped_existing) == (300, 298, 2, 0)
    assert count(any_db, "history_ticket") == 298
    assert len(seen) == 3 and seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    from models.db import session_scope

    with session_scope() as s:
        line = s.execute(
            text("SELECT source_line FROM history_ticket WHERE ticket_id = 'G-00010'")
        ).scalar_one()
        batch = s.execute(text("SELECT rows_imported, rows_rejected FROM import_batch")).one()
    assert line == 12 and tuple(batch) == (298, 2)


def test_row_errors_listed_up_to_the_limit_counts_exact(
    sqlite_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aftersales.settings import reset_settings

    monkeypatch.setenv("AFTERSALES_IMPORT_MAX_ERRORS", "3")
    reset_settings()
    rows = [f"B-{k},inquiry,fax,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c" for k in range(10)]
    res = import_file(write(tmp_path, "fax.csv", *rows))
    assert res.rejected == 10 and res.errors_total == 10 and len(res.errors) == 3
    assert str(res.errors[0]) == "line 2: channel: 'fax' is not one of phone, online, email, social"
    reset_settings()


def test_parquet_import_reads_typed_columns(any_db: str, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    p = tmp_path / "history.parquet"
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * FROM (VALUES
          ('P-1', 'inquiry', 'phone', 'A', 'normal', TIMESTAMP '2026-08-01 09:00:00',
           TIMESTAMP '2026-08-01 09:00:20', NULL::TIMESTAMP, NULL::TIMESTAMP, 9.0, 'alice', 'north', 'C-1'),
          ('P-2', 'Repair', 'email', NULL, 'urgent', TIMESTAMP '2026-08-02 10:00:00',
           NULL::TIMESTAMP, TIMESTAMP '2026-08-03 10:00:00', NULL::TIMESTAMP, NULL, 'bob', NULL, 'C-2'),
          ('P-3', 'inquiry', 'fax', 'A', 'normal', TIMESTAMP '2026-08-02 10:00:00',
           NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP, 12.0, 'bob', NULL, 'C-3')
        ) AS t(ticket_id, sop, channel, category, priority, created_at, first_response_at,
               resolved_at, closed_at, satisfaction, handler, team, customer_id))
        TO '{p}' (FORMAT parquet)"""
    )
    con.close()
    res = import_file(p, chunk_rows=2)
    assert (res.imported, res.rejected) == (2, 1)
    assert [str(e) for e in res.errors] == [
        "line 4: channel: 'fax' is not one of phone, online, email, social",
        "line 4: satisfaction: 12 is outside 0-10 (--scale 10)",
    ]
    got = load_tickets().set_index("ticket_id")
    # a timestamp without a zone is Asia/Shanghai time, as in a CSV
    assert got.loc["P-1", "created_at"] == pd.Timestamp("2026-08-01T01:00:00Z")
    assert got.loc["P-2", "sop"] == "repair" and pd.isna(got.loc["P-2", "team"])
    assert got.loc["P-1", "satisfaction"] == 9.0


def test_progress_bar_only_when_stdout_is_a_terminal(sqlite_db: str, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    path = generated(tmp_path / "tty.csv", 120)
    env = {**os.environ, "AFTERSALES_IMPORT_CHUNK_ROWS": "100"}
    cmd = [sys.executable, "-m", "aftersales.cli", "import", str(path)]
    piped = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "importing" not in piped.stderr + piped.stdout
    assert "120 imported" in piped.stdout

    again = generated(tmp_path / "tty2.csv", 130)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*cmd[:-1], str(again)], env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0
    os.close(master)
    text_out = out.decode(errors="replace")
    assert "importing tty2.csv" in text_out and "100%" in text_out
    assert "130 rows read, 10 imported, 120 already stored" in text_out


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


# ------------------------------------------------------------------ surveys and complaints
FULL_HEADER = (
    HEADER + ",satisfaction_attitude,satisfaction_efficiency,satisfaction_effectiveness"
    ",product_model,root_cause,complaint_theme,solution,compensation_cny"
)


def history_rows(url: str) -> dict[str, dict]:
    from models.db import session_scope

    with session_scope(url) as s:
        got = s.execute(
            text(
                "SELECT ticket_id, satisfaction, satisfaction_attitude, satisfaction_efficiency,"
                " satisfaction_effectiveness, product_model, root_cause, complaint_theme,"
                " solution, compensation_cny FROM history_ticket"
            )
        ).mappings()
        return {r["ticket_id"]: dict(r) for r in got}


def test_survey_and_complaint_columns_load_and_dimensions_make_the_score_CB_3(
    any_db: str, tmp_path: Path
) -> None:
    p = write(
        tmp_path,
        "full.csv",
        # three dimensions, no score: the score is their mean x 2, as the live survey's
        "V-1,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c,4,5,3,,,,,",
        # a score of the file's own is kept
        "V-2,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,9.5,a,t,c,4,5,3,,,,,",
        # an exported complaint ("process-change" as another tool spells it)
        "V-3,complaint,email,B,important,2026-08-01T09:00:00+08:00,,,,,a,t,c,,,,"
        "X200,loose connector,late engineer,process-change,",
        "V-4,complaint,email,B,important,2026-08-01T09:00:00+08:00,,,,,a,t,c,,,,"
        "X200,,,compensation,200.5",
        # refused: a dimension out of 1-5, not a number, not whole; an unknown solution
        "V-5,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c,6,5,3,,,,,",
        "V-6,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c,4,x,3,,,,,",
        "V-7,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c,4,5,2.5,,,,,",
        "V-8,complaint,email,B,important,2026-08-01T09:00:00+08:00,,,,,a,t,c,,,,,,,refund,",
        "V-9,complaint,email,B,important,2026-08-01T09:00:00+08:00,,,,,a,t,c,,,,,,,,-5",
        header=FULL_HEADER,
    )
    res = import_file(p)
    assert [str(e) for e in res.errors] == [
        "line 6: satisfaction_attitude: 6 is outside 1-5",
        "line 7: satisfaction_efficiency: 'x' is not a number",
        "line 8: satisfaction_effectiveness: 2.5 is not a whole number 1-5",
        "line 9: solution: 'refund' is not one of apology, compensation, repair, process_change",
        "line 10: compensation_cny: -5 is outside 0-100000000",
    ]
    assert (res.imported, res.rejected) == (4, 5)
    rows = history_rows(any_db)
    assert rows["V-1"]["satisfaction"] == pytest.approx(8.0)  # (4 + 5 + 3) / 3 x 2
    assert (rows["V-1"]["satisfaction_attitude"], rows["V-1"]["satisfaction_efficiency"]) == (4, 5)
    assert rows["V-2"]["satisfaction"] == pytest.approx(9.5)
    v3 = rows["V-3"]
    assert (v3["product_model"], v3["root_cause"], v3["complaint_theme"], v3["solution"]) == (
        "X200",
        "loose connector",
        "late engineer",
        "process_change",
    )
    assert v3["compensation_cny"] is None and v3["satisfaction"] is None
    assert rows["V-4"]["compensation_cny"] == pytest.approx(200.5)
    # the frame of the reports carries the efficiency dimension (SPD-2)
    frame = load_tickets(url=any_db).set_index("ticket_id")
    assert frame.loc["V-1", "satisfaction_efficiency"] == 5
    assert pd.isna(frame.loc["V-3", "satisfaction_efficiency"])


def test_a_file_without_the_optional_columns_still_loads(sqlite_db: str, tmp_path: Path) -> None:
    # some optional columns only (the dimensions), in another order
    header = "satisfaction_efficiency,satisfaction_attitude,satisfaction_effectiveness," + HEADER
    p = write(
        tmp_path,
        "dims.csv",
        "2,1,3,D-1,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c",
        "2,1,,D-2,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c",
        header=header,
    )
    old = write(
        tmp_path, "core.csv", "K-1,inquiry,online,A,normal,2026-08-01T09:00:00+08:00,,,,7,a,t,c"
    )
    assert import_file(p).imported == 2
    assert import_file(old).imported == 1
    rows = history_rows(sqlite_db)
    assert rows["D-1"]["satisfaction"] == pytest.approx(4.0)  # (1 + 2 + 3) / 3 x 2
    # two dimensions of three: stored as given, no score made up
    assert rows["D-2"]["satisfaction"] is None and rows["D-2"]["satisfaction_efficiency"] == 2
    assert rows["K-1"]["satisfaction"] == 7 and rows["K-1"]["product_model"] is None
    # a mapping that names an optional column the file lacks is refused (the user expects it)
    with pytest.raises(HistoryFileError, match=r"missing column\(s\) root_cause"):
        parse_file(old, mapping=Mapping(columns={"root_cause": "Cause"}))


def test_survey_dimensions_under_scale_5_stay_1_to_5_and_make_the_0_10_score(
    tmp_path: Path,
) -> None:
    p = write(
        tmp_path,
        "five-dims.csv",
        "F-1,callback,phone,A,normal,2026-08-01T09:00:00+08:00,,,,,a,t,c,5,5,4,,,,,",
        header=FULL_HEADER,
    )
    parsed = parse_file(p, scale=5)
    assert parsed.errors == []
    assert parsed.frame["satisfaction"].iloc[0] == pytest.approx(9.33)


def test_imported_complaints_count_in_the_improvement_report_beside_live_ones_CMP_4(
    sqlite_db: str, tmp_path: Path
) -> None:
    from aftersales.improvement import improvement_report
    from aftersales.intake import accept_intake, parse_payload
    from aftersales.report_model import month_bounds
    from aftersales.runtime import deadlines
    from models.db import session_scope
    from models.entities import Complaint

    at = datetime(2026, 10, 12, 2, tzinfo=UTC)
    live = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "sop": "complaint",
                "intake_id": "imp-1",
                "customer_name": "A",
                "contact": "13812340001",
                "description": "x",
            }
        ),
        ctx=deadlines(),
        now=at,
    ).ticket_id
    with session_scope() as s:
        s.add(Complaint(ticket_id=live, theme="late engineer", solution="apology"))
    row = "{},complaint,email,B,normal,{},,{},,,a,t,c,,,,{},{},{},{},"
    p = write(
        tmp_path,
        "complaints.csv",
        # named theme; resolved without a recorded solution
        row.format("HC-1", "2026-10-02T09:00:00+08:00", "2026-10-02T12:00:00+08:00", "", "",
                   "late engineer", ""),
        # product model and root cause, the solution recorded; still unresolved
        row.format("HC-2", "2026-10-03T09:00:00+08:00", "", "X200", "loose fan", "", "repair"),
        row.format("HC-3", "2026-10-04T09:00:00+08:00", "", "X200", "loose fan", "", ""),
        # a history row of the live ticket: the live one wins
        row.format(live, "2026-10-05T09:00:00+08:00", "", "", "", "late engineer", ""),
        # November: another month
        row.format("HC-4", "2026-11-02T09:00:00+08:00", "", "", "", "late engineer", ""),
        header=FULL_HEADER,
    )  # fmt: skip
    assert import_file(p).imported == 5
    start, end = month_bounds("2026-10")
    with session_scope() as s:
        r = improvement_report(s, month="2026-10", start=start, end=end, threshold=2)
    assert r.complaints == 4  # HC-1..3 and the live one
    assert [(t.name, t.count) for t in r.recurring] == [
        ("X200 / loose fan", 2),
        ("late engineer", 2),
    ]
    fan, late = r.recurring
    assert [t.ticket_id for t in late.tickets] == ["HC-1", live]
    assert late.solutions == {"apology": 1, "not recorded": 1}
    assert fan.solutions == {"repair": 1, "open": 1}
    assert fan.open_actions == [
        "HC-2: not resolved in the imported history",
        "HC-3: not resolved in the imported history",
    ]
