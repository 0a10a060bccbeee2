"""Benchmark the monthly quality report (issues 3 and 12).

End to end (what a user runs), one size and engine after another::

    nice -n 10 python scripts/bench_quality.py e2e --rows 1000000 --engines sqlite,postgres
    nice -n 10 python scripts/bench_quality.py e2e --rows 10000000 --engines sqlite

For each size the history is generated into a CSV (``scripts/gen_history.py``,
seed 42, three months ending 2026-10, kept in ``--data``), then for each engine,
in a fresh database (a SQLite file in a temporary folder; on PostgreSQL a
database created on ``--postgres`` and dropped at the end):

1. **import**: ``aftersales import FILE --json`` as a subprocess from a cold
   process: wall time, rows/s and peak RSS of the child (``/usr/bin/time``);
2. **report**: ``aftersales report quality --month 2026-10 --json`` from a cold
   process, ``--repeat`` times (median, best, peak RSS); and the same with
   ``--out DIR`` (CSV, HTML and three PNG charts written);
3. **hand-written SQL baseline** on the same store, from a cold ``sqlite3`` /
   ``psql`` process: (a) the headline figures of the month in one plain query
   (tickets, satisfaction average, response compliance, fault resolution rate),
   (b) the same per-(team, handler, channel, category) sums as the report's
   main query; their answers are checked against the report's JSON;
4. **DuckDB over Parquet**: the store exported to Parquet, the headline query
   run by DuckDB from a cold ``python -c`` process (answer checked too).

Every figure is printed with its ratio to the baseline measured in the same
run. ``--json FILE`` also writes the raw figures.

Compute only (issue 3's figure, kept): ``python scripts/bench_quality.py compute``
times :func:`aftersales.quality.compute_quality` on a DataFrame already in
memory (the ``--input FILE`` path without reading the file) against DuckDB on
the same DataFrame. It measures no process start, no database and no file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

MONTH = "2026-10"
END = "2026-10"
MONTHS = 3
TZ = "Asia/Shanghai"
TARGETS = {
    "report_1m_s": 2.0,
    "report_1m_rss_mb": 300.0,
    "ratio_to_sql": 1.5,
    "report_10m_s": 10.0,
    "import_rows_s": 40_000.0,
}


# ------------------------------------------------------------------ processes
@dataclass
class Run:
    wall_s: float
    rss_mb: float
    stdout: str


def timed(cmd: list[str], env: dict[str, str], *, cwd: Path | None = None) -> Run:
    """Run ``cmd`` under ``/usr/bin/time``: its wall time and peak RSS (the child's)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-o", tf.name, "-f", "%e %M", *cmd]
        proc = subprocess.run(full, env=env, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        wall, rss_kb = Path(tf.name).read_text().split()[-2:]
    return Run(float(wall), int(rss_kb) / 1024, proc.stdout)


@dataclass
class Series:
    runs: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def add(self, r: Run) -> None:
        self.runs.append(r.wall_s)
        self.rss.append(r.rss_mb)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def peak_rss(self) -> float:
        return max(self.rss)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ------------------------------------------------------------------ data and stores
def data_file(data: Path, rows: int) -> Path:
    from gen_history import generate_chunks, write_chunks

    path = data / f"history-{rows}.csv"
    if path.exists():
        return path
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".part.csv")
    write_chunks(generate_chunks(rows, seed=42, months=MONTHS, end=END), tmp)
    tmp.rename(path)
    print(f"  generated {rows:,} rows into {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


class Store:
    """One fresh database of one engine."""

    def __init__(self, engine: str, work: Path, admin_url: str) -> None:
        self.engine = engine
        self.admin = admin_url
        if engine == "sqlite":
            self.path = work / "aftersales.db"
            self.url = f"sqlite:///{self.path}"
        else:
            import psycopg

            self.name = f"bench_quality_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(admin_url, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{self.name}"')
            self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def drop(self) -> None:
        if self.engine == "postgresql":
            import psycopg

            from models.db import _engine

            _engine.cache_clear()
            with psycopg.connect(self.admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def sql_cmd(self, sql: str) -> list[str]:
        if self.engine == "sqlite":
            return ["sqlite3", "-batch", "-noheader", "-separator", "|", str(self.path), sql]
        return ["psql", "-X", "-q", "-A", "-t", "-F", "|", self.url, "-c", sql]

    def export_csv(self, out: Path) -> None:
        cols = (
            "ticket_id, sop, channel, category, priority, created_at, first_response_at, "
            "resolved_at, closed_at, satisfaction, handler, team, customer_id"
        )
        if self.engine == "sqlite":
            with open(out, "w") as fh:
                subprocess.run(
                    [
                        "sqlite3",
                        "-batch",
                        "-csv",
                        "-header",
                        str(self.path),
                        f"SELECT {cols} FROM history_ticket",
                    ],
                    stdout=fh,
                    check=True,
                )
        else:
            subprocess.run(
                [
                    "psql",
                    "-X",
                    "-q",
                    self.url,
                    "-c",
                    f"\\copy (SELECT {cols} FROM history_ticket) TO '{out}' CSV HEADER",
                ],
                check=True,
            )


# ------------------------------------------------------------------ the hand-written SQL
def window_us() -> tuple[int, int]:
    from aftersales.report_model import micros, month_bounds

    start, stop = month_bounds(MONTH, TZ)
    return micros(start), micros(stop)


def headline_sql(table: str) -> str:
    lo, hi = window_us()
    return f"""SELECT count(*),
  avg(satisfaction),
  sum(CASE WHEN sop = 'inquiry' AND first_response_at - created_at <= 30000000 THEN 1 ELSE 0 END)
    * 1.0 / sum(CASE WHEN sop = 'inquiry' THEN 1 ELSE 0 END),
  sum(CASE WHEN sop = 'repair' AND resolved_at - created_at <= 2592000000000 THEN 1 ELSE 0 END)
    * 1.0 / sum(CASE WHEN sop = 'repair' THEN 1 ELSE 0 END)
FROM {table} WHERE created_at >= {lo} AND created_at < {hi};"""


def groups_sql() -> str:
    lo, hi = window_us()
    return f"""SELECT count(*) FROM (SELECT team, handler, channel, category, count(*) AS n,
  sum(CASE WHEN sop = 'inquiry' THEN 1 ELSE 0 END) AS inq,
  sum(CASE WHEN sop = 'inquiry' AND first_response_at - created_at <= 30000000 THEN 1 ELSE 0 END) AS inq_ok,
  sum(CASE WHEN sop = 'repair' THEN 1 ELSE 0 END) AS rep,
  sum(CASE WHEN sop = 'repair' AND resolved_at - created_at <= 2592000000000 THEN 1 ELSE 0 END) AS rep_ok,
  sum(CASE WHEN sop = 'complaint' THEN 1 ELSE 0 END) AS cmp,
  count(satisfaction) AS rated, sum(satisfaction) AS sat,
  sum(CASE WHEN satisfaction < 8.5 THEN 1 ELSE 0 END) AS low
FROM history_ticket WHERE created_at >= {lo} AND created_at < {hi}
GROUP BY team, handler, channel, category) AS g;"""


def parse_headline(out: str) -> tuple[int, float, float, float]:
    line = [x for x in out.strip().splitlines() if x.strip()][-1]
    sep = "|" if "|" in line else ","
    n, sat, rc, fr = line.strip("()[] ").split(sep)
    return int(n), float(sat), float(rc), float(fr)


def same_answer(report: dict[str, Any], got: tuple[int, float, float, float], who: str) -> None:
    n, sat, rc, fr = got
    want = (
        report["tickets"],
        report["satisfaction_avg"],
        report["response_compliance"],
        report["fault_resolution_rate"],
    )
    ok = n == want[0] and all(
        abs(a - b) < 1e-9 for a, b in zip((sat, rc, fr), want[1:], strict=True)
    )
    if not ok:
        raise SystemExit(f"{who} disagrees with the report: {got} != {want}")


#: what the report command does before its first query: start Python, import its
#: modules, read the settings and the profile, check the schema version
FLOOR = (
    "import aftersales.cli, aftersales.cli_reports, aftersales.quality, aftersales.report_sql;"
    "from aftersales.policy import load_profile; from aftersales.settings import get_settings;"
    "from models.db import get_engine; s = get_settings();"
    "load_profile(s.policy_profile, check_steps=False);"
    "aftersales.report_sql.schema_ready(get_engine())"
)


# ------------------------------------------------------------------ e2e
@dataclass
class EngineFigures:
    engine: str
    rows: int
    month_tickets: int = 0
    import_s: float = 0.0
    import_rows_s: float = 0.0
    import_rss_mb: float = 0.0
    report: Series = field(default_factory=Series)
    report_files: Series = field(default_factory=Series)
    python_floor: Series = field(default_factory=Series)
    sql_headline: Series = field(default_factory=Series)
    sql_groups: Series = field(default_factory=Series)
    duckdb_parquet: Series = field(default_factory=Series)
    load: str = ""


def e2e(rows: int, engine: str, args: argparse.Namespace) -> EngineFigures:
    data = data_file(args.data, rows)
    fig = EngineFigures(engine, rows)
    work = Path(tempfile.mkdtemp(prefix=f"bench-quality-{engine}-"))
    store = Store(engine, work, args.postgres)
    env = {
        **os.environ,
        "AFTERSALES_HOME": str(work / "home"),
        "AFTERSALES_DATABASE_URL": store.url,
        "AFTERSALES_REPORTS_DIR": str(work / "reports"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    cli = [sys.executable, "-m", "aftersales.cli"]
    try:
        fig.load = load()
        r = timed([*cli, "import", str(data), "--json"], env)
        res = json.loads(r.stdout)
        assert res["imported"] == rows, res
        fig.import_s, fig.import_rss_mb = r.wall_s, r.rss_mb
        fig.import_rows_s = rows / r.wall_s
        print(
            f"  [{engine} {rows:,}] import {r.wall_s:.1f} s = {fig.import_rows_s:,.0f} rows/s, "
            f"peak RSS {r.rss_mb:.0f} MB (load {fig.load})",
            flush=True,
        )
        report: dict[str, Any] = {}
        for _ in range(args.repeat):
            r = timed([*cli, "report", "quality", "--month", MONTH, "--json"], env)
            fig.report.add(r)
            report = json.loads(r.stdout)
        fig.month_tickets = report["tickets"]
        for k in range(max(1, args.repeat // 2)):
            out = work / f"reports-{k}"
            fig.report_files.add(
                timed(
                    [*cli, "report", "quality", "--month", MONTH, "--json", "--out", str(out)], env
                )
            )
        for _ in range(args.repeat):
            fig.python_floor.add(timed([sys.executable, "-c", FLOOR], env))
        for _ in range(args.repeat):
            r = timed(store.sql_cmd(headline_sql("history_ticket")), env)
            fig.sql_headline.add(r)
        same_answer(report, parse_headline(r.stdout), f"hand-written SQL ({engine})")
        for _ in range(args.repeat):
            fig.sql_groups.add(timed(store.sql_cmd(groups_sql()), env))
        parquet = work / "history.parquet"
        export = work / "history.csv"
        store.export_csv(export)
        to_parquet = (
            f"COPY (SELECT * FROM read_csv_auto('{export}')) TO '{parquet}' (FORMAT parquet)"
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import duckdb; c = duckdb.connect(); "
                f"c.execute('SET enable_progress_bar = false'); c.execute({to_parquet!r})",
            ],
            check=True,
        )
        export.unlink()
        dq = headline_sql(f"read_parquet('{parquet}')").replace("\n", " ")
        code = f"import duckdb; print(duckdb.sql({dq!r}).fetchall()[0])"
        for _ in range(args.repeat):
            r = timed([sys.executable, "-c", code], env)
            fig.duckdb_parquet.add(r)
        same_answer(report, parse_headline(r.stdout), "DuckDB over Parquet")
        print_engine(fig)
    finally:
        store.drop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return fig


def print_engine(f: EngineFigures) -> None:
    base = f.sql_headline.median
    groups = f.sql_groups.median

    def line(label: str, s: Series, extra: str = "") -> None:
        print(
            f"    {label:<44} median {s.median:6.2f} s  best {s.best:6.2f} s  "
            f"peak RSS {s.peak_rss:5.0f} MB  {s.median / base:5.1f}x headline SQL  "
            f"{s.median / groups:4.1f}x same-groups SQL{extra}",
            flush=True,
        )

    print(f"  [{f.engine} {f.rows:,}] month {MONTH}: {f.month_tickets:,} tickets (load {f.load})")
    line("aftersales report quality --json", f.report)
    line("  ... --json --out DIR (CSV, HTML, 3 PNG)", f.report_files)
    line("  (Python start, imports, profile; no query)", f.python_floor)
    line("hand-written SQL, headline figures", f.sql_headline)
    line("hand-written SQL, same groups as the report", f.sql_groups)
    line("DuckDB over the store exported to Parquet", f.duckdb_parquet)


# ------------------------------------------------------------------ compute only (issue 3)
def compute_only(args: argparse.Namespace) -> int:
    """pandas on an in-memory DataFrame vs DuckDB on the same DataFrame (compute only)."""
    import resource
    import tracemalloc

    import duckdb
    import numpy as np
    import pandas as pd
    from gen_history import generate

    from aftersales.calendar import Unit, WorkCalendar
    from aftersales.policy import load_profile
    from aftersales.quality import compute_quality, month_bounds
    from aftersales.report_frame import VectorCalendar
    from aftersales.report_model import NATURAL_SECONDS

    df = generate(args.rows, seed=42, months=args.months, end=END)
    profile = load_profile("default", check_steps=False)
    cal = WorkCalendar()
    vcal = VectorCalendar(cal)
    result = compute_quality(df, MONTH, profile, vcal=vcal, tz=TZ)

    def run_pandas() -> None:
        compute_quality(df, MONTH, profile, vcal=vcal, tz=TZ)

    ns = df["created_at"].dt.as_unit("ns").array.asi8
    # the periods the CMP-3 deadlines of the month reach (5 working days after its last day)
    vcal.add_us(np.array([ns.min() // 1000, ns.max() // 1000], dtype=np.int64), 5 * 32400 * 10**6)
    periods = pd.DataFrame({"ps": vcal.ps, "pe": vcal.pe, "cs": vcal.cum_start, "ce": vcal.cum_end})
    r1, r2, r3 = (profile.rule(i) for i in ("CMP-1", "CMP-2", "CMP-3"))
    n12 = int(r1.duration * NATURAL_SECONDS[Unit(r1.unit)] * 1e6) + int(
        r2.duration * NATURAL_SECONDS[Unit(r2.unit)] * 1e6
    )
    n3 = int(r3.duration * cal.working_day_seconds() * 1e6)
    sql = f"""
    WITH m AS (SELECT sop, team, handler, satisfaction, epoch_us(created_at) AS c,
                      epoch_us(first_response_at) AS f, epoch_us(resolved_at) AS r
               FROM tickets WHERE created_at >= $start AND created_at < $stop),
    cm AS (SELECT * FROM m WHERE sop = 'complaint' AND f IS NOT NULL AND r IS NOT NULL),
    pos AS (SELECT cm.*, p.cs + least(greatest(cm.f - p.ps, 0), p.pe - p.ps) + {n3} AS target
            FROM cm ASOF JOIN periods p ON cm.f >= p.ps),
    due AS (SELECT pos.*, greatest(p.ps + (pos.target - p.cs), pos.f) AS d3
            FROM pos ASOF JOIN periods p ON pos.target <= p.ce)
    SELECT (SELECT count(*) FROM m),
           (SELECT sum((f - c <= 30000000)::INT) FROM m WHERE sop = 'inquiry'),
           (SELECT sum((f <= c + {n12} AND r <= d3)::INT) FROM due),
           (SELECT count(*) FROM (SELECT team, handler FROM m GROUP BY ALL))"""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("tickets", df)
    con.register("periods", periods)
    start, stop = month_bounds(MONTH, TZ)
    params = {"start": start, "stop": stop}
    got = con.execute(sql, params).fetchone()
    d = result.data
    assert got[0] == d["tickets"], (got, d["tickets"])
    assert got[1] == d["counts"]["inquiries_compliant"], got
    assert got[2] == d["counts"]["complaints_on_time"], got

    def best_median(fn: Any) -> tuple[float, float]:
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts), min(ts)

    p_med, p_best = best_median(run_pandas)
    d_med, d_best = best_median(lambda: con.execute(sql, params).fetchone())
    tracemalloc.start()
    run_pandas()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"COMPUTE ONLY (a DataFrame already in memory; no process start, database or file): "
        f"{len(df):,} tickets, month {MONTH}: {d['tickets']:,}"
    )
    print(f"  pandas compute_quality: median {p_med:.3f} s, best {p_best:.3f} s")
    print(f"  DuckDB, same DataFrame: median {d_med:.3f} s, best {d_best:.3f} s (same counts)")
    print(
        f"  ratio pandas/DuckDB {p_med / d_med:.2f}x; pandas peak (tracemalloc) "
        f"{peak / 2**20:.0f} MiB; process peak RSS {rss:.0f} MiB"
    )
    return 0


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("e2e", help="the CLI from cold processes, against SQL and DuckDB")
    e.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    e.add_argument("--engines", default="sqlite,postgres")
    e.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    e.add_argument("--repeat", type=int, default=5)
    e.add_argument("--data", type=Path, default=ROOT / "bench-out")
    e.add_argument("--keep", action="store_true", help="keep the temporary folders")
    e.add_argument("--json", type=Path, default=None, help="also write the figures here")
    c = sub.add_parser("compute", help="compute only: pandas vs DuckDB on an in-memory frame")
    c.add_argument("--rows", type=int, default=1_000_000)
    c.add_argument("--months", type=int, default=1)
    c.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.cmd == "compute":
        return compute_only(args)
    engines = [
        "postgresql" if x.strip() in ("postgres", "postgresql") else x.strip()
        for x in args.engines.split(",")
    ]
    figures = []
    for rows in args.rows:
        for engine in engines:
            figures.append(e2e(rows, engine, args))
    summary(figures)
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=1))
    return 0


def summary(figs: list[EngineFigures]) -> None:
    print("\nTARGETS")
    for f in figs:
        tag = f"[{f.engine} {f.rows:,}]"
        limit = TARGETS["report_1m_s"] if f.rows <= 1_000_000 else TARGETS["report_10m_s"]
        print(
            f"  {tag} report {f.report.median:.2f} s <= {limit:g} s: "
            f"{'met' if f.report.median <= limit else 'MISSED'}"
        )
        if f.rows <= 1_000_000:
            print(
                f"  {tag} report peak RSS {f.report.peak_rss:.0f} MB <= 300 MB: "
                f"{'met' if f.report.peak_rss <= 300 else 'MISSED'}"
            )
            ratio = f.report.median / f.sql_headline.median
            print(
                f"  {tag} report / headline SQL {ratio:.1f}x <= 1.5x: "
                f"{'met' if ratio <= 1.5 else 'MISSED'}"
            )
        print(
            f"  {tag} import {f.import_rows_s:,.0f} rows/s >= 40,000: "
            f"{'met' if f.import_rows_s >= 40_000 else 'MISSED'}"
        )
    by_engine: dict[str, list[EngineFigures]] = {}
    for f in figs:
        by_engine.setdefault(f.engine, []).append(f)
    for engine, fs in by_engine.items():
        if len(fs) > 1:
            fs = sorted(fs, key=lambda f: f.rows)
            print(
                f"  [{engine}] import peak RSS {fs[0].rows:,} -> {fs[-1].rows:,}: "
                f"{fs[0].import_rss_mb:.0f} -> {fs[-1].import_rss_mb:.0f} MB "
                f"({fs[-1].import_rss_mb / fs[0].import_rss_mb:.2f}x)"
            )


if __name__ == "__main__":
    raise SystemExit(main())
