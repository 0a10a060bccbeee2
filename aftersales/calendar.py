"""Working-time calendar: deadlines in natural time, working hours and working days.

A working day (工作日) skips weekends and Chinese statutory holidays and counts
make-up workdays (调休) as working days.  Each working day consists of one or
more working periods given as local wall-clock times (default 09:00-18:00), all
in one time zone (default Asia/Shanghai).

Where a day's verdict comes from, first match wins (each day records it as its
``source``):

1. ``file:<path>``: a calendar file, the State Council's published arrangement
   for a year (see :func:`load_calendar_file`).  A file is complete for its year:
   a day of that year it does not list is an ordinary weekday or weekend.  It
   may also list days of the December before (a New Year arrangement can start
   there).
2. ``chinese-calendar``: the ``chinese_calendar`` package, holidays and make-up
   workdays for the years it covers (:data:`COVERED_YEARS`).
3. ``holidays-package``: for any other year, the statutory holidays the
   ``holidays`` package computes for China (including the weekday a holiday
   falling on a weekend is moved to).  It cannot know the make-up workdays the
   State Council will decree, so the calendar logs a warning once per year and
   lists the year in :attr:`DueExplanation.fallback_years`
   (``unknown_year="statutory"``, alias ``"weekends"``).  With
   ``unknown_year="error"`` such a year raises :class:`CalendarYearNotCovered`.

An ordinary day's source is ``weekend`` or ``weekday``.

Rules:

* Natural units (seconds, minutes, hours, days) add elapsed time: the result is
  ``start + timedelta(...)`` computed on the absolute time line (a "day" is 24 h,
  which only matters for zones with daylight saving time).
* ``N working hours`` is ``N * 3600`` seconds of working time counted from the
  start; ``N working days`` is ``N * working_day_seconds()`` of working time.
  A start outside working time counts from the next working period, and a due
  time that lands exactly on a period end stays at that period end.

The module is pure: no Prefect, no database, no wall clock.  Calendar files are
read once, when the :class:`WorkCalendar` is built.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

__all__ = [
    "COVERED_YEARS",
    "MAX_SCAN_DAYS",
    "SOURCE_CHINESE_CALENDAR",
    "SOURCE_HOLIDAYS_PACKAGE",
    "SOURCE_WEEKDAY",
    "SOURCE_WEEKEND",
    "ArrangedDay",
    "CalendarDay",
    "CalendarFileError",
    "CalendarYearNotCovered",
    "DayKind",
    "DueExplanation",
    "HolidayArrangement",
    "HolidayData",
    "MadeUpWorkday",
    "SkippedDay",
    "Unit",
    "WorkCalendar",
    "YearSource",
    "load_calendar_file",
    "load_calendar_files",
    "parse_calendar_data",
]

logger = logging.getLogger("aftersales.calendar")

#: Hard cap on calendar days scanned by one computation (about ten years).
MAX_SCAN_DAYS = 3660

SOURCE_CHINESE_CALENDAR = "chinese-calendar"
SOURCE_HOLIDAYS_PACKAGE = "holidays-package"
SOURCE_WEEKEND = "weekend"
SOURCE_WEEKDAY = "weekday"

_DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(9), time(18)),)
_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKDAY_FULL = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: ``unknown_year`` values; ``weekends`` is the old name of ``statutory`` (same meaning).
_UNKNOWN_YEAR_MODES: dict[str, Literal["statutory", "error"]] = {
    "statutory": "statutory",
    "weekends": "statutory",
    "error": "error",
}


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


def _holidays_package() -> Any:
    """The ``holidays`` package, imported on first use (only uncovered years need it)."""
    import holidays

    return holidays


def _covered_years() -> tuple[int, int]:
    """First and last year the installed ``chinese_calendar`` has holiday data for."""
    years = {d.year for d in chinese_calendar.holidays} | {
        d.year for d in chinese_calendar.workdays
    }
    return (min(years), max(years)) if years else (2004, 2026)


COVERED_YEARS: tuple[int, int] = _covered_years()


class CalendarYearNotCovered(ValueError):
    """No calendar file and no ``chinese_calendar`` data for a year, in ``error`` mode."""

    def __init__(self, year: int, covered: tuple[int, int] = COVERED_YEARS) -> None:
        self.year = year
        self.covered = covered
        super().__init__(
            f"the Chinese holiday calendar has no data for year {year} "
            f"(chinese-calendar covers {covered[0]}..{covered[1]}, and no calendar file "
            f"gives {year}); load the State Council's arrangement for {year} as a calendar "
            f"file (AFTERSALES_CALENDAR_FILES), update the chinese-calendar package, or set "
            f"AFTERSALES_CALENDAR_UNKNOWN_YEAR=statutory to count the statutory holidays of "
            f"the holidays package (make-up workdays unknown)"
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


# -- days and their sources -------------------------------------------------------------


class DayKind(StrEnum):
    """What a day is in the working-day calendar."""

    HOLIDAY = "holiday"
    MAKE_UP_WORKDAY = "make_up_workday"  # 调休: a weekend day worked
    WEEKEND = "weekend"
    WEEKDAY = "weekday"


@dataclass(frozen=True)
class CalendarDay:
    """One day's verdict and where it came from.

    ``source`` names what decided this day (``file:<path>``, ``chinese-calendar``,
    ``holidays-package``, or ``weekend``/``weekday`` for an ordinary day);
    ``basis`` names the data set that covers the day even when the day is
    ordinary (so an ordinary Saturday of a file's year has basis ``file:<path>``).
    """

    date: date
    working: bool
    kind: DayKind
    name: str | None
    source: str
    basis: str

    @property
    def reason(self) -> str | None:
        """Why a non-working day is off: ``"weekend"`` or ``"holiday: <name>"``."""
        if self.working:
            return None
        if self.kind is DayKind.HOLIDAY:
            return f"holiday: {self.name}" if self.name else "holiday"
        return "weekend"

    @property
    def fallback(self) -> bool:
        """Computed from the statutory holidays only (make-up workdays unknown)."""
        return self.basis == SOURCE_HOLIDAYS_PACKAGE

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "weekday": _WEEKDAY_NAMES[self.date.weekday()],
            "working": self.working,
            "kind": self.kind.value,
            "name": self.name,
            "source": self.source,
        }


def _ordinary_day(d: date, basis: str) -> CalendarDay:
    weekend = d.weekday() >= 5
    return CalendarDay(
        date=d,
        working=not weekend,
        kind=DayKind.WEEKEND if weekend else DayKind.WEEKDAY,
        name=None,
        source=SOURCE_WEEKEND if weekend else SOURCE_WEEKDAY,
        basis=basis,
    )


@dataclass(frozen=True)
class YearSource:
    """The data set a year's days come from, for ``aftersales calendar show``."""

    year: int
    source: str  # file:<path> | chinese-calendar | holidays-package
    reference: str  # the notice a file cites, or the package and its version
    make_up_workdays_known: bool
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "source": self.source,
            "reference": self.reference,
            "make_up_workdays_known": self.make_up_workdays_known,
            "warning": self.warning,
        }


# -- calendar files ---------------------------------------------------------------------

_FILE_KEYS = ("year", "source", "holidays", "workdays")
_HOLIDAY_KEYS = ("date", "from", "to", "name")
_WORKDAY_KEYS = ("date", "name")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MIN_FILE_YEAR, _MAX_FILE_YEAR = 1950, 2100
_MAX_RANGE_DAYS = 31


class CalendarFileError(ValueError):
    """A calendar file that cannot be used; each error names the field and the rule."""

    def __init__(self, path: Path | str, errors: Sequence[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.errors: tuple[tuple[str, str], ...] = tuple(errors)
        items = [f"{f}: {rule}" for f, rule in self.errors]
        if len(items) == 1:
            message = f"calendar file {self.path}: {items[0]}"
        else:
            message = f"calendar file {self.path}: {len(items)} errors\n  " + "\n  ".join(items)
        super().__init__(message)


@dataclass(frozen=True)
class ArrangedDay:
    """One date of a calendar file; ``field`` is where the file lists it (``holidays[2]``)."""

    date: date
    name: str
    field: str


@dataclass(frozen=True)
class HolidayArrangement:
    """The State Council's arrangement for one year, as loaded from a calendar file."""

    path: Path
    year: int
    source: str  # the notice: title, number or URL
    holidays: tuple[ArrangedDay, ...]  # one entry per date (ranges expanded)
    workdays: tuple[ArrangedDay, ...]  # make-up workdays (调休)

    @property
    def label(self) -> str:
        return f"file:{self.path}"


def _parse_date(value: object, where: str, errors: list[tuple[str, str]]) -> date | None:
    if isinstance(value, datetime):
        errors.append((where, f"must be a date YYYY-MM-DD without a time, got {value!r}"))
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            errors.append((where, f"is not a valid date ({exc})"))
            return None
    errors.append((where, f"must be a date YYYY-MM-DD, got {value!r}"))
    return None


def _parse_name(entry: dict[Any, Any], where: str, errors: list[tuple[str, str]]) -> str | None:
    if "name" not in entry:
        errors.append((f"{where}.name", "required: the holiday's name"))
        return None
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        errors.append((f"{where}.name", f"must be a non-empty string, got {name!r}"))
        return None
    return name.strip()


def _unknown_keys(
    entry: dict[Any, Any], allowed: tuple[str, ...], where: str, errors: list[tuple[str, str]]
) -> None:
    for key in entry:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            name = key if isinstance(key, str) else repr(key)  # YAML reads `off:` as False
            errors.append((f"{prefix}{name}", f"unknown field; allowed: {', '.join(allowed)}"))


def _entry_list(
    data: dict[Any, Any], key: str, errors: list[tuple[str, str]], *, required: bool
) -> list[Any]:
    value = data.get(key)
    if value is None:
        if required:
            errors.append((key, "required: a list of {date or from/to, name} (at least one)"))
        return []
    if not isinstance(value, list):
        errors.append((key, f"must be a list, got {type(value).__name__}"))
        return []
    if required and not value:
        errors.append((key, "must list at least one holiday"))
    return value


def parse_calendar_data(data: object, *, path: Path | str) -> HolidayArrangement:
    """Validate the parsed YAML of a calendar file (``path`` names it in errors).

    Shape (dates illustrative)::

        year: 2027
        source: 国务院办公厅关于2027年部分节假日安排的通知 (URL or number)
        holidays:
          - {date: 2027-01-01, name: New Year's Day}
          - {from: 2027-02-05, to: 2027-02-11, name: Spring Festival}
        workdays:                      # make-up workdays (调休), optional
          - {date: 2027-02-13, name: Spring Festival}

    Rules: the keys above only; ``year`` an integer 1950..2100; ``source``
    non-empty; each holiday has ``date`` or ``from``/``to`` (not both, ``to`` not
    before ``from``, at most 31 days) and a non-empty ``name``; every date in the
    year (or the December before it); a make-up workday falls on a weekend; no
    date listed twice; no date both a holiday and a make-up workday.
    """
    errors: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        raise CalendarFileError(
            path, [("(file)", "must be a mapping with keys " + ", ".join(_FILE_KEYS))]
        )
    _unknown_keys(data, _FILE_KEYS, "", errors)

    year: int | None = None
    raw_year = data.get("year")
    if raw_year is None:
        errors.append(("year", "required: the year this arrangement is for"))
    elif isinstance(raw_year, bool) or not isinstance(raw_year, int):
        errors.append(("year", f"must be an integer year, got {raw_year!r}"))
    elif not _MIN_FILE_YEAR <= raw_year <= _MAX_FILE_YEAR:
        errors.append(("year", f"must be between {_MIN_FILE_YEAR} and {_MAX_FILE_YEAR}"))
    else:
        year = raw_year

    source = data.get("source")
    if source is None:
        errors.append(("source", "required: the State Council notice (title, number or URL)"))
    elif not isinstance(source, str) or not source.strip():
        errors.append(("source", f"must be a non-empty string, got {source!r}"))

    def in_year(d: date, where: str) -> None:
        if year is None:
            return
        if not date(year - 1, 12, 1) <= d <= date(year, 12, 31):
            errors.append(
                (
                    where,
                    f"date outside the year: {d.isoformat()} is not in {year} "
                    f"(nor in December {year - 1}, where a New Year arrangement can start)",
                )
            )

    holidays: list[ArrangedDay] = []
    for i, entry in enumerate(_entry_list(data, "holidays", errors, required=True)):
        where = f"holidays[{i}]"
        if not isinstance(entry, dict):
            errors.append((where, "must be a mapping {date or from/to, name}"))
            continue
        _unknown_keys(entry, _HOLIDAY_KEYS, where, errors)
        name = _parse_name(entry, where, errors)
        has_range = "from" in entry or "to" in entry
        if "date" in entry and has_range:
            errors.append((where, "give either date or from/to, not both"))
            continue
        if "date" in entry:
            d = _parse_date(entry["date"], f"{where}.date", errors)
            if d is None:
                continue
            in_year(d, f"{where}.date")
            dates = [d]
        elif has_range:
            if "from" not in entry or "to" not in entry:
                missing = "from" if "from" not in entry else "to"
                errors.append((f"{where}.{missing}", "required: a range needs both from and to"))
                continue
            first = _parse_date(entry["from"], f"{where}.from", errors)
            last = _parse_date(entry["to"], f"{where}.to", errors)
            if first is None or last is None:
                continue
            if last < first:
                errors.append((f"{where}.to", f"must not be before from ({first.isoformat()})"))
                continue
            span = (last - first).days + 1
            if span > _MAX_RANGE_DAYS:
                errors.append(
                    (
                        f"{where}.to",
                        f"a holiday range spans at most {_MAX_RANGE_DAYS} days, got {span}",
                    )
                )
                continue
            in_year(first, f"{where}.from")
            in_year(last, f"{where}.to")
            dates = [first + timedelta(days=k) for k in range(span)]
        else:
            errors.append((where, "needs date, or from and to"))
            continue
        if name is not None:
            holidays.extend(ArrangedDay(date=d, name=name, field=where) for d in dates)

    workdays: list[ArrangedDay] = []
    for i, entry in enumerate(_entry_list(data, "workdays", errors, required=False)):
        where = f"workdays[{i}]"
        if not isinstance(entry, dict):
            errors.append((where, "must be a mapping {date, name}"))
            continue
        _unknown_keys(entry, _WORKDAY_KEYS, where, errors)
        name = _parse_name(entry, where, errors)
        if "date" not in entry:
            errors.append((f"{where}.date", "required: the make-up workday's date"))
            continue
        d = _parse_date(entry["date"], f"{where}.date", errors)
        if d is None:
            continue
        in_year(d, f"{where}.date")
        if d.weekday() < 5:
            errors.append(
                (
                    f"{where}.date",
                    f"a make-up workday must fall on a weekend "
                    f"({d.isoformat()} is a {_WEEKDAY_FULL[d.weekday()]})",
                )
            )
            continue
        if name is not None:
            workdays.append(ArrangedDay(date=d, name=name, field=where))

    seen: dict[date, str] = {}
    for listed in (holidays, workdays):
        for day in listed:
            where = day.field if day.field.startswith("holidays") else f"{day.field}.date"
            previous = seen.get(day.date)
            if previous is None:
                seen[day.date] = day.field
            elif previous.split("[")[0] == day.field.split("[")[0]:
                errors.append(
                    (
                        where,
                        f"duplicate date: {day.date.isoformat()} is already listed in {previous}",
                    )
                )
            else:
                errors.append(
                    (
                        where,
                        f"{day.date.isoformat()} is both a holiday ({previous}) and a make-up "
                        f"workday; a date is one or the other",
                    )
                )

    if errors:
        raise CalendarFileError(path, errors)
    assert year is not None and isinstance(source, str)
    return HolidayArrangement(
        path=Path(path),
        year=year,
        source=source.strip(),
        holidays=tuple(holidays),
        workdays=tuple(workdays),
    )


def load_calendar_file(path: Path | str) -> HolidayArrangement:
    """Read and validate one calendar file (YAML); see :func:`parse_calendar_data`."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarFileError(
            path, [("(file)", f"cannot be read: {exc.strerror or exc}")]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise CalendarFileError(path, [("(file)", f"is not valid YAML{at}")]) from None
    return parse_calendar_data(data, path=path)


def _expand(paths: Sequence[Path | str]) -> Iterator[Path]:
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml"))
        elif p.exists():
            yield p
        else:
            raise CalendarFileError(p, [("(file)", "does not exist (AFTERSALES_CALENDAR_FILES)")])


def load_calendar_files(paths: Sequence[Path | str]) -> tuple[HolidayArrangement, ...]:
    """Load files and directories of ``*.yaml``/``*.yml`` calendar files.

    Across files: one file per year, and no date listed by two files.
    """
    loaded: list[HolidayArrangement] = []
    by_year: dict[int, HolidayArrangement] = {}
    listed: dict[date, tuple[HolidayArrangement, str]] = {}
    for p in _expand(paths):
        arrangement = load_calendar_file(p)
        other = by_year.get(arrangement.year)
        if other is not None:
            raise CalendarFileError(
                arrangement.path,
                [
                    (
                        "year",
                        f"year {arrangement.year} is already given by {other.path}; "
                        f"one file per year",
                    )
                ],
            )
        for day in (*arrangement.holidays, *arrangement.workdays):
            if day.date in listed:
                first, where = listed[day.date]
                raise CalendarFileError(
                    arrangement.path,
                    [
                        (
                            day.field,
                            f"{day.date.isoformat()} is also listed in {first.path} ({where})",
                        )
                    ],
                )
        for day in (*arrangement.holidays, *arrangement.workdays):
            listed[day.date] = (arrangement, day.field)
        by_year[arrangement.year] = arrangement
        loaded.append(arrangement)
    return tuple(loaded)


# -- explanations -----------------------------------------------------------------------


class SkippedDay(NamedTuple):
    """A non-working day a working-time computation skipped."""

    date: date
    reason: str  # "weekend" | "holiday: <name>"
    source: str  # file:<path> | chinese-calendar | holidays-package | weekend


class MadeUpWorkday(NamedTuple):
    """A weekend day worked as a make-up workday (调休)."""

    date: date
    name: str | None  # the holiday it makes up for
    source: str  # file:<path> | chinese-calendar


class HolidayData(NamedTuple):
    """The data set a year's days came from in one computation."""

    year: int
    source: str  # file:<path> | chinese-calendar | holidays-package


@dataclass(frozen=True)
class DueExplanation:
    """How a due time was computed, for audit trails and user-facing messages."""

    start: datetime
    due: datetime
    amount: float
    unit: Unit
    working_seconds: float | None = None
    periods_used: list[tuple[datetime, datetime]] = field(default_factory=list)
    days_skipped: list[SkippedDay] = field(default_factory=list)
    workdays_made_up: list[MadeUpWorkday] = field(default_factory=list)
    fallback_years: list[int] = field(default_factory=list)
    holiday_data: list[HolidayData] = field(default_factory=list)

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
                {"date": d.date.isoformat(), "reason": d.reason, "source": d.source}
                for d in self.days_skipped
            ],
            "workdays_made_up": [
                {"date": d.date.isoformat(), "name": d.name, "source": d.source}
                for d in self.workdays_made_up
            ],
            "fallback_years": list(self.fallback_years),
            "holiday_data": [{"year": h.year, "source": h.source} for h in self.holiday_data],
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
        for s in self.days_skipped:
            origin = "" if s.source == s.reason else f" [{s.source}]"
            out.append(f"skipped {day(s.date)}: {s.reason}{origin}")
        for m in self.workdays_made_up:
            for_ = f" for {m.name}" if m.name else ""
            out.append(f"counted {day(m.date)} as a make-up workday (调休){for_} [{m.source}]")
        for h in self.holiday_data:
            if h.source != SOURCE_HOLIDAYS_PACKAGE:
                out.append(f"holiday data for {h.year}: {h.source}")
        for year in self.fallback_years:
            out.append(
                f"year {year} is not covered by the holiday data (chinese-calendar "
                f"{COVERED_YEARS[0]}..{COVERED_YEARS[1]}, no calendar file): statutory holidays "
                f"from the holidays package [{SOURCE_HOLIDAYS_PACKAGE}], make-up workdays (调休) "
                f"unknown"
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
    days_skipped: list[SkippedDay] = field(default_factory=list)
    workdays_made_up: list[MadeUpWorkday] = field(default_factory=list)
    fallback_years: list[int] = field(default_factory=list)
    holiday_data: list[HolidayData] = field(default_factory=list)

    def note_day(self, info: CalendarDay) -> None:
        basis = HolidayData(info.date.year, info.basis)
        if basis not in self.holiday_data:
            self.holiday_data.append(basis)
        if info.fallback and info.date.year not in self.fallback_years:
            self.fallback_years.append(info.date.year)


# -- the calendar -----------------------------------------------------------------------


class WorkCalendar:
    """Working-time arithmetic over Chinese working days and daily working periods."""

    def __init__(
        self,
        tz: str = "Asia/Shanghai",
        periods: Sequence[tuple[time, time]] = _DEFAULT_PERIODS,
        unknown_year: Literal["statutory", "weekends", "error"] = "statutory",
        calendar_files: Sequence[Path | str] = (),
    ) -> None:
        self.tz_name = tz
        self.tz = ZoneInfo(tz)
        self.periods: tuple[tuple[time, time], ...] = self._validate_periods(periods)
        mode = _UNKNOWN_YEAR_MODES.get(unknown_year) if isinstance(unknown_year, str) else None
        if mode is None:
            raise ValueError(
                f"unknown_year must be 'statutory' (alias 'weekends') or 'error', not "
                f"{unknown_year!r} (AFTERSALES_CALENDAR_UNKNOWN_YEAR)"
            )
        self.unknown_year: Literal["statutory", "error"] = mode
        self.calendar_files: tuple[Path, ...] = tuple(Path(p) for p in calendar_files)
        self.arrangements = load_calendar_files(self.calendar_files)
        self._file_years: dict[int, HolidayArrangement] = {a.year: a for a in self.arrangements}
        self._file_days: dict[date, CalendarDay] = {}
        for a in self.arrangements:
            for h in a.holidays:
                self._file_days[h.date] = CalendarDay(
                    date=h.date,
                    working=False,
                    kind=DayKind.HOLIDAY,
                    name=h.name,
                    source=a.label,
                    basis=a.label,
                )
            for w in a.workdays:
                self._file_days[w.date] = CalendarDay(
                    date=w.date,
                    working=True,
                    kind=DayKind.MAKE_UP_WORKDAY,
                    name=w.name,
                    source=a.label,
                    basis=a.label,
                )
        self._day_cache: dict[date, CalendarDay] = {}
        self._statutory_cache: dict[int, dict[date, str]] = {}
        self._warned_years: set[int] = set()

    @classmethod
    def from_settings(
        cls, settings: Any, *, extra_files: Sequence[Path | str] = ()
    ) -> WorkCalendar:
        """Build from :class:`aftersales.settings.Settings` (or anything shaped like it)."""
        return cls(
            tz=settings.timezone,
            periods=settings.work_periods(),
            unknown_year=settings.calendar_unknown_year,
            calendar_files=[*getattr(settings, "calendar_files", ()), *extra_files],
        )

    def __repr__(self) -> str:
        spans = ",".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)
        files = [str(a.path) for a in self.arrangements]
        return (
            f"WorkCalendar(tz={self.tz_name!r}, periods={spans!r}, "
            f"unknown_year={self.unknown_year!r}, calendar_files={files!r})"
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

    def _statutory(self, year: int) -> dict[date, str]:
        """The ``holidays`` package's China holidays of ``year``, English names; a holiday
        on a weekend brings its observed weekday (``"... (observed)"``)."""
        cached = self._statutory_cache.get(year)
        if cached is None:
            china = _holidays_package().China(years=year, language="en_US")
            cached = dict(china.items())
            self._statutory_cache[year] = cached
        return cached

    def _fallback_warning(self, year: int) -> str:
        if not self._statutory(year):
            return (
                f"holiday data does not cover year {year} (chinese-calendar: "
                f"{COVERED_YEARS[0]}..{COVERED_YEARS[1]}, no calendar file) and the holidays "
                f"package has no China holidays for {year} either: counting Monday-Friday as "
                f"working days; load the State Council's arrangement for {year} as a calendar "
                f"file (AFTERSALES_CALENDAR_FILES)"
            )
        version = _holidays_package().__version__
        return (
            f"holiday data does not cover year {year} (chinese-calendar: "
            f"{COVERED_YEARS[0]}..{COVERED_YEARS[1]}, no calendar file): counting the statutory "
            f"holidays of the holidays package {version}; make-up workdays (调休) for {year} "
            f"are unknown, load the State Council's arrangement for {year} as a calendar file "
            f"(AFTERSALES_CALENDAR_FILES)"
        )

    def _statutory_day(self, d: date) -> CalendarDay:
        if self.unknown_year == "error":
            raise CalendarYearNotCovered(d.year)
        if d.year not in self._warned_years:
            self._warned_years.add(d.year)
            logger.warning("%s", self._fallback_warning(d.year))
        name = self._statutory(d.year).get(d)
        if name is None:
            return _ordinary_day(d, SOURCE_HOLIDAYS_PACKAGE)
        return CalendarDay(
            date=d,
            working=False,
            kind=DayKind.HOLIDAY,
            name=name,
            source=SOURCE_HOLIDAYS_PACKAGE,
            basis=SOURCE_HOLIDAYS_PACKAGE,
        )

    def _chinese_calendar_day(self, d: date) -> CalendarDay | None:
        try:
            working = chinese_calendar.is_workday(d)
            _, name = chinese_calendar.get_holiday_detail(d)
        except NotImplementedError:
            return None
        weekend = d.weekday() >= 5
        if working and weekend:
            kind, source = DayKind.MAKE_UP_WORKDAY, SOURCE_CHINESE_CALENDAR
        elif working:
            kind, source, name = DayKind.WEEKDAY, SOURCE_WEEKDAY, None
        elif name:
            kind, source = DayKind.HOLIDAY, SOURCE_CHINESE_CALENDAR
        elif weekend:
            kind, source = DayKind.WEEKEND, SOURCE_WEEKEND
        else:  # pragma: no cover - the data always names weekday holidays
            kind, source = DayKind.HOLIDAY, SOURCE_CHINESE_CALENDAR
        return CalendarDay(
            date=d,
            working=working,
            kind=kind,
            name=name,
            source=source,
            basis=SOURCE_CHINESE_CALENDAR,
        )

    def day(self, d: date) -> CalendarDay:
        """The verdict on day ``d`` and its source (first match: file, chinese-calendar,
        holidays package; ``error`` mode raises :class:`CalendarYearNotCovered` instead
        of the last)."""
        if isinstance(d, datetime):
            d = d.astimezone(self.tz).date() if d.tzinfo else d.date()
        cached = self._day_cache.get(d)
        if cached is not None:
            return cached
        info = self._file_days.get(d)
        if info is None:
            arrangement = self._file_years.get(d.year)
            if arrangement is not None:
                info = _ordinary_day(d, arrangement.label)
            else:
                info = self._chinese_calendar_day(d) or self._statutory_day(d)
        self._day_cache[d] = info
        return info

    def year_source(self, year: int) -> YearSource:
        """Which data set a year's days come from (``error`` mode raises for an uncovered year)."""
        arrangement = self._file_years.get(year)
        if arrangement is not None:
            return YearSource(year, arrangement.label, arrangement.source, True)
        if COVERED_YEARS[0] <= year <= COVERED_YEARS[1]:
            version = getattr(chinese_calendar, "__version__", "")
            return YearSource(year, SOURCE_CHINESE_CALENDAR, f"chinese-calendar {version}", True)
        self._statutory_day(date(year, 1, 1))  # raises in error mode, warns once otherwise
        return YearSource(
            year,
            SOURCE_HOLIDAYS_PACKAGE,
            f"holidays {_holidays_package().__version__}",
            False,
            warning=self._fallback_warning(year),
        )

    def days_of_year(self, year: int, *, include_ordinary: bool = False) -> list[CalendarDay]:
        """Holidays and make-up workdays of ``year`` in date order; every day with
        ``include_ordinary``."""
        out: list[CalendarDay] = []
        d = date(year, 1, 1)
        while d.year == year:
            info = self.day(d)
            if include_ordinary or info.kind in (DayKind.HOLIDAY, DayKind.MAKE_UP_WORKDAY):
                out.append(info)
            d += timedelta(days=1)
        return out

    def is_working_day(self, d: date) -> bool:
        """Whether ``d`` is a working day (weekends/holidays off, make-up days on)."""
        if isinstance(d, datetime):
            d = d.astimezone(self.tz).date() if d.tzinfo else d.date()
        return self.day(d).working

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
            if not self.day(d).working:
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
            if not self.day(d).working:
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
            info = self.day(d)
            trace.note_day(info)
            if not info.working:
                trace.days_skipped.append(
                    SkippedDay(d, info.reason or "non-working day", info.source)
                )
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
            if used_today and info.kind is DayKind.MAKE_UP_WORKDAY:
                trace.workdays_made_up.append(MadeUpWorkday(d, info.name, info.source))
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
            holiday_data=trace.holiday_data,
        )
