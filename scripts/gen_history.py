"""Generate realistic synthetic ticket history (issues 3 and 12), seeded, vectorised, streamed.

    python scripts/gen_history.py --rows 1000000 --out bench-out/history-1m.csv
    python scripts/gen_history.py --rows 10000000 --out bench-out/history-10m.csv
    python scripts/gen_history.py --rows 1000000 --out bench-out/history-1m.parquet

The rows carry the canonical import columns (``aftersales import`` loads the
CSV or the Parquet file). Shape of the data: tickets spread over ``--months``
months ending with ``--end`` (Asia/Shanghai), more of them in working hours and
on weekdays; SOP, channel, priority and problem-type mixes; first responses by
channel (seconds on the phone and online, hours by e-mail), a few never
answered; repairs resolved in days (some after 30), others in hours; about 60 %
rated on the 0-10 scale, lower when the response was slow; handlers belong to
teams. Tickets come in creation order with ascending ids, as a ticketing tool
exports them. The file is written in chunks (``--chunk-rows``): memory does not
grow with ``--rows``. Parquet is written through DuckDB (no pyarrow needed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the import's core columns (the optional survey and complaint columns are not generated)
from aftersales.history import CORE_COLUMNS as COLUMNS  # noqa: E402

SOPS = (
    ["inquiry", "repair", "complaint", "callback", "installation"],
    [0.55, 0.2, 0.08, 0.1, 0.07],
)
CHANNELS = (["phone", "online", "email", "social"], [0.35, 0.35, 0.15, 0.15])
PRIORITIES = (["normal", "important", "urgent"], [0.7, 0.2, 0.1])
CATEGORIES = [
    "screen",
    "battery",
    "power",
    "login",
    "network",
    "noise",
    "installation",
    "delivery",
    "invoice",
    "warranty",
    "software-update",
    "overheating",
    "accessory",
    "billing",
    "other",
]
# seconds: median first response per channel (lognormal)
RESPONSE_MEDIAN = {"phone": 8.0, "online": 20.0, "email": 3 * 3600.0, "social": 6 * 60.0}
HOUR_WEIGHTS = np.array(
    [0.2] * 8 + [3, 4, 4, 3.5, 2.5, 3.5, 4, 4, 3.5, 2, 1.5, 1, 0.6, 0.4] + [0.2, 0.2]
)
NS = 10**9
DAY_NS = 86400 * NS


def generate_chunks(
    rows: int = 1_000_000,
    *,
    seed: int = 42,
    months: int = 3,
    end: str = "2026-10",
    teams: int = 12,
    handlers: int = 240,
    chunk_rows: int = 500_000,
) -> Iterator[pd.DataFrame]:
    """The canonical ticket frame in chunks of about ``chunk_rows``, in creation order."""
    from aftersales.history import _finish
    from aftersales.report_model import month_bounds, shift_month

    master = np.random.default_rng(seed)
    start = month_bounds(shift_month(end, -(months - 1)))[0]
    stop = month_bounds(end)[1]
    start_ns, stop_ns = pd.Timestamp(start).value, pd.Timestamp(stop).value
    days = (stop_ns - start_ns) // DAY_NS
    local_days = pd.to_datetime(start_ns + np.arange(days) * DAY_NS, utc=True).tz_convert(
        "Asia/Shanghai"
    )
    day_w = np.where(local_days.day_of_week >= 5, 1.0, 2.0)  # weekdays twice as busy
    per_day = master.multinomial(rows, day_w / day_w.sum())
    handler_bias = master.normal(0.0, 0.6, size=handlers)  # some handlers are better liked
    team_of = master.integers(0, teams, size=handlers)
    handler_names = np.array([f"H{i:04d}" for i in range(handlers)], dtype=object)
    team_names = np.array([f"team-{i:02d}" for i in range(teams)], dtype=object)
    next_id = 0
    d = 0
    chunk_no = 0
    while d < days:
        first_day = d
        n = 0
        while d < days and (n == 0 or n + per_day[d] <= chunk_rows):
            n += int(per_day[d])
            d += 1
        chunk_no += 1
        rng = np.random.default_rng([seed, chunk_no])
        day = np.repeat(np.arange(first_day, d), per_day[first_day:d])
        hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
        sec = rng.integers(0, 3600, size=n)
        created = start_ns + day * DAY_NS + (hour * 3600 + sec) * NS
        created = np.sort(np.minimum(created, stop_ns - NS))
        yield _finish(
            _rows(rng, created, next_id, handler_bias, team_of, handler_names, team_names)
        )
        next_id += n


def _rows(
    rng: np.random.Generator,
    created: np.ndarray,
    first_id: int,
    handler_bias: np.ndarray,
    team_of: np.ndarray,
    handler_names: np.ndarray,
    team_names: np.ndarray,
) -> pd.DataFrame:
    n = len(created)

    def pick(values: list[str], p: list[float] | np.ndarray) -> pd.Categorical:
        codes = rng.choice(len(values), size=n, p=np.asarray(p) / np.sum(p))
        return pd.Categorical.from_codes(codes, categories=values)

    sop = pick(*SOPS)
    channel = pick(*CHANNELS)
    priority = pick(*PRIORITIES)
    category = pick(CATEGORIES, 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 0.9)

    median = np.array([RESPONSE_MEDIAN[c] for c in CHANNELS[0]])[channel.codes]
    resp_s = median * rng.lognormal(0.0, 0.9, size=n)
    first = created + (resp_s * 1e6).astype(np.int64) * 1000  # whole microseconds
    unanswered = rng.random(n) < 0.03

    is_repair = np.asarray(sop == "repair")
    res_s = np.where(
        is_repair,
        86400 * 6 * rng.lognormal(0.0, 0.8, size=n),  # median 6 days, tail beyond 30
        3600 * 5 * rng.lognormal(0.0, 1.1, size=n),  # median 5 hours
    )
    res_s = np.maximum(res_s, resp_s + 60)
    resolved = created + (res_s * 1e6).astype(np.int64) * 1000
    unresolved = unanswered | (rng.random(n) < 0.05)
    closed = resolved + (rng.exponential(3600 * 6, size=n) * 1e6).astype(np.int64) * 1000

    rated = rng.random(n) < 0.6
    slow = np.clip(np.log10(np.maximum(resp_s, 1)) / 5, 0, 1)  # 0 fast .. 1 very slow
    handler_no = rng.integers(0, len(handler_names), size=n)
    score = np.clip(np.round(rng.normal(9.3 - 2.5 * slow + handler_bias[handler_no], 1.2)), 0, 10)
    nat = np.iinfo(np.int64).min
    ids = np.arange(first_id, first_id + n)
    customers = rng.integers(0, max(n // 3, 1), size=n) + first_id // 3
    return pd.DataFrame(
        {
            "ticket_id": "G" + pd.Series(ids).astype(str).str.zfill(8),
            "sop": sop,
            "channel": channel,
            "category": category,
            "priority": priority,
            "created_at": pd.to_datetime(created, utc=True),
            "first_response_at": pd.to_datetime(np.where(unanswered, nat, first), utc=True),
            "resolved_at": pd.to_datetime(np.where(unresolved, nat, resolved), utc=True),
            "closed_at": pd.to_datetime(np.where(unresolved, nat, closed), utc=True),
            "satisfaction": np.where(rated & ~unanswered, score, np.nan),
            "handler": pd.Categorical.from_codes(handler_no, categories=handler_names),
            "team": pd.Categorical.from_codes(team_of[handler_no], categories=team_names),
            "customer_id": "C" + pd.Series(customers).astype(str),
            "source": "synthetic",
        }
    )


def generate(
    rows: int = 1_000_000,
    *,
    seed: int = 42,
    months: int = 3,
    end: str = "2026-10",
    teams: int = 12,
    handlers: int = 240,
) -> pd.DataFrame:
    """The whole canonical ticket frame in memory (UTC timestamps, categorical groups)."""
    from aftersales.history import _finish

    parts = list(
        generate_chunks(rows, seed=seed, months=months, end=end, teams=teams, handlers=handlers)
    )
    return _finish(pd.concat(parts, ignore_index=True))


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    plain = df[list(COLUMNS)].copy()
    for c in plain.columns:
        if isinstance(plain[c].dtype, pd.CategoricalDtype):
            plain[c] = plain[c].astype(object)
    return plain


def write_chunks(chunks: Iterator[pd.DataFrame], out: Path) -> int:
    """Write chunks to ``out`` (.csv: ISO 8601 UTC with microseconds; .parquet)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if out.suffix == ".parquet":
        import duckdb

        db = out.with_suffix(".tmp.duckdb")
        db.unlink(missing_ok=True)
        con = duckdb.connect(str(db))
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        for k, df in enumerate(chunks):
            plain = _plain(df)
            con.register("chunk", plain)
            if k == 0:
                con.execute("CREATE TABLE history AS SELECT * FROM chunk")
            else:
                con.execute("INSERT INTO history SELECT * FROM chunk")
            con.unregister("chunk")
            n += len(df)
        con.execute(f"COPY history TO '{out}' (FORMAT parquet)")
        con.close()
        db.unlink(missing_ok=True)
        return n
    with open(out, "w", encoding="utf-8", newline="") as fh:
        for k, df in enumerate(chunks):
            _plain(df).to_csv(fh, index=False, header=k == 0, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
            n += len(df)
    return n


def write(df: pd.DataFrame, out: Path) -> None:
    write_chunks(iter([df]), out)


def read(path: Path) -> pd.DataFrame:
    """Read a generated file back into the canonical frame (trusted input: no validation)."""
    from aftersales.history import _finish

    if path.suffix == ".parquet":
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        df = con.execute(f"SELECT * FROM '{path}'").df()
    else:
        df = pd.read_csv(path)
    for c in ("created_at", "first_response_at", "resolved_at", "closed_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    for c in ("handler", "team", "customer_id", "category", "ticket_id"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return _finish(df.assign(source="file"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--end", default="2026-10", help="last month YYYY-MM (Asia/Shanghai)")
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("bench-out/history.csv"),
        help=".csv or .parquet (both importable)",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    n = write_chunks(
        generate_chunks(
            args.rows, seed=args.seed, months=args.months, end=args.end, chunk_rows=args.chunk_rows
        ),
        args.out,
    )
    print(f"generated and wrote {n:,} tickets to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
