"""Response-speed diagnosis, spec §7 SPD-1/2 (issue 3 §3).

Over the tickets *created* in the last ``months`` calendar months ending with
``end`` (Asia/Shanghai months, like the quality report):

* **average first response**: mean of ``first_response_at - created_at`` (hours)
  over tickets that have a first response;
* **average resolution**: mean of ``closed_at - created_at`` (hours, submission
  to close) over closed tickets;
* **over-limit share**: tickets whose first response came later than the limit
  (default ``targets.speed_response_limit_hours`` = 4 h, ``--limit-hours``), or
  never came, divided by all tickets of the window;
* **top-3 problem types**: the categories with the most tickets (with their own
  average first response and over-limit share);
* **weekly trend**: the same figures per week (Monday-Sunday, local time).

Compared with the SPD-2 targets of the profile: average first response
<= ``speed_first_response_hours``, over-limit share <= ``speed_over_limit_share``,
speed satisfaction (the 0-10 average / 2, on the 5-point scale) >=
``speed_satisfaction_5``. First-contact resolution cannot be derived from the
canonical history columns; it is reported as ``null`` ("not measured").
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from aftersales.policy import Profile
from aftersales.quality import _group_key, fmt_num, fmt_pct, in_window, month_bounds
from aftersales.quality import shift_month as _shift

HOUR = 3600.0


def _f(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def speed_window(end: str, months: int, tz: str) -> tuple[str, str]:
    if months < 1:
        raise ValueError("months must be >= 1")
    return _shift(end, -(months - 1)), end


def _figures(df: pd.DataFrame, limit_hours: float) -> dict[str, Any]:
    resp = (df["first_response_at"] - df["created_at"]).dt.total_seconds() / HOUR
    reso = (df["closed_at"] - df["created_at"]).dt.total_seconds() / HOUR
    over = ~(resp <= limit_hours)  # no response counts as over the limit
    n = len(df)
    return {
        "tickets": n,
        "avg_first_response_hours": _f(resp.mean()) if resp.notna().any() else None,
        "avg_resolution_hours": _f(reso.mean()) if reso.notna().any() else None,
        "over_limit": int(over.sum()),
        "over_limit_share": (float(over.sum()) / n) if n else None,
    }


def compute_speed(
    df: pd.DataFrame,
    end: str,
    profile: Profile,
    *,
    months: int = 3,
    limit_hours: float | None = None,
    tz: str = "Asia/Shanghai",
) -> dict[str, Any]:
    t = profile.targets
    limit = float(limit_hours if limit_hours is not None else t.speed_response_limit_hours)
    first, last = speed_window(end, months, tz)
    start, stop = month_bounds(first, tz)[0], month_bounds(last, tz)[1]
    w = in_window(df, start, stop)
    overall = _figures(w, limit)

    resp = (w["first_response_at"] - w["created_at"]).dt.total_seconds() / HOUR
    reso = (w["closed_at"] - w["created_at"]).dt.total_seconds() / HOUR
    over = ~(resp <= limit)
    cat = _group_key(w["category"])
    by_cat = (
        pd.DataFrame({"cat": cat, "resp": resp, "over": over})
        .groupby("cat", observed=True)
        .agg(tickets=("over", "size"), over=("over", "sum"), resp=("resp", "mean"))
        .sort_values(["tickets", "over"], ascending=False)
    )
    top3 = [
        {
            "category": str(k),
            "tickets": int(r["tickets"]),
            "share": float(r["tickets"]) / len(w) if len(w) else None,
            "avg_first_response_hours": _f(r["resp"]),
            "over_limit_share": float(r["over"]) / float(r["tickets"]),
        }
        for k, r in by_cat.head(3).iterrows()
    ]

    local = w["created_at"].dt.tz_convert(tz)
    week = (local.dt.normalize() - pd.to_timedelta(local.dt.weekday, unit="D")).dt.strftime(
        "%Y-%m-%d"
    )
    wk = (
        pd.DataFrame({"week": week, "resp": resp, "reso": reso, "over": over})
        .groupby("week", sort=True)
        .agg(
            tickets=("over", "size"),
            avg_first_response_hours=("resp", "mean"),
            avg_resolution_hours=("reso", "mean"),
            over=("over", "sum"),
        )
        .reset_index()
    )
    wk["over_limit_share"] = wk["over"] / wk["tickets"]
    weekly = [
        {
            "week": r["week"],
            "tickets": int(r["tickets"]),
            "avg_first_response_hours": _f(r["avg_first_response_hours"]),
            "avg_resolution_hours": _f(r["avg_resolution_hours"]),
            "over_limit_share": _f(r["over_limit_share"]),
        }
        for r in wk.to_dict("records")
    ]
    sat = w["satisfaction"]
    speed_sat = _f(sat.mean() / 2) if sat.notna().any() else None

    def cmp(metric: str, value: float | None, target: float, better: str) -> dict[str, Any]:
        met = None if value is None else (value <= target if better == "lower" else value >= target)
        return {"metric": metric, "value": value, "target": target, "better": better, "met": met}

    comparisons = [
        cmp(
            "avg_first_response_hours",
            overall["avg_first_response_hours"],
            t.speed_first_response_hours,
            "lower",
        ),
        cmp("over_limit_share", overall["over_limit_share"], t.speed_over_limit_share, "lower"),
        cmp("speed_satisfaction_5", speed_sat, t.speed_satisfaction_5, "higher"),
        {
            "metric": "first_contact_resolution",
            "value": None,
            "target": t.first_contact_resolution,
            "better": "higher",
            "met": None,
            "note": "not measured: the history columns do not record contacts",
        },
    ]
    return {
        "months": months,
        "first_month": first,
        "end": last,
        "timezone": tz,
        "profile": profile.name,
        "period": {"start": start.isoformat(), "end": stop.isoformat()},
        "limit_hours": limit,
        **overall,
        "speed_satisfaction_5": speed_sat,
        "top_categories": top3,
        "weekly": weekly,
        "targets": {
            "speed_first_response_hours": t.speed_first_response_hours,
            "speed_over_limit_share": t.speed_over_limit_share,
            "speed_satisfaction_5": t.speed_satisfaction_5,
            "first_contact_resolution": t.first_contact_resolution,
        },
        "comparisons": comparisons,
    }


def write_speed_report(data: dict[str, Any], df: pd.DataFrame, out_dir: Any) -> dict[str, str]:
    from pathlib import Path

    from aftersales import charts

    folder = Path(out_dir) / f"speed-{data['end']}-{data['months']}m"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder.name
    weekly = pd.DataFrame(
        data["weekly"] or [],
        columns=[
            "week",
            "tickets",
            "avg_first_response_hours",
            "avg_resolution_hours",
            "over_limit_share",
        ],
    )
    weekly_csv = folder / f"{stem}-weekly.csv"
    weekly.to_csv(weekly_csv, index=False)
    summary_csv = folder / f"{stem}.csv"
    pd.DataFrame(data["comparisons"]).to_csv(summary_csv, index=False)
    t = data["targets"]
    png_weekly = charts.weekly_speed(
        weekly,
        t["speed_first_response_hours"],
        t["speed_over_limit_share"],
        folder / f"{stem}-weekly.png",
    )
    start, stop = data["period"]["start"], data["period"]["end"]
    w = df[(df["created_at"] >= pd.Timestamp(start)) & (df["created_at"] < pd.Timestamp(stop))]
    counts = (
        _group_key(w["category"]).value_counts().head(10)
        if len(w)
        else pd.Series([], dtype="int64")
    )
    png_cats = charts.top_bars(
        counts, folder / f"{stem}-categories.png", "Top problem types (SPD-1)"
    )
    summary = [
        {"figure": "tickets", "value": str(data["tickets"]), "target": "-"},
        {
            "figure": "average first response",
            "value": f"{fmt_num(data['avg_first_response_hours'])} h",
            "target": f"≤ {t['speed_first_response_hours']:g} h",
        },
        {
            "figure": "average resolution (submission → close)",
            "value": f"{fmt_num(data['avg_resolution_hours'])} h",
            "target": "-",
        },
        {
            "figure": f"over the limit (response > {data['limit_hours']:g} h)",
            "value": fmt_pct(data["over_limit_share"]),
            "target": f"≤ {fmt_pct(t['speed_over_limit_share'])}",
        },
        {
            "figure": "speed satisfaction (of 5)",
            "value": fmt_num(data["speed_satisfaction_5"]),
            "target": f"≥ {t['speed_satisfaction_5']:g}",
        },
        {
            "figure": "first-contact resolution",
            "value": "not measured",
            "target": f"≥ {fmt_pct(t['first_contact_resolution'])}",
        },
    ]
    html_path = folder / f"{stem}.html"
    html_path.write_text(
        charts.page(
            f"Response-speed diagnosis {data['first_month']}..{data['end']} "
            f"(profile {data['profile']})",
            [
                ("Summary (SPD-1, SPD-2)", charts.table_html(summary)),
                (
                    "Top-3 problem types",
                    charts.table_html(
                        data["top_categories"],
                        {
                            "share": fmt_pct,
                            "over_limit_share": fmt_pct,
                            "avg_first_response_hours": fmt_num,
                        },
                    ),
                ),
                ("Weekly trend", charts.img_tag(png_weekly, "weekly trend")),
                ("Problem types", charts.img_tag(png_cats, "categories")),
            ],
        ),
        encoding="utf-8",
    )
    return {
        "csv": str(summary_csv),
        "weekly_csv": str(weekly_csv),
        "html": str(html_path),
        "weekly_png": str(png_weekly),
        "categories_png": str(png_cats),
    }


def speed_report(
    *,
    profile: Profile,
    months: int = 3,
    end: str | None = None,
    limit_hours: float | None = None,
    frame: pd.DataFrame | None = None,
    out_dir: Any = None,
    tz: str | None = None,
    now: Any = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Load (or take) the tickets, compute SPD-1/2 and write the files. Read only."""
    from aftersales.quality import previous_month
    from aftersales.settings import get_settings

    tz = tz or get_settings().timezone
    if end is None:
        from aftersales.clock import get_clock

        end = previous_month(now or get_clock().now(), tz)
    first, last = speed_window(end, months, tz)
    if frame is None:
        from aftersales.history import load_tickets

        frame = load_tickets(month_bounds(first, tz)[0], month_bounds(last, tz)[1], url=url)
    data = compute_speed(frame, end, profile, months=months, limit_hours=limit_hours, tz=tz)
    if out_dir is not None:
        data["files"] = write_speed_report(data, frame, out_dir)
    return data
