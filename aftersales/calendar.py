"""Working-time calendar: deadlines in natural time, working hours and working days.

A working day (工作日) skips weekends and Chinese statutory holidays and counts
make-up workdays (调休) as working days; the holiday data comes from the
``chinese_calendar`` package.  Each working day consists of one or more working
periods given as local wall-clock times (default 09:00-18:00), all in one time
zone (default Asia/Shanghai).

Rules:

* Natural units (seconds, minutes, hours, days) add elapsed time: the result is
  ``start + timedelta(...)`` computed on the absolute time line (a "day" is 24 h,
  which only matters for zones with daylight saving time).
* ``N working hours`` is ``N * 3600`` seconds of working time counted from the
  start; ``N working days`` is ``N * working_day_seconds()`` of working time.
  A start outside working time counts from the next working period, and a due
  time that lands exactly on a period end stays at that period end.
* A year the holiday data does not cover either falls back to Monday-Friday
  (``unknown_year="weekends"``, one warning per year and calendar) or raises
  :class:`CalendarYearNotCovered` (``unknown_year="error"``).

The module is pure: no Prefect, no database, no wall clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

import chinese_calendar

__all__ = [
    "MAX_SCAN_DAYS",
    "CalendarYearNotCovered",
    "DueExplanation",
    "Unit",
    "WorkCalendar",
]

logger = logging.getLogger("aftersales.calendar")

#: Hard cap on calendar days scanned by one computation (about ten years).
MAX_SCAN_DAYS = 3660

_DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(9), time(18)),)
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Unit(StrEnum):
    """Time units a deadline can be expressed in."""

    # natural (elapsed) time
    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    # working time
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"

    @property
    def is_working(self) -> bool:
        return self in (Unit.WORKING_HOURS, Unit.WORKING_DAYS)


_NATURAL_SECONDS: dict[Unit, int] = {
    Unit.SECONDS: 1,
    Unit.MINUTES: 60,
    Unit.HOURS: 3600,
    Unit.DAYS: 86400,
}


def _covered_years() -> tuple[int, int]:
    """First and last year the installed ``chinese_calendar`` has holiday data for."""
    years = {d.year for d in chinese_calendar.holidays} | {
        d.year for d in chinese_calendar.workdays
    }
    return (min(years), max(years)) if years else (2004, 2026)


COVERED_YEARS: tuple[int, int] = _covered_years()


class CalendarYearNotCovered(ValueError):
    """The holiday data does not cover a year and the calendar runs in ``error`` mode."""

    def __init__(self, year: int, covered: tuple[int, int] = COVERED_YEARS) -> None:
        self.year = year
        self.covered = covered
        super().__init__(
            f"the Chinese holiday calendar has no data for year {year} "
            f"(covered: {covered[0]}..{covered[1]}); update the chinese-calendar package "
            f"or set AFTERSALES_CALENDAR_UNKNOWN_YEAR=weekends to count Monday-Friday "
            f"as working days for uncovered years"
        )


def _coerce_unit(unit: Unit | str) -> Unit:
    if isinstance(unit, Unit):
        return unit
    try:
        return Unit(str(unit).strip().lower())
    except ValueError:
        known = ", ".join(u.value for u in Unit)
        raise ValueError(f"unknown time unit {unit!r}; known units: {known}") from None


def _fmt_seconds(seconds: float) -> str:
    """``32400`` -> ``"9 h"``, ``5400`` -> ``"1 h 30 min"``, ``90.5`` -> ``"1 min 30.5 s"``."""
    total = round(seconds, 6)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts: list[str] = []
    if hours:
        parts.append(f"{int(hours)} h")
    if minutes:
        parts.append(f"{int(minutes)} min")
    if secs or not parts:
        parts.append(f"{secs:g} s")
    return " ".join(parts)


@dataclass(frozen=True)
class DueExplanation:
    """How a due time was computed, for audit trails and user-facing messages."""

    start: datetime
    due: datetime
    amount: float
    unit: Unit
    working_seconds: float | None = None
    periods_used: list[tuple[datetime, datetime]] = field(default_factory=list)
    days_skipped: list[tuple[date, str]] = field(default_factory=list)
    workdays_made_up: list[date] = field(default_factory=list)
    fallback_years: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; datetimes are ISO 8601 with their UTC offset."""
        return {
            "start": self.start.isoformat(),
            "due": self.due.isoformat(),
            "amount": self.amount,
            "unit": self.unit.value,
            "working_seconds": self.working_seconds,
            "periods_used": [[a.isoformat(), b.isoformat()] for a, b in self.periods_used],
            "days_skipped": [
                {"date": d.isoformat(), "reason": reason} for d, reason in self.days_skipped
            ],
            "workdays_made_up": [d.isoformat() for d in self.workdays_made_up],
            "fallback_years": list(self.fallback_years),
        }

    def lines(self) -> list[str]:
        """Human-readable explanation, one fact per line."""

        def day(d: date) -> str:
            return f"{d.isoformat()} ({_WEEKDAY_NAMES[d.weekday()]})"

        def stamp(t: datetime) -> str:
            return f"{t.isoformat()} ({_WEEKDAY_NAMES[t.weekday()]})"

        amount = f"{self.amount:g} {self.unit.value.replace('_', ' ')}"
        out = [f"start: {stamp(self.start)}"]
        if self.working_seconds is None:
            out.append(f"add {amount} of natural (elapsed) time")
        else:
            out.append(f"add {amount} = {_fmt_seconds(self.working_seconds)} of working time")
        for d, reason in self.days_skipped:
            out.append(f"skipped {day(d)}: {reason}")
        for d in self.workdays_made_up:
            out.append(f"counted {day(d)} as a make-up workday (调休)")
        for year in self.fallback_years:
            out.append(
                f"year {year} is not covered by the holiday data: counted Monday-Friday only"
            )
        for a, b in self.periods_used:
            length = (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds()
            out.append(
                f"worked {a.date().isoformat()} {a.strftime('%H:%M:%S')}-"
                f"{b.strftime('%H:%M:%S')} ({_fmt_seconds(length)})"
            )
        out.append(f"due: {stamp(self.due)}")
        return out


@dataclass
class _Trace:
    """Mutable collector used while scanning days."""

    periods_used: list[tuple[datetime, datetime]] = field(default_factory=list)
    days_skipped: list[tuple[date, str]] = field(default_factory=list)
    workdays_made_up: list[date] = field(default_factory=list)
    fallback_years: list[int] = field(default_factory=list)

    def note_fallback(self, year: int) -> None:
        if year not in self.fallback_years:
            self.fallback_years.append(year)


@dataclass(frozen=True)
class _DayInfo:
    working: bool
    reason: str | None  # why a non-working day is off ("weekend", "holiday: <name>")
    made_up: bool  # a weekend day that is a make-up workday
    fallback: bool  # computed with the weekends-only fallback


class WorkCalendar:
    """Working-time arithmetic over Chinese working days and daily working periods."""

    def __init__(
        self,
        tz: str = "Asia/Shanghai",
        periods: Sequence[tuple[time, time]] = _DEFAULT_PERIODS,
        unknown_year: Literal["weekends", "error"] = "weekends",
    ) -> None:
        self.tz_name = tz
        self.tz = ZoneInfo(tz)
        self.periods: tuple[tuple[time, time], ...] = self._validate_periods(periods)
        if unknown_year not in ("weekends", "error"):
            raise ValueError(
                f"unknown_year must be 'weekends' or 'error', not {unknown_year!r} "
                f"(AFTERSALES_CALENDAR_UNKNOWN_YEAR)"
            )
        self.unknown_year: Literal["weekends", "error"] = unknown_year
        self._day_cache: dict[date, _DayInfo] = {}
        self._warned_years: set[int] = set()

    @classmethod
    def from_settings(cls, settings: Any) -> WorkCalendar:
        """Build from :class:`aftersales.settings.Settings` (or anything shaped like it)."""
        return cls(
            tz=settings.timezone,
            periods=settings.work_periods(),
            unknown_year=settings.calendar_unknown_year,
        )

    def __repr__(self) -> str:
        spans = ",".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)
        return (
            f"WorkCalendar(tz={self.tz_name!r}, periods={spans!r}, "
            f"unknown_year={self.unknown_year!r})"
        )

    @staticmethod
    def _validate_periods(periods: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
        if not periods:
            raise ValueError("a working day needs at least one working period")
        ordered = sorted((tuple(p) for p in periods), key=lambda p: p[0])
        previous_end: time | None = None
        for start, end in ordered:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("working periods are local wall-clock times without tzinfo")
            if end <= start:
                raise ValueError(f"working period {start:%H:%M}-{end:%H:%M} ends before it starts")
            if previous_end is not None and start < previous_end:
                raise ValueError(f"working period starting {start:%H:%M} overlaps the previous one")
            previous_end = end
        return tuple((s, e) for s, e in ordered)

    # -- days -----------------------------------------------------------------

    def _day_info(self, d: date) -> _DayInfo:
        cached = self._day_cache.get(d)
        if cached is not None:
            return cached
        weekend = d.weekday() >= 5
        try:
            working = chinese_calendar.is_workday(d)
            _, name = chinese_calendar.get_holiday_detail(d)
        except NotImplementedError:
            if self.unknown_year == "error":
                raise CalendarYearNotCovered(d.year) from None
            if d.year not in self._warned_years:
                self._warned_years.add(d.year)
                logger.warning(
                    "holiday data does not cover year %s (covered: %s..%s); counting "
                    "Monday-Friday as working days (AFTERSALES_CALENDAR_UNKNOWN_YEAR=weekends)",
                    d.year,
                    COVERED_YEARS[0],
                    COVERED_YEARS[1],
                )
            info = _DayInfo(
                working=not weekend,
                reason="weekend" if weekend else None,
                made_up=False,
                fallback=True,
            )
        else:
            if working:
                reason = None
            elif name:
                reason = f"holiday: {name}"
            elif weekend:
                reason = "weekend"
            else:  # pragma: no cover - the data always names weekday holidays
                reason = "holiday"
            info = _DayInfo(
                working=working, reason=reason, made_up=working and weekend, fallback=False
            )
        self._day_cache[d] = info
        return info

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (weekends/holidays off, make-up days on)."""
        if isinstance(d, datetime):
            d = d.astimezone(self.tz).date() if d.tzinfo else d.date()
        return self._day_info(d).working

    def working_day_seconds(self) -> float:
        """Nominal length of one working day: the sum of the period lengths."""
        anchor = date(2000, 1, 1)
        return float(
            sum(
                (datetime.combine(anchor, e) - datetime.combine(anchor, s)).total_seconds()
                for s, e in self.periods
            )
        )

    def _periods_on(self, d: date) -> list[tuple[datetime, datetime]]:
        """The working periods of day ``d`` as UTC instants (DST-correct)."""
        return [
            (
                datetime.combine(d, s, tzinfo=self.tz).astimezone(UTC),
                datetime.combine(d, e, tzinfo=self.tz).astimezone(UTC),
            )
            for s, e in self.periods
        ]

    def _days_from(self, first: date) -> Any:
        """Yield consecutive dates from ``first``, refusing to scan more than the cap."""
        d = first
        for _ in range(MAX_SCAN_DAYS):
            yield d
            d += timedelta(days=1)
        raise ValueError(
            f"working-time computation scanned more than {MAX_SCAN_DAYS} calendar days "
            f"from {first.isoformat()} without finishing; the amount is too large"
        )

    # -- instants -------------------------------------------------------------

    def _aware(self, t: datetime, name: str = "start") -> datetime:
        if not isinstance(t, datetime):
            raise TypeError(f"{name} must be a datetime, not {type(t).__name__}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(
                f"{name} must be timezone-aware (got naive {t.isoformat()}); "
                f"attach a tzinfo, e.g. ZoneInfo({self.tz_name!r})"
            )
        return t

    def _local(self, t_utc: datetime) -> datetime:
        return t_utc.astimezone(self.tz)

    def next_working_instant(self, t: datetime) -> datetime:
        """``t`` itself if it lies inside a working period, else the next period start."""
        cur = self._aware(t, "t").astimezone(UTC)
        for d in self._days_from(self._local(cur).date()):
            if not self._day_info(d).working:
                continue
            for ps, pe in self._periods_on(d):
                if cur < pe:
                    return self._local(max(ps, cur))
        raise AssertionError("unreachable")  # pragma: no cover

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working time in ``[a, b)`` in seconds; ``0.0`` if ``b <= a``."""
        a_utc = self._aware(a, "a").astimezone(UTC)
        b_utc = self._aware(b, "b").astimezone(UTC)
        if b_utc <= a_utc:
            return 0.0
        last = self._local(b_utc).date()
        total = timedelta(0)
        for d in self._days_from(self._local(a_utc).date()):
            if d > last:
                break
            if not self._day_info(d).working:
                continue
            for ps, pe in self._periods_on(d):
                lo, hi = max(ps, a_utc), min(pe, b_utc)
                if hi > lo:
                    total += hi - lo
        return total.total_seconds()

    # -- deadlines ------------------------------------------------------------

    def add(self, start: datetime, amount: float, unit: Unit | str) -> datetime:
        """The due time ``amount`` ``unit`` after ``start``, in the calendar time zone."""
        return self.explain(start, amount, unit).due

    def explain(self, start: datetime, amount: float, unit: Unit | str) -> DueExplanation:
        """Compute the due time and record how it was reached."""
        self._aware(start)
        unit = _coerce_unit(unit)
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise TypeError(f"amount must be a number, not {amount!r}")
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"amount must be a finite number >= 0, got {amount!r}")
        start_local = start.astimezone(self.tz)
        amount_f = float(amount)

        if not unit.is_working:
            delta = timedelta(seconds=amount_f * _NATURAL_SECONDS[unit])
            due = self._local(start.astimezone(UTC) + delta)
            return DueExplanation(start=start_local, due=due, amount=amount_f, unit=unit)

        per_unit = 3600.0 if unit is Unit.WORKING_HOURS else self.working_day_seconds()
        remaining = timedelta(seconds=amount_f * per_unit)
        trace = _Trace()
        if remaining <= timedelta(0):
            return DueExplanation(
                start=start_local,
                due=start_local,
                amount=amount_f,
                unit=unit,
                working_seconds=0.0,
            )
        wanted = remaining
        cur = start.astimezone(UTC)
        due_utc: datetime | None = None
        for d in self._days_from(start_local.date()):
            info = self._day_info(d)
            if info.fallback:
                trace.note_fallback(d.year)
            if not info.working:
                trace.days_skipped.append((d, info.reason or "non-working day"))
                continue
            used_today = False
            for ps, pe in self._periods_on(d):
                seg_start = max(ps, cur)
                if seg_start >= pe:
                    continue
                available = pe - seg_start
                used_today = True
                if remaining <= available:
                    due_utc = seg_start + remaining
                    trace.periods_used.append((self._local(seg_start), self._local(due_utc)))
                    break
                remaining -= available
                trace.periods_used.append((self._local(seg_start), self._local(pe)))
            if used_today and info.made_up:
                trace.workdays_made_up.append(d)
            if due_utc is not None:
                break
        assert due_utc is not None
        return DueExplanation(
            start=start_local,
            due=self._local(due_utc),
            amount=amount_f,
            unit=unit,
            working_seconds=wanted.total_seconds(),
            periods_used=trace.periods_used,
            days_skipped=trace.days_skipped,
            workdays_made_up=trace.workdays_made_up,
            fallback_years=trace.fallback_years,
        )
