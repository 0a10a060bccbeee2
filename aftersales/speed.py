"""Response-speed diagnosis, spec §7 SPD-1/2 (issues 3 and 12).

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
  average first response and over-limit share; ties by over-limit count, then name);
* **weekly trend**: the same figures per week (Monday-Sunday, local time).

Durations are summed in whole milliseconds. Compared with the SPD-2 targets of
the profile: average first response <= ``speed_first_response_hours``,
over-limit share <= ``speed_over_limit_share``, speed satisfaction (1-5: the CB-3
resolution-efficiency dimension where a survey recorded it, else the 0-10 score / 2;
:func:`aftersales.report_sql.speed_score`) >= ``speed_satisfaction_5``. First-contact
resolution cannot be derived from the canonical history columns; it is
reported as ``null`` ("not measured").

Over the stored tickets the sums per (week, category) come from one database
query (:func:`aftersales.report_sql.speed_cells`), over a file from pandas
(:func:`aftersales.report_frame.speed_cells`); one assembly
(:func:`aftersales.report_model.assemble_speed`) makes the report.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aftersales.policy import Profile
from aftersales.report_model import (
    SpeedCell,
    assemble_speed,
    category_counts,
    fmt_num,
    fmt_pct,
    micros,
    month_bounds,
    previous_month,
    shift_month,
    week_buckets,
)

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

HOUR_US = 3_600_000_000


def speed_window(end: str, months: int, tz: str) -> tuple[str, str]:
    if months < 1:
        raise ValueError("months must be >= 1")
    return shift_month(end, -(months - 1)), end


def _compute(
    cells_of: Any,
    end: str,
    profile: Profile,
    *,
    months: int,
    limit_hours: float | None,
    tz: str,
) -> tuple[dict[str, Any], list[SpeedCell]]:
    t = profile.targets
    limit = float(limit_hours if limit_hours is not None else t.speed_response_limit_hours)
    first, last = speed_window(end, months, tz)
    start, stop = month_bounds(first, tz)[0], month_bounds(last, tz)[1]
    weeks = week_buckets(start, stop, tz)
    cells = cells_of(weeks, (micros(start), micros(stop)), round(limit * HOUR_US))
    data = assemble_speed(
        cells,
        weeks=weeks,
        first_month=first,
        end_month=last,
        months=months,
        start=start,
        stop=stop,
        limit_hours=limit,
        profile=profile,
        tz=tz,
    )
    return data, cells


def compute_speed(
    df: pd.DataFrame,
    end: str,
    profile: Profile,
    *,
    months: int = 3,
    limit_hours: float | None = None,
    tz: str = "Asia/Shanghai",
) -> dict[str, Any]:
    """SPD-1/2 over the tickets of a frame (the ``--input FILE`` path)."""
    from aftersales import report_frame

    def cells_of(weeks: Any, window: tuple[int, int], limit_us: int) -> list[SpeedCell]:
        return report_frame.speed_cells(df, weeks=weeks, window=window, limit_us=limit_us)

    return _compute(cells_of, end, profile, months=months, limit_hours=limit_hours, tz=tz)[0]


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def write_speed_report(
    data: dict[str, Any], cells: list[SpeedCell], out_dir: Path | str
) -> dict[str, str]:
    from aftersales import charts

    folder = Path(out_dir) / f"speed-{data['end']}-{data['months']}m"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder.name
    weekly = data["weekly"]
    weekly_csv = folder / f"{stem}-weekly.csv"
    _write_csv(
        weekly_csv,
        weekly,
        [
            "week",
            "tickets",
            "avg_first_response_hours",
            "avg_resolution_hours",
            "over_limit_share",
        ],
    )
    summary_csv = folder / f"{stem}.csv"
    _write_csv(
        summary_csv, data["comparisons"], ["metric", "value", "target", "better", "met", "note"]
    )
    t = data["targets"]
    png_weekly = charts.weekly_speed(
        weekly,
        t["speed_first_response_hours"],
        t["speed_over_limit_share"],
        folder / f"{stem}-weekly.png",
    )
    png_cats = charts.top_bars(
        category_counts(cells, 10), folder / f"{stem}-categories.png", "Top problem types (SPD-1)"
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
    out_dir: Path | str | None = None,
    tz: str | None = None,
    now: datetime | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """SPD-1/2 over ``frame`` or the stored tickets (computed by the database); the files
    when ``out_dir`` is given. Reads only."""
    from aftersales.settings import get_settings

    tz = tz or get_settings().timezone
    if end is None:
        if now is None:
            from aftersales.clock import get_clock

            now = get_clock().now()
        end = previous_month(now, tz)
    if frame is None:
        from aftersales import report_sql
        from models.db import get_engine

        engine = get_engine(url)

        def cells_of(weeks: Any, window: tuple[int, int], limit_us: int) -> list[SpeedCell]:
            return report_sql.speed_cells(engine, weeks=weeks, window=window, limit_us=limit_us)

    else:
        from aftersales import report_frame

        def cells_of(weeks: Any, window: tuple[int, int], limit_us: int) -> list[SpeedCell]:
            return report_frame.speed_cells(frame, weeks=weeks, window=window, limit_us=limit_us)

    data, cells = _compute(cells_of, end, profile, months=months, limit_hours=limit_hours, tz=tz)
    if out_dir is not None:
        data["files"] = write_speed_report(data, cells, out_dir)
    return data
