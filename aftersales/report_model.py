"""What the reports are made of: typed group sums and the one assembly of each report.

Both ways of computing a report end in the same small tables of integer sums,
defined here:

* the database path (:mod:`aftersales.report_sql`) gets them from one
  ``GROUP BY`` query over the stored tickets;
* the file path (``--input FILE``, :mod:`aftersales.report_frame`) gets them
  from pandas over the file's rows.

Everything after that (rates, averages, per team / per handler roll-ups,
misses with their contributors, commendations, top categories, weekly rows,
the replay's per-rule table) is computed here, once, from the sums. Every sum
is an integer (counts; satisfaction in thousandths of a point; durations in
whole milliseconds), so the two paths give identical answers, not merely close
ones. The module is pure: no database, no pandas, no clock.

Definitions of the figures: ``docs/REPORTS.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aftersales.calendar import Unit, WorkCalendar
from aftersales.policy import Profile

NONE_GROUP = "(none)"
NATURAL_SECONDS = {Unit.SECONDS: 1, Unit.MINUTES: 60, Unit.HOURS: 3600, Unit.DAYS: 86400}
US = 1_000_000
MS_PER_HOUR = 3_600_000
METRICS = (
    "response_compliance",
    "fault_resolution_rate",
    "complaint_on_time_rate",
    "satisfaction_avg",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------ months and weeks
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


def micros(t: datetime) -> int:
    """Microseconds since 1970-01-01 UTC (exact)."""
    return (t - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Buckets:
    """Consecutive time buckets ``[edges[i], edges[i+1])`` in UTC microseconds, with names."""

    names: tuple[str, ...]
    edges: tuple[int, ...]  # len(names) + 1

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.names) + 1:
            raise ValueError("buckets need one edge more than names")

    @property
    def start_us(self) -> int:
        return self.edges[0]

    @property
    def stop_us(self) -> int:
        return self.edges[-1]


def month_buckets(end_month: str, months: int, tz: str) -> Buckets:
    """The ``months`` local months ending with ``end_month``."""
    if months < 1:
        raise ValueError("months must be >= 1")
    names = tuple(shift_month(end_month, -k) for k in range(months - 1, -1, -1))
    edges = tuple(micros(month_bounds(n, tz)[0]) for n in names)
    return Buckets(names, (*edges, micros(month_bounds(end_month, tz)[1])))


def week_buckets(start: datetime, stop: datetime, tz: str) -> Buckets:
    """Local Monday-Sunday weeks touching ``[start, stop)``; named by their Monday."""
    z = ZoneInfo(tz)
    first = start.astimezone(z).date()
    monday = first - timedelta(days=first.weekday())
    names: list[str] = []
    edges: list[int] = []
    while True:
        edge = datetime.combine(monday, time(0), tzinfo=z)
        edges.append(micros(edge))
        if edge >= stop:
            break
        names.append(monday.isoformat())
        monday += timedelta(days=7)
    return Buckets(tuple(names), tuple(edges))


# ------------------------------------------------------------------ rules in microseconds
@dataclass(frozen=True)
class Step:
    """One timed rule resolved to microseconds: natural (elapsed) or working time."""

    working: bool
    amount_us: int


def rule_step(profile: Profile, rule_id: str, calendar: WorkCalendar) -> Step | None:
    """The rule's limit in microseconds, or None when the profile has no timed rule."""
    rule = profile.rules.get(rule_id)
    if rule is None or rule.duration is None or rule.unit is None:
        return None
    unit = Unit(rule.unit)
    if unit.is_working:
        per = calendar.working_day_seconds() if unit == Unit.WORKING_DAYS else 3600.0
        return Step(True, round(rule.duration * per * US))
    return Step(False, round(rule.duration * NATURAL_SECONDS[unit] * US))


def chain_steps(profile: Profile, rule_ids: Sequence[str], calendar: WorkCalendar) -> list[Step]:
    """The steps of rules applied one after another; raises when one has no deadline."""
    out = []
    for rule_id in rule_ids:
        step = rule_step(profile, rule_id, calendar)
        if step is None:
            raise ValueError(f"rule {rule_id} of profile {profile.name!r} has no deadline")
        out.append(step)
    return out


DAY_US = 86_400 * US


@dataclass(frozen=True)
class QualityRules:
    """The per-ticket QA-2 rules of a profile in microseconds."""

    inquiry_us: int  # targets.inquiry_response_seconds
    repair_us: int  # targets.fault_resolution_days (x 24 h)
    satisfaction_target: float
    cmp_response: tuple[Step, ...]  # CMP-1 then CMP-2, from creation to the first response
    cmp_resolution: tuple[Step, ...]  # CMP-3, from the first response to the resolution

    @classmethod
    def of(cls, profile: Profile, calendar: WorkCalendar) -> QualityRules:
        t = profile.targets
        return cls(
            inquiry_us=round(t.inquiry_response_seconds * US),
            repair_us=round(t.fault_resolution_days * DAY_US),
            satisfaction_target=t.satisfaction_avg,
            cmp_response=tuple(chain_steps(profile, ["CMP-1", "CMP-2"], calendar)),
            cmp_resolution=tuple(chain_steps(profile, ["CMP-3"], calendar)),
        )

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.cmp_response + self.cmp_resolution


def milli(score: float) -> int:
    """A satisfaction score in whole thousandths (the unit every path sums in)."""
    return math.floor(score * 1000 + 0.5)


# ------------------------------------------------------------------ sums
T = TypeVar("T", bound="Sums")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass
class Sums:
    """Integer counters that add up field by field."""

    def add(self: T, other: T) -> T:
        mine, theirs = self.__dict__, other.__dict__
        for name in _field_names(type(self)):
            mine[name] += theirs[name]
        return self

    @classmethod
    def total(cls: type[T], items: Iterable[T]) -> T:
        out = cls()
        for s in items:
            out.add(s)
        return out


@dataclass
class QualitySums(Sums):
    """QA-2 counters of a group of tickets."""

    tickets: int = 0
    inquiries: int = 0
    inquiries_ok: int = 0  # first response within targets.inquiry_response_seconds
    repairs: int = 0
    repairs_ok: int = 0  # resolved within targets.fault_resolution_days
    complaints: int = 0
    complaints_ok: int = 0  # every CMP clock met
    ratings: int = 0
    satisfaction_milli: int = 0  # sum of the scores in thousandths
    below_target: int = 0  # rated below targets.satisfaction_avg

    @property
    def failing(self) -> int:
        """Tickets failing a QA-2 measure (late inquiry, repair or complaint)."""
        return (
            (self.inquiries - self.inquiries_ok)
            + (self.repairs - self.repairs_ok)
            + (self.complaints - self.complaints_ok)
        )


@dataclass(frozen=True)
class QualityKey:
    team: str | None
    handler: str | None
    channel: str | None
    category: str | None


@dataclass(frozen=True)
class QualityCell:
    """The sums of the tickets of one (team, handler, channel, category)."""

    key: QualityKey
    sums: QualitySums


@dataclass
class SpeedSums(Sums):
    tickets: int = 0
    answered: int = 0
    response_ms: int = 0  # sum of first_response_at - created_at, whole ms
    closed: int = 0
    resolution_ms: int = 0  # sum of closed_at - created_at, whole ms
    over_limit: int = 0  # answered later than the limit, or never
    # SPD-2 speed satisfaction: tickets with a speed score (0-10: the CB-3 efficiency
    # dimension x 2, else the ticket's score; report_sql.speed_score) and their sum
    ratings: int = 0
    satisfaction_milli: int = 0


@dataclass(frozen=True)
class SpeedCell:
    """The sums of the tickets of one week (bucket index) and category."""

    week: int
    category: str | None
    sums: SpeedSums


# ------------------------------------------------------------------ helpers
def rate(num: float, den: float) -> float | None:
    return None if not den else float(num) / float(den)


def group_name(v: str | None) -> str:
    return NONE_GROUP if v is None else str(v)


def _order(name: str | None) -> tuple[bool, str]:
    """Group names in code-point order, ``(none)`` last."""
    return (name is None, name or "")


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def fmt_num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------ quality (QA-2..4)
def quality_metrics(s: QualitySums) -> dict[str, Any]:
    return {
        "inquiries": s.inquiries,
        "response_compliance": rate(s.inquiries_ok, s.inquiries),
        "repairs": s.repairs,
        "fault_resolution_rate": rate(s.repairs_ok, s.repairs),
        "complaints": s.complaints,
        "complaint_on_time_rate": rate(s.complaints_ok, s.complaints),
        "ratings": s.ratings,
        "satisfaction_avg": rate(s.satisfaction_milli / 1000, s.ratings),
    }


def roll_up(cells: Iterable[QualityCell], dim: str) -> list[tuple[str | None, QualitySums]]:
    """Sums per value of ``dim`` (a QualityKey field), in name order with ``(none)`` last."""
    groups: dict[str | None, QualitySums] = {}
    for c in cells:
        k = getattr(c.key, dim)
        groups.setdefault(k, QualitySums()).add(c.sums)
    return sorted(groups.items(), key=lambda kv: _order(kv[0]))


def _per(cells: Sequence[QualityCell], dim: str) -> list[dict[str, Any]]:
    return [
        {dim: group_name(k), "tickets": s.tickets, **quality_metrics(s)}
        for k, s in roll_up(cells, dim)
    ]


def top_groups(
    counts: dict[str | None, int], top: int, total: int | None = None
) -> list[dict[str, Any]]:
    """The ``top`` groups by count (ties by name), with their share of ``total``."""
    ranked = sorted(
        ((k, n) for k, n in counts.items() if n > 0), key=lambda kv: (-kv[1], _order(kv[0]))
    )[:top]
    return [
        {"name": group_name(k), "failing": n, "share": (n / total) if total else None}
        for k, n in ranked
    ]


def contributors(
    cells: Sequence[QualityCell], count: Any, top: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """The channels, categories and teams with the most failing tickets (``count(sums)``)."""
    n = sum(count(c.sums) for c in cells)
    out: dict[str, list[dict[str, Any]]] = {}
    for dim in ("channel", "category", "team"):
        per: dict[str | None, int] = {}
        for c in cells:
            k = getattr(c.key, dim)
            per[k] = per.get(k, 0) + count(c.sums)
        out[dim] = top_groups(per, top, n)
    return out


def failing_categories(cells: Sequence[QualityCell], top: int = 10) -> list[tuple[str, int]]:
    """Categories of the tickets failing a QA-2 measure, most first."""
    per: dict[str | None, int] = {}
    for c in cells:
        per[c.key.category] = per.get(c.key.category, 0) + c.sums.failing
    return [(g["name"], g["failing"]) for g in top_groups(per, top)]


@dataclass
class QualityReport:
    """The month's QA-2..4 result: the JSON object (``data``) and the cells it came from."""

    data: dict[str, Any]
    cells: list[QualityCell] = field(default_factory=list)


def assemble_quality(
    cells: Sequence[QualityCell],
    *,
    month: str,
    profile: Profile,
    tz: str,
) -> QualityReport:
    """QA-2..4 for one month from its cells (see docs/REPORTS.md §2)."""
    start, end = month_bounds(month, tz)
    overall = QualitySums.total(c.sums for c in cells)
    m = quality_metrics(overall)
    t = profile.targets
    data: dict[str, Any] = {
        "month": month,
        "timezone": tz,
        "profile": profile.name,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "tickets": overall.tickets,
        **{k: m[k] for k in METRICS},
        "counts": {
            "inquiries": overall.inquiries,
            "inquiries_compliant": overall.inquiries_ok,
            "repairs": overall.repairs,
            "repairs_resolved_in_time": overall.repairs_ok,
            "complaints": overall.complaints,
            "complaints_on_time": overall.complaints_ok,
            "ratings": overall.ratings,
        },
        "targets": {
            "response_compliance": t.response_compliance,
            "satisfaction_avg": t.satisfaction_avg,
            "commendation_satisfaction": t.commendation_satisfaction,
            "inquiry_response_seconds": t.inquiry_response_seconds,
            "fault_resolution_days": t.fault_resolution_days,
        },
        "per_team": _per(cells, "team"),
        "per_handler": _per(cells, "handler"),
    }
    misses: list[dict[str, Any]] = []
    rc = m["response_compliance"]
    if rc is not None and rc < t.response_compliance:
        misses.append(
            {
                "metric": "response_compliance",
                "value": rc,
                "target": t.response_compliance,
                "failing_tickets": overall.inquiries - overall.inquiries_ok,
                "contributors": contributors(cells, lambda s: s.inquiries - s.inquiries_ok),
            }
        )
    sa = m["satisfaction_avg"]
    if sa is not None and sa < t.satisfaction_avg:
        misses.append(
            {
                "metric": "satisfaction_avg",
                "value": sa,
                "target": t.satisfaction_avg,
                "failing_tickets": overall.below_target,
                "contributors": contributors(cells, lambda s: s.below_target),
            }
        )
    data["misses"] = misses
    bar = t.commendation_satisfaction

    def commended(rows: list[dict[str, Any]], dim: str) -> list[dict[str, Any]]:
        return [
            {dim: r[dim], "satisfaction_avg": r["satisfaction_avg"], "ratings": r["ratings"]}
            for r in rows
            if r[dim] != NONE_GROUP
            and r["satisfaction_avg"] is not None
            and r["satisfaction_avg"] >= bar
        ]

    data["commendations"] = {
        "teams": commended(data["per_team"], "team"),
        "handlers": commended(data["per_handler"], "handler"),
    }
    return QualityReport(data=data, cells=list(cells))


def trend_rows(buckets: Buckets, sums: dict[int, QualitySums]) -> list[dict[str, Any]]:
    """The four QA-2 metrics per month bucket (months without tickets give ``None``)."""
    return [
        {"month": name, **quality_metrics(sums.get(i, QualitySums()))}
        for i, name in enumerate(buckets.names)
    ]


# ------------------------------------------------------------------ speed (SPD-1/2)
def _hours(ms: int, n: int) -> float | None:
    return None if not n else ms / n / MS_PER_HOUR


def assemble_speed(
    cells: Sequence[SpeedCell],
    *,
    weeks: Buckets,
    first_month: str,
    end_month: str,
    months: int,
    start: datetime,
    stop: datetime,
    limit_hours: float,
    profile: Profile,
    tz: str,
) -> dict[str, Any]:
    """SPD-1/2 over the window from its (week, category) cells (docs/REPORTS.md §3)."""
    t = profile.targets
    overall = SpeedSums.total(c.sums for c in cells)
    n = overall.tickets
    by_cat: dict[str | None, SpeedSums] = {}
    by_week: dict[int, SpeedSums] = {}
    for c in cells:
        by_cat.setdefault(c.category, SpeedSums()).add(c.sums)
        by_week.setdefault(c.week, SpeedSums()).add(c.sums)
    ranked = sorted(
        (kv for kv in by_cat.items() if kv[1].tickets > 0),
        key=lambda kv: (-kv[1].tickets, -kv[1].over_limit, _order(kv[0])),
    )[:3]
    top3 = [
        {
            "category": group_name(k),
            "tickets": s.tickets,
            "share": s.tickets / n if n else None,
            "avg_first_response_hours": _hours(s.response_ms, s.answered),
            "over_limit_share": s.over_limit / s.tickets,
        }
        for k, s in ranked
    ]
    weekly = [
        {
            "week": weeks.names[i],
            "tickets": s.tickets,
            "avg_first_response_hours": _hours(s.response_ms, s.answered),
            "avg_resolution_hours": _hours(s.resolution_ms, s.closed),
            "over_limit_share": s.over_limit / s.tickets,
        }
        for i, s in sorted(by_week.items())
        if s.tickets > 0
    ]
    speed_sat = (
        None if not overall.ratings else overall.satisfaction_milli / 1000 / overall.ratings / 2
    )
    avg_resp = _hours(overall.response_ms, overall.answered)
    over_share = overall.over_limit / n if n else None

    def cmp(metric: str, value: float | None, target: float, better: str) -> dict[str, Any]:
        met = None if value is None else (value <= target if better == "lower" else value >= target)
        return {"metric": metric, "value": value, "target": target, "better": better, "met": met}

    return {
        "months": months,
        "first_month": first_month,
        "end": end_month,
        "timezone": tz,
        "profile": profile.name,
        "period": {"start": start.isoformat(), "end": stop.isoformat()},
        "limit_hours": limit_hours,
        "tickets": n,
        "avg_first_response_hours": avg_resp,
        "avg_resolution_hours": _hours(overall.resolution_ms, overall.closed),
        "over_limit": overall.over_limit,
        "over_limit_share": over_share,
        "speed_satisfaction_5": speed_sat,
        "top_categories": top3,
        "weekly": weekly,
        "targets": {
            "speed_first_response_hours": t.speed_first_response_hours,
            "speed_over_limit_share": t.speed_over_limit_share,
            "speed_satisfaction_5": t.speed_satisfaction_5,
            "first_contact_resolution": t.first_contact_resolution,
        },
        "comparisons": [
            cmp("avg_first_response_hours", avg_resp, t.speed_first_response_hours, "lower"),
            cmp("over_limit_share", over_share, t.speed_over_limit_share, "lower"),
            cmp("speed_satisfaction_5", speed_sat, t.speed_satisfaction_5, "higher"),
            {
                "metric": "first_contact_resolution",
                "value": None,
                "target": t.first_contact_resolution,
                "better": "higher",
                "met": None,
                "note": "not measured: the history columns do not record contacts",
            },
        ],
    }


def category_counts(cells: Sequence[SpeedCell], top: int = 10) -> list[tuple[str, int]]:
    """Tickets per category, most first (the SPD-1 problem-types chart)."""
    per: dict[str | None, int] = {}
    for c in cells:
        per[c.category] = per.get(c.category, 0) + c.sums.tickets
    return [(g["name"], g["failing"]) for g in top_groups(per, top)]


# ------------------------------------------------------------------ replay
NA, MET, BREACHED, OPEN = 0, 1, 2, 3
CMP_CHAIN = "CMP-1+CMP-2"
#: the replayed clocks: (family, start column, stop column); see aftersales/replay.py
FAMILIES = (
    ("priority-response", "c", "f"),
    ("channel-response", "c", "f"),
    ("priority-resolution", "c", "r"),
    ("escalation-timeout", "c", "r"),
    ("REP-1", "c", "f"),
    (CMP_CHAIN, "c", "f"),
    ("CMP-3", "f", "r"),
)


def family_rule(family: str, sop: str, channel: str, priority: str) -> str | None:
    """The rule id a ticket's clock of ``family`` runs under (None: the family does not apply)."""
    if family == "priority-response":
        return f"PRI-{priority.upper()}:response"
    if family == "channel-response":
        if channel == "email":
            return f"INQ-CH-EMAIL:{priority}"
        return f"INQ-CH-{channel.upper()}:response"
    if family == "priority-resolution":
        return f"PRI-{priority.upper()}:resolution"
    if family == "escalation-timeout":
        return f"ESC-TIMEOUT:{priority}"
    if family == "REP-1":
        return "REP-1" if sop == "repair" else None
    if family in (CMP_CHAIN, "CMP-3"):
        return family if sop == "complaint" else None
    raise ValueError(f"unknown family {family!r}")


@dataclass(frozen=True)
class Clock:
    """One rule's clock of a family, for the tickets whose columns match ``match``."""

    family: int  # index into FAMILIES
    rule_id: str
    match: tuple[tuple[str, str], ...]  # (column, value) pairs selecting the tickets

    @property
    def start(self) -> str:
        return FAMILIES[self.family][1]

    @property
    def stop(self) -> str:
        return FAMILIES[self.family][2]


def clocks() -> list[Clock]:
    """Every (family, rule id) a ticket can run, with the ticket columns that decide it."""
    from models.history import CHANNELS, PRIORITIES, SOPS

    out: list[Clock] = []
    for i, (family, _, _) in enumerate(FAMILIES):
        seen: dict[str, tuple[tuple[str, str], ...]] = {}
        for sop in SOPS:
            for ch in CHANNELS:
                for pri in PRIORITIES:
                    rule_id = family_rule(family, sop, ch, pri)
                    if rule_id is None or rule_id in seen:
                        continue
                    if family in ("priority-response", "priority-resolution", "escalation-timeout"):
                        match: tuple[tuple[str, str], ...] = (("priority", pri),)
                    elif family == "channel-response" and ch == "email":
                        match = (("channel", ch), ("priority", pri))
                    elif family == "channel-response":
                        match = (("channel", ch),)
                    else:
                        match = (("sop", sop),)
                    seen[rule_id] = match
        out += [Clock(i, r, m) for r, m in seen.items()]
    return out


def family_steps(
    profile: Profile, family: str, rule_id: str, calendar: WorkCalendar
) -> list[Step] | None:
    """The deadline steps of ``rule_id`` under ``profile`` (None: not timed there)."""
    ids = ["CMP-1", "CMP-2"] if family == CMP_CHAIN else [rule_id]
    steps = [rule_step(profile, i, calendar) for i in ids]
    if any(s is None for s in steps):
        return None
    return [s for s in steps if s is not None]


@dataclass
class RuleSums(Sums):
    met_a: int = 0
    breached_a: int = 0
    open_a: int = 0
    met_b: int = 0
    breached_b: int = 0
    open_b: int = 0
    newly_breached: int = 0
    no_longer_breached: int = 0


@dataclass(frozen=True)
class ReplayKey:
    sop: str
    channel: str
    priority: str


@dataclass
class ReplayCell:
    """Clock outcomes of the tickets of one (sop, channel, priority), per family."""

    key: ReplayKey
    tickets: int
    families: list[RuleSums]  # aligned with FAMILIES
    breached_any_a: int = 0  # tickets with at least one breach under A
    breached_any_b: int = 0
    changed: int = 0  # tickets newly breached or no longer breached somewhere


def statuses_to_sums(sa: int, sb: int) -> RuleSums:
    """One clock's outcome under A and B as counters (used by the frame path per row)."""
    return RuleSums(
        met_a=int(sa == MET),
        breached_a=int(sa == BREACHED),
        open_a=int(sa == OPEN),
        met_b=int(sb == MET),
        breached_b=int(sb == BREACHED),
        open_b=int(sb == OPEN),
        newly_breached=int(sb == BREACHED and sa not in (BREACHED, NA)),
        no_longer_breached=int(sa == BREACHED and sb not in (BREACHED, NA)),
    )


def limit_text(profile: Profile, rule_id: str) -> str:
    ids = ["CMP-1", "CMP-2"] if rule_id == CMP_CHAIN else [rule_id]
    texts = []
    for i in ids:
        r = profile.rules.get(i)
        if r is None or r.duration is None:
            return "-"
        texts.append(f"{r.duration:g} {r.unit}")
    return " + ".join(texts)


def assemble_replay(
    cells: Sequence[ReplayCell],
    examples_changed: list[str],
    *,
    profile_a: Profile,
    profile_b: Profile,
    as_of: datetime,
    calendar: WorkCalendar,
) -> dict[str, Any]:
    """Breaches and compliance per rule under A and B (docs/REPORTS.md §4)."""
    per_rule: dict[str, RuleSums] = {}
    missing: dict[str, set[str]] = {"a": set(), "b": set()}
    for c in cells:
        if c.tickets == 0:
            continue
        for (family, _, _), sums in zip(FAMILIES, c.families, strict=True):
            rule_id = family_rule(family, c.key.sop, c.key.channel, c.key.priority)
            if rule_id is None:
                continue
            per_rule.setdefault(rule_id, RuleSums()).add(sums)
            for side, prof in (("a", profile_a), ("b", profile_b)):
                if family_steps(prof, family, rule_id, calendar) is None:
                    missing[side].add(rule_id)
    rules = []
    for rule_id in sorted(per_rule):
        r = per_rule[rule_id]
        rules.append(
            {
                "rule": rule_id,
                "limit_a": limit_text(profile_a, rule_id),
                "limit_b": limit_text(profile_b, rule_id),
                "met_a": r.met_a,
                "breached_a": r.breached_a,
                "open_a": r.open_a,
                "compliance_a": rate(r.met_a, r.met_a + r.breached_a),
                "met_b": r.met_b,
                "breached_b": r.breached_b,
                "open_b": r.open_b,
                "compliance_b": rate(r.met_b, r.met_b + r.breached_b),
                "newly_breached": r.newly_breached,
                "no_longer_breached": r.no_longer_breached,
            }
        )
    total = RuleSums.total(s for c in cells for s in c.families)
    return {
        "profile_a": profile_a.name,
        "profile_b": profile_b.name,
        "as_of": as_of.isoformat(),
        "tickets": sum(c.tickets for c in cells),
        "tickets_breached_a": sum(c.breached_any_a for c in cells),
        "tickets_breached_b": sum(c.breached_any_b for c in cells),
        "breaches_a": total.breached_a,
        "breaches_b": total.breached_b,
        "tickets_changed": sum(c.changed for c in cells),
        "examples_changed": list(examples_changed),
        "rules": rules,
        "missing_rules": {"a": sorted(missing["a"]), "b": sorted(missing["b"])},
    }
