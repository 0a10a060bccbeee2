"""Ticket history: import from CSV/XLSX, and one loader for the reports (issue 3).

Import (``aftersales import FILE``)
-----------------------------------
* Canonical columns: :data:`COLUMNS`. ``ticket_id``, ``sop``, ``channel``,
  ``priority`` and ``created_at`` are required in every row; the other cells may
  be empty. A file without one of the canonical columns (after the mapping) is
  refused as a whole and nothing is imported.
* Timestamps are ISO 8601. One with a UTC offset (``+08:00``, ``Z``) is taken as
  is; a naive one (no offset) is read as **Asia/Shanghai** local time (the
  ``timezone`` of the mapping file or ``AFTERSALES_TIMEZONE`` overrides it).
  XLSX date cells are naive and read the same way.
* ``satisfaction`` is on the QA-1 0-10 scale. ``--scale 5`` (or
  ``satisfaction_scale: 5`` in the mapping) reads 0-5 survey scores and converts
  them by **score x 2** (1 -> 2, 3 -> 6, 5 -> 10). Empty means "not rated".
* Every row is validated on its own. A bad row is reported as
  ``line N: column: reason`` (file line; the header is line 1) and skipped; the
  good rows are stored in **one** transaction (all of them or, on a database
  error, none). The file's SHA-256 is recorded in ``import_batch``: importing the
  same file again adds nothing; a row whose ``ticket_id`` is already stored (from
  another file) is skipped and counted, never duplicated.
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
as one DataFrame with :data:`FRAME_COLUMNS`; timestamps are UTC
(``datetime64[ns, UTC]``). When a live ticket and a history row share a
``ticket_id`` the live ticket wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import yaml

from models.history import CHANNELS, PRIORITIES, SOPS

COLUMNS = (
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
REQUIRED = ("ticket_id", "sop", "channel", "priority", "created_at")
TIMESTAMPS = ("created_at", "first_response_at", "resolved_at", "closed_at")
ENUMS: dict[str, tuple[str, ...]] = {"sop": SOPS, "channel": CHANNELS, "priority": PRIORITIES}
TEXT_LIMITS = {"ticket_id": 64, "category": 60, "handler": 120, "team": 60, "customer_id": 64}
GROUP_COLUMNS = ("sop", "channel", "category", "priority", "handler", "team")
FRAME_COLUMNS = (*COLUMNS, "source")
DEFAULT_TZ = "Asia/Shanghai"


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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_raw(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            raw = pd.read_excel(path, dtype=object, engine="openpyxl")
        elif suffix in (".csv", ".txt"):
            raw = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
            )
        else:
            raise HistoryFileError(f"{path}: unsupported file type {suffix!r} (use .csv or .xlsx)")
    except HistoryFileError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HistoryFileError(f"{path}: cannot read: {exc}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    # File line of each row: the header is line 1 (no multi-line cells).
    raw.index = pd.RangeIndex(2, 2 + len(raw))
    return raw


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
    """A UTC datetime, None for empty, or an error string."""
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


def parse_file(
    path: Path | str,
    *,
    mapping: Mapping | None = None,
    scale: int | None = None,
    timezone: str | None = None,
) -> ParsedFile:
    """Read and validate a history file; never touches the database."""
    path = Path(path)
    mapping = mapping or Mapping()
    raw = _read_raw(path)
    rename = {src: dst for dst, src in mapping.columns.items()}
    missing_src = [f"{dst} (mapped from {src!r})" for src, dst in rename.items() if src not in raw]
    raw = raw.rename(columns=rename)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        detail = "; ".join(missing_src)
        raise HistoryFileError(
            f"{path.name}: missing column(s) {', '.join(missing)}"
            + (f" [{detail}]" if detail else "")
            + f"; required columns: {', '.join(COLUMNS)}"
        )
    raw = raw[list(COLUMNS)]
    raw = raw[~raw.map(_blank).all(axis=1)]  # blank lines are not rows
    tz = ZoneInfo(timezone or mapping.timezone or DEFAULT_TZ)
    scale = scale or mapping.satisfaction_scale or 10
    if scale not in (5, 10):
        raise HistoryFileError(f"--scale must be 5 or 10, not {scale}")

    errors: list[RowError] = []
    out: dict[str, pd.Series] = {}

    def bad(mask: pd.Series, column: str, reasons: pd.Series | str) -> None:
        for line in mask.index[mask.to_numpy()]:
            r = reasons if isinstance(reasons, str) else reasons.loc[line]
            errors.append(RowError(int(line), column, str(r)))

    for col in COLUMNS:
        s = raw[col]
        if col in mapping.values:
            table = mapping.values[col]
            s = s.map(lambda v, t=table: t.get(_text(v) or "", v))
        if col in TIMESTAMPS:
            parsed = s.map(lambda v: _parse_ts(v, tz))
            is_err = parsed.map(lambda v: isinstance(v, str))
            bad(is_err, col, parsed)
            parsed = parsed.where(~is_err, None)
            out[col] = pd.to_datetime(parsed.where(parsed.notna(), None), utc=True)
        elif col == "satisfaction":
            txt = s.map(_text)
            num = pd.to_numeric(txt, errors="coerce")
            not_num = txt.notna() & num.isna()
            bad(not_num, col, txt.map(lambda v: f"{v!r} is not a number"))
            hi = 5 if scale == 5 else 10
            out_of = num.notna() & ((num < 0) | (num > hi))
            bad(out_of, col, num.map(lambda v, h=hi: f"{v:g} is outside 0-{h} (--scale {scale})"))
            num = num.where(~out_of)
            out[col] = (num * 2.0 if scale == 5 else num).astype("float64")
        else:
            txt = s.map(_text)
            if col in ENUMS:
                low = txt.str.lower()
                allowed = ENUMS[col]
                unknown = low.notna() & ~low.isin(allowed)
                bad(
                    unknown,
                    col,
                    txt.map(lambda v, a=allowed: f"{v!r} is not one of {', '.join(a)}"),
                )
                txt = low
            limit = TEXT_LIMITS.get(col)
            if limit:
                long = txt.notna() & (txt.str.len() > limit)
                bad(long, col, f"longer than {limit} characters")
            out[col] = txt
        if col in REQUIRED:
            bad(raw[col].map(_blank).astype(bool), col, "is required")

    frame = pd.DataFrame(out, index=raw.index)
    created = frame["created_at"]
    for col in ("first_response_at", "resolved_at", "closed_at"):
        early = frame[col].notna() & created.notna() & (frame[col] < created)
        bad(early, col, "is before created_at")
    dup = frame["ticket_id"].notna() & frame["ticket_id"].duplicated(keep="first")
    if dup.any():
        first_line = pd.Series(frame.index, index=frame.index).groupby(frame["ticket_id"]).min()
        for line in dup.index[dup.to_numpy()]:
            tid = frame.at[line, "ticket_id"]
            errors.append(
                RowError(int(line), "ticket_id", f"{tid!r} repeats line {int(first_line[tid])}")
            )

    errors.sort(key=lambda e: (e.line, COLUMNS.index(e.column)))
    bad_lines = {e.line for e in errors}
    good = frame[~frame.index.isin(list(bad_lines))]
    # Free text never carries personal data into reports (PRIV-1).
    good = _mask_free_text(good)
    return ParsedFile(
        frame=_finish(good.assign(source="file").reset_index(drop=True)),
        errors=errors,
        lines=pd.Series(good.index, dtype="int64"),
        rows_read=len(frame),
        sha256=file_sha256(path),
    )


def _mask_free_text(df: pd.DataFrame) -> pd.DataFrame:
    from aftersales.privacy import mask_text

    df = df.copy()
    for col in ("category", "handler", "team", "customer_id"):
        uniq = df[col].dropna().unique()
        masked = {v: mask_text(v) for v in uniq}
        if any(k != v for k, v in masked.items()):
            df[col] = df[col].map(lambda v, m=masked: m.get(v, v) if isinstance(v, str) else v)
    return df


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes: UTC timestamps, float satisfaction, categorical group columns."""
    df = df.copy()
    for col in TIMESTAMPS:
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    df["satisfaction"] = pd.to_numeric(df["satisfaction"], errors="coerce").astype("float64")
    for col in (*GROUP_COLUMNS, "source"):
        df[col] = df[col].astype("category")
    return df[list(FRAME_COLUMNS)]


def empty_frame() -> pd.DataFrame:
    return _finish(pd.DataFrame({c: [] for c in FRAME_COLUMNS}))


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
        }


def _chunks(items: list[str], n: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def import_file(
    path: Path | str,
    *,
    mapping: Mapping | None = None,
    scale: int | None = None,
    url: str | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Validate ``path`` and store its good rows in one transaction (see the module doc)."""
    from sqlalchemy import insert
    from sqlmodel import select

    from models.db import session_scope
    from models.history import HistoryTicket, ImportBatch

    path = Path(path)
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise HistoryFileError(f"{path}: cannot read: {exc}") from exc
    with session_scope(url) as s:
        seen = s.exec(select(ImportBatch).where(ImportBatch.sha256 == sha)).first()
    if seen is not None:  # the same file again: nothing to do (not even parsing)
        rows = seen.rows_imported + seen.rows_skipped + seen.rows_rejected
        return ImportResult(str(path), sha, rows, 0, 0, 0, True, [])
    parsed = parse_file(path, mapping=mapping, scale=scale)
    now = now or datetime.now(UTC)
    with session_scope(url) as s:
        if s.exec(select(ImportBatch).where(ImportBatch.sha256 == parsed.sha256)).first():
            return ImportResult(str(path), sha, parsed.rows_read, 0, 0, 0, True, [])
        df = parsed.frame
        ids = df["ticket_id"].astype(str).tolist()
        existing: set[str] = set()
        for chunk in _chunks(ids):
            existing.update(
                s.exec(select(HistoryTicket.ticket_id).where(HistoryTicket.ticket_id.in_(chunk)))
            )
        new = df[~df["ticket_id"].astype(str).isin(existing)]
        batch = ImportBatch(
            sha256=parsed.sha256,
            filename=path.name[:300],
            rows_imported=len(new),
            rows_skipped=len(df) - len(new),
            rows_rejected=len(parsed.bad_lines),
            imported_at=now,
        )
        s.add(batch)
        s.flush()
        if len(new):
            s.execute(insert(HistoryTicket), _records(new, batch.id))
    return ImportResult(
        str(path),
        parsed.sha256,
        parsed.rows_read,
        len(new),
        len(df) - len(new),
        len(parsed.bad_lines),
        False,
        parsed.errors,
    )


def _records(df: pd.DataFrame, batch_id: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cols = [c for c in COLUMNS]
    plain = df[cols].astype(object).where(df[cols].notna(), None)
    for rec in plain.to_dict("records"):
        for c in TIMESTAMPS:
            v = rec[c]
            rec[c] = v.to_pydatetime() if isinstance(v, pd.Timestamp) else v
        rec["satisfaction"] = None if rec["satisfaction"] is None else float(rec["satisfaction"])
        rec["batch_id"] = batch_id
        rows.append(rec)
    return rows


# ------------------------------------------------------------------ loader
def load_tickets(
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    url: str | None = None,
    include_live: bool = True,
) -> pd.DataFrame:
    """History and live tickets created in ``[start, end)`` as one DataFrame.

    Live ``ticket`` columns map as: ``owner_team`` -> ``team``, ``category``
    (A/B/C/D) -> its letter; the ``source`` column says ``history`` or ``live``.
    Read only: nothing is written.
    """
    from sqlmodel import select

    from models.db import session_scope
    from models.entities import Ticket
    from models.history import HistoryTicket

    h_cols = [getattr(HistoryTicket, c) for c in COLUMNS]
    t_cols = [
        Ticket.id,
        Ticket.sop,
        Ticket.channel,
        Ticket.category,
        Ticket.priority,
        Ticket.created_at,
        Ticket.first_response_at,
        Ticket.resolved_at,
        Ticket.closed_at,
        Ticket.satisfaction,
        Ticket.handler,
        Ticket.owner_team,
        Ticket.customer_id,
    ]

    def window(q: Any, col: Any) -> Any:
        if start is not None:
            q = q.where(col >= start)
        if end is not None:
            q = q.where(col < end)
        return q

    with session_scope(url) as s:
        hist = s.execute(window(select(*h_cols), HistoryTicket.created_at)).all()
        live = s.execute(window(select(*t_cols), Ticket.created_at)).all() if include_live else []
        s.rollback()  # read only

    def value(v: Any) -> Any:
        return v.value if hasattr(v, "value") else v

    frames = []
    if hist:
        frames.append(pd.DataFrame(hist, columns=list(COLUMNS)).assign(source="history"))
    if live:
        rows = [tuple(value(v) for v in r) for r in live]
        frames.append(pd.DataFrame(rows, columns=list(COLUMNS)).assign(source="live"))
    if not frames:
        return empty_frame()
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        # a live ticket wins over a history row with the same id
        df = df.sort_values("source", key=lambda s: s.eq("history")).drop_duplicates(
            "ticket_id", keep="first"
        )
        df = df.reset_index(drop=True)
    return _finish(df)


def load_input(path: Path | str, *, mapping: Mapping | None = None, scale: int | None = None):
    """Read a file for a report without storing it: (frame, row errors)."""
    parsed = parse_file(path, mapping=mapping, scale=scale)
    return parsed.frame, parsed.errors
