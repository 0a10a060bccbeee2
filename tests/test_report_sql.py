"""Reports computed by the database (issue 12): the same answers as the pandas path, on
SQLite and PostgreSQL, and working-time deadlines from the working-period table equal
to WorkCalendar.add."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from aftersales.calendar import Unit, WorkCalendar
from aftersales.history import COLUMNS, import_file, load_tickets
from aftersales.policy import load_profile
from aftersales.quality import quality_report
from aftersales.replay import replay_report
from aftersales.report_model import Step, micros
from aftersales.speed import speed_report
from aftersales.working_periods import calendar_key, fill_working_periods, periods_between

DEFAULT = load_profile("default")
WORK = load_profile("work-instruction")
SH = "+08:00"
AS_OF = datetime(2026, 11, 20, tzinfo=UTC)


def iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat()


def row(tid: str, created: datetime, **kw: Any) -> dict[str, str]:
    base = {
        "ticket_id": tid,
        "sop": "inquiry",
        "channel": "online",
        "category": "screen",
        "priority": "normal",
        "created_at": iso(created),
        "first_response_at": "",
        "resolved_at": "",
        "closed_at": "",
        "satisfaction": "",
        "handler": "alice",
        "team": "north",
        "customer_id": "C-1",
    }
    for k, v in kw.items():
        base[k] = iso(v) if isinstance(v, datetime) or v is None else str(v)
    return base


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return path


def local(s: str) -> datetime:
    return datetime.fromisoformat(s + SH)


def edge_rows() -> list[dict[str, str]]:
    """Hand-made edge cases around every boundary of the October 2026 report."""
    us = timedelta(microseconds=1)
    c = local("2026-10-12T10:00:00")  # Monday
    fri = local("2026-10-09T17:30:00")  # Friday; Saturday 10-10 is a make-up working day
    evening = local("2026-10-09T20:00:00")  # Friday evening, after working hours
    return [
        # inquiries: exactly 30 s complies, 1 µs more does not, never answered does not
        row("E-01", c, first_response_at=c + timedelta(seconds=30), satisfaction="9.5"),
        row("E-02", c, first_response_at=c + timedelta(seconds=30) + us, satisfaction="7.3"),
        row("E-03", c, channel="email", priority="urgent", satisfaction="8.55"),
        # repairs: exactly 30 days, 1 µs more, unresolved
        row("E-04", c, sop="repair", resolved_at=c + timedelta(days=30), team="", handler=""),
        row("E-05", c, sop="repair", resolved_at=c + timedelta(days=30) + us, category=""),
        row("E-06", c, sop="repair", priority="urgent", first_response_at=c + timedelta(hours=3)),
        # complaints: answered at 18:00 (a period end); one working day later is the end of
        # the make-up Saturday; resolved exactly then, or 1 µs later
        row(
            "E-07",
            fri,
            sop="complaint",
            first_response_at=fri + timedelta(minutes=30),
            resolved_at=local("2026-10-10T18:00:00"),
            satisfaction="10",
        ),
        row(
            "E-08",
            fri,
            sop="complaint",
            first_response_at=fri + timedelta(minutes=30),
            resolved_at=local("2026-10-10T18:00:00") + us,
        ),
        # answered 70 min after creation (CMP-1 + CMP-2 exactly), at night: CMP-3 counts
        # from Saturday 09:00
        row(
            "E-09",
            evening,
            sop="complaint",
            channel="social",
            first_response_at=evening + timedelta(minutes=70),
            resolved_at=local("2026-10-10T18:00:00"),
            team="south",
            handler="bob",
        ),
        row(
            "E-10",
            evening,
            sop="complaint",
            first_response_at=evening + timedelta(minutes=70) + us,
            resolved_at=evening + timedelta(hours=2),
        ),
        row("E-11", c, sop="complaint", first_response_at=c + timedelta(minutes=5)),  # open
        # month boundaries in Shanghai time
        row("E-12", datetime(2026, 9, 30, 16, 0, tzinfo=UTC), satisfaction="6"),  # Oct 1 00:00
        row("E-13", datetime(2026, 10, 31, 15, 59, 59, 999999, tzinfo=UTC), sop="callback"),
        row("E-14", datetime(2026, 10, 31, 16, 0, tzinfo=UTC), sop="installation"),  # Nov
        # a closed ticket for the speed report; a history row replaced by a live ticket
        row(
            "E-15",
            c,
            channel="phone",
            priority="important",
            first_response_at=c + timedelta(hours=4),
            closed_at=c + timedelta(hours=9, microseconds=1500),
        ),
        row("T-SHADOW", c, sop="repair", resolved_at=c + timedelta(days=40), satisfaction="1"),
    ]


def random_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Tickets over Sep-Nov 2026 (across the National Day holiday) with µs timestamps."""
    rnd = random.Random(seed)
    start = local("2026-09-01T00:00:00")
    out = []
    for i in range(n):
        created = start + timedelta(microseconds=rnd.randrange(90 * 86_400 * 10**6))
        sop = rnd.choice(["inquiry", "inquiry", "repair", "complaint", "callback", "installation"])

        def later(scale: float, created: datetime = created) -> datetime | None:
            if rnd.random() < 0.08:
                return None
            return created + timedelta(microseconds=int(rnd.expovariate(1 / scale) * 10**6))

        first = later(rnd.choice([20, 40, 900, 20_000]))
        resolved = later(rnd.choice([3_600, 80_000, 2_600_000])) if first else None
        if resolved is not None and first is not None and resolved < first:
            resolved = first
        closed = resolved + timedelta(seconds=rnd.randrange(0, 20_000)) if resolved else None
        sat = "" if rnd.random() < 0.4 else f"{rnd.randrange(0, 21) / 2:g}"
        out.append(
            row(
                f"R-{i:05d}",
                created,
                sop=sop,
                channel=rnd.choice(["phone", "online", "email", "social"]),
                priority=rnd.choice(["urgent", "important", "normal"]),
                category=rnd.choice(["screen", "battery", "login", "", "noise"]),
                team=rnd.choice(["north", "south", "east", ""]),
                handler=rnd.choice(["alice", "bob", "carol", "dan", ""]),
                first_response_at=first,
                resolved_at=resolved,
                closed_at=closed,
                satisfaction=sat,
            )
        )
    return out


def add_live_tickets() -> None:
    """Live tickets: one replaces the history row T-SHADOW, one is only live."""
    from models.db import session_scope
    from models.entities import Category, Channel, Priority, Sop, Ticket

    c = local("2026-10-13T09:00:00")
    with session_scope() as s:
        s.add(
            Ticket(
                id="T-SHADOW",
                intake_key="k-shadow",
                sop=Sop.COMPLAINT,
                channel=Channel.EMAIL,
                customer_name="李四",
                contact="13912345678",
                description="late",
                category=Category.B,
                priority=Priority.IMPORTANT,
                created_at=c,
                first_response_at=c + timedelta(minutes=40),
                resolved_at=c + timedelta(hours=5, microseconds=7),
                closed_at=c + timedelta(hours=6),
                owner_team="east",
                handler="carol",
                satisfaction=9,
            )
        )
        s.add(
            Ticket(
                id="T-LIVE",
                intake_key="k-live",
                sop=Sop.INQUIRY,
                channel=Channel.PHONE,
                customer_name="王五",
                contact="13812345678",
                description="question",
                priority=Priority.URGENT,
                created_at=c + timedelta(days=1),
                first_response_at=c + timedelta(days=1, seconds=8),
            )
        )


def work_hours_profile(tmp_path: Path) -> Any:
    """CMP-1/2 in working hours (a chain of working steps), CMP-3 in 1.5 working days."""
    p = tmp_path / "working-cmp.yaml"
    p.write_text(
        "name: working-cmp\nextends: default\nrules:\n"
        "  - {id: CMP-1, duration: 0.5, unit: working_hours}\n"
        "  - {id: CMP-2, duration: 2, unit: working_hours}\n"
        "  - {id: CMP-3, duration: 1.5, unit: working_days}\n",
        encoding="utf-8",
    )
    return load_profile(str(p))


def both_paths(url: str, month: str, profile: Any, tmp_path: Path) -> tuple[dict, dict]:
    db = quality_report(month, profile=profile, url=url, out_dir=tmp_path / "db")
    frame = quality_report(
        month, profile=profile, frame=load_tickets(url=url), out_dir=tmp_path / "frame"
    )
    return db, frame


def strip_files(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "files"}


# ------------------------------------------------------------------ identical answers
def test_quality_database_and_frame_paths_identical_on_edge_cases(
    any_db: str, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "edge.csv", edge_rows())
    res = import_file(path)
    assert res.rejected == 0, res.errors
    add_live_tickets()
    db, frame = both_paths(any_db, "2026-10", DEFAULT, tmp_path)
    assert strip_files(db) == strip_files(frame)
    # hand-checked against the definitions (docs/REPORTS.md §2)
    # E-01 and the live T-LIVE comply; E-02 (1 µs late), E-03, E-12, E-15 do not
    assert db["counts"]["inquiries"] == 6 and db["counts"]["inquiries_compliant"] == 2
    # T-SHADOW's history row (a repair) is replaced by the live complaint
    assert db["counts"]["repairs"] == 3 and db["counts"]["repairs_resolved_in_time"] == 1
    # E-07, E-09 and the live T-SHADOW meet every CMP clock; E-08 (1 µs late), E-10, E-11 do not
    assert db["counts"]["complaints"] == 6 and db["counts"]["complaints_on_time"] == 3
    assert db["tickets"] == 16  # E-12 (Oct 1, 00:00 Shanghai) in, E-14 (Nov) out, 2 live
    assert db["satisfaction_avg"] == pytest.approx((9.5 + 7.3 + 8.55 + 10 + 6 + 9) / 6)
    # the trend file's last month is the report's month
    with open(db["files"]["trend_csv"], encoding="utf-8") as fh:
        trend = list(csv.DictReader(fh))
    assert trend[-1]["month"] == "2026-10" and int(trend[-1]["inquiries"]) == 6
    assert (
        Path(db["files"]["trend_csv"]).read_text() == Path(frame["files"]["trend_csv"]).read_text()
    )


def test_all_reports_identical_on_random_history_both_engines(any_db: str, tmp_path: Path) -> None:
    rows = random_rows(2500, seed=12)
    path = write_csv(tmp_path / "random.csv", rows)
    res = import_file(path, chunk_rows=700)  # several chunks
    assert (res.imported, res.rejected) == (2500, 0), res.errors[:3]
    add_live_tickets()
    frame = load_tickets(url=any_db)
    assert len(frame) == 2502
    working = work_hours_profile(tmp_path)
    for month in ("2026-09", "2026-10", "2026-11"):
        for profile in (DEFAULT, working):
            db = quality_report(month, profile=profile, url=any_db)
            fr = quality_report(month, profile=profile, frame=frame)
            assert db == fr, (month, profile.name)
            assert db["tickets"] > 500
    for months in (1, 3):
        db = speed_report(profile=DEFAULT, end="2026-11", months=months, url=any_db)
        fr = speed_report(profile=DEFAULT, end="2026-11", months=months, frame=frame)
        assert db == fr
        assert db["weekly"] and db["top_categories"]
    cal = WorkCalendar()
    for month in (None, "2026-10"):
        db = replay_report(
            profile_a=DEFAULT, profile_b=WORK, as_of=AS_OF, calendar=cal, month=month, url=any_db
        )
        fr = replay_report(
            profile_a=DEFAULT, profile_b=WORK, as_of=AS_OF, calendar=cal, month=month, frame=frame
        )
        assert db == fr
        assert db["tickets_changed"] > 0 and len(db["examples_changed"]) == 10
    db = replay_report(profile_a=working, profile_b=DEFAULT, as_of=AS_OF, calendar=cal, url=any_db)
    fr = replay_report(profile_a=working, profile_b=DEFAULT, as_of=AS_OF, calendar=cal, frame=frame)
    assert db == fr


def test_cli_database_and_input_file_give_the_same_json(any_db: str, tmp_path: Path) -> None:
    """The command over the stored tickets and over ``--input FILE``, on the same rows."""
    from aftersales.cli import app

    path = write_csv(tmp_path / "random.csv", random_rows(800, seed=3) + edge_rows())
    assert import_file(path).rejected == 0
    runner = CliRunner()
    for args in (
        ["report", "quality", "--month", "2026-10", "--json"],
        ["report", "speed", "--end", "2026-10", "--months", "2", "--json"],
        ["replay", "--profile", "work-instruction", "--as-of", "2026-11-20T00:00:00Z", "--json"],
    ):
        db = runner.invoke(app, args)
        fr = runner.invoke(app, [*args, "--input", str(path)])
        assert db.exit_code == 0 and fr.exit_code == 0, (db.output, fr.output)
        assert json.loads(db.stdout) == json.loads(fr.stdout), args
        assert "files" not in json.loads(db.stdout)  # --json without --out writes no files


# ------------------------------------------------------------------ working periods
@pytest.mark.parametrize("method", ["index", "window"])
def test_working_period_deadlines_equal_work_calendar_add(any_db: str, method: str) -> None:
    """The two SQL lookups of a working-time deadline (index lookups per row, or one sorted
    merge with window aggregates) against WorkCalendar.add, around the National Day
    holiday, the make-up Saturday, period ends and instants outside working time."""
    from sqlalchemy import BigInteger, Column, MetaData, Table, insert

    from aftersales.report_sql import Deadline, Lookups, Staged, WindowLookups, add_deadlines
    from models.db import get_engine

    cal = WorkCalendar()
    engine = get_engine(any_db)
    starts_table = Table("test_starts", MetaData(), Column("c", BigInteger))
    rnd = random.Random(7)
    base = local("2026-09-20T00:00:00")
    starts = {base + timedelta(seconds=rnd.randrange(30 * 86_400)) for _ in range(200)}
    starts |= {
        local("2026-09-30T18:00:00"),  # the end of the last day before the holiday
        local("2026-09-30T17:59:59"),
        local("2026-10-04T12:00:00"),  # inside the holiday
        local("2026-10-09T18:00:00"),
        local("2026-10-10T08:59:59"),  # the make-up Saturday
    }
    with engine.begin() as conn:
        starts_table.create(conn)
        conn.execute(insert(starts_table), [{"c": micros(s)} for s in starts])
        fill_working_periods(conn, cal, date(2026, 9, 1), date(2026, 11, 30))
    cases = [
        (1, Unit.WORKING_DAYS),
        (5, Unit.WORKING_HOURS),
        (0.25, Unit.WORKING_HOURS),
        (3, Unit.WORKING_DAYS),
        (0, Unit.WORKING_HOURS),
    ]
    for amount, unit in cases:
        per = cal.working_day_seconds() if unit == Unit.WORKING_DAYS else 3600
        st = Staged(select(starts_table.c.c).subquery("v0"))
        step = Step(True, round(amount * per * 10**6))
        lookups = (Lookups if method == "index" else WindowLookups)(calendar_key(cal))
        chain = (step, Step(False, 90 * 10**6), step)  # working, natural, working again
        add_deadlines(st, [Deadline("due", "c", (step,)), Deadline("twice", "c", chain)], lookups)
        with engine.connect() as conn:
            got = {r[0]: (r[1], r[2]) for r in conn.execute(select(st.c.c, st.c.due, st.c.twice))}
        for s in starts:
            once = cal.add(s, amount, unit)
            twice = cal.add(once + timedelta(seconds=90), amount, unit)
            assert got[micros(s)] == (micros(once), micros(twice)), (s, amount, unit)


def test_fill_extends_the_range_without_gaps_and_keeps_the_working_time_continuous(
    sqlite_db: str,
) -> None:
    from models.db import get_engine
    from models.history import WorkingCalendar, WorkingPeriod

    cal = WorkCalendar()
    engine = get_engine(sqlite_db)
    with engine.begin() as conn:
        first = fill_working_periods(conn, cal, date(2026, 10, 10), date(2026, 10, 20))
        # Sat 10-10 is a make-up working day (调休); 10-11, 10-17 and 10-18 are off
        assert first.written == 8
        assert (first.first_day, first.last_day) == (date(2026, 10, 10), date(2026, 10, 20))
        again = fill_working_periods(conn, cal, date(2026, 10, 12), date(2026, 10, 18))
        assert again.written == 0
        wider = fill_working_periods(conn, cal, date(2026, 9, 28), date(2026, 11, 3))
        assert (wider.first_day, wider.last_day) == (date(2026, 9, 28), date(2026, 11, 3))
        wp = WorkingPeriod.__table__
        rows = conn.execute(
            select(wp.c.start_us, wp.c.end_us, wp.c.cum_start_us, wp.c.cum_end_us).order_by(
                wp.c.start_us
            )
        ).all()
        days = conn.execute(select(WorkingCalendar.__table__.c.last_day)).scalars().all()
    assert days == [date(2026, 11, 3)]
    want = list(periods_between(cal, date(2026, 9, 28), date(2026, 11, 3)))
    assert [(r[0], r[1]) for r in rows] == [(p.start_us, p.end_us) for p in want]
    for prev, nxt in zip(rows, rows[1:], strict=False):
        assert nxt[2] == prev[3]  # accumulated working time continues across the fills
        assert nxt[3] - nxt[2] == nxt[1] - nxt[0]
    assert not [p for p in want if date(2026, 10, 1) <= p.day <= date(2026, 10, 7)]  # holiday


def test_report_reads_only_and_coverage_is_extended_for_late_answers(
    sqlite_db: str, tmp_path: Path
) -> None:
    """A complaint answered months after the window: the query finds its deadline outside
    the working periods, extends them, and gives the same answer as WorkCalendar."""
    c = local("2026-03-02T10:00:00")
    late = local("2026-08-20T17:00:00")
    path = write_csv(
        tmp_path / "late.csv",
        [
            row(
                "L-1",
                c,
                sop="complaint",
                first_response_at=late,
                resolved_at=late + timedelta(hours=2),
            ),
            row(
                "L-2",
                c,
                sop="complaint",
                first_response_at=c + timedelta(minutes=1),
                resolved_at=c + timedelta(hours=1),
            ),
        ],
    )
    import_file(path)
    from models.db import session_scope

    with session_scope() as s:
        s.execute(text("DELETE FROM working_period"))
        s.execute(text("DELETE FROM working_calendar"))
    got = quality_report("2026-03", profile=DEFAULT, url=sqlite_db)
    # L-1 misses CMP-1 + CMP-2 (months late) whatever CMP-3 says; L-2 meets both
    assert got["counts"]["complaints_on_time"] == 1
    with session_scope() as s:
        last = s.execute(text("SELECT last_day FROM working_calendar")).scalar_one()
    assert str(last) >= "2026-08-21"
