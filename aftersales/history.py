"""Ticket history: streaming import from CSV, XLSX and Parquet; one loader (issues 3 and 12).

Import (``aftersales import FILE``)
-----------------------------------
* Canonical columns: :data:`COLUMNS`: the core ones (:data:`CORE_COLUMNS`) and
  the optional survey and complaint ones (:data:`OPTIONAL_COLUMNS`).
  ``ticket_id``, ``sop``, ``channel``, ``priority`` and ``created_at`` are
  required in every row; the other cells may be empty. A file without one of the
  core columns (after the mapping) is refused as a whole and nothing is imported;
  an optional column it lacks reads as empty cells (unless the mapping names it).
* Survey dimensions (``satisfaction_attitude/efficiency/effectiveness``) are
  whole numbers 1-5; when ``satisfaction`` is empty and the three are given, the
  score is the live CB-3 rule (:attr:`aftersales.forms.Survey.satisfaction_0_10`,
  the mean x 2). Complaint columns: ``solution`` one of :data:`SOLUTIONS`
  (``process-change`` read as ``process_change``), ``compensation_cny`` >= 0.
* Timestamps are ISO 8601. One with a UTC offset (``+08:00``, ``Z``) is taken as
  is; a naive one (no offset) is read as **Asia/Shanghai** local time (the
  ``timezone`` of the mapping file or ``AFTERSALES_TIMEZONE`` overrides it).
  XLSX date cells and Parquet timestamps without a zone are naive and read the
  same way.
* ``satisfaction`` is on the QA-1 0-10 scale. ``--scale 5`` (or
  ``satisfaction_scale: 5`` in the mapping) reads 0-5 survey scores and converts
  them by **score x 2** (1 -> 2, 3 -> 6, 5 -> 10). Empty means "not rated".
* Every row is validated on its own. A bad row is reported as
  ``line N: column: reason`` (file line; the header is line 1; for Parquet the
  first row is line 2, as in a CSV export of it) and skipped. A row whose
  ``ticket_id`` repeats an earlier good row of the same file is reported
  (``'X' repeats line M``) and skipped.
* **Streaming**: the file is read in chunks (``AFTERSALES_IMPORT_CHUNK_ROWS``,
  default 50,000 rows), each validated with vectorised pandas and written with
  one bulk statement (``executemany`` of ``INSERT OR IGNORE`` on SQLite; ``COPY``
  on PostgreSQL, straight into the table, or, when the chunk holds ids already
  stored, into a temporary table and one ``INSERT ... ON CONFLICT DO NOTHING``).
  Memory does not grow with the
  file: nothing but the current chunk and the counters is kept (the listed row
  errors stop at ``AFTERSALES_IMPORT_MAX_ERRORS``; the counts stay exact).
* The good rows are stored in **one** transaction: all of them or, on any error
  (database, or a chunk of the file that cannot be read), none. The file's
  SHA-256 is recorded in ``import_batch``: importing the same file again adds
  nothing; a row whose ``ticket_id`` is already stored from another file is
  skipped and counted, never duplicated.
* Each chunk is stored in ``created_at`` order, so the stored rows of a month
  sit together and the monthly reports read them sequentially.
* Exit code of the command: 0 all rows good, 1 some rows rejected (the good ones
  were imported), 2 the file could not be read (missing column, unreadable).

Column mapping (``--mapping mapping.yaml``)::

    columns:              # canonical name: column in the other tool's export
      ticket_id: Ticket ID
      created_at: Created
    values:               # optional: translate cell values per canonical column
      sop: {Question: inquiry, Fault: repair}
    satisfaction_scale: 5 # optional, as --scale
    timezone: Asia/Shanghai  # optional, for naive timestamps

A flat mapping without ``columns:`` is read as the ``columns`` part.

Loader
------
:func:`load_tickets` returns history rows **and** live tickets (``ticket`` table)
as one DataFrame with :data:`FRAME_COLUMNS` (the same rows the report queries
read); timestamps are UTC (``datetime64[ns, UTC]``). When a live ticket and a
history row share a ``ticket_id`` the live ticket wins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import yaml

from models.history import CHANNELS, PRIORITIES, SOPS

#: the columns every file has (their cells may still be empty, see REQUIRED)
CORE_COLUMNS = (
    "ticket_id",
    "sop",
    "channel",
    "category",
    "priority",
    "created_at",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "satisfaction",
    "handler",
    "team",
    "customer_id",
)
#: CB-3 survey dimensions, 1-5 each as asked (spec, conflicts table "satisfaction scale")
SURVEY_COLUMNS = ("satisfaction_attitude", "satisfaction_efficiency", "satisfaction_effectiveness")
#: what a complaint came to (CMP-3/CMP-4), for the improvement report
COMPLAINT_COLUMNS = (
    "product_model",
    "root_cause",
    "complaint_theme",
    "solution",
    "compensation_cny",
)
#: columns a file may leave out: an absent column reads as empty cells
OPTIONAL_COLUMNS = (*SURVEY_COLUMNS, *COMPLAINT_COLUMNS)
COLUMNS = (*CORE_COLUMNS, *OPTIONAL_COLUMNS)
REQUIRED = ("ticket_id", "sop", "channel", "priority", "created_at")
TIMESTAMPS = ("created_at", "first_response_at", "resolved_at", "closed_at")
#: CMP-3 solution kinds, as the live form (forms.Resolution) names them
SOLUTIONS = ("apology", "compensation", "repair", "process_change")
ENUMS: dict[str, tuple[str, ...]] = {
    "sop": SOPS,
    "channel": CHANNELS,
    "priority": PRIORITIES,
    "solution": SOLUTIONS,
}
#: spellings another tool may use for an enumerated value
ENUM_ALIASES: dict[str, dict[str, str]] = {"solution": {"process-change": "process_change"}}
TEXT_LIMITS = {
    "ticket_id": 64,
    "category": 60,
    "handler": 120,
    "team": 60,
    "customer_id": 64,
    "product_model": 120,
    "root_cause": 2000,
    "complaint_theme": 120,
}
TEXTS = (
    "ticket_id",
    "sop",
    "channel",
    "category",
    "priority",
    "handler",
    "team",
    "customer_id",
    *COMPLAINT_COLUMNS[:-1],
)
#: numeric cells: (low, high, whole numbers only)
NUMBERS: dict[str, tuple[float, float, bool]] = {
    **{c: (1, 5, True) for c in SURVEY_COLUMNS},
    "compensation_cny": (0, 100_000_000, False),
}
MASKED = (
    "category",
    "handler",
    "team",
    "customer_id",
    "product_model",
    "root_cause",
    "complaint_theme",
)
GROUP_COLUMNS = ("sop", "channel", "category", "priority", "handler", "team")
#: the canonical ticket frame (reports over a file or the stored tickets): the core
#: columns, the efficiency dimension (SPD-2 speed satisfaction) and, for live tickets
#: only (NaN elsewhere), whether a CMP clock was late (1.0) or not (0.0)
FRAME_COLUMNS = (*CORE_COLUMNS, "satisfaction_efficiency", "cmp_clock_late", "source")
FLOAT_COLUMNS = ("satisfaction", "satisfaction_efficiency", "cmp_clock_late")
DEFAULT_TZ = "Asia/Shanghai"
SUFFIXES = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".parquet": "parquet"}
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
NO_US = np.iinfo(np.int64).min


class HistoryFileError(ValueError):
    """The file as a whole cannot be used (unreadable, a canonical column missing)."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.reason}"


@dataclass
class Mapping:
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    satisfaction_scale: int | None = None
    timezone: str | None = None

    @classmethod
    def load(cls, path: Path | str | None) -> Mapping:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HistoryFileError(f"mapping file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise HistoryFileError(f"mapping file {path}: the top level must be a mapping")
        if "columns" not in data:
            data = {"columns": data}
        cols = data.get("columns") or {}
        unknown = sorted(set(cols) - set(COLUMNS))
        if unknown:
            raise HistoryFileError(
                f"mapping file {path}: unknown canonical column(s) {', '.join(unknown)}; "
                f"canonical columns: {', '.join(COLUMNS)}"
            )
        scale = data.get("satisfaction_scale")
        if scale not in (None, 5, 10):
            raise HistoryFileError(f"mapping file {path}: satisfaction_scale must be 5 or 10")
        return cls(
            columns={str(k): str(v) for k, v in cols.items()},
            values={
                str(k): {str(a): str(b) for a, b in (v or {}).items()}
                for k, v in (data.get("values") or {}).items()
            },
            satisfaction_scale=scale,
            timezone=data.get("timezone"),
        )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ readers
@dataclass
class RawChunk:
    """Cells of consecutive rows as read (strings for CSV), indexed by file line."""

    frame: pd.DataFrame
    done: int  # progress units done after this chunk (bytes or rows)
    all_text: bool = False  # every cell is a str (CSV), no None/NaN/numbers/datetimes


class Reader:
    """A file read in chunks: its header first, then :class:`RawChunk` objects."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.columns: list[str] = []
        self.total = 0  # progress units of the whole file

    def chunks(self) -> Iterator[RawChunk]:  # pragma: no cover - interface
        raise NotImplementedError


class CsvReader(Reader):
    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        self.total = path.stat().st_size
        try:
            head = pd.read_csv(path, dtype=str, nrows=0, encoding="utf-8-sig")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise HistoryFileError(f"{path}: cannot read: {exc}") from exc
        self.columns = [str(c).strip() for c in head.columns]

    def chunks(self) -> Iterator[RawChunk]:
        with open(self.path, "rb") as fh:
            try:
                reader = pd.read_csv(
                    fh,
                    dtype=object,
                    na_filter=False,
                    skip_blank_lines=False,
                    encoding="utf-8-sig",
                    chunksize=self.chunk_rows,
                )
                line = 2
                for raw in reader:
                    raw.columns = self.columns
                    # the file line of each row: the header is line 1 (no multi-line cells)
                    raw.index = pd.RangeIndex(line, line + len(raw))
                    line += len(raw)
                    yield RawChunk(raw, min(fh.tell(), self.total), all_text=True)
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                raise HistoryFileError(f"{self.path}: cannot read: {exc}") from exc


class XlsxReader(Reader):
    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        import openpyxl

        try:
            self._book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds
            raise HistoryFileError(f"{path}: cannot read: {exc}") from exc
        self._sheet = self._book.worksheets[0]
        self._rows = self._sheet.iter_rows(values_only=True)
        header = next(self._rows, None) or ()
        self.columns = [str(c).strip() if c is not None else "" for c in header]
        self.total = max((self._sheet.max_row or 1) - 1, 0)

    def chunks(self) -> Iterator[RawChunk]:
        width = len(self.columns)
        line = 2
        done = 0
        try:
            while True:
                block = []
                for row in self._rows:
                    block.append((tuple(row) + (None,) * width)[:width])
                    if len(block) >= self.chunk_rows:
                        break
                if not block:
                    return
                raw = pd.DataFrame(block, columns=self.columns, dtype=object)
                raw.index = pd.RangeIndex(line, line + len(raw))
                line += len(raw)
                done += len(raw)
                yield RawChunk(raw, min(done, self.total))
        finally:
            self._book.close()


class ParquetReader(Reader):
    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        try:
            import duckdb
        except ImportError:
            raise HistoryFileError(
                f"{path}: reading Parquet needs DuckDB: pip install 'aftersales-sop[parquet]'"
            ) from None
        self._con = duckdb.connect()
        self._con.execute("SET enable_progress_bar = false")
        self._con.execute("SET TimeZone = 'UTC'")
        try:
            rel = self._con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(path)])
            self.columns = [str(d[0]).strip() for d in rel.description]
            self.total = int(
                self._con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
            )
        except duckdb.Error as exc:
            raise HistoryFileError(f"{path}: cannot read: {exc}") from exc

    def chunks(self) -> Iterator[RawChunk]:
        import duckdb

        vectors = max(1, self.chunk_rows // 2048)
        line = 2
        done = 0
        try:
            self._con.execute("SELECT * FROM read_parquet(?)", [str(self.path)])
            while True:
                raw = self._con.fetch_df_chunk(vectors)
                if raw.empty:
                    return
                raw.columns = self.columns
                raw.index = pd.RangeIndex(line, line + len(raw))
                line += len(raw)
                done += len(raw)
                yield RawChunk(raw, min(done, self.total))
        except duckdb.Error as exc:
            raise HistoryFileError(f"{self.path}: cannot read: {exc}") from exc
        finally:
            self._con.close()


def open_reader(path: Path, chunk_rows: int) -> Reader:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise HistoryFileError(
            f"{path}: unsupported file type {path.suffix!r} (use .csv, .xlsx or .parquet)"
        )
    if not path.is_file():
        raise HistoryFileError(f"{path}: cannot read: no such file")
    if kind == "csv":
        return CsvReader(path, chunk_rows)
    if kind == "xlsx":
        return XlsxReader(path, chunk_rows)
    return ParquetReader(path, chunk_rows)


# ------------------------------------------------------------------ cell parsing
def _blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if v is pd.NaT:
        return True
    return isinstance(v, str) and not v.strip()


def _text(v: Any) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _parse_ts(v: Any, tz: ZoneInfo) -> datetime | None | str:
    """A UTC datetime, None for empty, or an error string (one cell)."""
    if _blank(v):
        return None
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, datetime):
        t = v
    else:
        s = str(v).strip()
        try:
            t = datetime.fromisoformat(s)
        except ValueError:
            return f"{s!r} is not an ISO 8601 timestamp (e.g. 2026-08-01T09:30:00+08:00)"
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def _is_str_column(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s) and (
        s.dtype != object or s.map(lambda v: isinstance(v, str), na_action="ignore").all()
    )


def _micros_of_datetimes(d: pd.Series, tz: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """(µs, ok) of a datetime64 Series; naive values are local time ``tz``."""
    if d.dt.tz is None:
        d = d.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    d = d.dt.tz_convert("UTC").dt.as_unit("us")
    ok = d.notna().to_numpy()
    vals = np.asarray(d.array.asi8, dtype=np.int64)
    return np.where(ok, vals, NO_US), ok


def _micros_of(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def parse_instants(
    s: pd.Series, tz: ZoneInfo, *, all_text: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[Any, str]]:
    """A column of timestamps as (µs since the epoch UTC, present, blank, {index: error}).

    Strings go through ``pandas.to_datetime(format="ISO8601")`` (one call for the
    usual column of one format; naive and offset cells apart otherwise); a cell
    pandas cannot read goes through ``datetime.fromisoformat``, whose error is the
    one reported. Datetime cells (XLSX, Parquet) are taken as they are.
    """
    n = len(s)
    out = np.full(n, NO_US, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    errors: dict[Any, str] = {}
    if pd.api.types.is_datetime64_any_dtype(s):
        vals, present = _micros_of_datetimes(s, tz)
        return vals, present, ~present, errors
    text_column = all_text or _is_str_column(s)
    if text_column:
        blank = (s.isna() | s.eq("")).to_numpy(dtype=bool)  # whitespace: see the loop below
    else:
        blank = s.map(_blank).to_numpy(dtype=bool)
    filled = np.flatnonzero(~blank)
    done = np.zeros(n, dtype=bool)
    if not len(filled):
        return out, ok, blank, errors
    if text_column:
        text = s.iloc[filled]
        try:  # the usual export: one format, naive or one offset, every cell valid
            got, present = _micros_of_datetimes(pd.to_datetime(text, format="ISO8601"), tz)
            out[filled], ok[filled], done[filled] = got, present, present
        except (ValueError, TypeError, OverflowError):
            text = text.str.strip()
            aware = (text.str.contains(_OFFSET) & (text.str.len() > 10)).to_numpy(dtype=bool)
            for group, utc in ((aware, True), (~aware, False)):
                if not group.any():
                    continue
                d = pd.to_datetime(text[group], format="ISO8601", utc=utc, errors="coerce")
                got, present = _micros_of_datetimes(d, tz)
                pos = filled[group]
                out[pos], ok[pos], done[pos] = got, present, present
    else:
        cells = s.iloc[filled]
        if cells.map(lambda v: isinstance(v, datetime), na_action="ignore").all():
            try:
                got, present = _micros_of_datetimes(pd.Series(pd.to_datetime(cells.tolist())), tz)
                out[filled], ok[filled], done[filled] = got, present, present
            except (ValueError, TypeError, OverflowError):
                pass
    for i in np.flatnonzero(~blank & ~done):
        got1 = _parse_ts(s.iloc[i], tz)
        if isinstance(got1, str):
            errors[s.index[i]] = got1
        elif got1 is None:
            blank[i] = True  # only whitespace
        else:
            out[i] = _micros_of(got1)
            ok[i] = True
    return out, ok, blank, errors


def column_text(s: pd.Series, *, all_text: bool, few: bool) -> tuple[np.ndarray, np.ndarray]:
    """(stripped text or None, blank) of a column; ``few``: few distinct values, so the
    work is done once per distinct value."""
    if all_text and not few:
        stripped = s.str.strip().to_numpy(dtype=object, copy=True)
        blank = stripped == ""
        stripped[blank] = None
        return stripped, blank
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([*(_text(u) for u in uniques), None], dtype=object)
    vals = table[codes]
    return vals, np.equal(vals, None)


# ------------------------------------------------------------------ chunk validation
@dataclass
class Rules:
    """How one file's cells are read (from the mapping and the options)."""

    mapping: Mapping
    tz: ZoneInfo
    scale: int

    @classmethod
    def of(cls, mapping: Mapping | None, scale: int | None, timezone: str | None) -> Rules:
        mapping = mapping or Mapping()
        scale = scale or mapping.satisfaction_scale or 10
        if scale not in (5, 10):
            raise HistoryFileError(f"--scale must be 5 or 10, not {scale}")
        return cls(mapping, ZoneInfo(timezone or mapping.timezone or DEFAULT_TZ), scale)


def canonical_columns(path: Path, columns: list[str], mapping: Mapping) -> dict[str, str]:
    """File column of every canonical column the file has; refuses a file that lacks a
    core column (:data:`CORE_COLUMNS`) or a column its mapping names. An optional column
    (:data:`OPTIONAL_COLUMNS`) the file does not have is left out: its cells are empty."""
    rename = {src: dst for dst, src in mapping.columns.items()}
    missing_src = [
        f"{dst} (mapped from {src!r})" for src, dst in rename.items() if src not in columns
    ]
    have = {rename.get(c, c): c for c in columns}
    # a core column, or an optional one the mapping names (the user expects it)
    missing = [c for c in COLUMNS if c not in have and (c in CORE_COLUMNS or c in mapping.columns)]
    if missing:
        detail = "; ".join(missing_src)
        raise HistoryFileError(
            f"{path.name}: missing column(s) {', '.join(missing)}"
            + (f" [{detail}]" if detail else "")
            + f"; required columns: {', '.join(CORE_COLUMNS)}"
            + f" (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    return {c: have[c] for c in COLUMNS if c in have}


@dataclass
class CheckedChunk:
    """A chunk after the one-row rules: its good rows and the errors.

    ``rows`` has :data:`COLUMNS` (instants as int64 µs, :data:`NO_US` when empty;
    free text masked) and ``line``. ``ids``/``lines`` are the ticket ids (as
    written, or None) and lines of every row of the chunk, good or not.
    """

    rows: pd.DataFrame
    errors: list[RowError]
    ids: np.ndarray
    lines: np.ndarray

    @property
    def rows_read(self) -> int:
        return len(self.lines)


#: columns with few distinct values in practice (validated once per value)
FEW_VALUES = ("sop", "channel", "category", "priority", "satisfaction", "handler", "team")


def check_chunk(
    raw: pd.DataFrame, source: dict[str, str], rules: Rules, *, all_text: bool = False
) -> CheckedChunk:
    """Validate one chunk with every rule that concerns one row at a time (repeated ids
    are the business of :class:`Importer`, which sees the whole file). ``all_text``:
    every cell is a str (CSV), which allows the quicker paths. The rows keep the
    canonical columns of ``source`` (an optional column the file lacks stays out)."""
    cols = [c for c in COLUMNS if c in source]
    raw = raw[[source[c] for c in cols]]
    raw.columns = cols
    text: dict[str, np.ndarray] = {}
    blank: dict[str, np.ndarray] = {}
    instants: dict[str, tuple[np.ndarray, dict[Any, str]]] = {}
    for col in cols:
        s = raw[col]
        cell_text = all_text
        table = rules.mapping.values.get(col)
        if table:
            key = pd.Series(column_text(s, all_text=all_text, few=True)[0], index=s.index)
            hit = key.isin(list(table)).to_numpy()
            s = s.astype(object).where(~hit, key.map(table))
            cell_text = False
        if col in TIMESTAMPS:
            vals, _, blank[col], errs = parse_instants(s, rules.tz, all_text=cell_text)
            instants[col] = (vals, errs)
        else:
            text[col], blank[col] = column_text(s, all_text=cell_text, few=col in FEW_VALUES)
    rows = ~np.logical_and.reduce([blank[c] for c in cols])  # blank lines are not rows
    lines_all = raw.index.to_numpy(dtype=np.int64)
    lines = lines_all[rows]
    errors: list[RowError] = []
    out: dict[str, Any] = {}

    def bad(
        mask: np.ndarray, column: str, reason: str | Callable[[Any], str], values: Any = None
    ) -> None:
        if not mask.any():
            return
        if isinstance(reason, str):
            errors.extend(RowError(int(line), column, reason) for line in lines[mask])
            return
        for line, v in zip(lines[mask], np.asarray(values, dtype=object)[mask], strict=True):
            errors.append(RowError(int(line), column, reason(v)))

    for col in cols:
        if col in TIMESTAMPS:
            vals, errs = instants[col]
            errors.extend(RowError(int(line), col, reason) for line, reason in errs.items())
            out[col] = vals[rows]
            continue
        txt = text[col][rows]
        present = ~blank[col][rows]
        if col == "satisfaction":
            num = pd.to_numeric(pd.Series(txt), errors="coerce").to_numpy(dtype="float64")
            bad(present & np.isnan(num), col, lambda v: f"{v!r} is not a number", txt)
            hi = 5 if rules.scale == 5 else 10
            with np.errstate(invalid="ignore"):
                out_of = ~np.isnan(num) & ((num < 0) | (num > hi))
            bad(out_of, col, lambda v, h=hi: f"{v:g} is outside 0-{h} (--scale {rules.scale})", num)
            num = np.where(out_of, np.nan, num)
            out[col] = num * 2.0 if rules.scale == 5 else num
            continue
        if col in NUMBERS:
            out[col] = _numbers(col, txt, present, bad)
            continue
        if col in ENUMS:
            allowed = ENUMS[col]
            alias = ENUM_ALIASES.get(col, {})
            codes, uniques = pd.factorize(txt, use_na_sentinel=True)
            low = np.array(
                [*(alias.get(u.lower(), u.lower()) for u in uniques), None], dtype=object
            )
            known = np.array([*(v in allowed for v in low[:-1]), True], dtype=bool)
            bad(~known[codes], col, lambda v, a=allowed: f"{v!r} is not one of {', '.join(a)}", txt)
            txt = low[codes]
        limit = TEXT_LIMITS.get(col)
        if limit:
            lengths = pd.Series(txt, dtype=object).str.len().to_numpy(dtype="float64")
            bad(present & (lengths > limit), col, f"longer than {limit} characters")
        out[col] = txt
    for col in REQUIRED:
        bad(blank[col][rows], col, "is required")
    if all(c in out for c in SURVEY_COLUMNS):
        out["satisfaction"] = _with_survey_scores(out["satisfaction"], out)

    created = out["created_at"]
    for col in ("first_response_at", "resolved_at", "closed_at"):
        v = out[col]
        bad((v != NO_US) & (created != NO_US) & (v < created), col, "is before created_at")

    frame = pd.DataFrame(out)
    frame["line"] = lines
    bad_lines = np.isin(lines, [e.line for e in errors])
    good = _mask_free_text(frame[~bad_lines]).reset_index(drop=True)
    return CheckedChunk(good, errors, text["ticket_id"][rows], lines)


def _numbers(
    col: str, txt: np.ndarray, present: np.ndarray, bad: Callable[..., None]
) -> np.ndarray:
    """A numeric column (:data:`NUMBERS`) as float64, NaN where empty or refused."""
    lo, hi, whole = NUMBERS[col]
    num = pd.to_numeric(pd.Series(txt, dtype=object), errors="coerce").to_numpy(dtype="float64")
    nan = np.isnan(num)
    bad(present & nan, col, lambda v: f"{v!r} is not a number", txt)
    with np.errstate(invalid="ignore"):
        out_of = ~nan & ((num < lo) | (num > hi))
        frac = ~nan & ~out_of & (num != np.floor(num)) if whole else np.zeros_like(nan)
    rng = f"{lo:.0f}-{hi:.0f}"  # whole bounds (NUMBERS)
    bad(out_of, col, lambda v: f"{v:g} is outside {rng}", num)
    bad(frac, col, lambda v: f"{v:g} is not a whole number {rng}", num)
    return np.where(out_of | frac, np.nan, num)


def _with_survey_scores(satisfaction: np.ndarray, out: dict[str, Any]) -> np.ndarray:
    """``satisfaction`` where the file gave one; else, where the three CB-3 dimensions are
    given, the live survey's score (:attr:`aftersales.forms.Survey.satisfaction_0_10`,
    the mean x 2), computed once per distinct answer."""
    dims = np.stack([out[c] for c in SURVEY_COLUMNS])
    derive = np.isnan(satisfaction) & ~np.isnan(dims).any(axis=0)
    if not derive.any():
        return satisfaction
    from aftersales.forms import Survey

    a, e, f = (dims[:, derive] - 1).astype(np.int64)
    codes = a * 25 + e * 5 + f  # one code per answer (each dimension 0-4 here)
    table = np.full(125, np.nan)
    for k in np.unique(codes).tolist():
        table[k] = Survey(
            attitude=k // 25 + 1, efficiency=k // 5 % 5 + 1, effectiveness=k % 5 + 1
        ).satisfaction_0_10
    got = satisfaction.copy()
    got[derive] = table[codes]
    return got


def _mask_free_text(df: pd.DataFrame) -> pd.DataFrame:
    """Free text never carries personal data into reports (PRIV-1)."""
    from aftersales.privacy import mask_text

    df = df.copy()
    for col in (c for c in MASKED if c in df.columns):
        codes, uniques = pd.factorize(df[col].to_numpy(dtype=object), use_na_sentinel=True)
        values = uniques.tolist()
        masked = [mask_text(v) for v in values]
        if masked != values:
            table = np.array([*masked, None], dtype=object)
            df[col] = table[codes]
    return df


def _sorted_errors(errors: list[RowError]) -> list[RowError]:
    return sorted(errors, key=lambda e: (e.line, COLUMNS.index(e.column), e.reason))


# ------------------------------------------------------------------ where good rows go
class Sink:
    """Where the good rows of a file go: keeps the first row of each ticket id."""

    batch_id = 0

    def stored(self, ids: list[str]) -> dict[str, tuple[int | None, int | None]]:
        """``(batch_id, source_line)`` of the stored rows with these ids."""
        raise NotImplementedError

    def insert(self, rows: pd.DataFrame) -> int:
        """Store the rows whose ticket_id is not stored yet; returns how many."""
        raise NotImplementedError


class MemorySink(Sink):
    """The rows of one file kept in memory (``--input FILE``)."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.frames: list[pd.DataFrame] = []

    def stored(self, ids: list[str]) -> dict[str, tuple[int | None, int | None]]:
        return {t: (self.batch_id, self.first[t]) for t in ids if t in self.first}

    def insert(self, rows: pd.DataFrame) -> int:
        new = ~rows["ticket_id"].isin(list(self.first)).to_numpy()
        kept = rows[new]
        self.first.update(zip(kept["ticket_id"], kept["line"].astype(int), strict=True))
        self.frames.append(kept)
        return len(kept)


def insert_columns(rows: pd.DataFrame) -> tuple[str, ...]:
    """The ``history_ticket`` columns a chunk's rows fill: the canonical columns the file
    has (a file without the optional ones writes no column of NULLs), then the batch."""
    return (*[c for c in COLUMNS if c in rows.columns], "batch_id", "source_line")


def _tuples(rows: pd.DataFrame, batch_id: int) -> list[tuple[Any, ...]]:
    """Rows as DB-API tuples (None for empty cells), in :func:`insert_columns` order."""
    cols: list[list[Any]] = []
    for c in insert_columns(rows)[:-2]:
        v = rows[c].to_numpy()
        if c in TIMESTAMPS:
            obj = v.astype(object)
            obj[v == NO_US] = None
            cols.append(obj.tolist())
        elif c in SURVEY_COLUMNS:  # whole numbers 1-5
            f = v.astype("float64")
            obj = np.where(np.isnan(f), 0, f).astype(np.int64).astype(object)
            obj[np.isnan(f)] = None
            cols.append(obj.tolist())
        elif c == "satisfaction" or c in NUMBERS:
            obj = v.astype(object)
            obj[np.isnan(v.astype("float64"))] = None
            cols.append(obj.tolist())
        else:
            obj = rows[c].to_numpy(dtype=object)  # a str column holds NaN for missing
            if not obj.flags.writeable:  # a view of the frame's own (all-empty) column
                obj = obj.copy()
            obj[pd.isna(obj)] = None
            cols.append(obj.tolist())
    cols.append([batch_id] * len(rows))
    cols.append(rows["line"].to_numpy(dtype=np.int64).tolist())
    return list(zip(*cols, strict=True))


class DatabaseSink(Sink):
    """``history_ticket`` in the caller's transaction; one bulk statement per chunk."""

    def __init__(self, conn: Any, batch_id: int) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self._staged = False

    def stored(self, ids: list[str]) -> dict[str, tuple[int | None, int | None]]:
        from sqlalchemy import select

        from models.history import HistoryTicket

        h = HistoryTicket.__table__
        out: dict[str, tuple[int | None, int | None]] = {}
        for i in range(0, len(ids), 10_000):
            q = select(h.c.ticket_id, h.c.batch_id, h.c.source_line).where(
                h.c.ticket_id.in_(ids[i : i + 10_000])
            )
            for tid, b, line in self.conn.execute(q):
                out[tid] = (b, line)
        return out

    def insert(self, rows: pd.DataFrame) -> int:
        if rows.empty:
            return 0
        columns = insert_columns(rows)
        names = ", ".join(columns)
        if self.conn.dialect.name == "postgresql":
            return self._copy(rows, names)
        marks = ", ".join("?" for _ in columns)
        res = self.conn.exec_driver_sql(
            f"INSERT OR IGNORE INTO history_ticket ({names}) VALUES ({marks})",
            _tuples(rows, self.batch_id),
        )
        return int(res.rowcount)

    def _copy(self, rows: pd.DataFrame, names: str) -> int:
        """COPY straight into ``history_ticket`` (inside a savepoint); if an id is already
        stored, COPY into a temporary table and ``INSERT ... ON CONFLICT DO NOTHING``."""
        import psycopg

        raw = self.conn.connection.driver_connection
        data = _tuples(rows, self.batch_id)
        with raw.cursor() as cur:
            cur.execute("SAVEPOINT history_chunk")
            try:
                with cur.copy(f"COPY history_ticket ({names}) FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT history_chunk")
            else:
                cur.execute("RELEASE SAVEPOINT history_chunk")
                return len(data)
            cur.execute("RELEASE SAVEPOINT history_chunk")
            if not self._staged:
                cur.execute(
                    "CREATE TEMP TABLE history_import_stage "
                    "(LIKE history_ticket INCLUDING DEFAULTS) ON COMMIT DROP"
                )
                self._staged = True
            else:
                cur.execute("TRUNCATE history_import_stage")
            with cur.copy(f"COPY history_import_stage ({names}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO history_ticket ({names}) SELECT {names} FROM history_import_stage "
                "ON CONFLICT (ticket_id) DO NOTHING"
            )
            return int(cur.rowcount)


class Importer:
    """Puts the checked chunks of one file into a :class:`Sink` and keeps the counts.

    The first good row of a ticket id wins; a later row with the same id is
    rejected as ``'X' repeats line M`` (also when it has other errors); a row
    whose id was stored by an earlier file is skipped and counted.
    """

    def __init__(self, sink: Sink, max_errors: int) -> None:
        self.sink = sink
        self.max_errors = max_errors
        self.imported = 0
        self.skipped = 0
        self.rejected = 0
        self.rows_read = 0
        self.errors: list[RowError] = []
        self.errors_total = 0
        self.min_created: int | None = None
        self.max_created: int | None = None

    def _repeat(self, tid: str, line: int, first: int | None) -> RowError:
        return RowError(line, "ticket_id", f"{tid!r} repeats line {first}")

    def add(self, chunk: CheckedChunk) -> None:
        self.rows_read += chunk.rows_read
        errors = list(chunk.errors)
        good = chunk.rows
        ids = good["ticket_id"].to_numpy(dtype=object)
        good_lines = good["line"].to_numpy(dtype=np.int64)
        # repeats inside the chunk: the first good row wins
        dup = pd.Series(ids).duplicated(keep="first").to_numpy()
        bad_rows = np.isin(chunk.lines, [e.line for e in chunk.errors])
        bad_ids = chunk.ids[bad_rows]
        bad_lines = chunk.lines[bad_rows]
        has_bad_ids = bool(pd.notna(bad_ids).any()) if len(bad_ids) else False
        first: dict[str, int] = {}
        if dup.any() or has_bad_ids:
            wanted = set(ids[dup].tolist()) | {t for t in bad_ids.tolist() if t is not None}
            for tid, line in zip(ids.tolist(), good_lines.tolist(), strict=True):
                if tid in wanted and tid not in first:
                    first[tid] = line
        for tid, line in zip(ids[dup].tolist(), good_lines[dup].tolist(), strict=True):
            errors.append(self._repeat(tid, line, first[tid]))
        good = good[~dup]
        # rows with other errors whose id repeats a good row (of this chunk or an earlier one)
        if has_bad_ids:
            pairs = [
                (t, ln)
                for t, ln in zip(bad_ids.tolist(), bad_lines.tolist(), strict=True)
                if t is not None
            ]
            earlier = self.sink.stored([t for t, _ in pairs if t not in first])
            for tid, line in pairs:
                if tid in first and first[tid] < line:
                    errors.append(self._repeat(tid, line, first[tid]))
                elif tid in earlier and earlier[tid][0] == self.sink.batch_id:
                    errors.append(self._repeat(tid, line, earlier[tid][1]))
        good = good.sort_values("created_at", kind="stable")
        stored = self.sink.insert(good)
        kept = good
        if stored < len(good):
            # some ids were stored before: by an earlier file, or by an earlier chunk of this one
            seen = self.sink.stored(good["ticket_id"].tolist())
            new = np.ones(len(good), dtype=bool)
            for k, (tid, line) in enumerate(
                zip(good["ticket_id"].tolist(), good["line"].tolist(), strict=True)
            ):
                b, src = seen.get(tid, (None, None))
                if b == self.sink.batch_id and src == line:
                    continue
                new[k] = False
                if b == self.sink.batch_id:
                    errors.append(self._repeat(tid, line, src))
                else:
                    self.skipped += 1
            kept = good[new]
        self.imported += stored
        if len(kept):
            lo, hi = int(kept["created_at"].min()), int(kept["created_at"].max())
            self.min_created = lo if self.min_created is None else min(self.min_created, lo)
            self.max_created = hi if self.max_created is None else max(self.max_created, hi)
        self.rejected += len({e.line for e in errors})
        errors = _sorted_errors(errors)
        self.errors_total += len(errors)
        room = self.max_errors - len(self.errors)
        if room > 0:
            self.errors += errors[:room]


# ------------------------------------------------------------------ whole file in memory
@dataclass
class ParsedFile:
    """Validated rows (canonical DataFrame, UTC timestamps) and the rejected ones."""

    frame: pd.DataFrame
    errors: list[RowError]
    lines: pd.Series  # file line of every good row, aligned with ``frame``
    rows_read: int
    sha256: str

    @property
    def bad_lines(self) -> list[int]:
        return sorted({e.line for e in self.errors})


def parse_file(
    path: Path | str,
    *,
    mapping: Mapping | None = None,
    scale: int | None = None,
    timezone: str | None = None,
    chunk_rows: int | None = None,
) -> ParsedFile:
    """Read and validate a whole history file into memory, with the rules of the import;
    never touches the database (the ``--input FILE`` path of the reports)."""
    path = Path(path)
    rules = Rules.of(mapping, scale, timezone)
    reader = open_reader(path, chunk_rows or _settings().import_chunk_rows)
    source = canonical_columns(path, reader.columns, rules.mapping)
    sink = MemorySink()
    importer = Importer(sink, max_errors=2**62)
    for chunk in reader.chunks():
        importer.add(check_chunk(chunk.frame, source, rules, all_text=chunk.all_text))
    rows = (
        pd.concat(sink.frames, ignore_index=True).sort_values("line", kind="stable")
        if sink.frames
        else _empty_rows()
    )
    return ParsedFile(
        frame=_rows_to_frame(rows.reset_index(drop=True)),
        errors=importer.errors,
        lines=pd.Series(rows["line"].to_numpy(dtype=np.int64)),
        rows_read=importer.rows_read,
        sha256=file_sha256(path),
    )


def _empty_rows() -> pd.DataFrame:
    data: dict[str, Any] = {c: np.array([], dtype=object) for c in COLUMNS}
    for c in TIMESTAMPS:
        data[c] = np.array([], dtype=np.int64)
    data["satisfaction"] = np.array([], dtype="float64")
    data["line"] = np.array([], dtype=np.int64)
    return pd.DataFrame(data)


def _rows_to_frame(rows: pd.DataFrame) -> pd.DataFrame:
    df = rows[list(CORE_COLUMNS)].copy()
    eff = "satisfaction_efficiency"
    df[eff] = rows[eff] if eff in rows.columns else np.full(len(rows), np.nan)
    for c in TIMESTAMPS:
        v = rows[c].to_numpy(dtype=np.int64)
        d = pd.Series(pd.to_datetime(np.where(v == NO_US, 0, v), unit="us", utc=True))
        df[c] = d.where(v != NO_US)
    return _finish(df.assign(source="file"))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes: UTC timestamps, float satisfaction, categorical group columns."""
    df = df.copy()
    for col in TIMESTAMPS:
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    for col in FLOAT_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in (*GROUP_COLUMNS, "source"):
        df[col] = df[col].astype("category")
    return df[list(FRAME_COLUMNS)]


def empty_frame() -> pd.DataFrame:
    return _finish(pd.DataFrame({c: [] for c in FRAME_COLUMNS}))


def load_input(
    path: Path | str, *, mapping: Mapping | None = None, scale: int | None = None
) -> tuple[pd.DataFrame, list[RowError]]:
    """Read a file for a report without storing it: (frame, row errors)."""
    parsed = parse_file(path, mapping=mapping, scale=scale)
    return parsed.frame, parsed.errors


# ------------------------------------------------------------------ import
@dataclass
class ImportResult:
    file: str
    sha256: str
    rows_read: int
    imported: int
    skipped_existing: int
    rejected: int
    already_imported: bool
    errors: list[RowError]
    errors_total: int = 0  # may exceed len(errors) (AFTERSALES_IMPORT_MAX_ERRORS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "skipped_existing": self.skipped_existing,
            "rejected": self.rejected,
            "already_imported": self.already_imported,
            "errors": [
                {"line": e.line, "column": e.column, "reason": e.reason} for e in self.errors
            ],
            "errors_total": self.errors_total,
        }


def _settings() -> Any:
    from aftersales.settings import get_settings

    return get_settings()


#: whether to check chunk k+1 while chunk k is written (see _feed); measured per engine
_OVERLAP = {"postgresql": True, "sqlite": False}


def _feed(
    reader: Reader,
    source: dict[str, str],
    rules: Rules,
    importer: Importer,
    progress: Callable[[int, int], None] | None,
    *,
    overlap: bool,
) -> None:
    """Check the chunks and hand them to the importer, in file order. With ``overlap``
    the next chunk is checked while the database server takes the previous one (a
    second thread that mostly waits on the server, so it does not fight the checks
    for the interpreter). At most two chunks are in memory either way."""
    if not overlap:
        for chunk in reader.chunks():
            importer.add(check_chunk(chunk.frame, source, rules, all_text=chunk.all_text))
            if progress is not None:
                progress(chunk.done, reader.total)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") as pool:
        pending: Future[None] | None = None
        done = 0
        try:
            for chunk in reader.chunks():
                checked = check_chunk(chunk.frame, source, rules, all_text=chunk.all_text)
                if pending is not None:
                    pending.result()
                    if progress is not None:
                        progress(done, reader.total)
                pending = pool.submit(importer.add, checked)
                done = chunk.done
            if pending is not None:
                pending.result()
                pending = None
                if progress is not None:
                    progress(done, reader.total)
        finally:
            if pending is not None:  # a chunk failed to read while another was written
                pending.exception()


def import_file(
    path: Path | str,
    *,
    mapping: Mapping | None = None,
    scale: int | None = None,
    url: str | None = None,
    now: datetime | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Validate ``path`` chunk by chunk and store its good rows in one transaction
    (see the module doc). ``progress(done, total)`` is called after each chunk."""
    from sqlalchemy import insert, select, update

    from aftersales.calendar import WorkCalendar
    from aftersales.clock import get_clock
    from aftersales.working_periods import fill_working_periods
    from models.db import get_engine
    from models.history import ImportBatch, from_micros

    path = Path(path)
    settings = _settings()
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise HistoryFileError(f"{path}: cannot read: {exc}") from exc
    engine = get_engine(url)
    b = ImportBatch.__table__
    with engine.connect() as conn:
        seen = conn.execute(select(b).where(b.c.sha256 == sha)).first()
    if seen is not None:  # the same file again: nothing to do (not even parsing)
        rows = seen.rows_imported + seen.rows_skipped + seen.rows_rejected
        return ImportResult(str(path), sha, rows, 0, 0, 0, True, [])
    rules = Rules.of(mapping, scale, None)
    reader = open_reader(path, chunk_rows or settings.import_chunk_rows)
    source = canonical_columns(path, reader.columns, rules.mapping)
    now = now or get_clock().now()
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{int(settings.import_sqlite_cache_kib)}")
        if conn.execute(select(b.c.id).where(b.c.sha256 == sha)).first() is not None:
            return ImportResult(str(path), sha, 0, 0, 0, 0, True, [])
        batch_id = conn.execute(
            insert(b).values(
                sha256=sha,
                filename=path.name[:300],
                rows_imported=0,
                rows_skipped=0,
                rows_rejected=0,
                imported_at=now,
            )
        ).inserted_primary_key[0]
        importer = Importer(DatabaseSink(conn, int(batch_id)), settings.import_max_errors)
        _feed(
            reader,
            source,
            rules,
            importer,
            progress,
            overlap=_OVERLAP.get(conn.dialect.name, False),
        )
        conn.execute(
            update(b)
            .where(b.c.id == batch_id)
            .values(
                rows_imported=importer.imported,
                rows_skipped=importer.skipped,
                rows_rejected=importer.rejected,
            )
        )
        if conn.dialect.name == "postgresql" and importer.imported:
            # fresh statistics: without them the planner takes a month of a bulk-loaded
            # table for a few hundred rows (a spilling hash aggregate, 2-4x slower reports)
            conn.exec_driver_sql("ANALYZE history_ticket")
        if importer.min_created is not None and importer.max_created is not None:
            # the working periods the reports of these months look up (CMP-3 and others)
            cal = WorkCalendar.from_settings(settings)
            first = from_micros(importer.min_created).astimezone(cal.tz).date()
            last = from_micros(importer.max_created).astimezone(cal.tz).date()
            fill_working_periods(conn, cal, first - timedelta(days=1), last + timedelta(days=31))
    return ImportResult(
        str(path),
        sha,
        importer.rows_read,
        importer.imported,
        importer.skipped,
        importer.rejected,
        False,
        importer.errors,
        importer.errors_total,
    )


# ------------------------------------------------------------------ loader
def load_tickets(
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    url: str | None = None,
    include_live: bool = True,
) -> pd.DataFrame:
    """History and live tickets created in ``[start, end)`` as one DataFrame: the rows
    the report queries read (:func:`aftersales.report_sql.ticket_rows`).

    Live ``ticket`` columns map as: ``owner_team`` -> ``team``, ``category``
    (A/B/C/D) -> its letter; the ``source`` column says ``history`` or ``live``.
    Read only: nothing is written.
    """
    from sqlalchemy import select

    from aftersales.report_model import micros
    from aftersales.report_sql import LIVE, ROW_COLUMNS, SLA_CLOCK, late_cmp_clock, ticket_rows
    from models.db import get_engine

    lo = None if start is None else micros(start)
    hi = None if end is None else micros(end)
    rows = ticket_rows(lo, hi, include_live=include_live)
    late_ids: set[str] = set()
    with get_engine(url).connect() as conn:
        got = conn.execute(select(rows)).all()
        live_ids = set(conn.execute(select(LIVE.c.id)).scalars()) if include_live else set()
        if include_live:
            late_ids = set(
                conn.execute(select(SLA_CLOCK.c.ticket_id).where(late_cmp_clock())).scalars()
            )
    if not got:
        return empty_frame()
    df = pd.DataFrame(got, columns=list(ROW_COLUMNS))
    out = pd.DataFrame({c: df[c] for c in ("ticket_id", "sop", "channel", "category", "priority")})
    for name, col in (
        ("c", "created_at"),
        ("f", "first_response_at"),
        ("r", "resolved_at"),
        ("cl", "closed_at"),
    ):
        v = pd.to_numeric(df[name], errors="coerce")
        out[col] = pd.to_datetime(v, unit="us", utc=True)
    out["satisfaction"] = df["satisfaction"]
    out["satisfaction_efficiency"] = df["efficiency"]
    out["handler"] = df["handler"]
    out["team"] = df["team"]
    out["customer_id"] = df["customer_id"]
    live = df["ticket_id"].isin(live_ids).to_numpy()
    out["cmp_clock_late"] = np.where(
        live, df["ticket_id"].isin(late_ids).to_numpy().astype("float64"), np.nan
    )
    out["source"] = np.where(live, "live", "history")
    return _finish(out)
