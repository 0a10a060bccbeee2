"""Monthly service quality evaluation, spec §7 QA-1..4 (issue 3).

All metrics are computed with vectorised pandas over the canonical ticket frame
of :mod:`aftersales.history` (history rows and live tickets, UTC timestamps).

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
* **Complaint on-time rate**: complaints that meet every CMP clock computable
  from the canonical timestamps, divided by all complaints:
  (1) first response (= investigation started) no later than CMP-1 then CMP-2
  chained from creation (10 min + 1 h in the default profile), and
  (2) resolved (= approved result sent) no later than CMP-3 counted from the
  first response (1 working day on the WorkCalendar in the default profile).
  The durations and units come from the policy profile. This is stricter than
  the SOP (the investigation itself must fit in CMP-3's limit); cross-department
  cases (CMP-2:cross-department) cannot be told apart in history and are not
  given the extra 2 working days.
* **Satisfaction** (QA-2): mean score (0-10) over tickets that have a score.
* Rates are fractions 0-1; a metric is ``None`` when its denominator is 0.
* **Misses** (QA-3): response compliance below ``targets.response_compliance``
  and satisfaction below ``targets.satisfaction_avg``. Each miss lists its
  largest contributors: the channels, categories and teams with the most
  failing tickets (non-compliant inquiries; rated tickets scoring below the
  satisfaction target).
* **Commendations** (QA-4): teams and handlers whose average satisfaction is at
  least ``targets.commendation_satisfaction`` (9.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from aftersales.calendar import Unit, WorkCalendar
from aftersales.policy import Profile

NATURAL_SECONDS = {Unit.SECONDS: 1, Unit.MINUTES: 60, Unit.HOURS: 3600, Unit.DAYS: 86400}
NONE_GROUP = "(none)"
# the columns the monthly metrics, contributors and charts read
MONTH_COLUMNS = (
    "sop",
    "channel",
    "category",
    "team",
    "handler",
    "created_at",
    "first_response_at",
    "resolved_at",
    "satisfaction",
)
METRICS = (
    "response_compliance",
    "fault_resolution_rate",
    "complaint_on_time_rate",
    "satisfaction_avg",
)


# ------------------------------------------------------------------ months
def parse_month(month: str) -> tuple[int, int]:
    try:
        y, m = (int(x) for x in month.split("-"))
        date(y, m, 1)
    except (ValueError, TypeError):
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    return y, m


def shift_month(month: str, delta: int) -> str:
    y, m = parse_month(month)
    k = y * 12 + (m - 1) + delta
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def month_bounds(month: str, tz: str = "Asia/Shanghai") -> tuple[datetime, datetime]:
    """``[start, end)`` of a local calendar month as UTC instants."""
    y, m = parse_month(month)
    z = ZoneInfo(tz)
    start = datetime(y, m, 1, tzinfo=z)
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    end = datetime(ny, nm, 1, tzinfo=z)
    return start.astimezone(UTC), end.astimezone(UTC)


def month_of(t: datetime, tz: str = "Asia/Shanghai") -> str:
    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m")


def previous_month(now: datetime, tz: str = "Asia/Shanghai") -> str:
    return shift_month(month_of(now, tz), -1)


def in_window(df: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    c = df["created_at"]
    return df[(c >= pd.Timestamp(start)) & (c < pd.Timestamp(end))]


# ------------------------------------------------------------------ vectorised deadlines
class VectorCalendar:
    """Vectorised :meth:`WorkCalendar.add` for working units over many start times.

    The working periods of a date range are laid out as arrays (UTC ns) with the
    working time accumulated before each one; adding N working seconds to a start
    is two binary searches. Same semantics as ``WorkCalendar.add``: a start outside
    working time counts from the next period; a due time exactly at a period end
    stays there.
    """

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self._first: date | None = None
        self._last: date | None = None

    def _build(self, first: date, last: date) -> None:
        cal = self.calendar
        ps: list[int] = []
        pe: list[int] = []
        d = first
        while d <= last:
            if cal.is_working_day(d):
                for s, e in cal.periods:
                    ps.append(pd.Timestamp(datetime.combine(d, s, tzinfo=cal.tz)).value)
                    pe.append(pd.Timestamp(datetime.combine(d, e, tzinfo=cal.tz)).value)
            d += timedelta(days=1)
        self.ps = np.asarray(ps, dtype=np.int64)
        self.pe = np.asarray(pe, dtype=np.int64)
        length = self.pe - self.ps
        self.cum_end = np.cumsum(length)
        self.cum_start = self.cum_end - length
        self._first, self._last = first, last

    def _ensure(self, lo: date, hi: date) -> None:
        if self._first is None or lo < self._first or hi > self._last:  # type: ignore[operator]
            first = min(lo, self._first or lo)
            last = max(hi, self._last or hi)
            self._build(first, last)

    def add_ns(self, starts: np.ndarray, seconds: float) -> np.ndarray:
        """Due instants (int64 UTC ns) for ``starts`` (int64 UTC ns, no NaT)."""
        if len(starts) == 0:
            return starts.copy()
        tz = self.calendar.tz
        lo = pd.Timestamp(int(starts.min()), tz="UTC").tz_convert(tz).date() - timedelta(days=1)
        hi0 = pd.Timestamp(int(starts.max()), tz="UTC").tz_convert(tz).date()
        days = seconds / max(self.calendar.working_day_seconds(), 1)
        span = int(math.ceil(days)) * 2 + 16
        n = np.int64(round(seconds * 1e9))
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


def _ns(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 UTC ns values, not-NaT mask) of a tz-aware datetime Series."""
    vals = np.asarray(s.dt.as_unit("ns").array.asi8, dtype=np.int64)
    return vals, s.notna().to_numpy()


def rule_due(profile: Profile, rule_id: str, starts: pd.Series, vcal: VectorCalendar) -> pd.Series:
    """Due time of ``rule_id`` for each start (NaT stays NaT), as the clock would compute it."""
    rule = profile.rule(rule_id)
    if rule.duration is None or rule.unit is None:
        raise ValueError(f"rule {rule_id} has no deadline")
    unit = Unit(rule.unit)
    if not unit.is_working:
        return starts + pd.Timedelta(seconds=rule.duration * NATURAL_SECONDS[unit])
    per = vcal.calendar.working_day_seconds() if unit == Unit.WORKING_DAYS else 3600.0
    vals, ok = _ns(starts)
    out = np.full(len(vals), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    if ok.any():
        out[ok] = vcal.add_ns(vals[ok], rule.duration * per)
    return pd.Series(pd.to_datetime(out, utc=True), index=starts.index).where(ok)


# ------------------------------------------------------------------ flags
def quality_flags(df: pd.DataFrame, profile: Profile, vcal: VectorCalendar) -> pd.DataFrame:
    """Per-ticket QA-2 flags (booleans) and the satisfaction score."""
    t = profile.targets
    created, first = df["created_at"], df["first_response_at"]
    sop = df["sop"]
    inq = (sop == "inquiry").to_numpy()
    rep = (sop == "repair").to_numpy()
    cmp_ = (sop == "complaint").to_numpy()
    inq_ok = (
        inq & ((first - created) <= pd.Timedelta(seconds=t.inquiry_response_seconds)).to_numpy()
    )
    rep_ok = (
        rep
        & ((df["resolved_at"] - created) <= pd.Timedelta(days=t.fault_resolution_days)).to_numpy()
    )
    cmp_ok = np.zeros(len(df), dtype=bool)
    if cmp_.any():
        c = df[cmp_]
        resp_due = rule_due(
            profile, "CMP-2", rule_due(profile, "CMP-1", c["created_at"], vcal), vcal
        )
        res_due = rule_due(profile, "CMP-3", c["first_response_at"], vcal)
        ok = (c["first_response_at"] <= resp_due) & (c["resolved_at"] <= res_due)
        cmp_ok[cmp_] = ok.fillna(False).to_numpy(dtype=bool)
    sat = df["satisfaction"].to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "inq": inq,
            "inq_ok": inq_ok,
            "rep": rep,
            "rep_ok": rep_ok,
            "cmp": cmp_,
            "cmp_ok": cmp_ok,
            "rated": ~np.isnan(sat),
            "sat": np.nan_to_num(sat),
        },
        index=df.index,
    )


def _rate(num: float, den: float) -> float | None:
    return None if not den else float(num) / float(den)


def _sums_to_metrics(s: pd.DataFrame | pd.Series) -> dict[str, Any]:
    return {
        "inquiries": int(s["inq"]),
        "response_compliance": _rate(s["inq_ok"], s["inq"]),
        "repairs": int(s["rep"]),
        "fault_resolution_rate": _rate(s["rep_ok"], s["rep"]),
        "complaints": int(s["cmp"]),
        "complaint_on_time_rate": _rate(s["cmp_ok"], s["cmp"]),
        "ratings": int(s["rated"]),
        "satisfaction_avg": _rate(s["sat"], s["rated"]),
    }


def _group_key(col: pd.Series) -> pd.Series:
    if isinstance(col.dtype, pd.CategoricalDtype):
        if NONE_GROUP not in col.cat.categories:
            col = col.cat.add_categories([NONE_GROUP])
        return col.fillna(NONE_GROUP)
    return col.astype(object).where(col.notna(), NONE_GROUP)


def grouped_metrics(flags: pd.DataFrame, by: pd.Series, name: str) -> list[dict[str, Any]]:
    grouped = flags.groupby(_group_key(by), observed=True, sort=True)
    sums = grouped.sum()
    inq, rep, cmp_, rated = (sums[c].to_numpy() for c in ("inq", "rep", "cmp", "rated"))
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                name: sums.index.astype(str),
                "tickets": grouped.size().to_numpy(),
                "inquiries": inq,
                "response_compliance": np.where(inq > 0, sums["inq_ok"] / inq, np.nan),
                "repairs": rep,
                "fault_resolution_rate": np.where(rep > 0, sums["rep_ok"] / rep, np.nan),
                "complaints": cmp_,
                "complaint_on_time_rate": np.where(cmp_ > 0, sums["cmp_ok"] / cmp_, np.nan),
                "ratings": rated,
                "satisfaction_avg": np.where(rated > 0, sums["sat"] / rated, np.nan),
            }
        )
    records = table.to_dict("records")
    for r in records:
        for k, v in r.items():
            if isinstance(v, float) and math.isnan(v):
                r[k] = None
            elif isinstance(v, np.integer):
                r[k] = int(v)
            elif isinstance(v, np.floating):
                r[k] = float(v)
    return records


def contributors(failing: pd.DataFrame, top: int = 3) -> dict[str, list[dict[str, Any]]]:
    """The channels, categories and teams with the most failing tickets."""
    out: dict[str, list[dict[str, Any]]] = {}
    n = len(failing)
    for dim in ("channel", "category", "team"):
        counts = _group_key(failing[dim]).value_counts(sort=True)
        counts = counts[counts > 0].head(top)
        out[dim] = [
            {"name": str(k), "failing": int(v), "share": float(v) / n if n else None}
            for k, v in counts.items()
        ]
    return out


# ------------------------------------------------------------------ the report
@dataclass
class QualityResult:
    data: dict[str, Any]
    month_frame: pd.DataFrame  # the tickets of the month (for charts and CSV)
    flags: pd.DataFrame


def compute_quality(
    df: pd.DataFrame,
    month: str,
    profile: Profile,
    calendar: WorkCalendar | None = None,
    *,
    tz: str = "Asia/Shanghai",
    vcal: VectorCalendar | None = None,
) -> QualityResult:
    """QA-2..4 metrics for tickets created in ``month`` (local time ``tz``)."""
    start, end = month_bounds(month, tz)
    c = df["created_at"]
    m = df.loc[(c >= pd.Timestamp(start)) & (c < pd.Timestamp(end)), list(MONTH_COLUMNS)]
    vcal = vcal or VectorCalendar(calendar or WorkCalendar(tz=tz))
    flags = quality_flags(m, profile, vcal)
    overall = _sums_to_metrics(flags.sum())
    t = profile.targets
    data: dict[str, Any] = {
        "month": month,
        "timezone": tz,
        "profile": profile.name,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "tickets": int(len(m)),
        "response_compliance": overall["response_compliance"],
        "fault_resolution_rate": overall["fault_resolution_rate"],
        "complaint_on_time_rate": overall["complaint_on_time_rate"],
        "satisfaction_avg": overall["satisfaction_avg"],
        "counts": {
            "inquiries": overall["inquiries"],
            "inquiries_compliant": int(flags["inq_ok"].sum()),
            "repairs": overall["repairs"],
            "repairs_resolved_in_time": int(flags["rep_ok"].sum()),
            "complaints": overall["complaints"],
            "complaints_on_time": int(flags["cmp_ok"].sum()),
            "ratings": overall["ratings"],
        },
        "targets": {
            "response_compliance": t.response_compliance,
            "satisfaction_avg": t.satisfaction_avg,
            "commendation_satisfaction": t.commendation_satisfaction,
            "inquiry_response_seconds": t.inquiry_response_seconds,
            "fault_resolution_days": t.fault_resolution_days,
        },
        "per_team": grouped_metrics(flags, m["team"], "team"),
        "per_handler": grouped_metrics(flags, m["handler"], "handler"),
    }
    misses: list[dict[str, Any]] = []
    rc = overall["response_compliance"]
    if rc is not None and rc < t.response_compliance:
        failing = m[flags["inq"].to_numpy() & ~flags["inq_ok"].to_numpy()]
        misses.append(
            {
                "metric": "response_compliance",
                "value": rc,
                "target": t.response_compliance,
                "failing_tickets": int(len(failing)),
                "contributors": contributors(failing),
            }
        )
    sa = overall["satisfaction_avg"]
    if sa is not None and sa < t.satisfaction_avg:
        sat = m["satisfaction"]
        failing = m[(sat < t.satisfaction_avg).to_numpy()]
        misses.append(
            {
                "metric": "satisfaction_avg",
                "value": sa,
                "target": t.satisfaction_avg,
                "failing_tickets": int(len(failing)),
                "contributors": contributors(failing),
            }
        )
    data["misses"] = misses
    bar = t.commendation_satisfaction
    data["commendations"] = {
        "teams": [
            {"team": r["team"], "satisfaction_avg": r["satisfaction_avg"], "ratings": r["ratings"]}
            for r in data["per_team"]
            if r["team"] != NONE_GROUP
            and r["satisfaction_avg"] is not None
            and r["satisfaction_avg"] >= bar
        ],
        "handlers": [
            {
                "handler": r["handler"],
                "satisfaction_avg": r["satisfaction_avg"],
                "ratings": r["ratings"],
            }
            for r in data["per_handler"]
            if r["handler"] != NONE_GROUP
            and r["satisfaction_avg"] is not None
            and r["satisfaction_avg"] >= bar
        ],
    }
    return QualityResult(data=data, month_frame=m, flags=flags)


def monthly_trend(
    df: pd.DataFrame,
    end_month: str,
    profile: Profile,
    months: int = 6,
    *,
    tz: str = "Asia/Shanghai",
    vcal: VectorCalendar | None = None,
) -> pd.DataFrame:
    """The four QA-2 metrics for each of the ``months`` months ending with ``end_month``."""
    names = [shift_month(end_month, -k) for k in range(months - 1, -1, -1)]
    bounds = [month_bounds(n, tz)[0] for n in names] + [month_bounds(end_month, tz)[1]]
    edges = np.array([pd.Timestamp(b).value for b in bounds], dtype=np.int64)
    w = in_window(df, bounds[0], bounds[-1])
    vcal = vcal or VectorCalendar(WorkCalendar(tz=tz))
    flags = quality_flags(w, profile, vcal)
    idx = np.searchsorted(edges, _ns(w["created_at"])[0], side="right") - 1
    sums = flags.groupby(idx).sum().reindex(range(months), fill_value=0)
    rows = []
    for k, name in enumerate(names):
        rows.append({"month": name, **_sums_to_metrics(sums.loc[k])})
    return pd.DataFrame(rows)


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def fmt_num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------ files
def failing_mask(flags: pd.DataFrame) -> np.ndarray:
    """Tickets failing any QA-2 measure (late inquiry, repair not resolved in time, late complaint)."""
    f = flags
    return (
        (f["inq"] & ~f["inq_ok"]) | (f["rep"] & ~f["rep_ok"]) | (f["cmp"] & ~f["cmp_ok"])
    ).to_numpy()


def write_quality_report(
    result: QualityResult, trend: pd.DataFrame, out_dir: Any
) -> dict[str, str]:
    """CSV (overall, per team, per handler), PNG charts and an HTML page with them embedded."""
    from pathlib import Path

    from aftersales import charts

    d = result.data
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
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    trend_csv = folder / f"quality-{month}-trend.csv"
    trend.to_csv(trend_csv, index=False)

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
    failing = result.month_frame[failing_mask(result.flags)]
    top = (
        _group_key(failing["category"]).value_counts().head(10)
        if len(failing)
        else pd.Series([], dtype="int64")
    )
    png_cats = charts.top_bars(
        top,
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


def quality_report(
    month: str,
    *,
    profile: Profile,
    frame: pd.DataFrame | None = None,
    out_dir: Any = None,
    trend_months: int = 6,
    tz: str | None = None,
    calendar: WorkCalendar | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Compute the month's report over ``frame`` (or the stored tickets) and write its files.

    Returns the JSON-able report with ``files`` (paths) added when ``out_dir`` is given.
    Reads only; nothing stored is changed.
    """
    from aftersales.settings import get_settings

    settings = get_settings()
    tz = tz or settings.timezone
    calendar = calendar or WorkCalendar.from_settings(settings)
    first = shift_month(month, -(trend_months - 1))
    if frame is None:
        from aftersales.history import load_tickets

        frame = load_tickets(month_bounds(first, tz)[0], month_bounds(month, tz)[1], url=url)
    vcal = VectorCalendar(calendar)
    result = compute_quality(frame, month, profile, tz=tz, vcal=vcal)
    data = result.data
    if out_dir is not None:
        trend = monthly_trend(frame, month, profile, trend_months, tz=tz, vcal=vcal)
        data["files"] = write_quality_report(result, trend, out_dir)
    return data
