"""The working periods of a :class:`WorkCalendar` as table rows (issue 12).

Working-time deadlines (``N working_days`` / ``working_hours``, e.g. CMP-3) are
computed in the report queries by joining ``working_period`` instead of calling
:meth:`WorkCalendar.add` per ticket. Each row is one working period of one
calendar in UTC microseconds, with the working time accumulated before it
(``cum_start_us``) and after it (``cum_end_us``). Then, for a start instant
``t`` and an amount of ``N`` working microseconds:

* ``pos(t)`` = working time before ``t``: take the last period ``p`` with
  ``p.start_us <= t``; ``pos = p.cum_start_us + min(t - p.start_us, p.end_us - p.start_us)``;
* the due instant is in the first period ``q`` with ``q.cum_end_us >= pos + N``:
  ``q.start_us + (pos + N - q.cum_start_us)``, and never before ``t``.

That is :meth:`WorkCalendar.add` exactly (a start outside working time counts
from the next period; a due time exactly at a period end stays there), and the
same arithmetic :class:`aftersales.quality.VectorCalendar` does on arrays built
from :func:`periods_between` below.

The periods come only from the calendar's public API (``is_working_day``,
``periods``, ``tz``). :func:`calendar_key` names a calendar by everything its
periods depend on (``repr`` of the calendar: zone, periods, unknown-year mode;
and the holiday data version), so a changed ``AFTERSALES_WORKING_HOURS`` or
holiday package gets fresh rows instead of stale ones. ``working_calendar``
records the local days covered for each key; :func:`fill_working_periods`
extends that range (before or after) without gaps, keeping the accumulated
working time continuous.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from aftersales.calendar import WorkCalendar
from models.history import WorkingCalendar, WorkingPeriod, to_micros

__all__ = ["Coverage", "Period", "calendar_key", "fill_working_periods", "periods_between"]


@dataclass(frozen=True)
class Period:
    """One working period in UTC microseconds (``day`` is the local date)."""

    day: date
    start_us: int
    end_us: int

    @property
    def length_us(self) -> int:
        return self.end_us - self.start_us


@dataclass(frozen=True)
class Coverage:
    key: str
    first_day: date
    last_day: date
    written: int  # periods written by this call


def calendar_key(calendar: WorkCalendar) -> str:
    """A short stable name for everything the calendar's periods depend on."""
    import chinese_calendar

    version = getattr(chinese_calendar, "__version__", "unknown")
    text = f"{calendar!r}; chinese_calendar {version}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def periods_between(calendar: WorkCalendar, first: date, last: date) -> Iterator[Period]:
    """The working periods of the local days ``first..last`` (inclusive), in order."""
    d = first
    one = timedelta(days=1)
    while d <= last:
        if calendar.is_working_day(d):
            for s, e in calendar.periods:
                yield Period(
                    d,
                    to_micros(datetime.combine(d, s, tzinfo=calendar.tz)),
                    to_micros(datetime.combine(d, e, tzinfo=calendar.tz)),
                )
        d += one


def _rows(key: str, periods: list[Period], cum_start: int) -> list[dict[str, object]]:
    rows = []
    cum = cum_start
    for p in periods:
        rows.append(
            {
                "calendar_key": key,
                "start_us": p.start_us,
                "end_us": p.end_us,
                "cum_start_us": cum,
                "cum_end_us": cum + p.length_us,
                "day": p.day,
            }
        )
        cum += p.length_us
    return rows


def fill_working_periods(
    conn: Connection, calendar: WorkCalendar, first: date, last: date
) -> Coverage:
    """Make ``working_period`` cover the local days ``first..last`` for ``calendar``.

    Writes only the missing days (before and/or after the covered range; a gap
    between is filled too, as the range is kept contiguous). The caller owns the
    transaction. Returns the covered range after the call.
    """
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    key = calendar_key(calendar)
    wc = WorkingCalendar.__table__
    wp = WorkingPeriod.__table__
    row = conn.execute(select(wc.c.first_day, wc.c.last_day).where(wc.c.key == key)).first()
    written = 0
    if row is None:
        periods = list(periods_between(calendar, first, last))
        conn.execute(
            insert(wc),
            [
                {
                    "key": key,
                    "description": repr(calendar)[:500],
                    "first_day": first,
                    "last_day": last,
                }
            ],
        )
        if periods:
            conn.execute(insert(wp), _rows(key, periods, 0))
        return Coverage(key, first, last, len(periods))
    have_first, have_last = row
    if first < have_first:
        before = list(periods_between(calendar, first, have_first - timedelta(days=1)))
        if before:
            head = conn.execute(
                select(wp.c.cum_start_us)
                .where(wp.c.calendar_key == key)
                .order_by(wp.c.start_us)
                .limit(1)
            ).scalar()
            end = 0 if head is None else int(head)
            conn.execute(insert(wp), _rows(key, before, end - sum(p.length_us for p in before)))
            written += len(before)
        have_first = first
    if last > have_last:
        after = list(periods_between(calendar, have_last + timedelta(days=1), last))
        if after:
            tail = conn.execute(
                select(wp.c.cum_end_us)
                .where(wp.c.calendar_key == key)
                .order_by(wp.c.start_us.desc())
                .limit(1)
            ).scalar()
            conn.execute(insert(wp), _rows(key, after, 0 if tail is None else int(tail)))
            written += len(after)
        have_last = last
    if (have_first, have_last) != (row[0], row[1]):
        conn.execute(
            update(wc).where(wc.c.key == key).values(first_day=have_first, last_day=have_last)
        )
    return Coverage(key, have_first, have_last, written)
