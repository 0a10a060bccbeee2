"""Tests for the working-time calendar engine (aftersales.calendar).

Every expected value was worked out by hand against chinese_calendar 1.11.0:

* 2026-11: no holidays; 2026-11-18 Wed, 11-20 Fri, 11-21 Sat, 11-22 Sun, 11-23 Mon.
* New Year's Day 2026-01-01..01-03 off, Sunday 2026-01-04 a make-up workday.
* Spring Festival 2026-02-15..02-23 off; Saturdays 02-14 and 02-28 make-up workdays.
* Labour Day 2026-05-01..05-05 off; Saturday 05-09 a make-up workday.
* Mid-autumn 2026-09-25..09-27 off; Sunday 09-20 a make-up workday.
* National Day 2026-10-01..10-07 off; Saturday 10-10 a make-up workday,
  Sunday 10-11 an ordinary weekend day.
* The data ends with 2026: 2027 is not covered.

For 2027 the fallback is the ``holidays`` package (0.108), which gives the
statutory days and moves a holiday that falls on a weekend to the next
weekday: New Year 2027-01-01 (Fri); Spring Festival 02-05 (Fri, eve) .. 02-08
(Mon) with 02-09/02-10 (Tue/Wed) for the weekend days; Labour Day 05-01..05-04;
National Day 10-01..10-05.  2028-01-01 is a Saturday, moved to Mon 01-03.
The calendar files written by these tests are made-up arrangements, not the
State Council's.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aftersales.calendar import (
    MAX_SCAN_DAYS,
    SOURCE_CHINESE_CALENDAR,
    SOURCE_HOLIDAYS_PACKAGE,
    CalendarFileError,
    CalendarYearNotCovered,
    DueExplanation,
    HolidayData,
    MadeUpWorkday,
    SkippedDay,
    Unit,
    WorkCalendar,
    load_calendar_file,
    load_calendar_files,
)
from aftersales.settings import Settings

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
LUNCH = [(time(9), time(12)), (time(13), time(18))]


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SH)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN)


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


@pytest.fixture
def strict_cal() -> WorkCalendar:
    return WorkCalendar(unknown_year="error")


@pytest.fixture
def lunch_cal() -> WorkCalendar:
    return WorkCalendar(periods=LUNCH)


# -- basics -------------------------------------------------------------------


def test_default_working_day_is_nine_hours(cal: WorkCalendar) -> None:
    assert cal.working_day_seconds() == 9 * 3600


def test_lunch_break_working_day_is_eight_hours(lunch_cal: WorkCalendar) -> None:
    assert lunch_cal.working_day_seconds() == 8 * 3600


def test_unit_values_are_stable() -> None:
    assert [u.value for u in Unit] == [
        "seconds",
        "minutes",
        "hours",
        "days",
        "working_hours",
        "working_days",
    ]


def test_from_settings_uses_timezone_periods_and_unknown_year_mode() -> None:
    settings = Settings(
        timezone="Europe/Berlin",
        working_hours="08:00-12:00, 13:00-17:30",
        calendar_unknown_year="error",
    )
    c = WorkCalendar.from_settings(settings)
    assert c.tz == BERLIN
    assert c.periods == ((time(8), time(12)), (time(13), time(17, 30)))
    assert c.unknown_year == "error"
    assert c.working_day_seconds() == 8.5 * 3600
    assert c.calendar_files == ()


# -- is_working_day -------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 20), True),  # Friday
        (date(2026, 11, 21), False),  # Saturday
        (date(2026, 11, 22), False),  # Sunday
        (date(2026, 11, 23), True),  # Monday
        (date(2026, 1, 1), False),  # New Year's Day
        (date(2026, 1, 4), True),  # Sunday make-up workday
        (date(2026, 2, 14), True),  # Saturday make-up workday (Spring Festival)
        (date(2026, 2, 16), False),  # Monday in the Spring Festival
        (date(2026, 2, 28), True),  # Saturday make-up workday (Spring Festival)
        (date(2026, 5, 9), True),  # Saturday make-up workday (Labour Day)
        (date(2026, 9, 20), True),  # Sunday make-up workday
        (date(2026, 9, 25), False),  # Friday, Mid-autumn Festival
        (date(2026, 9, 28), True),  # ordinary Monday
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),  # Wednesday, last National Day holiday
        (date(2026, 10, 10), True),  # Saturday make-up workday (National Day)
        (date(2026, 10, 11), False),  # ordinary Sunday
    ],
)
def test_is_working_day_follows_the_chinese_calendar(
    cal: WorkCalendar, day: date, expected: bool
) -> None:
    assert cal.is_working_day(day) is expected


# -- weekends -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        # test_two_working_days_from_wednesday_is_friday
        (sh(2026, 11, 18, 10), 2, Unit.WORKING_DAYS, sh(2026, 11, 20, 10)),
        # one working day from Friday is Monday, same time
        (sh(2026, 11, 20, 10), 1, Unit.WORKING_DAYS, sh(2026, 11, 23, 10)),
        # Friday 17:00 + 3 days: 1 h Fri, 9 h Mon, 9 h Tue, 8 h Wed
        (sh(2026, 11, 20, 17), 3, Unit.WORKING_DAYS, sh(2026, 11, 25, 17)),
        # a whole working week from Monday 09:00 ends Friday 18:00
        (sh(2026, 11, 23, 9), 5, Unit.WORKING_DAYS, sh(2026, 11, 27, 18)),
        # one working hour from Saturday evening is Monday 10:00
        (sh(2026, 11, 21, 20), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 10)),
        # Sunday noon + 1 working day: the whole of Monday
        (sh(2026, 11, 22, 12), 1, Unit.WORKING_DAYS, sh(2026, 11, 23, 18)),
        # Friday 17:30 + 1 working hour: 30 min Fri, 30 min Mon
        (sh(2026, 11, 20, 17, 30), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 9, 30)),
    ],
    ids=[
        "two_working_days_from_wednesday_is_friday",
        "one_working_day_from_friday_is_monday",
        "three_working_days_from_friday_late_afternoon_is_wednesday",
        "five_working_days_from_monday_morning_is_friday_evening",
        "one_working_hour_from_saturday_evening_is_monday_ten",
        "one_working_day_from_sunday_is_monday_evening",
        "one_working_hour_from_friday_1730_spans_the_weekend",
    ],
)
def test_weekends_are_skipped(
    cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    assert cal.add(start, amount, unit) == due


# -- statutory holidays and make-up workdays ------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        # National Day 2026-10-01..07: 8 h on 09-30, 9 h on 10-08, 1 h on 10-09
        (sh(2026, 9, 30, 10), 2, Unit.WORKING_DAYS, sh(2026, 10, 9, 10)),
        (sh(2026, 9, 30, 10), 1, Unit.WORKING_DAYS, sh(2026, 10, 8, 10)),
        (sh(2026, 10, 1, 10), 1, Unit.WORKING_HOURS, sh(2026, 10, 8, 10)),
        # Mid-autumn 2026-09-25..27: Thursday + 1 day is the following Monday
        (sh(2026, 9, 24, 10), 1, Unit.WORKING_DAYS, sh(2026, 9, 28, 10)),
        # Spring Festival 2026-02-15..23 off, Saturday 02-14 worked
        (sh(2026, 2, 13, 10), 2, Unit.WORKING_DAYS, sh(2026, 2, 24, 10)),
        (sh(2026, 2, 15, 10), 1, Unit.WORKING_HOURS, sh(2026, 2, 24, 10)),
        # Labour Day 2026-05-01..05 off
        (sh(2026, 4, 30, 10), 1, Unit.WORKING_DAYS, sh(2026, 5, 6, 10)),
        # New Year 2026-01-01..03 off, Sunday 01-04 is a make-up workday
        (sh(2026, 1, 3, 12), 1, Unit.WORKING_HOURS, sh(2026, 1, 4, 10)),
    ],
    ids=[
        "two_working_days_from_eve_of_national_day",
        "one_working_day_from_eve_of_national_day",
        "one_working_hour_during_national_day_waits_until_october_8",
        "one_working_day_across_mid_autumn_is_monday",
        "two_working_days_across_spring_festival",
        "one_working_hour_during_spring_festival_waits_until_february_24",
        "one_working_day_across_labour_day",
        "new_year_holiday_then_sunday_make_up_workday",
    ],
)
def test_statutory_holidays_are_skipped(
    cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    assert cal.add(start, amount, unit) == due


@pytest.mark.parametrize(
    ("start", "amount", "due", "made_up"),
    [
        # Friday + 1 working day lands on make-up Saturday 2026-02-14
        (sh(2026, 2, 13, 10), 1, sh(2026, 2, 14, 10), [date(2026, 2, 14)]),
        # Friday + 1 working day lands on make-up Saturday 2026-02-28
        (sh(2026, 2, 27, 10), 1, sh(2026, 2, 28, 10), [date(2026, 2, 28)]),
        # Saturday 09-19 is off, Sunday 09-20 is worked in full
        (sh(2026, 9, 19, 10), 1, sh(2026, 9, 20, 18), [date(2026, 9, 20)]),
        # 10-08, 10-09 and make-up Saturday 10-10 in full
        (sh(2026, 10, 8, 9), 3, sh(2026, 10, 10, 18), [date(2026, 10, 10)]),
        # ... and the fourth day skips ordinary Sunday 10-11
        (sh(2026, 10, 8, 9), 4, sh(2026, 10, 12, 18), [date(2026, 10, 10)]),
        # Friday 05-08 + 1 working day lands on make-up Saturday 05-09
        (sh(2026, 5, 8, 10), 1, sh(2026, 5, 9, 10), [date(2026, 5, 9)]),
    ],
    ids=[
        "spring_festival_make_up_saturday_february_14",
        "spring_festival_make_up_saturday_february_28",
        "mid_autumn_make_up_sunday_september_20",
        "national_day_make_up_saturday_october_10",
        "ordinary_sunday_after_make_up_saturday_is_skipped",
        "labour_day_make_up_saturday_may_9",
    ],
)
def test_make_up_workdays_count_as_working_days(
    cal: WorkCalendar, start: datetime, amount: float, due: datetime, made_up: list[date]
) -> None:
    explanation = cal.explain(start, amount, Unit.WORKING_DAYS)
    assert explanation.due == due
    assert [m.date for m in explanation.workdays_made_up] == made_up
    assert {m.source for m in explanation.workdays_made_up} == {SOURCE_CHINESE_CALENDAR}


# -- working-hour edges -----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        (sh(2026, 11, 23, 8), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 10)),
        (sh(2026, 11, 23, 0, 0), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 10)),
        (sh(2026, 11, 23, 9), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 10)),
        (sh(2026, 11, 23, 18), 1, Unit.WORKING_HOURS, sh(2026, 11, 24, 10)),
        (sh(2026, 11, 23, 20), 1, Unit.WORKING_HOURS, sh(2026, 11, 24, 10)),
        (sh(2026, 11, 23, 17, 30), 1, Unit.WORKING_HOURS, sh(2026, 11, 24, 9, 30)),
        (sh(2026, 11, 23, 9), 1, Unit.WORKING_DAYS, sh(2026, 11, 23, 18)),
        (sh(2026, 11, 23, 9), 9, Unit.WORKING_HOURS, sh(2026, 11, 23, 18)),
        (sh(2026, 11, 23, 8), 1, Unit.WORKING_DAYS, sh(2026, 11, 23, 18)),
        (sh(2026, 11, 23, 17), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 18)),
        (sh(2026, 11, 23, 9), 0.5, Unit.WORKING_DAYS, sh(2026, 11, 23, 13, 30)),
        (sh(2026, 11, 23, 9), 1.5, Unit.WORKING_DAYS, sh(2026, 11, 24, 13, 30)),
        (sh(2026, 11, 23, 9), 0.25, Unit.WORKING_HOURS, sh(2026, 11, 23, 9, 15)),
        (sh(2026, 11, 23, 10, 0, 30), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 11, 0, 30)),
    ],
    ids=[
        "start_before_hours_counts_from_nine",
        "start_at_midnight_counts_from_nine",
        "start_exactly_at_nine",
        "start_exactly_at_eighteen_moves_to_next_day",
        "start_after_hours_moves_to_next_day",
        "start_half_an_hour_before_close_carries_over",
        "one_working_day_from_nine_ends_at_eighteen_same_day",
        "nine_working_hours_from_nine_end_exactly_at_period_end",
        "one_working_day_from_before_hours_ends_same_day",
        "last_working_hour_of_the_day_ends_at_eighteen",
        "half_a_working_day",
        "one_and_a_half_working_days",
        "fractional_working_hours",
        "seconds_are_kept",
    ],
)
def test_working_hour_edges(
    cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    assert cal.add(start, amount, unit) == due


@pytest.mark.parametrize(
    "start",
    [sh(2026, 11, 21, 20), sh(2026, 11, 23, 10), sh(2026, 10, 1, 10), sh(2026, 11, 23, 18)],
    ids=["saturday_evening", "inside_hours", "holiday", "at_closing_time"],
)
@pytest.mark.parametrize("unit", [Unit.WORKING_DAYS, Unit.WORKING_HOURS, Unit.HOURS])
def test_zero_amount_leaves_start_unchanged(cal: WorkCalendar, start: datetime, unit: Unit) -> None:
    assert cal.add(start, 0, unit) == start


def test_string_units_are_accepted(cal: WorkCalendar) -> None:
    assert cal.add(sh(2026, 11, 20, 10), 1, "working_days") == sh(2026, 11, 23, 10)
    assert cal.add(sh(2026, 11, 20, 10), 1, " Working_Hours ") == sh(2026, 11, 20, 11)


# -- lunch-break calendar -----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        # 30 min before lunch, 30 min after
        (sh(2026, 11, 23, 11, 30), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 13, 30)),
        # the morning period is consumed exactly: due at 12:00, not 13:00
        (sh(2026, 11, 23, 9), 3, Unit.WORKING_HOURS, sh(2026, 11, 23, 12)),
        # starting during lunch counts from 13:00
        (sh(2026, 11, 23, 12, 30), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 14)),
        # starting exactly at 12:00 counts from 13:00
        (sh(2026, 11, 23, 12), 1, Unit.WORKING_HOURS, sh(2026, 11, 23, 14)),
        # 8 h working day
        (sh(2026, 11, 23, 9), 1, Unit.WORKING_DAYS, sh(2026, 11, 23, 18)),
        # 5 h Monday afternoon + 3 h Tuesday morning, ends at a period end
        (sh(2026, 11, 23, 12), 1, Unit.WORKING_DAYS, sh(2026, 11, 24, 12)),
        # 2 days from Friday 10:00: 7 h Fri, 8 h Mon, 1 h Tue
        (sh(2026, 11, 20, 10), 2, Unit.WORKING_DAYS, sh(2026, 11, 24, 10)),
    ],
    ids=[
        "hour_spanning_lunch",
        "morning_consumed_exactly_ends_at_noon",
        "start_during_lunch",
        "start_exactly_at_lunch",
        "one_working_day_is_eight_hours",
        "one_working_day_from_noon_ends_next_noon",
        "two_working_days_from_friday_over_weekend",
    ],
)
def test_lunch_break_calendar(
    lunch_cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    assert lunch_cal.add(start, amount, unit) == due


def test_lunch_break_periods_used(lunch_cal: WorkCalendar) -> None:
    explanation = lunch_cal.explain(sh(2026, 11, 23, 11), 2, Unit.WORKING_HOURS)
    assert explanation.periods_used == [
        (sh(2026, 11, 23, 11), sh(2026, 11, 23, 12)),
        (sh(2026, 11, 23, 13), sh(2026, 11, 23, 14)),
    ]
    assert explanation.working_seconds == 7200


def test_periods_are_sorted_and_validated() -> None:
    c = WorkCalendar(periods=[(time(13), time(18)), (time(9), time(12))])
    assert c.periods == ((time(9), time(12)), (time(13), time(18)))
    with pytest.raises(ValueError, match="ends before it starts"):
        WorkCalendar(periods=[(time(18), time(9))])
    with pytest.raises(ValueError, match="overlaps"):
        WorkCalendar(periods=[(time(9), time(13)), (time(12), time(18))])
    with pytest.raises(ValueError, match="at least one"):
        WorkCalendar(periods=[])
    with pytest.raises(ValueError, match="unknown_year"):
        WorkCalendar(unknown_year="guess")  # type: ignore[arg-type]


# -- natural units ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        (sh(2026, 11, 21, 23, 45), 30, Unit.MINUTES, sh(2026, 11, 22, 0, 15)),
        (sh(2026, 10, 3, 10), 24, Unit.HOURS, sh(2026, 10, 4, 10)),
        (sh(2026, 11, 21, 20), 2, Unit.HOURS, sh(2026, 11, 21, 22)),
        (sh(2026, 11, 23, 9), 90, Unit.SECONDS, sh(2026, 11, 23, 9, 1, 30)),
        (sh(2026, 2, 13, 10), 7, Unit.DAYS, sh(2026, 2, 20, 10)),
        (sh(2026, 12, 28, 10), 7, Unit.DAYS, sh(2027, 1, 4, 10)),
        # Shanghai has no DST: the last Sunday of March is an ordinary day
        (sh(2026, 3, 28, 12), 1, Unit.DAYS, sh(2026, 3, 29, 12)),
        (sh(2026, 10, 24, 12), 48, Unit.HOURS, sh(2026, 10, 26, 12)),
        (sh(2026, 11, 23, 9), 1.5, Unit.HOURS, sh(2026, 11, 23, 10, 30)),
    ],
    ids=[
        "minutes_cross_midnight",
        "hours_ignore_holidays",
        "hours_ignore_working_hours",
        "seconds",
        "days_ignore_spring_festival",
        "days_cross_into_2027_without_calendar_data",
        "shanghai_day_over_european_dst_change",
        "shanghai_hours_over_european_dst_end",
        "fractional_hours",
    ],
)
def test_natural_units_are_plain_elapsed_time(
    strict_cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    # strict mode: natural units never consult the holiday data
    assert strict_cal.add(start, amount, unit) == due
    assert strict_cal.add(start, amount, unit).utcoffset() == sh(2026, 1, 1).utcoffset()


def test_natural_explain_has_no_working_details(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 10, 1, 10), 2, Unit.HOURS)
    assert explanation.due == sh(2026, 10, 1, 12)
    assert explanation.working_seconds is None
    assert explanation.periods_used == []
    assert explanation.days_skipped == []
    assert explanation.workdays_made_up == []
    assert explanation.fallback_years == []


def test_result_is_in_calendar_timezone_for_utc_start(cal: WorkCalendar) -> None:
    start = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    due = cal.add(start, 1, Unit.WORKING_HOURS)
    assert due == sh(2026, 11, 23, 10)
    assert due.tzinfo == SH
    assert due.isoformat() == "2026-11-23T10:00:00+08:00"
    natural = cal.add(start, 1, Unit.HOURS)
    assert natural.tzinfo == SH
    assert natural.isoformat() == "2026-11-23T10:00:00+08:00"


# -- year boundary 2026 -> 2027 --------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        # 8 h on 12-31; Fri 2027-01-01 New Year's Day (holidays package) and the weekend
        # skipped; 9 h Mon 01-04, 9 h Tue 01-05, 1 h Wed 01-06
        (sh(2026, 12, 31, 10), 3, Unit.WORKING_DAYS, sh(2027, 1, 6, 10)),
        (sh(2026, 12, 31, 10), 1, Unit.WORKING_DAYS, sh(2027, 1, 4, 10)),
        (sh(2026, 12, 31, 18), 1, Unit.WORKING_HOURS, sh(2027, 1, 4, 10)),
        (sh(2027, 1, 1, 10), 1, Unit.WORKING_HOURS, sh(2027, 1, 4, 10)),
        (sh(2027, 1, 2, 10), 1, Unit.WORKING_HOURS, sh(2027, 1, 4, 10)),
    ],
    ids=[
        "three_working_days_from_new_years_eve",
        "one_working_day_from_new_years_eve",
        "one_working_hour_from_new_years_eve_closing",
        "new_years_day_2027_is_a_holiday",
        "saturday_in_2027_is_a_weekend",
    ],
)
@pytest.mark.parametrize("mode", ["statutory", "weekends"])
def test_year_boundary_statutory_fallback(
    mode: str, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    c = WorkCalendar(unknown_year=mode)  # type: ignore[arg-type]
    assert c.unknown_year == "statutory"  # "weekends" is the old name, same meaning
    explanation = c.explain(start, amount, unit)
    assert explanation.due == due
    assert explanation.fallback_years == [2027]


@pytest.mark.parametrize(
    ("day", "working", "kind", "name", "source"),
    [
        (date(2027, 1, 1), False, "holiday", "New Year's Day", SOURCE_HOLIDAYS_PACKAGE),
        (date(2027, 1, 2), False, "weekend", None, "weekend"),
        (date(2027, 1, 4), True, "weekday", None, "weekday"),
        (date(2027, 2, 4), True, "weekday", None, "weekday"),
        (date(2027, 2, 5), False, "holiday", "Chinese New Year's Eve", SOURCE_HOLIDAYS_PACKAGE),
        (
            date(2027, 2, 6),
            False,
            "holiday",
            "Chinese New Year (Spring Festival)",
            SOURCE_HOLIDAYS_PACKAGE,
        ),
        (
            date(2027, 2, 10),
            False,
            "holiday",
            "Chinese New Year (Spring Festival) (observed)",
            SOURCE_HOLIDAYS_PACKAGE,
        ),
        (date(2027, 2, 11), True, "weekday", None, "weekday"),
        # make-up workdays are unknown: a Saturday after the festival stays off
        (date(2027, 2, 13), False, "weekend", None, "weekend"),
        (date(2027, 5, 4), False, "holiday", "Labor Day (observed)", SOURCE_HOLIDAYS_PACKAGE),
        (date(2027, 10, 5), False, "holiday", "National Day (observed)", SOURCE_HOLIDAYS_PACKAGE),
        (date(2027, 10, 6), True, "weekday", None, "weekday"),
        (date(2028, 1, 3), False, "holiday", "New Year's Day (observed)", SOURCE_HOLIDAYS_PACKAGE),
    ],
)
def test_uncovered_year_days_come_from_the_holidays_package(
    cal: WorkCalendar, day: date, working: bool, kind: str, name: str | None, source: str
) -> None:
    info = cal.day(day)
    assert (info.working, info.kind.value, info.name, info.source) == (working, kind, name, source)
    assert info.basis == SOURCE_HOLIDAYS_PACKAGE
    assert cal.is_working_day(day) is working


def test_new_years_day_2027_is_not_a_working_day(cal: WorkCalendar) -> None:
    assert cal.is_working_day(date(2027, 1, 1)) is False
    assert cal.is_working_day(sh(2027, 1, 1, 10)) is False
    assert cal.next_working_instant(sh(2027, 1, 1, 10)) == sh(2027, 1, 4, 9)
    assert cal.working_seconds_between(sh(2026, 12, 31, 17), sh(2027, 1, 4, 10)) == 2 * 3600


def test_working_days_across_the_2027_spring_festival_skip_it(cal: WorkCalendar) -> None:
    # 8 h Thu 02-04, Fri 02-05 .. Wed 02-10 off, 9 h Thu 02-11, 1 h Fri 02-12
    explanation = cal.explain(sh(2027, 2, 4, 10), 2, Unit.WORKING_DAYS)
    assert explanation.due == sh(2027, 2, 12, 10)
    assert [s.date for s in explanation.days_skipped] == [
        date(2027, 2, day) for day in range(5, 11)
    ]
    assert {s.source for s in explanation.days_skipped} == {SOURCE_HOLIDAYS_PACKAGE}
    assert explanation.days_skipped[1] == SkippedDay(
        date(2027, 2, 6), "holiday: Chinese New Year (Spring Festival)", SOURCE_HOLIDAYS_PACKAGE
    )
    assert explanation.fallback_years == [2027]
    assert explanation.workdays_made_up == []
    lines = explanation.lines()
    assert (
        "skipped 2027-02-06 (Sat): holiday: Chinese New Year (Spring Festival) [holidays-package]"
        in lines
    )
    assert any(
        line.startswith("year 2027 is not covered") and "make-up workdays (调休) unknown" in line
        for line in lines
    )


def test_uncovered_year_fallback_logs_one_warning_per_year(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="aftersales.calendar"):
        assert c.add(sh(2026, 12, 31, 10), 3, Unit.WORKING_DAYS) == sh(2027, 1, 6, 10)
        assert c.is_working_day(date(2027, 1, 4)) is True
        assert c.is_working_day(date(2027, 1, 9)) is False
        assert c.is_working_day(date(2027, 6, 7)) is True
        assert c.year_source(2027).make_up_workdays_known is False
    records = [r for r in caplog.records if r.name == "aftersales.calendar"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "2027" in message and "holidays package" in message
    assert "make-up workdays (调休) for 2027 are unknown" in message
    assert "AFTERSALES_CALENDAR_FILES" in message
    assert records[0].levelno == logging.WARNING
    with caplog.at_level(logging.WARNING, logger="aftersales.calendar"):
        assert c.is_working_day(date(2028, 1, 4)) is True  # Tuesday
    records = [r for r in caplog.records if r.name == "aftersales.calendar"]
    assert len(records) == 2
    assert "2028" in records[1].getMessage()
    # per calendar: a second calendar warns again for 2027
    with caplog.at_level(logging.WARNING, logger="aftersales.calendar"):
        WorkCalendar().is_working_day(date(2027, 1, 4))
    records = [r for r in caplog.records if r.name == "aftersales.calendar"]
    assert len(records) == 3


def test_year_boundary_explain_lists_holiday_and_weekend_with_sources(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 12, 31, 10), 3, Unit.WORKING_DAYS)
    assert explanation.days_skipped == [
        (date(2027, 1, 1), "holiday: New Year's Day", SOURCE_HOLIDAYS_PACKAGE),
        (date(2027, 1, 2), "weekend", "weekend"),
        (date(2027, 1, 3), "weekend", "weekend"),
    ]
    assert explanation.holiday_data == [
        HolidayData(2026, SOURCE_CHINESE_CALENDAR),
        HolidayData(2027, SOURCE_HOLIDAYS_PACKAGE),
    ]
    lines = explanation.lines()
    assert "skipped 2027-01-01 (Fri): holiday: New Year's Day [holidays-package]" in lines
    assert "skipped 2027-01-02 (Sat): weekend" in lines
    assert "holiday data for 2026: chinese-calendar" in lines
    assert any("year 2027 is not covered" in line for line in lines)


def test_year_before_coverage_also_falls_back(cal: WorkCalendar) -> None:
    # 2003-12-31 is a Wednesday, 2004-01-01 is New Year's Day in the data
    explanation = cal.explain(sh(2003, 12, 31, 10), 1, Unit.WORKING_DAYS)
    assert explanation.due == sh(2004, 1, 2, 10)
    assert explanation.fallback_years == [2003]
    assert explanation.days_skipped == [
        (date(2004, 1, 1), "holiday: New Year's Day", SOURCE_CHINESE_CALENDAR)
    ]


def test_year_without_any_holiday_data_counts_monday_to_friday(
    cal: WorkCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    # the holidays package computes China's holidays for 1950..2100 only
    with caplog.at_level(logging.WARNING, logger="aftersales.calendar"):
        assert cal.is_working_day(date(2101, 1, 3)) is True  # Monday
        assert cal.is_working_day(date(2101, 1, 1)) is False  # Saturday
    assert cal.days_of_year(2101) == []
    (record,) = [r for r in caplog.records if r.name == "aftersales.calendar"]
    assert "no China holidays for 2101 either" in record.getMessage()


@pytest.mark.parametrize(
    ("start", "amount", "unit"),
    [
        (sh(2026, 12, 31, 10), 3, Unit.WORKING_DAYS),
        (sh(2026, 12, 31, 10), 1, Unit.WORKING_DAYS),
        (sh(2026, 12, 31, 18), 1, Unit.WORKING_HOURS),
        (sh(2027, 3, 1, 10), 1, Unit.WORKING_HOURS),
    ],
    ids=[
        "three_working_days_from_new_years_eve",
        "one_working_day_from_new_years_eve",
        "one_working_hour_from_new_years_eve_closing",
        "start_inside_2027",
    ],
)
def test_year_boundary_error_mode_raises(
    strict_cal: WorkCalendar, start: datetime, amount: float, unit: Unit
) -> None:
    with pytest.raises(CalendarYearNotCovered) as info:
        strict_cal.add(start, amount, unit)
    message = str(info.value)
    assert "2027" in message
    assert "2004..2026" in message
    assert "AFTERSALES_CALENDAR_UNKNOWN_YEAR" in message
    assert info.value.year == 2027
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due"),
    [
        (sh(2026, 12, 31, 10), 1, Unit.WORKING_HOURS, sh(2026, 12, 31, 11)),
        # the last working day of 2026 is consumed exactly: 2027 is never consulted
        (sh(2026, 12, 31, 9), 1, Unit.WORKING_DAYS, sh(2026, 12, 31, 18)),
    ],
    ids=["one_working_hour_inside_2026", "new_years_eve_consumed_exactly"],
)
def test_year_boundary_error_mode_allows_deadlines_inside_2026(
    strict_cal: WorkCalendar, start: datetime, amount: float, unit: Unit, due: datetime
) -> None:
    assert strict_cal.add(start, amount, unit) == due


def test_is_working_day_error_mode_raises_for_2027(strict_cal: WorkCalendar) -> None:
    with pytest.raises(CalendarYearNotCovered, match="2027"):
        strict_cal.is_working_day(date(2027, 1, 4))
    assert strict_cal.is_working_day(date(2026, 12, 31)) is True


def test_working_seconds_between_error_mode_raises_across_2027(
    strict_cal: WorkCalendar,
) -> None:
    with pytest.raises(CalendarYearNotCovered):
        strict_cal.working_seconds_between(sh(2026, 12, 31, 10), sh(2027, 1, 4, 10))


# -- working_seconds_between ------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "seconds"),
    [
        (sh(2026, 11, 23, 10), sh(2026, 11, 23, 12, 30), 9000),
        (sh(2026, 11, 23, 9), sh(2026, 11, 23, 9), 0),
        (sh(2026, 11, 23, 12), sh(2026, 11, 23, 10), 0),
        (sh(2026, 11, 23, 7), sh(2026, 11, 23, 20), 9 * 3600),
        # across a weekend: 1 h Friday, 1 h Monday
        (sh(2026, 11, 20, 17), sh(2026, 11, 23, 10), 7200),
        # across National Day: 1 h on 09-30, 1 h on 10-08
        (sh(2026, 9, 30, 17), sh(2026, 10, 8, 10), 7200),
        # across the Spring Festival including make-up Saturday 02-14
        (sh(2026, 2, 13, 17), sh(2026, 2, 24, 10), 1 * 3600 + 9 * 3600 + 1 * 3600),
        # a whole ordinary week Monday 00:00 .. next Monday 00:00
        (sh(2026, 11, 16), sh(2026, 11, 23), 5 * 9 * 3600),
        # the National Day week: 09-28..09-30 worked, 10-01..10-04 off
        (sh(2026, 9, 28), sh(2026, 10, 5), 3 * 9 * 3600),
        # entirely inside a holiday
        (sh(2026, 10, 2, 10), sh(2026, 10, 6, 10), 0),
        # end exactly at opening time is excluded ([a, b))
        (sh(2026, 11, 20, 18), sh(2026, 11, 23, 9), 0),
        # mixed time zones: 01:00 UTC is 09:00 Shanghai
        (datetime(2026, 11, 23, 1, tzinfo=UTC), sh(2026, 11, 23, 11), 7200),
    ],
    ids=[
        "inside_one_period",
        "empty_interval",
        "reversed_interval",
        "whole_day_from_before_to_after_hours",
        "across_a_weekend",
        "across_national_day",
        "across_spring_festival_with_make_up_saturday",
        "whole_ordinary_week",
        "national_day_week",
        "inside_a_holiday",
        "ends_at_opening_time",
        "mixed_timezones",
    ],
)
def test_working_seconds_between(
    cal: WorkCalendar, a: datetime, b: datetime, seconds: float
) -> None:
    assert cal.working_seconds_between(a, b) == seconds


def test_working_seconds_between_lunch_calendar(lunch_cal: WorkCalendar) -> None:
    assert lunch_cal.working_seconds_between(sh(2026, 11, 23, 11), sh(2026, 11, 23, 14)) == 7200


@pytest.mark.parametrize(
    ("start", "hours"),
    [
        (sh(2026, 9, 30, 10), 20),
        (sh(2026, 2, 13, 16, 45), 13.5),
        (sh(2026, 11, 21, 3), 27),
        (sh(2026, 12, 30, 17), 12),
    ],
)
def test_working_seconds_between_inverts_add(
    cal: WorkCalendar, start: datetime, hours: float
) -> None:
    due = cal.add(start, hours, Unit.WORKING_HOURS)
    assert cal.working_seconds_between(start, due) == hours * 3600


# -- next_working_instant ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (sh(2026, 11, 23, 10), sh(2026, 11, 23, 10)),
        (sh(2026, 11, 23, 9), sh(2026, 11, 23, 9)),
        (sh(2026, 11, 23, 8), sh(2026, 11, 23, 9)),
        (sh(2026, 11, 23, 18), sh(2026, 11, 24, 9)),
        (sh(2026, 11, 23, 17, 59, 59), sh(2026, 11, 23, 17, 59, 59)),
        (sh(2026, 11, 21, 20), sh(2026, 11, 23, 9)),
        (sh(2026, 10, 1, 10), sh(2026, 10, 8, 9)),
        (sh(2026, 2, 13, 19), sh(2026, 2, 14, 9)),
        (sh(2026, 10, 10, 19), sh(2026, 10, 12, 9)),
    ],
    ids=[
        "inside_hours_is_itself",
        "exactly_at_opening_is_itself",
        "before_opening",
        "exactly_at_closing_moves_to_next_day",
        "last_second_of_the_day",
        "saturday_evening",
        "national_day",
        "friday_evening_before_make_up_saturday",
        "make_up_saturday_evening_skips_sunday",
    ],
)
def test_next_working_instant(cal: WorkCalendar, t: datetime, expected: datetime) -> None:
    assert cal.next_working_instant(t) == expected


def test_next_working_instant_lunch_break(lunch_cal: WorkCalendar) -> None:
    assert lunch_cal.next_working_instant(sh(2026, 11, 23, 12)) == sh(2026, 11, 23, 13)
    assert lunch_cal.next_working_instant(sh(2026, 11, 23, 12, 30)) == sh(2026, 11, 23, 13)
    assert lunch_cal.next_working_instant(sh(2026, 11, 23, 11, 59)) == sh(2026, 11, 23, 11, 59)


# -- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize("unit", list(Unit))
def test_naive_datetime_rejected(cal: WorkCalendar, unit: Unit) -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        cal.add(datetime(2026, 11, 23, 10), 1, unit)


def test_naive_datetime_rejected_by_other_methods(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.next_working_instant(datetime(2026, 11, 23, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.working_seconds_between(datetime(2026, 11, 23, 10), sh(2026, 11, 23, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.explain(datetime(2026, 11, 23, 10), 1, Unit.WORKING_DAYS)


@pytest.mark.parametrize(
    ("amount", "unit"),
    [(-1, Unit.WORKING_DAYS), (-0.5, Unit.WORKING_HOURS), (-1, Unit.HOURS), (-30, Unit.MINUTES)],
)
def test_negative_amount_rejected(cal: WorkCalendar, amount: float, unit: Unit) -> None:
    with pytest.raises(ValueError, match=f">= 0, got {amount}"):
        cal.add(sh(2026, 11, 23, 10), amount, unit)


@pytest.mark.parametrize("amount", [float("nan"), float("inf")])
def test_non_finite_amount_rejected(cal: WorkCalendar, amount: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        cal.add(sh(2026, 11, 23, 10), amount, Unit.WORKING_HOURS)


def test_unknown_unit_rejected(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="unknown time unit 'fortnights'"):
        cal.add(sh(2026, 11, 23, 10), 1, "fortnights")


def test_runaway_amount_hits_scan_cap(cal: WorkCalendar) -> None:
    # 3000 working days need more than 3660 calendar days
    with pytest.raises(ValueError, match=f"more than {MAX_SCAN_DAYS} calendar days"):
        cal.add(sh(2026, 11, 23, 10), 3000, Unit.WORKING_DAYS)


# -- explain / to_dict -------------------------------------------------------------------------


def test_explain_lists_national_day_holidays(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 9, 30, 10), 2, Unit.WORKING_DAYS)
    assert explanation.start == sh(2026, 9, 30, 10)
    assert explanation.due == sh(2026, 10, 9, 10)
    assert explanation.amount == 2.0
    assert explanation.unit is Unit.WORKING_DAYS
    assert explanation.working_seconds == 18 * 3600
    assert explanation.days_skipped == [
        (date(2026, 10, day), "holiday: National Day", SOURCE_CHINESE_CALENDAR)
        for day in range(1, 8)
    ]
    assert explanation.workdays_made_up == []
    assert explanation.fallback_years == []
    assert explanation.holiday_data == [HolidayData(2026, SOURCE_CHINESE_CALENDAR)]
    assert explanation.periods_used == [
        (sh(2026, 9, 30, 10), sh(2026, 9, 30, 18)),
        (sh(2026, 10, 8, 9), sh(2026, 10, 8, 18)),
        (sh(2026, 10, 9, 9), sh(2026, 10, 9, 10)),
    ]
    lines = explanation.lines()
    assert lines[0] == "start: 2026-09-30T10:00:00+08:00 (Wed)"
    assert lines[1] == "add 2 working days = 18 h of working time"
    assert "skipped 2026-10-01 (Thu): holiday: National Day [chinese-calendar]" in lines
    assert "skipped 2026-10-07 (Wed): holiday: National Day [chinese-calendar]" in lines
    assert "holiday data for 2026: chinese-calendar" in lines
    assert "worked 2026-10-08 09:00:00-18:00:00 (9 h)" in lines
    assert lines[-1] == "due: 2026-10-09T10:00:00+08:00 (Fri)"


def test_explain_lists_spring_festival_and_make_up_workday(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 2, 13, 10), 2, Unit.WORKING_DAYS)
    assert explanation.due == sh(2026, 2, 24, 10)
    assert explanation.days_skipped == [
        (date(2026, 2, day), "holiday: Spring Festival", SOURCE_CHINESE_CALENDAR)
        for day in range(15, 24)
    ]
    assert explanation.workdays_made_up == [
        MadeUpWorkday(date(2026, 2, 14), "Spring Festival", SOURCE_CHINESE_CALENDAR)
    ]
    lines = explanation.lines()
    assert (
        "counted 2026-02-14 (Sat) as a make-up workday (调休) for Spring Festival "
        "[chinese-calendar]" in lines
    )
    assert "skipped 2026-02-16 (Mon): holiday: Spring Festival [chinese-calendar]" in lines


def test_explain_distinguishes_weekend_from_holiday(cal: WorkCalendar) -> None:
    # 10-10 is a make-up Saturday, 10-11 an ordinary Sunday
    explanation = cal.explain(sh(2026, 10, 9, 10), 2, Unit.WORKING_DAYS)
    assert explanation.due == sh(2026, 10, 12, 10)
    assert explanation.days_skipped == [(date(2026, 10, 11), "weekend", "weekend")]
    assert [m.date for m in explanation.workdays_made_up] == [date(2026, 10, 10)]
    # Mid-autumn: Friday is a holiday, the weekend days are part of it
    explanation = cal.explain(sh(2026, 9, 24, 10), 1, Unit.WORKING_DAYS)
    assert explanation.days_skipped == [
        (date(2026, 9, 25), "holiday: Mid-autumn Festival", SOURCE_CHINESE_CALENDAR),
        (date(2026, 9, 26), "holiday: Mid-autumn Festival", SOURCE_CHINESE_CALENDAR),
        (date(2026, 9, 27), "holiday: Mid-autumn Festival", SOURCE_CHINESE_CALENDAR),
    ]


def test_explain_ordinary_weekend(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 11, 20, 10), 1, Unit.WORKING_DAYS)
    assert explanation.days_skipped == [
        (date(2026, 11, 21), "weekend", "weekend"),
        (date(2026, 11, 22), "weekend", "weekend"),
    ]
    assert explanation.periods_used == [
        (sh(2026, 11, 20, 10), sh(2026, 11, 20, 18)),
        (sh(2026, 11, 23, 9), sh(2026, 11, 23, 10)),
    ]


def test_explain_zero_amount(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 11, 21, 20), 0, Unit.WORKING_DAYS)
    assert explanation.due == sh(2026, 11, 21, 20)
    assert explanation.working_seconds == 0.0
    assert explanation.periods_used == []
    assert explanation.days_skipped == []


def test_to_dict_uses_iso_strings_with_shanghai_offset(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 10, 9, 17), 2, Unit.WORKING_HOURS)
    data = explanation.to_dict()
    assert data == {
        "start": "2026-10-09T17:00:00+08:00",
        "due": "2026-10-10T10:00:00+08:00",
        "amount": 2.0,
        "unit": "working_hours",
        "working_seconds": 7200.0,
        "periods_used": [
            ["2026-10-09T17:00:00+08:00", "2026-10-09T18:00:00+08:00"],
            ["2026-10-10T09:00:00+08:00", "2026-10-10T10:00:00+08:00"],
        ],
        "days_skipped": [],
        "workdays_made_up": [
            {"date": "2026-10-10", "name": "National Day", "source": "chinese-calendar"}
        ],
        "fallback_years": [],
        "holiday_data": [{"year": 2026, "source": "chinese-calendar"}],
    }
    assert json.loads(json.dumps(data)) == data


def test_to_dict_records_skipped_days_and_fallback_years(cal: WorkCalendar) -> None:
    data = cal.explain(sh(2026, 12, 31, 10), 3, Unit.WORKING_DAYS).to_dict()
    assert data["due"] == "2027-01-06T10:00:00+08:00"
    assert data["days_skipped"] == [
        {"date": "2027-01-01", "reason": "holiday: New Year's Day", "source": "holidays-package"},
        {"date": "2027-01-02", "reason": "weekend", "source": "weekend"},
        {"date": "2027-01-03", "reason": "weekend", "source": "weekend"},
    ]
    assert data["fallback_years"] == [2027]
    assert data["holiday_data"] == [
        {"year": 2026, "source": "chinese-calendar"},
        {"year": 2027, "source": "holidays-package"},
    ]
    assert all(a.endswith("+08:00") and b.endswith("+08:00") for a, b in data["periods_used"])
    json.dumps(data)


def test_explanation_is_frozen(cal: WorkCalendar) -> None:
    explanation = cal.explain(sh(2026, 11, 23, 10), 1, Unit.HOURS)
    assert isinstance(explanation, DueExplanation)
    with pytest.raises(AttributeError):
        explanation.due = sh(2026, 1, 1)  # type: ignore[misc]


# -- non-Shanghai time zone ------------------------------------------------------------------------


@pytest.fixture
def berlin_cal() -> WorkCalendar:
    return WorkCalendar(tz="Europe/Berlin", periods=[(time(8), time(16))])


@pytest.mark.parametrize(
    ("start", "amount", "unit", "due", "iso"),
    [
        # 30 min Monday, 30 min Tuesday, winter time +01:00
        (
            berlin(2026, 11, 23, 15, 30),
            1,
            Unit.WORKING_HOURS,
            berlin(2026, 11, 24, 8, 30),
            "2026-11-24T08:30:00+01:00",
        ),
        # the same instant given in Shanghai time (22:30+08:00 == 15:30+01:00)
        (
            sh(2026, 11, 23, 22, 30),
            1,
            Unit.WORKING_HOURS,
            berlin(2026, 11, 24, 8, 30),
            "2026-11-24T08:30:00+01:00",
        ),
        # across the spring DST change (Sunday 2026-03-29): 4 h Fri CET + 4 h Mon CEST
        (
            berlin(2026, 3, 27, 12),
            1,
            Unit.WORKING_DAYS,
            berlin(2026, 3, 30, 12),
            "2026-03-30T12:00:00+02:00",
        ),
        # natural hours are elapsed time: 24 h over the DST change is 13:00 wall clock
        (
            berlin(2026, 3, 28, 12),
            24,
            Unit.HOURS,
            berlin(2026, 3, 29, 13),
            "2026-03-29T13:00:00+02:00",
        ),
        (
            berlin(2026, 10, 24, 12),
            24,
            Unit.HOURS,
            berlin(2026, 10, 25, 11),
            "2026-10-25T11:00:00+01:00",
        ),
        # Chinese statutory holidays still apply: 09-30 16:00 + 1 h -> 10-08 09:00
        (
            berlin(2026, 9, 30, 15),
            2,
            Unit.WORKING_HOURS,
            berlin(2026, 10, 8, 9),
            "2026-10-08T09:00:00+02:00",
        ),
    ],
    ids=[
        "working_hour_over_night",
        "shanghai_start_converted_to_berlin",
        "working_day_over_spring_dst_change",
        "natural_hours_over_spring_dst_change",
        "natural_hours_over_autumn_dst_change",
        "chinese_holidays_still_apply",
    ],
)
def test_non_shanghai_timezone(
    berlin_cal: WorkCalendar,
    start: datetime,
    amount: float,
    unit: Unit,
    due: datetime,
    iso: str,
) -> None:
    result = berlin_cal.add(start, amount, unit)
    assert result == due
    assert result.isoformat() == iso
    assert result.tzinfo == BERLIN


def test_non_shanghai_working_seconds_over_dst_change(berlin_cal: WorkCalendar) -> None:
    assert berlin_cal.working_day_seconds() == 8 * 3600
    assert (
        berlin_cal.working_seconds_between(berlin(2026, 3, 27, 12), berlin(2026, 3, 30, 12))
        == 8 * 3600
    )


def test_non_shanghai_next_working_instant(berlin_cal: WorkCalendar) -> None:
    # 2026-11-23 07:00 Berlin is before opening; 14:00 Shanghai == 07:00 Berlin
    assert berlin_cal.next_working_instant(sh(2026, 11, 23, 14)) == berlin(2026, 11, 23, 8)


# -- calendar files -----------------------------------------------------------------------------

# A made-up 2027 arrangement (the State Council's real one is not in this repo):
# Spring Festival Fri 02-05 .. Fri 02-12 off, Saturday 02-13 a make-up workday.
CN_2027 = """\
year: 2027
source: test arrangement, not the State Council's
holidays:
  - {date: 2027-01-01, name: New Year's Day}
  - {from: 2027-02-05, to: 2027-02-12, name: Spring Festival}
workdays:
  - {date: 2027-02-13, name: Spring Festival}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cn_2027(tmp_path: Path) -> Path:
    return write(tmp_path, "cn-2027.yaml", CN_2027)


@pytest.mark.parametrize(
    ("day", "working", "kind", "name", "by_file"),
    [
        (date(2027, 1, 1), False, "holiday", "New Year's Day", True),
        (date(2027, 2, 4), True, "weekday", None, False),
        (date(2027, 2, 5), False, "holiday", "Spring Festival", True),
        (date(2027, 2, 11), False, "holiday", "Spring Festival", True),  # package: a weekday
        (date(2027, 2, 12), False, "holiday", "Spring Festival", True),
        (date(2027, 2, 13), True, "make_up_workday", "Spring Festival", True),  # a Saturday
        (date(2027, 2, 14), False, "weekend", None, False),
        # the file is complete for 2027: a day the package calls a holiday but the file
        # does not list is an ordinary day
        (date(2027, 4, 5), True, "weekday", None, False),
        (date(2027, 10, 4), True, "weekday", None, False),
    ],
)
def test_calendar_file_decides_its_year(
    cn_2027: Path, day: date, working: bool, kind: str, name: str | None, by_file: bool
) -> None:
    c = WorkCalendar(calendar_files=[cn_2027])
    info = c.day(day)
    label = f"file:{cn_2027}"
    expected_source = label if by_file else kind
    assert (info.working, info.kind.value, info.name, info.source) == (
        working,
        kind,
        name,
        expected_source,
    )
    assert info.basis == label
    assert c.is_working_day(day) is working


def test_calendar_file_make_up_saturday_is_worked_and_explained(cn_2027: Path) -> None:
    c = WorkCalendar(calendar_files=[cn_2027])
    # 8 h Thu 02-04, 02-05..02-12 off, Saturday 02-13 worked in full, 1 h Mon 02-15
    explanation = c.explain(sh(2027, 2, 4, 10), 2, Unit.WORKING_DAYS)
    label = f"file:{cn_2027}"
    assert explanation.due == sh(2027, 2, 15, 10)
    assert explanation.workdays_made_up == [
        MadeUpWorkday(date(2027, 2, 13), "Spring Festival", label)
    ]
    assert explanation.days_skipped[0] == (date(2027, 2, 5), "holiday: Spring Festival", label)
    assert explanation.days_skipped[-1] == (date(2027, 2, 14), "weekend", "weekend")
    assert explanation.fallback_years == []
    assert explanation.holiday_data == [HolidayData(2027, label)]
    lines = explanation.lines()
    assert f"skipped 2027-02-05 (Fri): holiday: Spring Festival [{label}]" in lines
    assert (
        f"counted 2027-02-13 (Sat) as a make-up workday (调休) for Spring Festival [{label}]"
        in lines
    )
    assert f"holiday data for 2027: {label}" in lines
    assert not any("not covered" in line for line in lines)


def test_calendar_file_year_neither_warns_nor_raises(
    cn_2027: Path, caplog: pytest.LogCaptureFixture
) -> None:
    strict = WorkCalendar(unknown_year="error", calendar_files=[cn_2027])
    with caplog.at_level(logging.WARNING, logger="aftersales.calendar"):
        assert strict.add(sh(2026, 12, 31, 10), 1, Unit.WORKING_DAYS) == sh(2027, 1, 4, 10)
        source = strict.year_source(2027)
    assert [r for r in caplog.records if r.name == "aftersales.calendar"] == []
    assert (source.source, source.reference, source.make_up_workdays_known) == (
        f"file:{cn_2027}",
        "test arrangement, not the State Council's",
        True,
    )
    # "error" still refuses an uncovered year without a file
    with pytest.raises(CalendarYearNotCovered, match="2028"):
        strict.is_working_day(date(2028, 1, 4))


def test_calendar_file_takes_precedence_over_chinese_calendar(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cn-2026.yaml",
        "year: 2026\nsource: test\nholidays:\n  - {date: 2026-11-20, name: Test Day}\n",
    )
    c = WorkCalendar(calendar_files=[path])
    label = f"file:{path}"
    assert c.day(date(2026, 11, 20)).source == label
    assert c.is_working_day(date(2026, 11, 20)) is False
    assert c.is_working_day(date(2026, 10, 1)) is True  # chinese-calendar's National Day
    assert c.is_working_day(date(2026, 10, 10)) is False  # its make-up Saturday
    assert c.day(date(2025, 10, 1)).source == SOURCE_CHINESE_CALENDAR  # other years unchanged
    assert c.add(sh(2026, 11, 19, 10), 1, Unit.WORKING_DAYS) == sh(2026, 11, 23, 10)


def test_shipped_example_file_reproduces_chinese_calendar_2026() -> None:
    example = Path(__file__).parents[1] / "aftersales" / "calendars" / "cn-2026.yaml"
    from_file = WorkCalendar(calendar_files=[example.parent])  # a directory works too
    package = WorkCalendar()
    assert [a.year for a in from_file.arrangements] == [2026]
    compared = 0
    d = date(2026, 1, 1)
    while d.year == 2026:
        a, b = from_file.day(d), package.day(d)
        assert (a.working, a.kind, a.name) == (b.working, b.kind, b.name), d
        compared += 1
        d += timedelta(days=1)
    assert compared == 365
    assert len(from_file.days_of_year(2026)) == len(package.days_of_year(2026)) == 33 + 6


def test_calendar_file_may_list_the_december_before(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cn-2028.yaml",
        "year: 2028\nsource: test\n"
        "holidays:\n  - {from: 2027-12-31, to: 2028-01-03, name: New Year's Day}\n"
        "workdays:\n  - {date: 2027-12-26, name: New Year's Day}\n",
    )
    c = WorkCalendar(calendar_files=[path])
    label = f"file:{path}"
    assert (c.day(date(2027, 12, 31)).working, c.day(date(2027, 12, 31)).source) == (False, label)
    assert (c.day(date(2027, 12, 26)).working, c.day(date(2027, 12, 26)).source) == (True, label)
    assert c.day(date(2027, 12, 30)).source == "weekday"  # the rest of 2027: holidays package
    assert c.day(date(2027, 12, 30)).basis == SOURCE_HOLIDAYS_PACKAGE
    assert [d.date for d in c.days_of_year(2027)][-2:] == [date(2027, 12, 26), date(2027, 12, 31)]


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ("- 1\n- 2\n", "(file)", "must be a mapping with keys year, source, holidays, workdays"),
        ("year: 2027\nsource: x\nholidays: []\n", "holidays", "must list at least one holiday"),
        ("source: x\nholidays:\n  - {date: 2027-01-01, name: A}\n", "year", "required"),
        ('year: "2027"\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n', "year",
         "must be an integer year"),
        ("year: 1900\nsource: x\nholidays:\n  - {date: 1900-01-01, name: A}\n", "year",
         "must be between 1950 and 2100"),
        ("year: 2027\nholidays:\n  - {date: 2027-01-01, name: A}\n", "source",
         "required: the State Council notice"),
        ("year: 2027\nsource: ' '\nholidays:\n  - {date: 2027-01-01, name: A}\n", "source",
         "must be a non-empty string"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\nnotes: hi\n",
         "notes", "unknown field; allowed: year, source, holidays, workdays"),
        ("year: 2027\nsource: x\nholidays: {date: 2027-01-01}\n", "holidays", "must be a list"),
        ("year: 2027\nsource: x\nholidays:\n  - 2027-01-01\n", "holidays[0]",
         "must be a mapping {date or from/to, name}"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01}\n", "holidays[0].name",
         "required: the holiday's name"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: ''}\n",
         "holidays[0].name", "must be a non-empty string"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A, note: x}\n",
         "holidays[0].note", "unknown field; allowed: date, from, to, name"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 01/02/2027, name: A}\n",
         "holidays[0].date", "must be a date YYYY-MM-DD"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: '2027-02-30', name: A}\n",
         "holidays[0].date", "is not a valid date"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01 10:00:00, name: A}\n",
         "holidays[0].date", "without a time"),
        ("year: 2027\nsource: x\nholidays:\n  - {name: A}\n", "holidays[0]",
         "needs date, or from and to"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-02-05, from: 2027-02-05, "
         "to: 2027-02-06, name: A}\n", "holidays[0]", "give either date or from/to, not both"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-02-05, name: A}\n",
         "holidays[0].to", "required: a range needs both from and to"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-02-06, to: 2027-02-05, name: A}\n",
         "holidays[0].to", "must not be before from (2027-02-06)"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-02-01, to: 2027-03-10, name: A}\n",
         "holidays[0].to", "a holiday range spans at most 31 days, got 38"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2028-01-01, name: A}\n",
         "holidays[0].date", "date outside the year: 2028-01-01 is not in 2027"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2026-11-30, name: A}\n",
         "holidays[0].date", "date outside the year: 2026-11-30 is not in 2027"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-12-30, to: 2028-01-02, name: A}\n",
         "holidays[0].to", "date outside the year"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "workdays:\n  - {date: 2027-02-10, name: A}\n", "workdays[0].date",
         "a make-up workday must fall on a weekend (2027-02-10 is a Wednesday)"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "workdays:\n  - {name: A}\n", "workdays[0].date", "required: the make-up workday's date"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "workdays:\n  - {date: 2028-01-08, name: A}\n", "workdays[0].date",
         "date outside the year"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "workdays:\n  - {date: 2027-01-09, name: A, hours: 4}\n", "workdays[0].hours",
         "unknown field; allowed: date, name"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "  - {date: 2027-01-01, name: B}\n", "holidays[1]",
         "duplicate date: 2027-01-01 is already listed in holidays[0]"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-02-05, to: 2027-02-10, name: A}\n"
         "  - {from: 2027-02-10, to: 2027-02-12, name: A}\n", "holidays[1]",
         "duplicate date: 2027-02-10 is already listed in holidays[0]"),
        ("year: 2027\nsource: x\nholidays:\n  - {date: 2027-01-01, name: A}\n"
         "workdays:\n  - {date: 2027-01-09, name: A}\n  - {date: 2027-01-09, name: A}\n",
         "workdays[1].date", "duplicate date: 2027-01-09 is already listed in workdays[0]"),
        ("year: 2027\nsource: x\nholidays:\n  - {from: 2027-02-05, to: 2027-02-07, name: A}\n"
         "workdays:\n  - {date: 2027-02-06, name: A}\n", "workdays[0].date",
         "2027-02-06 is both a holiday (holidays[0]) and a make-up workday"),
        ("year: 2027\nsource: x\nholidays: [\n", "(file)", "is not valid YAML at line"),
    ],
)  # fmt: skip
def test_calendar_file_errors_name_file_field_and_rule(
    tmp_path: Path, text: str, field: str, rule: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(CalendarFileError) as info:
        WorkCalendar(calendar_files=[path])
    err = info.value
    assert err.path == path.absolute()
    assert any(f == field and rule in r for f, r in err.errors), err.errors
    assert str(path.absolute()) in str(err)
    assert f"{field}: " in str(err) and rule in str(err)
    assert isinstance(err, ValueError)


def test_calendar_file_reports_every_error_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "year: 2027\nholidays:\n  - {date: 2028-01-01, name: A}\n"
        "workdays:\n  - {date: 2027-02-10, name: B}\n",
    )
    with pytest.raises(CalendarFileError) as info:
        load_calendar_file(path)
    assert [f for f, _ in info.value.errors] == ["source", "holidays[0].date", "workdays[0].date"]
    assert "3 errors" in str(info.value)


def test_calendar_files_across_files(tmp_path: Path, cn_2027: Path) -> None:
    other = tmp_path / "more"
    other.mkdir()
    twin = write(other, "again-2027.yaml", CN_2027)
    with pytest.raises(CalendarFileError) as info:
        load_calendar_files([cn_2027, other])
    assert info.value.path == twin.absolute()
    assert info.value.errors == (
        ("year", f"year 2027 is already given by {cn_2027.absolute()}; one file per year"),
    )
    overlap = write(
        other,
        "again-2027.yaml",
        "year: 2028\nsource: x\nholidays:\n  - {date: 2028-01-03, name: A}\n"
        "  - {date: 2027-12-31, name: A}\n",
    )
    write(tmp_path, "cn-2027.yaml", CN_2027.replace("2027-01-01", "2027-12-31"))
    with pytest.raises(CalendarFileError) as info:
        load_calendar_files([cn_2027, other])
    assert info.value.path == overlap.absolute()
    assert info.value.errors[0][0] == "holidays[1]"
    assert "2027-12-31 is also listed in" in info.value.errors[0][1]
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CalendarFileError, match="nope.yaml: \\(file\\): does not exist"):
        load_calendar_files([missing])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_calendar_files([empty]) == ()


def test_unknown_year_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="'statutory' \\(alias 'weekends'\\) or 'error'"):
        WorkCalendar(unknown_year="monday-friday")  # type: ignore[arg-type]


def test_calendar_files_setting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, cn_2027: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("AFTERSALES_CALENDAR_FILES", f"{cn_2027}, {tmp_path / 'empty'}")
    (tmp_path / "empty").mkdir()
    settings = Settings()
    assert settings.calendar_files == [cn_2027, tmp_path / "empty"]
    assert settings.calendar_unknown_year == "statutory"
    c = WorkCalendar.from_settings(settings)
    assert [a.path for a in c.arrangements] == [cn_2027.absolute()]
    assert c.is_working_day(date(2027, 2, 13)) is True
    monkeypatch.setenv("AFTERSALES_CALENDAR_UNKNOWN_YEAR", "weekends")
    assert WorkCalendar.from_settings(Settings()).unknown_year == "statutory"


def test_year_source_names_the_data_set(cal: WorkCalendar) -> None:
    assert cal.year_source(2026).source == SOURCE_CHINESE_CALENDAR
    assert cal.year_source(2026).make_up_workdays_known is True
    fallback = cal.year_source(2027)
    assert fallback.source == SOURCE_HOLIDAYS_PACKAGE
    assert fallback.make_up_workdays_known is False
    assert fallback.reference.startswith("holidays ")
    assert fallback.warning is not None and "make-up workdays (调休) for 2027" in fallback.warning
