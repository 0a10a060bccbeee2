"""The reports' sums from a DataFrame: the path of ``--input FILE`` (issue 12).

The frame is the canonical ticket frame of :mod:`aftersales.history` (UTC
timestamps). Every rule is applied exactly as the SQL path applies it
(:mod:`aftersales.report_sql`): instants as integer microseconds, working-time
deadlines on the same working periods (:func:`aftersales.working_periods.periods_between`)
with the same arithmetic, satisfaction in thousandths, durations in whole
milliseconds; the result is the same group sums, assembled by
:mod:`aftersales.report_model`. Vectorised numpy, no per-row Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

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
from aftersales.working_periods import periods_between

QUALITY_COUNTERS = (  # the fields of QualitySums, in order
    "tickets",
    "inquiries",
    "inquiries_ok",
    "repairs",
    "repairs_ok",
    "complaints",
    "complaints_ok",
    "ratings",
    "satisfaction_milli",
    "below_target",
)


# ------------------------------------------------------------------ instants
def us(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (floor) and the not-NaT mask of a tz-aware Series."""
    ok = s.notna().to_numpy()
    ns = np.asarray(s.dt.as_unit("ns").array.asi8, dtype=np.int64)
    return np.where(ok, ns // 1000, 0), ok


def trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division truncating toward zero, as SQL does."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def in_window(df: pd.DataFrame, start_us: int | None, stop_us: int | None) -> pd.DataFrame:
    c, _ = us(df["created_at"])
    keep = np.ones(len(df), dtype=bool)
    if start_us is not None:
        keep &= c >= start_us
    if stop_us is not None:
        keep &= c < stop_us
    return df[keep]


def _text(s: pd.Series) -> np.ndarray:
    """Group values as Python objects, None for missing."""
    arr = s.astype(object).to_numpy()
    return np.where(pd.isna(arr), None, arr)


# ------------------------------------------------------------------ working time
class VectorCalendar:
    """Vectorised :meth:`WorkCalendar.add` for working amounts over many start instants.

    The working periods of a date range are laid out as arrays (UTC microseconds)
    with the working time accumulated before each one; adding N working
    microseconds is two binary searches. Same semantics as ``WorkCalendar.add``
    and as the ``working_period`` lookups of the SQL path: a start outside
    working time counts from the next period; a due time exactly at a period
    end stays there; the due time is never before the start.
    """

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self._first: date | None = None
        self._last: date | None = None

    def _build(self, first: date, last: date) -> None:
        periods = list(periods_between(self.calendar, first, last))
        self.ps = np.asarray([p.start_us for p in periods], dtype=np.int64)
        self.pe = np.asarray([p.end_us for p in periods], dtype=np.int64)
        length = self.pe - self.ps
        self.cum_end = np.cumsum(length)
        self.cum_start = self.cum_end - length
        self._first, self._last = first, last

    def _ensure(self, lo: date, hi: date) -> None:
        if self._first is None or self._last is None or lo < self._first or hi > self._last:
            first = min(lo, self._first or lo)
            last = max(hi, self._last or hi)
            self._build(first, last)

    def _day(self, t_us: int) -> date:
        return (
            (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_us))
            .astimezone(self.calendar.tz)
            .date()
        )

    def add_us(self, starts: np.ndarray, amount_us: int) -> np.ndarray:
        """Due instants (int64 µs) for ``starts`` (int64 µs)."""
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0:
            return starts.copy()
        lo = self._day(int(starts.min())) - timedelta(days=1)
        hi0 = self._day(int(starts.max()))
        per_day = max(self.calendar.working_day_seconds(), 1) * US
        span = int(math.ceil(amount_us / per_day)) * 2 + 16
        n = np.int64(amount_us)
        while True:
            self._ensure(lo, hi0 + timedelta(days=span))
            i = np.searchsorted(self.ps, starts, side="right") - 1
            ic = np.clip(i, 0, None)
            within = np.clip(starts - self.ps[ic], 0, self.pe[ic] - self.ps[ic])
            pos = np.where(i >= 0, self.cum_start[ic] + within, 0)
            target = pos + n
            if len(self.cum_end) and target.max() <= self.cum_end[-1]:
                break
            span *= 2
        j = np.searchsorted(self.cum_end, target, side="left")
        due = self.ps[j] + (target - self.cum_start[j])
        return np.maximum(due, starts)

    def add_ns(self, starts: np.ndarray, seconds: float) -> np.ndarray:
        """Due instants (int64 ns) for ``starts`` (int64 ns on whole microseconds)."""
        got = self.add_us(np.asarray(starts, dtype=np.int64) // 1000, round(seconds * US))
        return got * 1000


def chain_due(
    starts: np.ndarray, ok: np.ndarray, steps: Sequence[Step], vcal: VectorCalendar
) -> np.ndarray:
    """Due instants of ``steps`` applied one after another to ``starts`` where ``ok``."""
    cur = starts.copy()
    for step in steps:
        if step.working:
            if ok.any():
                cur[ok] = vcal.add_us(cur[ok], step.amount_us)
        else:
            cur = cur + step.amount_us
    return cur


# ------------------------------------------------------------------ quality (QA-2..4)
def quality_flags(df: pd.DataFrame, rules: QualityRules, vcal: VectorCalendar) -> pd.DataFrame:
    """Per-ticket QA-2 counters (0/1, satisfaction in thousandths)."""
    c, _ = us(df["created_at"])
    f, f_ok = us(df["first_response_at"])
    r, r_ok = us(df["resolved_at"])
    sop = df["sop"].astype(object).to_numpy()
    inq = sop == "inquiry"
    rep = sop == "repair"
    cmp_ = sop == "complaint"
    cmp_ok = np.zeros(len(df), dtype=bool)
    # a live complaint (load_tickets) is judged by its clocks: answered, none late
    late = df["cmp_clock_late"].to_numpy(dtype="float64")
    by_clock = ~np.isnan(late)
    cmp_ok[by_clock] = (cmp_ & f_ok & r_ok & (late == 0))[by_clock]
    answered = cmp_ & f_ok & r_ok & ~by_clock
    if answered.any():
        d12 = chain_due(c[answered], np.ones(answered.sum(), bool), rules.cmp_response, vcal)
        d3 = chain_due(f[answered], np.ones(answered.sum(), bool), rules.cmp_resolution, vcal)
        cmp_ok[answered] = (f[answered] <= d12) & (r[answered] <= d3)
    sat = df["satisfaction"].to_numpy(dtype="float64")
    rated = ~np.isnan(sat)
    return pd.DataFrame(
        {
            "tickets": np.ones(len(df), dtype=bool),
            "inquiries": inq,
            "inquiries_ok": inq & f_ok & (f - c <= rules.inquiry_us),
            "repairs": rep,
            "repairs_ok": rep & r_ok & (r - c <= rules.repair_us),
            "complaints": cmp_,
            "complaints_ok": cmp_ok,
            "ratings": rated,
            "satisfaction_milli": np.where(
                rated, np.floor(np.nan_to_num(sat) * 1000 + 0.5), 0
            ).astype(np.int64),
            "below_target": rated & (np.nan_to_num(sat, nan=np.inf) < rules.satisfaction_target),
        },
        index=df.index,
    ).astype(np.int64)


def _sums(row: Sequence[int]) -> QualitySums:
    return QualitySums(*(int(v) for v in row))


def quality_cells(
    df: pd.DataFrame,
    *,
    profile: Profile,
    calendar: WorkCalendar,
    window: tuple[int, int],
    vcal: VectorCalendar | None = None,
) -> list[QualityCell]:
    """QA-2 sums per (team, handler, channel, category) of the tickets created in ``window``."""
    m = in_window(df, *window)
    rules = QualityRules.of(profile, calendar)
    flags = quality_flags(m, rules, vcal or VectorCalendar(calendar))
    dims = ["team", "handler", "channel", "category"]
    # group on integer codes (categorical columns group much faster than objects)
    codes = {}
    names: dict[str, list[str | None]] = {}
    for d in dims:
        codes[d], uniques = pd.factorize(m[d], use_na_sentinel=True)
        names[d] = [*(str(u) for u in uniques.tolist()), None]  # code -1: no value
    keyed = flags.assign(**{f"_{d}": codes[d] for d in dims})
    sums = keyed.groupby([f"_{d}" for d in dims], sort=False)[list(QUALITY_COUNTERS)].sum()
    return [
        QualityCell(QualityKey(*(names[d][c] for d, c in zip(dims, key, strict=True))), _sums(row))
        for key, row in zip(sums.index.tolist(), sums.itertuples(index=False), strict=True)
    ]


def quality_by_bucket(
    df: pd.DataFrame,
    *,
    profile: Profile,
    calendar: WorkCalendar,
    buckets: Buckets,
    vcal: VectorCalendar | None = None,
) -> dict[int, QualitySums]:
    """QA-2 sums per time bucket (the months of the trend)."""
    m = in_window(df, buckets.start_us, buckets.stop_us)
    flags = quality_flags(m, QualityRules.of(profile, calendar), vcal or VectorCalendar(calendar))
    c, _ = us(m["created_at"])
    idx = np.searchsorted(np.asarray(buckets.edges, dtype=np.int64), c, side="right") - 1
    sums = flags.groupby(idx)[list(QUALITY_COUNTERS)].sum()
    return {
        int(i): _sums(row) for i, row in zip(sums.index, sums.itertuples(index=False), strict=True)
    }


# ------------------------------------------------------------------ speed (SPD-1/2)
def speed_cells(
    df: pd.DataFrame, *, weeks: Buckets, window: tuple[int, int], limit_us: int
) -> list[SpeedCell]:
    """SPD-1 sums per (week, category) of the tickets created in ``window``."""
    w = in_window(df, *window)
    c, _ = us(w["created_at"])
    f, f_ok = us(w["first_response_at"])
    cl, cl_ok = us(w["closed_at"])
    # SPD-2 speed satisfaction on 0-10: the efficiency dimension x 2, else the score
    # (report_sql.speed_score)
    eff = w["satisfaction_efficiency"].to_numpy(dtype="float64")
    sat = np.where(np.isnan(eff), w["satisfaction"].to_numpy(dtype="float64"), eff * 2.0)
    rated = ~np.isnan(sat)
    frame = pd.DataFrame(
        {
            "week": np.searchsorted(np.asarray(weeks.edges, dtype=np.int64), c, side="right") - 1,
            "category": _text(w["category"]),
            "tickets": 1,
            "answered": f_ok.astype(np.int64),
            "response_ms": np.where(f_ok, trunc_div(f - c, 1000), 0),
            "closed": cl_ok.astype(np.int64),
            "resolution_ms": np.where(cl_ok, trunc_div(cl - c, 1000), 0),
            "over_limit": (~(f_ok & (f - c <= limit_us))).astype(np.int64),
            "ratings": rated.astype(np.int64),
            "satisfaction_milli": np.where(
                rated, np.floor(np.nan_to_num(sat) * 1000 + 0.5), 0
            ).astype(np.int64),
        }
    )
    sums = frame.groupby(["week", "category"], dropna=False, sort=False).sum()
    return [
        SpeedCell(int(week), None if pd.isna(cat) else cat, SpeedSums(*(int(v) for v in row)))
        for (week, cat), row in zip(sums.index, sums.itertuples(index=False), strict=True)
    ]


# ------------------------------------------------------------------ replay
def replay_cells(
    df: pd.DataFrame,
    *,
    profile_a: Profile,
    profile_b: Profile,
    calendar: WorkCalendar,
    as_of: datetime,
    examples: int = 10,
    vcal: VectorCalendar | None = None,
) -> tuple[list[ReplayCell], list[str]]:
    """Clock outcomes per (sop, channel, priority) under A and B (as the SQL path)."""
    vcal = vcal or VectorCalendar(calendar)
    n = len(df)
    cols = {
        "sop": df["sop"].astype(object).to_numpy(),
        "channel": df["channel"].astype(object).to_numpy(),
        "priority": df["priority"].astype(object).to_numpy(),
    }
    inst = {
        name: us(df[col])
        for name, col in (("c", "created_at"), ("f", "first_response_at"), ("r", "resolved_at"))
    }
    as_of_us = micros(as_of)
    status = {
        (i, side): np.full(n, NA, dtype=np.int8) for i in range(len(FAMILIES)) for side in "ab"
    }
    for clock in clocks():
        family = FAMILIES[clock.family][0]
        match = np.ones(n, dtype=bool)
        for col, val in clock.match:
            match &= cols[col] == val
        start, start_ok = inst[clock.start]
        stop, stop_ok = inst[clock.stop]
        rows = match & start_ok
        if not rows.any():
            continue
        for side, prof in (("a", profile_a), ("b", profile_b)):
            steps = family_steps(prof, family, clock.rule_id, calendar)
            if steps is None:
                continue
            due = chain_due(start[rows], np.ones(rows.sum(), bool), steps, vcal)
            s_stop, s_ok = stop[rows], stop_ok[rows]
            st = np.where(
                s_ok,
                np.where(s_stop <= due, MET, BREACHED),
                np.where(due <= as_of_us, BREACHED, OPEN),
            ).astype(np.int8)
            status[(clock.family, side)][rows] = st
    data: dict[str, np.ndarray] = dict(cols)
    any_a = np.zeros(n, dtype=bool)
    any_b = np.zeros(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    for i in range(len(FAMILIES)):
        a, b = status[(i, "a")], status[(i, "b")]
        newly = (b == BREACHED) & (a != BREACHED) & (a != NA)
        no_longer = (a == BREACHED) & (b != BREACHED) & (b != NA)
        data.update(
            {
                f"met_a{i}": a == MET,
                f"breached_a{i}": a == BREACHED,
                f"open_a{i}": a == OPEN,
                f"met_b{i}": b == MET,
                f"breached_b{i}": b == BREACHED,
                f"open_b{i}": b == OPEN,
                f"newly{i}": newly,
                f"nolonger{i}": no_longer,
            }
        )
        any_a |= a == BREACHED
        any_b |= b == BREACHED
        changed |= newly | no_longer
    data.update({"any_a": any_a, "any_b": any_b, "changed": changed, "tickets": np.ones(n, bool)})
    frame = pd.DataFrame(data)
    value_cols = [c for c in frame.columns if c not in ("sop", "channel", "priority")]
    frame[value_cols] = frame[value_cols].astype(np.int64)
    sums = frame.groupby(["sop", "channel", "priority"], sort=True)[value_cols].sum()
    cells = []
    for (sop, channel, priority), r in sums.iterrows():
        cells.append(
            ReplayCell(
                key=ReplayKey(str(sop), str(channel), str(priority)),
                tickets=int(r["tickets"]),
                families=[
                    RuleSums(
                        met_a=int(r[f"met_a{i}"]),
                        breached_a=int(r[f"breached_a{i}"]),
                        open_a=int(r[f"open_a{i}"]),
                        met_b=int(r[f"met_b{i}"]),
                        breached_b=int(r[f"breached_b{i}"]),
                        open_b=int(r[f"open_b{i}"]),
                        newly_breached=int(r[f"newly{i}"]),
                        no_longer_breached=int(r[f"nolonger{i}"]),
                    )
                    for i in range(len(FAMILIES))
                ],
                breached_any_a=int(r["any_a"]),
                breached_any_b=int(r["any_b"]),
                changed=int(r["changed"]),
            )
        )
    ids = df["ticket_id"].astype(str).to_numpy()[changed]
    return cells, sorted(ids.tolist())[:examples]
