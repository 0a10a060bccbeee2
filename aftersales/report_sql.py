"""The reports' figures computed by the database (issue 12).

One ``GROUP BY`` query per figure set, in SQLAlchemy Core, on SQLite and on
PostgreSQL. Only group sums come back (a few thousand rows at most), never the
tickets; :mod:`aftersales.report_model` turns the sums into the report.

* **Rows**: ``history_ticket`` (instants already integer microseconds) united
  with the live ``ticket`` table (its timestamps converted to microseconds in
  the query); a history row whose ``ticket_id`` is a live ticket's id is left
  out (the live ticket wins). The month window uses ``ix_history_ticket_created_at``
  and ``ix_ticket_created_at``.
* **Live complaints** are judged by their clocks (``sla_clock``, the record of the
  CMP deadlines): on time when answered and no CMP clock was late; history
  complaints, which have no clocks, by the deadlines chained from their instants.
* **Working-time deadlines** (CMP-3, and any rule in working units) are two
  index lookups in ``working_period`` per ticket (see
  :mod:`aftersales.working_periods`), evaluated only for the tickets they
  concern. The coverage of the table is extended before the query (and, if the
  query finds a deadline outside it, once more and the query re-run).
* **Stages**: per-row values that later expressions use more than once (a
  looked-up deadline) are computed in a subquery fenced with ``OFFSET 0`` so
  that neither SQLite nor PostgreSQL inlines (and repeats) the lookup; SQLite
  runs the stages as co-routines, without temporary tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    table,
    text,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.functions import FunctionElement

from aftersales.calendar import WorkCalendar
from aftersales.policy import Profile
from aftersales.report_model import (
    BREACHED,
    FAMILIES,
    MET,
    NA,
    OPEN,
    US,
    Buckets,
    Clock,
    QualityCell,
    QualityKey,
    QualityRules,
    QualitySums,
    ReplayCell,
    ReplayKey,
    RuleSums,
    SpeedCell,
    SpeedSums,
    Step,
    clocks,
    family_steps,
    micros,
)
from aftersales.working_periods import calendar_key, fill_working_periods
from models.db import UTCDateTime
from models.history import HistoryTicket, WorkingPeriod, from_micros

Cols = Any  # the ``.c`` collection of a stage
DAY_US = 86_400 * US
#: Alembic revisions older than the one that stores history instants as integers
REVISIONS_BEFORE_0004 = frozenset({"0001", "0002", "0003"})


# ------------------------------------------------------------------ dialect helpers
class epoch_us(FunctionElement[int]):  # noqa: N801 - reads as a SQL function
    """Microseconds since the epoch of a timestamp column (the live ``ticket`` table)."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch_us"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element: epoch_us, compiler: Any, **kw: Any) -> str:
    # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC: whole seconds exactly, then the digits
    x = compiler.process(element.clauses, **kw)
    return (
        f"(unixepoch(substr({x}, 1, 19)) * 1000000"
        f" + CAST(substr({x} || '000000', 21, 6) AS INTEGER))"
    )


@compiles(epoch_us)
def _epoch_us_default(element: epoch_us, compiler: Any, **kw: Any) -> str:
    x = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {x}) * 1000000 AS BIGINT)"


class score_milli(FunctionElement[int]):  # noqa: N801
    """A 0-10 score in whole thousandths, ``floor(x * 1000 + 0.5)`` (as report_model.milli)."""

    type = BigInteger()
    inherit_cache = True
    name = "score_milli"


@compiles(score_milli, "sqlite")
def _score_milli_sqlite(element: score_milli, compiler: Any, **kw: Any) -> str:
    # scores are >= 0, so truncation is floor
    return f"CAST({compiler.process(element.clauses, **kw)} * 1000 + 0.5 AS INTEGER)"


@compiles(score_milli)
def _score_milli_default(element: score_milli, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)} * 1000 + 0.5) AS BIGINT)"


class binary_order(FunctionElement[str]):  # noqa: N801
    """A text column compared by code point (Python's ``sorted``), whatever the collation."""

    inherit_cache = True
    name = "binary_order"


@compiles(binary_order, "sqlite")
def _binary_sqlite(element: binary_order, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.clauses, **kw)} COLLATE BINARY"


@compiles(binary_order)
def _binary_default(element: binary_order, compiler: Any, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


#: PostgreSQL settings for a report's transaction: the month's groups aggregate in memory
#: (the default 4 MB makes the planner sort and spill to disk), and no JIT compilation
#: (it costs a short query more than it saves)
PG_REPORT_SETTINGS = ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for report queries (read only; rolled back at the end)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            for stmt in PG_REPORT_SETTINGS:
                conn.exec_driver_sql(stmt)
        yield conn


def fence(sel: Select[Any]) -> Select[Any]:
    """A subquery the planner keeps as it is (SQLite: a co-routine; PostgreSQL: no pull-up)."""
    return sel.offset(0)


def one(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return case((cond, 1), else_=0)


# ------------------------------------------------------------------ schema
def schema_ready(engine: Engine) -> bool:
    """Whether the database is at (or past) the migration the report queries need."""
    try:
        with engine.connect() as conn:
            versions = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
            if not versions or versions & REVISIONS_BEFORE_0004:
                return False
            # revision 0011 (history survey columns): probed, as the revision chain may
            # have several heads
            conn.execute(text("SELECT satisfaction_efficiency FROM history_ticket LIMIT 0"))
    except DBAPIError:
        return False
    return True


# ------------------------------------------------------------------ the rows
#: the columns of the live ``ticket`` table (models.entities.Ticket) the reports read, as a
#: light Core table: importing the entity models would cost a cold report command 0.16 s
LIVE = table(
    "ticket",
    column("id", String),
    column("sop", String),
    column("channel", String),
    column("category", String),
    column("priority", String),
    column("owner_team", String),
    column("handler", String),
    column("satisfaction", Float),
    column("satisfaction_efficiency", Integer),
    column("customer_id", String),
    column("created_at", UTCDateTime()),
    column("first_response_at", UTCDateTime()),
    column("resolved_at", UTCDateTime()),
    column("closed_at", UTCDateTime()),
)
ROW_COLUMNS = (
    "ticket_id",
    "sop",
    "channel",
    "category",
    "priority",
    "team",
    "handler",
    "satisfaction",
    "c",
    "f",
    "r",
    "cl",
    "customer_id",
    "efficiency",
)


def ticket_rows(
    lo_us: int | None,
    hi_us: int | None,
    *,
    include_live: bool = True,
    columns: Sequence[str] = ROW_COLUMNS,
    sop: str | None = None,
    part: str = "all",
) -> Any:
    """History and live tickets created in ``[lo_us, hi_us)`` (optionally of one ``sop``)
    with canonical ``columns`` (a subset of :data:`ROW_COLUMNS`): ``ticket_id, sop, channel,
    category, priority, team, handler, satisfaction, customer_id``, ``efficiency`` (the CB-3
    resolution-efficiency dimension, 1-5) and the instants ``c`` (created), ``f`` (first
    response), ``r`` (resolved), ``cl`` (closed) in microseconds.

    ``part`` selects: ``all`` (history rows without a live twin, and the live tickets),
    ``history`` (every history row), ``shadowed`` (history rows with a live twin; found
    from the live ids, so it costs as many lookups as there are live tickets),
    ``unshadowed`` (history rows without a live twin: a lookup per history row) or
    ``live``. Sums are additive: all = history - shadowed + live, which spares a
    lookup per history row on SQLite.
    """
    if part not in ("all", "history", "shadowed", "unshadowed", "live"):
        raise ValueError(f"unknown part {part!r}")
    unknown = set(columns) - set(ROW_COLUMNS)
    if unknown:
        raise ValueError(f"unknown row column(s): {', '.join(sorted(unknown))}")
    h = HistoryTicket.__table__

    def us(name: str) -> ColumnElement[int]:
        return type_coerce(h.c[name], BigInteger())

    h_cols: dict[str, ColumnElement[Any]] = {
        "ticket_id": h.c.ticket_id,
        "sop": h.c.sop,
        "channel": h.c.channel,
        "category": h.c.category,
        "priority": h.c.priority,
        "team": h.c.team,
        "handler": h.c.handler,
        "satisfaction": h.c.satisfaction,
        "c": us("created_at"),
        "f": us("first_response_at"),
        "r": us("resolved_at"),
        "cl": us("closed_at"),
        "customer_id": h.c.customer_id,
        "efficiency": h.c.satisfaction_efficiency,
    }
    hist = select(*[h_cols[n].label(n) for n in columns])
    if lo_us is not None:
        hist = hist.where(us("created_at") >= lo_us)
    if hi_us is not None:
        hist = hist.where(us("created_at") < hi_us)
    if sop is not None:
        hist = hist.where(h.c.sop == sop)
    if part == "history" or (part == "all" and not include_live):
        return hist.subquery("rows")
    t = LIVE
    if part == "shadowed":
        return hist.where(h.c.ticket_id.in_(select(t.c.id))).subquery("rows")
    hist = hist.where(~exists().where(t.c.id == h.c.ticket_id))
    if part == "unshadowed":
        return hist.subquery("rows")

    def values(col: Any) -> ColumnElement[str]:
        # enum columns hold the members' names, the upper-case values (a native enum on
        # PostgreSQL): read as lower-case text they are the canonical values
        return func.lower(cast(col, String))

    t_cols: dict[str, ColumnElement[Any]] = {
        "ticket_id": t.c.id,
        "sop": values(t.c.sop),
        "channel": values(t.c.channel),
        "category": cast(t.c.category, String),
        "priority": values(t.c.priority),
        "team": t.c.owner_team,
        "handler": t.c.handler,
        "satisfaction": t.c.satisfaction,
        "c": epoch_us(t.c.created_at),
        "f": epoch_us(t.c.first_response_at),
        "r": epoch_us(t.c.resolved_at),
        "cl": epoch_us(t.c.closed_at),
        "customer_id": t.c.customer_id,
        "efficiency": t.c.satisfaction_efficiency,
    }
    live = select(*[t_cols[n].label(n) for n in columns])
    if lo_us is not None:
        live = live.where(t.c.created_at >= from_micros(lo_us))
    if hi_us is not None:
        live = live.where(t.c.created_at < from_micros(hi_us))
    if sop is not None:
        live = live.where(values(t.c.sop) == sop)
    if part == "live":
        return live.subquery("rows")
    return union_all(hist, live).subquery("rows")


def parts(include_live: bool) -> list[tuple[str, int]]:
    """The row parts whose signed sums make the union (see :func:`ticket_rows`)."""
    if not include_live:
        return [("history", 1)]
    return [("history", 1), ("shadowed", -1), ("live", 1)]


# ------------------------------------------------------------------ staged queries
class Staged:
    """A query built in fenced stages: each stage selects the previous one's columns plus
    new ones computed from them, so each new value is computed once per row. The stages
    are CTEs (flat SQL text: SQLite's parser refuses deeply nested subqueries)."""

    def __init__(self, base: Any) -> None:
        self.sub = base
        self._n = 0

    @property
    def c(self) -> Cols:
        return self.sub.c

    def add(self, cols: dict[str, Callable[[Cols], ColumnElement[Any]]]) -> None:
        if not cols:
            return
        self._n += 1
        c = self.sub.c
        self.sub = fence(select(*c, *[fn(c).label(name) for name, fn in cols.items()])).cte(
            f"stage{self._n}"
        )


Expr = Callable[[Cols], ColumnElement[Any]]


class Lookups:
    """The two working-period lookups of a working-time deadline (one calendar), as
    correlated index lookups per row: cheap when few rows of many need a deadline."""

    def __init__(self, key: str) -> None:
        self.key = key

    def pos(self, t: ColumnElement[int]) -> ColumnElement[int]:
        """Working time accumulated before instant ``t``."""
        p = WorkingPeriod.__table__.alias("p")
        within = t - p.c.start_us
        return (
            select(
                case(
                    (within < p.c.end_us - p.c.start_us, p.c.cum_start_us + within),
                    else_=p.c.cum_end_us,
                )
            )
            .where(p.c.calendar_key == self.key, p.c.start_us <= t)
            .order_by(p.c.start_us.desc())
            .limit(1)
            .scalar_subquery()
        )

    def due(self, target: ColumnElement[int]) -> ColumnElement[int]:
        """The instant at which the accumulated working time reaches ``target``."""
        q = WorkingPeriod.__table__.alias("q")
        return (
            select(q.c.start_us + (target - q.c.cum_start_us))
            .where(q.c.calendar_key == self.key, q.c.cum_end_us >= target)
            .order_by(q.c.cum_end_us)
            .limit(1)
            .scalar_subquery()
        )

    def add_pos(self, st: Staged, cols: dict[str, Expr]) -> None:
        """Columns ``name = pos(at)`` (NULL where ``at`` is NULL)."""
        st.add(
            {
                name: (lambda c, at=at: case((at(c).is_not(None), self.pos(at(c))), else_=null()))
                for name, at in cols.items()
            }
        )

    def add_due(self, st: Staged, cols: dict[str, Expr]) -> None:
        """Columns ``name = due(target)`` (NULL where ``target`` is NULL)."""
        st.add(
            {
                name: (lambda c, tg=tg: case((tg(c).is_not(None), self.due(tg(c))), else_=null()))
                for name, tg in cols.items()
            }
        )


class WindowLookups(Lookups):
    """The same two lookups as one sorted merge of the rows with the working periods (an
    as-of join written with running window aggregates): one sort instead of an index
    lookup per row, cheaper when most rows of a stage need a deadline."""

    def _merge(
        self,
        st: Staged,
        name: str,
        at: Expr,
        period_t: str,
        carried: dict[str, str],
        *,
        descending: bool,
        value: Callable[[Any], ColumnElement[Any]],
    ) -> None:
        sub = st.sub
        names = [c.name for c in sub.c]
        wp = WorkingPeriod.__table__
        row_k, period_k = (0, 1) if descending else (1, 0)  # periods first at equal instants
        rows = select(
            *sub.c,
            at(sub.c).label("_t"),
            literal(row_k).label("_k"),
            *[cast(null(), BigInteger).label(alias) for alias in carried],
        )
        periods = select(
            *[null().label(n) for n in names],
            wp.c[period_t].label("_t"),
            literal(period_k).label("_k"),
            *[wp.c[col].label(alias) for alias, col in carried.items()],
        ).where(wp.c.calendar_key == self.key)
        u = union_all(rows, periods).cte(f"{name}_merge")
        order = (u.c._t.desc(), u.c._k.desc()) if descending else (u.c._t, u.c._k)
        agg = func.min if descending else func.max  # monotonic: the nearest period's values
        merged = fence(
            select(
                *[u.c[n] for n in names],
                u.c._t,
                u.c._k,
                *[agg(u.c[a]).over(order_by=order, rows=(None, 0)).label(a) for a in carried],
            )
        ).cte(f"{name}_near")
        found = and_(merged.c._t.is_not(None), *[merged.c[a].is_not(None) for a in carried])
        st._n += 1
        st.sub = fence(
            select(
                *[merged.c[n] for n in names],
                case((found, value(merged.c)), else_=null()).label(name),
            ).where(merged.c._k == row_k)
        ).cte(f"stage{st._n}")

    def add_pos(self, st: Staged, cols: dict[str, Expr]) -> None:
        for name, at in cols.items():

            def pos(m: Any) -> ColumnElement[int]:
                within = m._t - m._ps
                return case(
                    (within < m._pe - m._ps, m._pcs + within), else_=m._pcs + (m._pe - m._ps)
                )

            self._merge(
                st,
                name,
                at,
                "start_us",
                {"_ps": "start_us", "_pe": "end_us", "_pcs": "cum_start_us"},
                descending=False,
                value=pos,
            )

    def add_due(self, st: Staged, cols: dict[str, Expr]) -> None:
        for name, target in cols.items():
            self._merge(
                st,
                name,
                target,
                "cum_end_us",
                {"_qs": "start_us", "_qcs": "cum_start_us"},
                descending=True,
                value=lambda m: m._qs + (m._t - m._qcs),
            )


@dataclass(frozen=True)
class Deadline:
    """A deadline column to add: ``steps`` applied one after another to ``start``,
    only where ``guard`` holds (NULL elsewhere, and where the start is NULL)."""

    name: str
    start: str
    steps: tuple[Step, ...]
    guard: Expr | None = None

    def active(self, c: Cols) -> ColumnElement[bool]:
        g = self.guard(c) if self.guard is not None else true()
        return and_(g, c[self.start].is_not(None))


def add_deadlines(st: Staged, deadlines: Sequence[Deadline], lookups: Lookups) -> None:
    """Add the deadline columns, as :meth:`WorkCalendar.add` chains: natural steps add
    elapsed microseconds; a working step is ``max(due(pos(cur) + N), cur)``, where
    ``pos`` of the result of a working step is known without a lookup."""
    cur: dict[str, Expr] = {d.name: (lambda c, s=d.start: c[s]) for d in deadlines}
    pos: dict[str, Expr | None] = {d.name: None for d in deadlines}
    step_no = {d.name: 0 for d in deadlines}
    while True:
        pending: list[Deadline] = []
        for d in deadlines:
            while step_no[d.name] < len(d.steps) and not d.steps[step_no[d.name]].working:
                n = d.steps[step_no[d.name]].amount_us
                cur[d.name] = lambda c, prev=cur[d.name], n=n: prev(c) + n
                pos[d.name] = None
                step_no[d.name] += 1
            if step_no[d.name] < len(d.steps):
                pending.append(d)
        if not pending:
            break
        # the current instant as a column, then its working position where not known
        first: dict[str, Expr] = {}
        need_pos: dict[str, Expr] = {}
        for d in pending:
            k = step_no[d.name]
            cur_col, pos_col = f"{d.name}_cur{k}", f"{d.name}_pos{k}"
            first[cur_col] = lambda c, d=d, f=cur[d.name]: case((d.active(c), f(c)), else_=null())
            if pos[d.name] is None:
                need_pos[pos_col] = lambda c, col=cur_col: c[col]
        st.add(first)
        lookups.add_pos(st, need_pos)
        # the looked-up due instant, never before the current one
        need_due: dict[str, Expr] = {}
        for d in pending:
            k = step_no[d.name]
            cur_col, pos_col, raw_col = f"{d.name}_cur{k}", f"{d.name}_pos{k}", f"{d.name}_raw{k}"
            n = d.steps[k].amount_us
            p: Expr = pos[d.name] or (lambda c, col=pos_col: c[col])
            need_due[raw_col] = lambda c, p=p, n=n: p(c) + n
            pos[d.name] = lambda c, p=p, n=n: p(c) + n
            cur[d.name] = lambda c, raw=raw_col, cc=cur_col: case(
                (c[raw].is_(None), null()), (c[raw] > c[cc], c[raw]), else_=c[cc]
            )
            step_no[d.name] += 1
        lookups.add_due(st, need_due)
    st.add(
        {
            d.name: (lambda c, d=d: case((d.active(c), cur[d.name](c)), else_=null()))
            for d in deadlines
        }
    )


# ------------------------------------------------------------------ coverage
def _local_day(us: int, tz: ZoneInfo) -> date:
    return from_micros(us).astimezone(tz).date()


def _span_days(steps: Sequence[Step], calendar: WorkCalendar) -> int:
    """Calendar days a chain of steps can reach past its start (generous, as VectorCalendar)."""
    per_day = max(calendar.working_day_seconds(), 1) * US
    working = sum(s.amount_us for s in steps if s.working)
    natural = sum(s.amount_us for s in steps if not s.working)
    return int(math.ceil(working / per_day)) * 2 + 16 + int(math.ceil(natural / DAY_US))


def ensure_coverage(
    engine: Engine, calendar: WorkCalendar, first_us: int, last_us: int, span_days: int
) -> str:
    """Working periods for starts in ``[first_us, last_us]`` and deadlines ``span_days`` on."""
    tz = calendar.tz
    first = _local_day(first_us, tz) - timedelta(days=1)
    last = _local_day(last_us, tz) + timedelta(days=span_days)
    with engine.begin() as conn:
        return fill_working_periods(conn, calendar, first, last).key


def _start_range(conn: Connection, rows: Any, columns: Sequence[str]) -> tuple[int, int] | None:
    lo = [func.min(rows.c[n]) for n in columns]
    hi = [func.max(rows.c[n]) for n in columns]
    got = conn.execute(select(*lo, *hi)).one()
    vals_lo = [int(v) for v in got[: len(columns)] if v is not None]
    vals_hi = [int(v) for v in got[len(columns) :] if v is not None]
    if not vals_lo:
        return None
    return min(vals_lo), max(vals_hi)


def run_with_coverage(
    engine: Engine,
    calendar: WorkCalendar,
    *,
    window: tuple[int, int] | None,
    steps: Sequence[Step],
    rows: Callable[[], Any],
    start_columns: Sequence[str],
    query: Callable[[Connection, str], tuple[Any, int]],
) -> Any:
    """Run ``query`` (which returns ``(result, uncovered)``) with the working periods it
    needs: first for the window plus a margin; if a deadline fell outside, for the exact
    range of its starts, and once more."""
    key = calendar_key(calendar)
    if not any(s.working for s in steps):
        with reading(engine) as conn:
            return query(conn, key)[0]
    span = _span_days(steps, calendar)
    if window is not None:
        ensure_coverage(engine, calendar, window[0], window[1] + 14 * DAY_US, span)
    else:
        with reading(engine) as conn:
            got = _start_range(conn, rows(), ["c"])
        if got is not None:
            ensure_coverage(engine, calendar, got[0], got[1] + 14 * DAY_US, span)
    with reading(engine) as conn:
        result, uncovered = query(conn, key)
        if not uncovered:
            return result
        got = _start_range(conn, rows(), start_columns)
    if got is not None:
        ensure_coverage(engine, calendar, got[0], got[1], span * 2)
    with reading(engine) as conn:
        result, uncovered = query(conn, key)
    if uncovered:
        raise RuntimeError(f"{uncovered} working-time deadlines outside the working-period table")
    return result


# ------------------------------------------------------------------ quality (QA-2..4)
def _bucket(col: ColumnElement[int], buckets: Buckets) -> ColumnElement[int]:
    inner = buckets.edges[1:-1]
    if not inner:
        return literal(0)
    return case(*[(col < e, i) for i, e in enumerate(inner)], else_=len(inner))


def _keys(c: Cols, buckets: Buckets | None) -> list[ColumnElement[Any]]:
    if buckets is None:
        return [c.team, c.handler, c.channel, c.category]
    return [_bucket(c.c, buckets).label("bucket")]


QUALITY_COLUMNS = ("sop", "channel", "category", "team", "handler", "satisfaction", "c", "f", "r")


def _quality_main(
    rules: QualityRules, window: tuple[int, int], *, part: str, buckets: Buckets | None
) -> Select[Any]:
    """Every QA-2 counter except the complaints' deadlines, per group, over one part."""
    c = ticket_rows(*window, columns=QUALITY_COLUMNS, part=part).c
    keys = _keys(c, buckets)
    return select(
        *keys,
        func.count().label("tickets"),
        func.sum(one(c.sop == "inquiry")).label("inquiries"),
        func.sum(one(and_(c.sop == "inquiry", c.f - c.c <= rules.inquiry_us))).label(
            "inquiries_ok"
        ),
        func.sum(one(c.sop == "repair")).label("repairs"),
        func.sum(one(and_(c.sop == "repair", c.r - c.c <= rules.repair_us))).label("repairs_ok"),
        func.sum(one(c.sop == "complaint")).label("complaints"),
        func.count(c.satisfaction).label("ratings"),
        func.coalesce(func.sum(score_milli(c.satisfaction)), 0).label("satisfaction_milli"),
        func.sum(one(c.satisfaction < rules.satisfaction_target)).label("below_target"),
    ).group_by(*keys)


def _quality_complaints(
    rules: QualityRules,
    key: str,
    window: tuple[int, int],
    *,
    include_live: bool,
    buckets: Buckets | None,
    dialect: str = "sqlite",
) -> Select[Any]:
    """History complaints meeting the CMP deadlines chained from their instants (and
    deadlines outside the periods), per group. Only history rows without a live twin:
    a live complaint is judged by its clocks (:func:`_live_complaints`).

    Nearly every row (an answered complaint) needs its deadline: PostgreSQL finds them
    faster with one sorted merge than with an index lookup per row (0.24 s against
    0.49 s for a month of 27,000 complaints); SQLite the other way round (0.38 s
    against 0.14 s)."""
    rows = ticket_rows(
        *window,
        columns=("channel", "category", "team", "handler", "c", "f", "r"),
        sop="complaint",
        part="unshadowed" if include_live else "history",
    )
    st = Staged(rows)

    def answered(c: Cols) -> ColumnElement[bool]:
        return and_(c.f.is_not(None), c.r.is_not(None))

    add_deadlines(
        st,
        [
            Deadline("d12", "c", rules.cmp_response, answered),
            Deadline("d3", "f", rules.cmp_resolution, answered),
        ],
        WindowLookups(key) if dialect == "postgresql" else Lookups(key),
    )
    c = st.c
    keys = _keys(c, buckets)
    return select(
        *keys,
        func.sum(one(and_(answered(c), c.f <= c.d12, c.r <= c.d3))).label("complaints_ok"),
        func.sum(one(and_(answered(c), or_(c.d12.is_(None), c.d3.is_(None))))).label("uncovered"),
    ).group_by(*keys)


#: the clocks of the complaint SOP (policy rules CMP-1, CMP-2, CMP-2:cross-department, CMP-3)
CMP_CLOCKS = "CMP-%"
#: the columns of ``sla_clock`` (models.entities.SlaClock) a live complaint's verdict reads
SLA_CLOCK = table(
    "sla_clock",
    column("ticket_id", String),
    column("rule_id", String),
    column("due_at", UTCDateTime()),
    column("met_at", UTCDateTime()),
    column("breached_at", UTCDateTime()),
)


def late_cmp_clock() -> ColumnElement[bool]:
    """A CMP clock of ``sla_clock`` that was late: the SLA service fired it past its due
    time (``breached_at``), or it was met after its due time before the service fired
    it (``met_at > due_at``)."""
    k = SLA_CLOCK
    return and_(
        k.c.rule_id.like(CMP_CLOCKS),
        or_(k.c.breached_at.is_not(None), k.c.met_at > k.c.due_at),
    )


def _live_complaints(window: tuple[int, int], *, buckets: Buckets | None) -> Select[Any]:
    """Live complaints on time, per group: answered (first response and resolution) and
    none of their CMP clocks breached. The clocks are the record: a clock the SLA service
    fired past its due time has ``breached_at``; one met after its due time before the
    service fired it (``met_at > due_at``) was late all the same. One anti-join on the
    indexed ``sla_clock.ticket_id`` per live complaint of the window."""
    c = ticket_rows(
        *window,
        columns=("ticket_id", "channel", "category", "team", "handler", "c", "f", "r"),
        sop="complaint",
        part="live",
    ).c
    late = exists().where(SLA_CLOCK.c.ticket_id == c.ticket_id, late_cmp_clock())
    keys = _keys(c, buckets)
    return select(
        *keys,
        func.sum(one(and_(c.f.is_not(None), c.r.is_not(None), ~late))).label("complaints_ok"),
    ).group_by(*keys)


def _quality_groups(
    engine: Engine,
    profile: Profile,
    calendar: WorkCalendar,
    window: tuple[int, int],
    *,
    include_live: bool,
    buckets: Buckets | None,
) -> dict[Any, QualitySums]:
    rules = QualityRules.of(profile, calendar)
    nkeys = 4 if buckets is None else 1

    def group(row: Any) -> Any:
        if buckets is None:
            return QualityKey(row[0], row[1], row[2], row[3])
        return int(row[0])

    def query(conn: Connection, key: str) -> tuple[dict[Any, int], int]:
        sel = _quality_complaints(
            rules,
            key,
            window,
            include_live=include_live,
            buckets=buckets,
            dialect=conn.dialect.name,
        )
        ok: dict[Any, int] = {}
        uncovered = 0
        for row in conn.execute(sel).all():
            ok[group(row)] = int(row[nkeys])
            uncovered += int(row[nkeys + 1])
        return ok, uncovered

    complaints_ok = run_with_coverage(
        engine,
        calendar,
        window=window,
        steps=rules.steps,
        rows=lambda: ticket_rows(
            *window,
            columns=("c", "f"),
            sop="complaint",
            part="unshadowed" if include_live else "history",
        ),
        start_columns=["c", "f"],
        query=query,
    )
    acc: dict[Any, list[int]] = {}
    with reading(engine) as conn:
        if include_live:
            for row in conn.execute(_live_complaints(window, buckets=buckets)).all():
                k = group(row)
                complaints_ok[k] = complaints_ok.get(k, 0) + int(row[nkeys] or 0)
        for part, sign in parts(include_live):
            for row in conn.execute(_quality_main(rules, window, part=part, buckets=buckets)).all():
                k = group(row)
                n = acc.setdefault(k, [0] * 9)
                for i, v in enumerate(row[nkeys:]):
                    n[i] += sign * int(v)
    out: dict[Any, QualitySums] = {}
    for k, n in acc.items():
        if n[0] == 0:  # a group made only of history rows replaced by live twins
            continue
        # tickets, inquiries, inquiries_ok, repairs, repairs_ok, complaints, complaints_ok,
        # ratings, satisfaction_milli, below_target
        out[k] = QualitySums(*n[:6], complaints_ok.get(k, 0), *n[6:])
    return out


def quality_cells(
    engine: Engine,
    *,
    profile: Profile,
    calendar: WorkCalendar,
    window: tuple[int, int],
    include_live: bool = True,
) -> list[QualityCell]:
    """QA-2 sums per (team, handler, channel, category) of the tickets created in ``window``."""
    groups = _quality_groups(
        engine, profile, calendar, window, include_live=include_live, buckets=None
    )
    return [QualityCell(k, s) for k, s in groups.items()]


def quality_by_bucket(
    engine: Engine,
    *,
    profile: Profile,
    calendar: WorkCalendar,
    buckets: Buckets,
    include_live: bool = True,
) -> dict[int, QualitySums]:
    """QA-2 sums per time bucket (the months of the trend)."""
    return _quality_groups(
        engine,
        profile,
        calendar,
        (buckets.start_us, buckets.stop_us),
        include_live=include_live,
        buckets=buckets,
    )


# ------------------------------------------------------------------ speed (SPD-1/2)
def speed_cells(
    engine: Engine,
    *,
    weeks: Buckets,
    window: tuple[int, int],
    limit_us: int,
    include_live: bool = True,
) -> list[SpeedCell]:
    """SPD-1 sums per (week, category) of the tickets created in ``window``."""
    acc: dict[tuple[int, str | None], list[int]] = {}
    with reading(engine) as conn:
        for part, sign in parts(include_live):
            for r in conn.execute(_speed_select(weeks, window, limit_us, part)).all():
                n = acc.setdefault((int(r[0]), r[1]), [0] * 8)
                for i, v in enumerate(r[2:]):
                    n[i] += sign * int(v)
    return [SpeedCell(w, cat, SpeedSums(*n)) for (w, cat), n in acc.items() if n[0]]


def speed_score(efficiency: ColumnElement[Any], satisfaction: ColumnElement[Any]) -> Any:
    """SPD-2 "speed satisfaction" of a ticket on 0-10 (the report halves the average):
    the CB-3 resolution-efficiency dimension (1-5) x 2 where the survey recorded it,
    else the ticket's 0-10 score (history without the dimensions)."""
    return func.coalesce(efficiency * 2.0, satisfaction)


def _speed_select(weeks: Buckets, window: tuple[int, int], limit_us: int, part: str) -> Any:
    rows = ticket_rows(
        *window, columns=("category", "satisfaction", "efficiency", "c", "f", "cl"), part=part
    )
    c = rows.c
    score = speed_score(c.efficiency, c.satisfaction)
    week = _bucket(c.c, weeks).label("week")
    return select(
        week,
        c.category,
        func.count().label("tickets"),
        func.count(c.f).label("answered"),
        func.coalesce(func.sum((c.f - c.c) // 1000), 0).label("response_ms"),
        func.count(c.cl).label("closed"),
        func.coalesce(func.sum((c.cl - c.c) // 1000), 0).label("resolution_ms"),
        func.sum(case((c.f - c.c <= limit_us, 0), else_=1)).label("over_limit"),
        func.count(score).label("ratings"),
        func.coalesce(func.sum(score_milli(score)), 0).label("satisfaction_milli"),
    ).group_by(week, c.category)


# ------------------------------------------------------------------ replay
def _matches(clock: Clock) -> Expr:
    return lambda c: and_(*[c[col] == val for col, val in clock.match])


def _status(due: ColumnElement[int], stop: ColumnElement[int], as_of_us: int) -> Any:
    return case(
        (due.is_(None), NA),
        (stop.is_not(None), case((stop <= due, MET), else_=BREACHED)),
        (due <= as_of_us, BREACHED),
        else_=OPEN,
    )


def _replay_stage(
    profile_a: Profile,
    profile_b: Profile,
    calendar: WorkCalendar,
    key: str,
    rows: Any,
    as_of_us: int,
) -> Staged:
    """Per ticket: the due instant of each clock under A and B (shared where the rule and
    its limit are the same), then the status codes ``st<family><a|b>`` and ``uncovered``."""
    st = Staged(rows)
    deadlines: dict[tuple[Any, ...], Deadline] = {}
    due_of: dict[tuple[int, str], list[tuple[Clock, str]]] = {}
    for clock in clocks():
        family, start, _ = FAMILIES[clock.family]
        for side, prof in (("a", profile_a), ("b", profile_b)):
            steps = family_steps(prof, family, clock.rule_id, calendar)
            if steps is None:
                continue
            ident = (clock.family, clock.match, tuple(steps))
            if ident not in deadlines:
                deadlines[ident] = Deadline(
                    f"d{len(deadlines)}", start, tuple(steps), _matches(clock)
                )
            due_of.setdefault((clock.family, side), []).append((clock, deadlines[ident].name))
    add_deadlines(st, list(deadlines.values()), Lookups(key))

    def family_due(i: int, side: str) -> Expr:
        branches = due_of.get((i, side), [])

        def build(c: Cols) -> ColumnElement[Any]:
            if not branches:
                return null()
            return case(*[(_matches(clk)(c), c[name]) for clk, name in branches], else_=null())

        return build

    statuses: dict[str, Expr] = {}
    for i, (_, _, stop) in enumerate(FAMILIES):
        for side in ("a", "b"):
            statuses[f"st{i}{side}"] = lambda c, i=i, side=side, stop=stop: _status(
                family_due(i, side)(c), c[stop], as_of_us
            )
    uncovered = [d for d in deadlines.values() if any(s.working for s in d.steps)]
    statuses["uncovered"] = lambda c: (
        case(
            *[(and_(d.active(c), c[d.name].is_(None)), 1) for d in uncovered],
            else_=0,
        )
        if uncovered
        else literal(0)
    )
    st.add(statuses)
    return st


def _changed(c: Cols) -> ColumnElement[bool]:
    parts = []
    for i in range(len(FAMILIES)):
        a, b = c[f"st{i}a"], c[f"st{i}b"]
        parts.append(and_(b == BREACHED, a != BREACHED, a != NA))
        parts.append(and_(a == BREACHED, b != BREACHED, b != NA))
    return or_(*parts)


def replay_cells(
    engine: Engine,
    *,
    profile_a: Profile,
    profile_b: Profile,
    calendar: WorkCalendar,
    as_of: datetime,
    window: tuple[int, int] | None = None,
    include_live: bool = True,
    examples: int = 10,
) -> tuple[list[ReplayCell], list[str]]:
    """Clock outcomes per (sop, channel, priority) under A and B, and the first
    ``examples`` ticket ids (code-point order) whose outcome changed."""
    lo, hi = window if window is not None else (None, None)
    as_of_us = micros(as_of)

    def rows() -> Any:
        return ticket_rows(
            lo,
            hi,
            include_live=include_live,
            columns=("ticket_id", "sop", "channel", "priority", "c", "f", "r"),
        )

    def query(conn: Connection, key: str) -> tuple[tuple[list[ReplayCell], list[str]], int]:
        st = _replay_stage(profile_a, profile_b, calendar, key, rows(), as_of_us)
        c = st.c
        n = len(FAMILIES)
        aggs = [func.count().label("tickets")]
        for i in range(n):
            a, b = c[f"st{i}a"], c[f"st{i}b"]
            aggs += [
                func.sum(one(a == MET)).label(f"met_a{i}"),
                func.sum(one(a == BREACHED)).label(f"breached_a{i}"),
                func.sum(one(a == OPEN)).label(f"open_a{i}"),
                func.sum(one(b == MET)).label(f"met_b{i}"),
                func.sum(one(b == BREACHED)).label(f"breached_b{i}"),
                func.sum(one(b == OPEN)).label(f"open_b{i}"),
                func.sum(one(and_(b == BREACHED, a != BREACHED, a != NA))).label(f"newly{i}"),
                func.sum(one(and_(a == BREACHED, b != BREACHED, b != NA))).label(f"nolonger{i}"),
            ]
        aggs += [
            func.sum(one(or_(*[c[f"st{i}a"] == BREACHED for i in range(n)]))).label("any_a"),
            func.sum(one(or_(*[c[f"st{i}b"] == BREACHED for i in range(n)]))).label("any_b"),
            func.sum(one(_changed(c))).label("changed"),
            func.sum(c.uncovered).label("uncovered"),
        ]
        sel = select(c.sop, c.channel, c.priority, *aggs).group_by(c.sop, c.channel, c.priority)
        cells: list[ReplayCell] = []
        uncovered = 0
        for r in conn.execute(sel):
            m = r._mapping
            uncovered += int(m["uncovered"] or 0)
            cells.append(
                ReplayCell(
                    key=ReplayKey(r.sop, r.channel, r.priority),
                    tickets=int(r.tickets),
                    families=[
                        RuleSums(
                            met_a=int(m[f"met_a{i}"]),
                            breached_a=int(m[f"breached_a{i}"]),
                            open_a=int(m[f"open_a{i}"]),
                            met_b=int(m[f"met_b{i}"]),
                            breached_b=int(m[f"breached_b{i}"]),
                            open_b=int(m[f"open_b{i}"]),
                            newly_breached=int(m[f"newly{i}"]),
                            no_longer_breached=int(m[f"nolonger{i}"]),
                        )
                        for i in range(n)
                    ],
                    breached_any_a=int(r.any_a),
                    breached_any_b=int(r.any_b),
                    changed=int(r.changed),
                )
            )
        ids: list[str] = []
        if examples and any(cell.changed for cell in cells):
            st2 = _replay_stage(profile_a, profile_b, calendar, key, rows(), as_of_us)
            order = binary_order(st2.c.ticket_id)
            ids = list(
                conn.execute(
                    select(st2.c.ticket_id).where(_changed(st2.c)).order_by(order).limit(examples)
                ).scalars()
            )
        return (cells, ids), uncovered

    steps_probe: list[Step] = []
    for clock in clocks():
        family = FAMILIES[clock.family][0]
        for prof in (profile_a, profile_b):
            steps_probe += family_steps(prof, family, clock.rule_id, calendar) or []
    return run_with_coverage(
        engine,
        calendar,
        window=window,
        steps=steps_probe,
        rows=rows,
        start_columns=["c", "f"],
        query=query,
    )
