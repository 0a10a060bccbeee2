"""History import (issue 11 §8): random cells in the canonical columns (and now and then
a dropped column or bytes that are not UTF-8) are imported or reported as row errors
(``RowError`` naming a line of the file and a canonical column), never a crash; the
counts add up and the stored rows are the ones imported; a file-level error
(``HistoryFileError``) stores nothing."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import text

from aftersales.history import COLUMNS, CORE_COLUMNS, HistoryFileError, import_file
from models.db import session_scope
from tests.fuzz import odd_strings

GOOD = {
    "ticket_id": "H-1",
    "sop": "inquiry",
    "channel": "phone",
    "category": "A",
    "priority": "normal",
    "created_at": "2026-08-01T09:00:00+08:00",
    "first_response_at": "2026-08-01 09:30:00",
    "resolved_at": "",
    "closed_at": "",
    "satisfaction": "8",
    "handler": "wang",
    "team": "t1",
    "customer_id": "C-1",
    "satisfaction_attitude": "",
    "satisfaction_efficiency": "",
    "satisfaction_effectiveness": "",
    "product_model": "",
    "root_cause": "",
    "complaint_theme": "",
    "solution": "",
    "compensation_cny": "",
}
cells = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    odd_strings.filter(lambda s: "\ud800" not in s),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(str),
    st.sampled_from(["inquiry", "complaint", "email", "urgent", "5", "10", "-1", "B", "apology"]),
    st.datetimes().map(str),
)
_n = itertools.count()


@st.composite
def history_file(draw: st.DrawFn) -> tuple[list[str], bytes]:
    columns = list(COLUMNS) if draw(st.booleans()) else list(CORE_COLUMNS)
    if draw(st.integers(0, 9)) == 0:
        columns.remove(draw(st.sampled_from(columns)))
    rows = []
    for i in range(draw(st.integers(0, 5))):
        row = {**GOOD, "ticket_id": f"H-{i}"}
        for col in draw(st.lists(st.sampled_from(columns), max_size=3)):
            row[col] = draw(cells)
        rows.append(row)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    data = out.getvalue().encode("utf-8")
    if draw(st.integers(0, 14)) == 0:
        data += draw(st.binary(min_size=1, max_size=8))
    return columns, data


def count(table: str) -> int:
    with session_scope() as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def folder(sqlite_db: str, tmp_path: Path) -> Path:
    return tmp_path


@given(f=history_file())
@example(f=(list(CORE_COLUMNS), b"ticket_id,sop\nH-1,inquiry\n"))
@example(f=(list(CORE_COLUMNS), ",".join(CORE_COLUMNS).encode() + b"\n\xff\xfe,\x00\n"))
def test_cells_are_imported_or_row_errors_never_a_crash(
    folder: Path, f: tuple[list[str], bytes]
) -> None:
    columns, data = f
    path = folder / f"h{next(_n)}.csv"
    path.write_bytes(data)
    tickets, batches = count("history_ticket"), count("import_batch")
    try:
        res = import_file(path)
    except HistoryFileError as exc:
        assert str(exc)
        assert (count("history_ticket"), count("import_batch")) == (tickets, batches)
        return
    if res.already_imported:
        assert count("history_ticket") == tickets
        return
    assert res.imported + res.skipped_existing + res.rejected == res.rows_read
    assert count("history_ticket") == tickets + res.imported
    assert res.errors_total >= res.rejected
    for e in res.errors:
        assert e.column in COLUMNS, e
        assert 2 <= e.line <= res.rows_read + 1 + data.count(b"\n"), e
        assert e.reason, e
