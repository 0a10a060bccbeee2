"""Generate realistic synthetic ticket history (issue 3 §6), seeded and vectorised.

    python scripts/gen_history.py --rows 1000000 --out bench-out/history-1m.csv
    python scripts/gen_history.py --rows 1000000 --out bench-out/history-1m.parquet

The rows carry the canonical import columns (``aftersales import`` loads the CSV).
Shape of the data: tickets spread over ``--months`` months ending with ``--end``
(Asia/Shanghai), more of them in working hours and on weekdays; SOP, channel,
priority and problem-type mixes; first responses by channel (seconds on the
phone and online, hours by e-mail), a few never answered; repairs resolved in
days (some after 30), others in hours; about 60 % rated on the 0-10 scale,
lower when the response was slow; handlers belong to teams.
Parquet is written through DuckDB (no pyarrow needed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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


def generate(
    rows: int = 1_000_000,
    *,
    seed: int = 42,
    months: int = 3,
    end: str = "2026-10",
    teams: int = 12,
    handlers: int = 240,
) -> pd.DataFrame:
    """The canonical ticket frame (UTC timestamps, categorical group columns)."""
    from aftersales.history import _finish
    from aftersales.quality import month_bounds, shift_month

    rng = np.random.default_rng(seed)
    start = month_bounds(shift_month(end, -(months - 1)))[0]
    stop = month_bounds(end)[1]
    start_ns, stop_ns = pd.Timestamp(start).value, pd.Timestamp(stop).value
    days = (stop_ns - start_ns) // (86400 * 10**9)

    # creation: a day (weekdays twice as busy), an hour (working hours busier)
    day_w = np.array(
        [
            1.0
            if (
                pd.Timestamp(start_ns + d * 86400 * 10**9, tz="UTC")
                .tz_convert("Asia/Shanghai")
                .weekday()
                >= 5
            )
            else 2.0
            for d in range(days)
        ]
    )
    day = rng.choice(days, size=rows, p=day_w / day_w.sum())
    hour_w = np.array(
        [0.2] * 8 + [3, 4, 4, 3.5, 2.5, 3.5, 4, 4, 3.5, 2, 1.5, 1, 0.6, 0.4] + [0.2, 0.2]
    )
    hour = rng.choice(24, size=rows, p=hour_w / hour_w.sum())
    sec = rng.integers(0, 3600, size=rows)
    created = start_ns + day * 86400 * 10**9 + (hour * 3600 + sec) * 10**9
    created = np.minimum(created, stop_ns - 10**9)

    def pick(values: list[str], p: list[float] | np.ndarray) -> pd.Categorical:
        codes = rng.choice(len(values), size=rows, p=np.asarray(p) / np.sum(p))
        return pd.Categorical.from_codes(codes, categories=values)

    sop = pick(*SOPS)
    channel = pick(*CHANNELS)
    priority = pick(*PRIORITIES)
    category = pick(CATEGORIES, 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 0.9)

    median = np.array([RESPONSE_MEDIAN[c] for c in CHANNELS[0]])[channel.codes]
    resp_s = median * rng.lognormal(0.0, 0.9, size=rows)
    first = created + (resp_s * 1e9).astype(np.int64)
    unanswered = rng.random(rows) < 0.03

    is_repair = np.asarray(sop == "repair")
    res_s = np.where(
        is_repair,
        86400 * 6 * rng.lognormal(0.0, 0.8, size=rows),  # median 6 days, tail beyond 30
        3600 * 5 * rng.lognormal(0.0, 1.1, size=rows),  # median 5 hours
    )
    res_s = np.maximum(res_s, resp_s + 60)
    resolved = created + (res_s * 1e9).astype(np.int64)
    unresolved = unanswered | (rng.random(rows) < 0.05)
    closed = resolved + (rng.exponential(3600 * 6, size=rows) * 1e9).astype(np.int64)

    rated = rng.random(rows) < 0.6
    slow = np.clip(np.log10(np.maximum(resp_s, 1)) / 5, 0, 1)  # 0 fast .. 1 very slow
    handler_no = rng.integers(0, handlers, size=rows)
    handler_bias = rng.normal(0.0, 0.6, size=handlers)  # some handlers are better liked
    score = np.clip(np.round(rng.normal(9.3 - 2.5 * slow + handler_bias[handler_no], 1.2)), 0, 10)

    team_of = rng.integers(0, teams, size=handlers)
    handler_names = np.array([f"H{i:04d}" for i in range(handlers)], dtype=object)
    team_names = np.array([f"team-{i:02d}" for i in range(teams)], dtype=object)
    handler = pd.Categorical.from_codes(handler_no, categories=handler_names)
    team = pd.Categorical.from_codes(team_of[handler_no], categories=team_names)

    nat = np.iinfo(np.int64).min
    df = pd.DataFrame(
        {
            "ticket_id": "G" + pd.Series(np.arange(rows)).astype(str).str.zfill(8),
            "sop": sop,
            "channel": channel,
            "category": category,
            "priority": priority,
            "created_at": pd.to_datetime(created, utc=True),
            "first_response_at": pd.to_datetime(np.where(unanswered, nat, first), utc=True),
            "resolved_at": pd.to_datetime(np.where(unresolved, nat, resolved), utc=True),
            "closed_at": pd.to_datetime(np.where(unresolved, nat, closed), utc=True),
            "satisfaction": np.where(rated & ~unanswered, score, np.nan),
            "handler": handler,
            "team": team,
            "customer_id": "C" + pd.Series(rng.integers(0, rows // 3 + 1, size=rows)).astype(str),
            "source": "synthetic",
        }
    )
    return _finish(df)


def write(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in df.columns if c != "source"]
    if out.suffix == ".parquet":
        import duckdb

        plain = df[cols].copy()
        for c in plain.columns:
            if isinstance(plain[c].dtype, pd.CategoricalDtype):
                plain[c] = plain[c].astype(object)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.register("history", plain)
        con.execute(f"COPY history TO '{out}' (FORMAT parquet)")
        con.close()
    else:
        df[cols].to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")


def read(path: Path) -> pd.DataFrame:
    """Read a generated file back into the canonical frame (trusted input: no validation)."""
    from aftersales.history import _finish

    if path.suffix == ".parquet":
        import duckdb

        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
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
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("bench-out/history.csv"),
        help=".csv (importable) or .parquet",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    df = generate(args.rows, seed=args.seed, months=args.months, end=args.end)
    t1 = time.perf_counter()
    write(df, args.out)
    t2 = time.perf_counter()
    print(f"generated {len(df):,} tickets in {t1 - t0:.2f} s, wrote {args.out} in {t2 - t1:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
