"""Monthly service quality evaluation, spec §7 QA-1..4 (issues 3 and 12).

Over the stored tickets the figures are computed by the database
(:mod:`aftersales.report_sql`); over a file (``--input FILE``) by pandas
(:mod:`aftersales.report_frame`). Both produce the same integer group sums and
the report is assembled from them by :func:`aftersales.report_model.assemble_quality`,
so the two paths give identical answers.

Definitions (``docs/REPORTS.md`` has the same text):

* **Month**: tickets *created* in the calendar month in Asia/Shanghai time
  (``AFTERSALES_TIMEZONE``), i.e. ``[YYYY-MM-01 00:00 local, next month 00:00 local)``.
* **Response compliance** (QA-2): inquiries (``sop == inquiry``) whose first
  response came at most ``targets.inquiry_response_seconds`` (30 s) after
  creation, inclusive (exactly 30 s complies), divided by all inquiries. An
  inquiry without a first response does not comply.
* **Fault resolution rate** (QA-2): repairs (``sop == repair``) resolved at most
  ``targets.fault_resolution_days`` (30 x 24 h, inclusive) after creation,
  divided by all repairs. Unresolved repairs count as not resolved in time.
* **Complaint on-time rate**: complaints on time divided by all complaints. A
  live complaint is on time when it was answered (first response and resolution)
  and none of its CMP clocks (``sla_clock``: CMP-1, CMP-2, CMP-2:cross-department,
  CMP-3) was late: breached, or met after its due time. A history complaint
  (no clocks) meets every CMP clock computable from the canonical timestamps:
  (1) first response (= investigation started) no later than CMP-1 then CMP-2
  chained from creation (10 min + 1 h in the default profile), and
  (2) resolved (= approved result sent) no later than CMP-3 counted from the
  first response (1 working day on the WorkCalendar in the default profile).
  The durations and units come from the policy profile. This is stricter than
  the SOP (the investigation itself must fit in CMP-3's limit); cross-department
  cases (CMP-2:cross-department) cannot be told apart in history and are not
  given the extra 2 working days.
* **Satisfaction** (QA-2): mean score (0-10) over tickets that have a score
  (summed in thousandths of a point); a live ticket's is its CB-3 survey, the
  mean of the three 1-5 dimensions x 2.
* Rates are fractions 0-1; a metric is ``None`` when its denominator is 0.
* **Misses** (QA-3): response compliance below ``targets.response_compliance``
  and satisfaction below ``targets.satisfaction_avg``. Each miss lists its
  largest contributors: the channels, categories and teams with the most
  failing tickets (non-compliant inquiries; rated tickets scoring below the
  satisfaction target); ties in name order.
* **Commendations** (QA-4): teams and handlers whose average satisfaction is at
  least ``targets.commendation_satisfaction`` (9.5).

This module imports neither pandas nor matplotlib at import time: the command
over the stored tickets loads only what it uses.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aftersales.calendar import WorkCalendar
from aftersales.policy import Profile
from aftersales.report_model import (
    METRICS,
    NATURAL_SECONDS,
    NONE_GROUP,
    Buckets,
    QualityReport,
    QualitySums,
    assemble_quality,
    failing_categories,
    fmt_num,
    fmt_pct,
    micros,
    month_bounds,
    month_buckets,
    month_of,
    parse_month,
    previous_month,
    shift_month,
    trend_rows,
)

if TYPE_CHECKING:
    import pandas as pd

    from aftersales.report_frame import VectorCalendar

__all__ = [
    "METRICS",
    "NATURAL_SECONDS",
    "NONE_GROUP",
    "QualityReport",
    "compute_quality",
    "fmt_num",
    "fmt_pct",
    "month_bounds",
    "month_of",
    "monthly_trend",
    "parse_month",
    "previous_month",
    "quality_report",
    "shift_month",
    "write_quality_report",
]


def __getattr__(name: str) -> Any:
    """``VectorCalendar`` and the frame helpers live in :mod:`aftersales.report_frame`."""
    if name in ("VectorCalendar", "in_window"):
        from aftersales import report_frame

        return getattr(report_frame, name)
    raise AttributeError(name)


def _window(month: str, tz: str) -> tuple[int, int]:
    start, end = month_bounds(month, tz)
    return micros(start), micros(end)


# ------------------------------------------------------------------ the frame path
def compute_quality(
    df: pd.DataFrame,
    month: str,
    profile: Profile,
    calendar: WorkCalendar | None = None,
    *,
    tz: str = "Asia/Shanghai",
    vcal: VectorCalendar | None = None,
) -> QualityReport:
    """QA-2..4 for tickets of the frame created in ``month`` (local time ``tz``)."""
    from aftersales import report_frame

    calendar = calendar or (vcal.calendar if vcal is not None else WorkCalendar(tz=tz))
    cells = report_frame.quality_cells(
        df, profile=profile, calendar=calendar, window=_window(month, tz), vcal=vcal
    )
    return assemble_quality(cells, month=month, profile=profile, tz=tz)


def monthly_trend(
    df: pd.DataFrame,
    end_month: str,
    profile: Profile,
    months: int = 6,
    *,
    tz: str = "Asia/Shanghai",
    calendar: WorkCalendar | None = None,
    vcal: VectorCalendar | None = None,
) -> pd.DataFrame:
    """The four QA-2 metrics for each of the ``months`` months ending with ``end_month``."""
    import pandas as pd

    from aftersales import report_frame

    calendar = calendar or (vcal.calendar if vcal is not None else WorkCalendar(tz=tz))
    buckets = month_buckets(end_month, months, tz)
    sums = report_frame.quality_by_bucket(
        df, profile=profile, calendar=calendar, buckets=buckets, vcal=vcal
    )
    return pd.DataFrame(trend_rows(buckets, sums))


# ------------------------------------------------------------------ files
def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def write_quality_report(
    report: QualityReport, trend: list[dict[str, Any]], out_dir: Path | str
) -> dict[str, str]:
    """CSV (overall, per team, per handler), PNG charts and an HTML page with them embedded."""
    from aftersales import charts

    d = report.data
    month = d["month"]
    folder = Path(out_dir) / f"quality-{month}"
    folder.mkdir(parents=True, exist_ok=True)
    overall = {k: d[k] for k in METRICS}
    rows = [{"scope": "overall", "name": "all", "tickets": d["tickets"], **d["counts"], **overall}]
    for scope in ("team", "handler"):
        for r in d[f"per_{scope}"]:
            rows.append(
                {"scope": scope, "name": r[scope], **{k: v for k, v in r.items() if k != scope}}
            )
    csv_path = folder / f"quality-{month}.csv"
    _write_csv(csv_path, rows)
    trend_csv = folder / f"quality-{month}-trend.csv"
    _write_csv(trend_csv, trend)

    t = d["targets"]
    png_trend = charts.quality_trend(trend, t, folder / f"quality-{month}-trend.png")
    teams = d["per_team"]
    png_teams = charts.compliance_vs_target(
        [r["team"] for r in teams],
        [r["response_compliance"] for r in teams],
        t["response_compliance"],
        folder / f"quality-{month}-teams.png",
        f"Response compliance per team, {month} (QA-3)",
    )
    png_cats = charts.top_bars(
        failing_categories(report.cells, 10),
        folder / f"quality-{month}-categories.png",
        f"Top categories of failing tickets, {month}",
        "failing tickets",
    )
    pct = {
        k: fmt_pct
        for k in ("response_compliance", "fault_resolution_rate", "complaint_on_time_rate")
    }
    pct["satisfaction_avg"] = fmt_num
    summary = [
        {
            "metric": "response compliance (≤ 30 s)",
            "value": fmt_pct(d["response_compliance"]),
            "target": f"≥ {fmt_pct(t['response_compliance'])}",
            "measured": d["counts"]["inquiries"],
        },
        {
            "metric": "fault resolution rate (≤ 30 d)",
            "value": fmt_pct(d["fault_resolution_rate"]),
            "target": "-",
            "measured": d["counts"]["repairs"],
        },
        {
            "metric": "complaint on-time rate (CMP)",
            "value": fmt_pct(d["complaint_on_time_rate"]),
            "target": "-",
            "measured": d["counts"]["complaints"],
        },
        {
            "metric": "satisfaction (0-10)",
            "value": fmt_num(d["satisfaction_avg"]),
            "target": f"≥ {t['satisfaction_avg']:g}",
            "measured": d["counts"]["ratings"],
        },
    ]
    miss_html = []
    for m in d["misses"]:
        contrib = "; ".join(
            f"{dim}: " + ", ".join(f"{c['name']} ({c['failing']})" for c in lst)
            for dim, lst in m["contributors"].items()
        )
        miss_html.append(
            f"<li class='miss'>{m['metric']}: {m['value']:.3f} &lt; {m['target']:g} — "
            f"{m['failing_tickets']} failing tickets; largest contributors: {contrib}</li>"
        )
    com = d["commendations"]
    com_rows = [
        {"who": f"team {c['team']}", "satisfaction": c["satisfaction_avg"], "ratings": c["ratings"]}
        for c in com["teams"]
    ]
    com_rows += [
        {
            "who": f"handler {c['handler']}",
            "satisfaction": c["satisfaction_avg"],
            "ratings": c["ratings"],
        }
        for c in com["handlers"]
    ]
    html_text = charts.page(
        f"Service quality report {month} ({d['timezone']}, profile {d['profile']})",
        [
            ("Summary (QA-2, QA-3)", charts.table_html(summary)),
            ("Misses (QA-3)", "<ul>" + ("".join(miss_html) or "<li>none</li>") + "</ul>"),
            (
                f"Commendations (QA-4, ≥ {t['commendation_satisfaction']:g})",
                charts.table_html(com_rows, {"satisfaction": fmt_num}),
            ),
            ("Trend", charts.img_tag(png_trend, "trend")),
            ("Compliance against target", charts.img_tag(png_teams, "teams")),
            ("Top categories", charts.img_tag(png_cats, "categories")),
            ("Per team", charts.table_html(d["per_team"], pct)),
            ("Per handler", charts.table_html(d["per_handler"], pct)),
        ],
    )
    html_path = folder / f"quality-{month}.html"
    html_path.write_text(html_text, encoding="utf-8")
    return {
        "csv": str(csv_path),
        "trend_csv": str(trend_csv),
        "html": str(html_path),
        "trend_png": str(png_trend),
        "teams_png": str(png_teams),
        "categories_png": str(png_cats),
    }


# ------------------------------------------------------------------ the report
def quality_report(
    month: str,
    *,
    profile: Profile,
    frame: pd.DataFrame | None = None,
    out_dir: Path | str | None = None,
    trend_months: int = 6,
    tz: str | None = None,
    calendar: WorkCalendar | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The month's report over ``frame`` or, without one, over the stored tickets
    (history and live, computed by the database); its files when ``out_dir`` is given.

    Returns the JSON-able report, with ``files`` (paths) when files were written.
    Nothing stored is changed, except that the working-period table may be
    extended to cover the month (it is derived from the calendar).
    """
    from aftersales.settings import get_settings

    settings = get_settings()
    tz = tz or settings.timezone
    calendar = calendar or WorkCalendar.from_settings(settings)
    window = _window(month, tz)
    buckets = month_buckets(month, trend_months, tz)
    trend_sums: dict[int, QualitySums]
    if frame is None:
        from aftersales import report_sql
        from models.db import get_engine

        engine = get_engine(url)
        cells = report_sql.quality_cells(engine, profile=profile, calendar=calendar, window=window)
        report = assemble_quality(cells, month=month, profile=profile, tz=tz)
        if out_dir is None:
            return report.data
        trend_sums = report_sql.quality_by_bucket(
            engine, profile=profile, calendar=calendar, buckets=_earlier(buckets)
        )
    else:
        from aftersales import report_frame

        vcal = report_frame.VectorCalendar(calendar)
        cells = report_frame.quality_cells(
            frame, profile=profile, calendar=calendar, window=window, vcal=vcal
        )
        report = assemble_quality(cells, month=month, profile=profile, tz=tz)
        if out_dir is None:
            return report.data
        trend_sums = report_frame.quality_by_bucket(
            frame, profile=profile, calendar=calendar, buckets=_earlier(buckets), vcal=vcal
        )
    # the reported month is the last bucket: its sums are the cells'
    trend_sums[len(buckets.names) - 1] = QualitySums.total(c.sums for c in cells)
    trend = trend_rows(buckets, trend_sums)
    report.data["files"] = write_quality_report(report, trend, out_dir)
    return report.data


def _earlier(buckets: Buckets) -> Buckets:
    """The buckets before the last one (same indexes)."""
    return Buckets(buckets.names[:-1], buckets.edges[:-1])
