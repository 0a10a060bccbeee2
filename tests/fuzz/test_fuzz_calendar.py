"""Calendar properties (issue 11 §8): the due time is never before the start; it is
monotonic in the start; a working-time deadline lands inside a working period of a
working day; ``explain`` agrees with ``add`` and with ``working_seconds_between``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from aftersales.calendar import Unit, WorkCalendar

CAL = WorkCalendar()
starts = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31),
    timezones=st.sampled_from([UTC, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]),
)  # fmt: skip
units = st.sampled_from(list(Unit))
amounts = st.one_of(st.integers(0, 40), st.floats(0, 40, allow_nan=False))


@given(start=starts, amount=amounts, unit=units)
def test_due_is_never_before_start_and_explain_agrees(
    start: datetime, amount: float, unit: Unit
) -> None:
    ex = CAL.explain(start, amount, unit)
    assert ex.due >= start
    assert ex.due == CAL.add(start, amount, unit)
    if not unit.is_working:
        return
    per = 3600.0 if unit is Unit.WORKING_HOURS else CAL.working_day_seconds()
    assert abs(ex.working_seconds - amount * per) < 1e-3
    used = sum((b - a).total_seconds() for a, b in ex.periods_used)
    assert abs(used - ex.working_seconds) < 1e-3
    assert abs(CAL.working_seconds_between(start, ex.due) - ex.working_seconds) < 1e-3
    if amount > 0:  # lands in a working period of a working day (its end included)
        local = ex.due.astimezone(CAL.tz)
        assert CAL.is_working_day(local.date()), ex.lines()
        assert any(s <= local.time() <= e for s, e in CAL.periods) or any(
            local.time() == e for _, e in CAL.periods
        ), ex.lines()
    for a, b in ex.periods_used:
        assert CAL.is_working_day(a.date()) and a <= b


@given(start=starts, later=st.timedeltas(timedelta(0), timedelta(days=20)), amount=amounts,
       unit=units)  # fmt: skip
def test_due_is_monotonic_in_start(
    start: datetime, later: timedelta, amount: float, unit: Unit
) -> None:
    assert CAL.add(start, amount, unit) <= CAL.add(start + later, amount, unit)


@given(start=starts, a=amounts, b=amounts, unit=units)
def test_due_is_monotonic_in_amount(start: datetime, a: float, b: float, unit: Unit) -> None:
    lo, hi = sorted((a, b))
    assert CAL.add(start, lo, unit) <= CAL.add(start, hi, unit)
