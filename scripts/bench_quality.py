"""Benchmark the monthly quality metrics (QA-2..4) on synthetic history (issue 3 §6).

    python scripts/bench_quality.py                      # 1,000,000 tickets in one month
    python scripts/bench_quality.py --months 3           # 1,000,000 over 3 months
    python scripts/bench_quality.py --rows 200000 --repeat 3
    python scripts/bench_quality.py --input bench-out/history.parquet

The data is generated (``scripts/gen_history.py``) or read *before* timing; the
timed part is compute only: :func:`aftersales.quality.compute_quality` on the
in-memory DataFrame (month filter, QA-2 flags with the CMP deadlines on the
working calendar, overall / per team / per handler, misses with contributors,
commendations), and in the same run the same metrics computed by DuckDB over the
same DataFrame (CMP-3 working-day deadlines through ASOF joins on the same
working-period table). Both answers are compared before any figure is printed.
Prints the median and best time of ``--repeat`` runs, the pandas/DuckDB ratio,
the pandas peak memory (tracemalloc, one extra run) and the process peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

from aftersales.calendar import Unit, WorkCalendar  # noqa: E402
from aftersales.policy import Profile, load_profile  # noqa: E402
from aftersales.quality import (  # noqa: E402
    NATURAL_SECONDS,
    VectorCalendar,
    compute_quality,
    month_bounds,
)

TARGET_SECONDS = 1.0
TARGET_RATIO = 2.0


def _natural_us(profile: Profile, rule_id: str) -> int:
    r = profile.rule(rule_id)
    unit = Unit(r.unit)
    if unit.is_working:
        raise SystemExit(f"bench: {rule_id} must be in natural units for the DuckDB query")
    return int(round(r.duration * NATURAL_SECONDS[unit] * 1e6))


def _working_us(profile: Profile, rule_id: str, cal: WorkCalendar) -> int:
    r = profile.rule(rule_id)
    unit = Unit(r.unit)
    if unit == Unit.WORKING_DAYS:
        return int(round(r.duration * cal.working_day_seconds() * 1e6))
    if unit == Unit.WORKING_HOURS:
        return int(round(r.duration * 3600 * 1e6))
    raise SystemExit(f"bench: {rule_id} must be in working units for the DuckDB query")


def periods_frame(vcal: VectorCalendar, df: pd.DataFrame) -> pd.DataFrame:
    """The working-period table the vectorised calendar uses, in epoch microseconds."""
    ns = df["created_at"].dt.as_unit("ns").array.asi8
    vcal.add_ns(np.array([ns.min(), ns.max()], dtype=np.int64), 40 * 86400)  # build the range
    return pd.DataFrame(
        {
            "ps": vcal.ps // 1000,
            "pe": vcal.pe // 1000,
            "cs": vcal.cum_start // 1000,
            "ce": vcal.cum_end // 1000,
        }
    )


def duckdb_sql(profile: Profile, cal: WorkCalendar) -> tuple[str, str]:
    t = profile.targets
    n12 = _natural_us(profile, "CMP-1") + _natural_us(profile, "CMP-2")
    n3 = _working_us(profile, "CMP-3", cal)
    inq_us = int(round(t.inquiry_response_seconds * 1e6))
    rep_us = int(round(t.fault_resolution_days * 86400 * 1e6))
    flags = f"""
    WITH m AS (
      SELECT sop, channel, category, team, handler, satisfaction,
             epoch_us(created_at) AS c, epoch_us(first_response_at) AS f,
             epoch_us(resolved_at) AS r
      FROM tickets WHERE created_at >= $start AND created_at < $stop
    ),
    cm AS (SELECT * FROM m WHERE sop = 'complaint' AND f IS NOT NULL AND r IS NOT NULL),
    pos AS (
      SELECT cm.*, p.cs + least(greatest(cm.f - p.ps, 0), p.pe - p.ps) + {n3} AS target
      FROM cm ASOF JOIN periods p ON cm.f >= p.ps
    ),
    due AS (
      SELECT pos.*, greatest(p.ps + (pos.target - p.cs), pos.f) AS d3
      FROM pos ASOF JOIN periods p ON pos.target <= p.ce
    ),
    flags AS (
      SELECT team, handler, channel, category, satisfaction,
        (sop = 'inquiry')::INT AS inq,
        (sop = 'inquiry' AND coalesce(f - c <= {inq_us}, false))::INT AS inq_ok,
        (sop = 'repair')::INT AS rep,
        (sop = 'repair' AND coalesce(r - c <= {rep_us}, false))::INT AS rep_ok,
        (sop = 'complaint')::INT AS cmp, 0 AS cmp_ok
      FROM m WHERE NOT (sop = 'complaint' AND f IS NOT NULL AND r IS NOT NULL)
      UNION ALL
      SELECT team, handler, channel, category, satisfaction, 0, 0, 0, 0, 1,
        (f <= c + {n12} AND r <= d3)::INT
      FROM due
    )"""
    metrics = (
        flags
        + """
    SELECT GROUPING(team) AS g_team, GROUPING(handler) AS g_handler, team, handler,
      count(*) AS tickets, sum(inq) AS inq, sum(inq_ok) AS inq_ok, sum(rep) AS rep,
      sum(rep_ok) AS rep_ok, sum(cmp) AS cmp, sum(cmp_ok) AS cmp_ok,
      count(satisfaction) AS ratings, avg(satisfaction) AS sat
    FROM flags GROUP BY GROUPING SETS ((), (team), (handler))"""
    )
    contributors = (
        flags
        + f"""
    SELECT 'response' AS miss, GROUPING(channel) AS g_channel, GROUPING(category) AS g_category,
      channel, category, team, count(*) AS failing
    FROM flags WHERE inq = 1 AND inq_ok = 0
    GROUP BY GROUPING SETS ((channel), (category), (team))
    UNION ALL
    SELECT 'satisfaction', GROUPING(channel), GROUPING(category), channel, category, team,
      count(*)
    FROM flags WHERE satisfaction < {t.satisfaction_avg}
    GROUP BY GROUPING SETS ((channel), (category), (team))"""
    )
    return metrics, contributors


def run_duckdb(con: Any, sql: tuple[str, str], params: dict[str, Any]) -> dict[str, Any]:
    metrics = con.execute(sql[0], params).df()
    contrib = con.execute(sql[1], params).df()
    return {"metrics": metrics, "contributors": contrib}


def _rate(a: float, b: float) -> float | None:
    return None if not b else a / b


def check_same(pd_result: dict[str, Any], dk: dict[str, Any]) -> None:
    m = dk["metrics"]
    overall = m[(m.g_team == 1) & (m.g_handler == 1)].iloc[0]
    want = {
        "response_compliance": _rate(overall.inq_ok, overall.inq),
        "fault_resolution_rate": _rate(overall.rep_ok, overall.rep),
        "complaint_on_time_rate": _rate(overall.cmp_ok, overall.cmp),
        "satisfaction_avg": None if overall.ratings == 0 else float(overall.sat),
    }
    for k, v in want.items():
        got = pd_result[k]
        assert (got is None and v is None) or abs(got - v) < 1e-9, (k, got, v)
    teams = m[(m.g_team == 0)].set_index("team")
    for row in pd_result["per_team"]:
        d = teams.loc[row["team"]]
        assert row["inquiries"] == d.inq and row["complaints"] == d.cmp, row["team"]
        assert (
            row["response_compliance"] == _rate(d.inq_ok, d.inq)
            or abs(row["response_compliance"] - _rate(d.inq_ok, d.inq)) < 1e-9
        )
        assert (
            row["complaint_on_time_rate"] is None
            or abs(row["complaint_on_time_rate"] - _rate(d.cmp_ok, d.cmp)) < 1e-9
        ), row["team"]
    handlers = m[(m.g_handler == 0)]
    assert len(handlers) == len(pd_result["per_handler"])
    c = dk["contributors"]
    for miss in pd_result["misses"]:
        key = "response" if miss["metric"] == "response_compliance" else "satisfaction"
        top = miss["contributors"]["channel"][0]
        rows = c[(c.miss == key) & (c.g_channel == 0)].sort_values("failing", ascending=False)
        assert (str(rows.iloc[0].channel), int(rows.iloc[0].failing)) == (
            top["name"],
            top["failing"],
        ), miss["metric"]


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--months", type=int, default=1, help="months the tickets spread over (1: all in the month)"
    )
    ap.add_argument("--end", default="2026-10")
    ap.add_argument("--month", default=None, help="month to report (default: --end)")
    ap.add_argument("--input", type=Path, default=None, help="a generated .csv/.parquet instead")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", default="default")
    args = ap.parse_args(argv)

    import duckdb
    from gen_history import generate, read

    t0 = time.perf_counter()
    if args.input:
        df = read(args.input)
    else:
        df = generate(args.rows, seed=args.seed, months=args.months, end=args.end)
    load_s = time.perf_counter() - t0
    month = args.month or args.end
    profile = load_profile(args.profile)
    cal = WorkCalendar()
    tz = "Asia/Shanghai"

    # pandas: warm-up (builds the working-period table once, as a long-lived process would)
    vcal = VectorCalendar(cal)
    result = compute_quality(df, month, profile, vcal=vcal, tz=tz)
    pandas_times = timed(lambda: compute_quality(df, month, profile, vcal=vcal, tz=tz), args.repeat)

    # DuckDB over the same DataFrame and the same working-period table
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("tickets", df)
    con.register("periods", periods_frame(vcal, df))
    start, stop = month_bounds(month, tz)
    params = {"start": start, "stop": stop}
    sql = duckdb_sql(profile, cal)
    dk = run_duckdb(con, sql, params)
    check_same(result.data, dk)
    duck_times = timed(lambda: run_duckdb(con, sql, params), args.repeat)

    tracemalloc.start()
    compute_quality(df, month, profile, vcal=vcal, tz=tz)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    p_med, d_med = statistics.median(pandas_times), statistics.median(duck_times)
    ratio = p_med / d_med
    d = result.data
    print(
        f"data: {len(df):,} tickets ({'read' if args.input else 'generated'} in {load_s:.2f} s), "
        f"month {month}: {d['tickets']:,} tickets"
    )
    print(
        f"metrics: response {d['response_compliance']:.4f}, fault {d['fault_resolution_rate']:.4f}, "
        f"complaint {d['complaint_on_time_rate']:.4f}, satisfaction {d['satisfaction_avg']:.3f}; "
        f"{len(d['per_team'])} teams, {len(d['per_handler'])} handlers, "
        f"{len(d['misses'])} misses; DuckDB gives the same answer"
    )
    print(
        f"pandas compute: median {p_med:.3f} s, best {min(pandas_times):.3f} s ({args.repeat} runs)"
    )
    print(
        f"duckdb compute: median {d_med:.3f} s, best {min(duck_times):.3f} s "
        f"(threads {con.execute('SELECT current_setting(' + repr('threads') + ')').fetchone()[0]})"
    )
    print(f"ratio pandas/duckdb: {ratio:.2f}x")
    print(f"pandas peak memory during compute (tracemalloc): {peak / 2**20:.1f} MiB")
    print(f"process peak RSS (data + both engines): {rss_kb / 1024:.0f} MiB")
    ok = p_med <= TARGET_SECONDS and ratio <= TARGET_RATIO
    print(
        f"targets: <= {TARGET_SECONDS:g} s and <= {TARGET_RATIO:g}x DuckDB: "
        f"{'MET' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
