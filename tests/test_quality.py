"""Monthly quality evaluation (issue 3 §2, spec §7 QA-1..4) against hand-computed tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aftersales.calendar import Unit, WorkCalendar
from aftersales.history import FRAME_COLUMNS, _finish
from aftersales.policy import load_profile
from aftersales.quality import (
    VectorCalendar,
    compute_quality,
    month_bounds,
    monthly_trend,
    previous_month,
    quality_report,
)

DATA = Path(__file__).parent / "data"
PROFILE = load_profile("default")
SH = "+08:00"


def ts(s: str | None) -> pd.Timestamp | None:
    return None if s is None else pd.Timestamp(s if ("+" in s or s.endswith("Z")) else s + SH)


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {
        "sop": "inquiry",
        "channel": "online",
        "category": "A",
        "priority": "normal",
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "satisfaction": None,
        "handler": "alice",
        "team": "north",
        "customer_id": "C",
        "source": "test",
    }
    out = []
    for i, r in enumerate(rows):
        rec = {**base, "ticket_id": f"T-{i + 1}", **r}
        for c in ("created_at", "first_response_at", "resolved_at", "closed_at"):
            rec[c] = ts(rec[c])
        out.append(rec)
    df = pd.DataFrame(out, columns=list(FRAME_COLUMNS))
    return _finish(df)


def q(df: pd.DataFrame, month: str = "2026-08") -> dict[str, Any]:
    return compute_quality(df, month, PROFILE).data


def after(start: str, **delta: float) -> str:
    return (ts(start) + timedelta(**delta)).isoformat()


def test_response_compliance_hand_computed_QA_2() -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {"created_at": c, "first_response_at": after(c, seconds=10)},  # complies
        {"created_at": c, "first_response_at": after(c, seconds=30)},  # complies (exactly 30 s)
        {"created_at": c, "first_response_at": after(c, seconds=31)},  # late
        {"created_at": c},  # never answered: does not comply
        {
            "created_at": c,
            "sop": "repair",
            "first_response_at": after(c, seconds=5),
        },  # not an inquiry
    )
    r = q(df)
    assert r["response_compliance"] == pytest.approx(2 / 4)
    assert r["counts"]["inquiries"] == 4 and r["counts"]["inquiries_compliant"] == 2


def test_exactly_30_second_response_complies_QA_2() -> None:
    c = "2026-08-10T10:00:00"
    assert (
        q(frame({"created_at": c, "first_response_at": after(c, seconds=30)}))[
            "response_compliance"
        ]
        == 1.0
    )
    assert (
        q(frame({"created_at": c, "first_response_at": after(c, seconds=30.001)}))[
            "response_compliance"
        ]
        == 0.0
    )


def test_fault_resolution_rate_with_exactly_30_day_repair_QA_2() -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {"created_at": c, "sop": "repair", "resolved_at": after(c, days=30)},  # exactly 30 d: in
        {"created_at": c, "sop": "repair", "resolved_at": after(c, days=30, seconds=1)},  # late
        {"created_at": c, "sop": "repair", "resolved_at": after(c, days=2)},  # in
        {"created_at": c, "sop": "repair"},  # unresolved
    )
    r = q(df)
    assert r["fault_resolution_rate"] == pytest.approx(2 / 4)
    exactly = frame({"created_at": c, "sop": "repair", "resolved_at": after(c, days=30)})
    assert q(exactly)["fault_resolution_rate"] == 1.0


def test_complaint_on_time_rate_meets_every_CMP_clock() -> None:
    # CMP-1 10 min + CMP-2 1 h from creation to first response (70 min);
    # CMP-3 1 working day (09:00-18:00) from the first response to resolution.
    mon = "2026-08-03T10:00:00"  # Monday
    fri = "2026-08-07T16:00:00"  # Friday
    df = frame(
        # on time: response at exactly 70 min, resolved exactly 1 working day later
        {
            "sop": "complaint",
            "created_at": mon,
            "first_response_at": after(mon, minutes=70),
            "resolved_at": "2026-08-04T11:10:00",
        },
        # response 71 min: misses CMP-1 + CMP-2
        {
            "sop": "complaint",
            "created_at": mon,
            "first_response_at": after(mon, minutes=71),
            "resolved_at": after(mon, hours=3),
        },
        # resolution one second after the working day: misses CMP-3
        {
            "sop": "complaint",
            "created_at": mon,
            "first_response_at": after(mon, minutes=10),
            "resolved_at": "2026-08-04T10:10:01",
        },
        # Friday 17:10 response: 1 working day ends Monday 17:10 (weekend skipped) -> on time
        {
            "sop": "complaint",
            "created_at": fri,
            "first_response_at": after(fri, minutes=70),
            "resolved_at": "2026-08-10T17:00:00",
        },
        # never resolved
        {"sop": "complaint", "created_at": mon, "first_response_at": after(mon, minutes=5)},
    )
    r = q(df)
    assert r["counts"]["complaints"] == 5
    assert r["counts"]["complaints_on_time"] == 2
    assert r["complaint_on_time_rate"] == pytest.approx(2 / 5)


def test_satisfaction_average_over_rated_tickets_only_QA_2() -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {"created_at": c, "satisfaction": 10},
        {"created_at": c, "satisfaction": 7},
        {"created_at": c, "satisfaction": 0},
        {"created_at": c},  # not rated: not in the average
    )
    r = q(df)
    assert r["satisfaction_avg"] == pytest.approx(17 / 3)
    assert r["counts"]["ratings"] == 3


def test_ticket_in_the_month_in_shanghai_but_not_in_utc_QA_1() -> None:
    # 2026-08-01 01:00 in Shanghai is 2026-07-31 17:00 UTC: counted in August, not July
    df = frame({"created_at": "2026-07-31T17:00:00Z", "first_response_at": "2026-07-31T17:00:05Z"})
    assert q(df, "2026-08")["counts"]["inquiries"] == 1
    assert q(df, "2026-07")["counts"]["inquiries"] == 0


def test_ticket_in_the_month_in_utc_but_not_in_shanghai_QA_1() -> None:
    # 2026-08-31 16:30 UTC is 2026-09-01 00:30 in Shanghai: September, not August
    df = frame({"created_at": "2026-08-31T16:30:00Z", "first_response_at": "2026-08-31T16:31:00Z"})
    assert q(df, "2026-08")["counts"]["inquiries"] == 0
    assert q(df, "2026-09")["counts"]["inquiries"] == 1
    start, end = month_bounds("2026-08")
    assert start == datetime(2026, 7, 31, 16, tzinfo=UTC)
    assert end == datetime(2026, 8, 31, 16, tzinfo=UTC)


def test_month_with_no_ratings_has_no_satisfaction_average() -> None:
    c = "2026-08-10T10:00:00"
    r = q(frame({"created_at": c, "first_response_at": after(c, seconds=3)}))
    assert r["satisfaction_avg"] is None
    assert r["response_compliance"] == 1.0
    assert not [m for m in r["misses"] if m["metric"] == "satisfaction_avg"]


def test_empty_month_gives_none_everywhere_and_no_division_error() -> None:
    df = frame({"created_at": "2026-07-10T10:00:00", "satisfaction": 9})
    r = q(df, "2026-08")
    for k in (
        "response_compliance",
        "fault_resolution_rate",
        "complaint_on_time_rate",
        "satisfaction_avg",
    ):
        assert r[k] is None
    assert r["tickets"] == 0 and r["per_team"] == [] and r["misses"] == []
    assert json.loads(json.dumps(r))["response_compliance"] is None


def test_per_team_and_per_handler_QA_2() -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {
            "created_at": c,
            "first_response_at": after(c, seconds=5),
            "team": "north",
            "handler": "alice",
            "satisfaction": 10,
        },
        {
            "created_at": c,
            "first_response_at": after(c, seconds=50),
            "team": "north",
            "handler": "bob",
            "satisfaction": 6,
        },
        {
            "created_at": c,
            "first_response_at": after(c, seconds=5),
            "team": "south",
            "handler": "bob",
        },
        {
            "created_at": c,
            "sop": "repair",
            "resolved_at": after(c, days=1),
            "team": None,
            "handler": None,
        },
    )
    r = q(df)
    teams = {t["team"]: t for t in r["per_team"]}
    assert teams["north"]["response_compliance"] == 0.5
    assert teams["north"]["satisfaction_avg"] == 8.0
    assert teams["south"]["response_compliance"] == 1.0
    assert teams["south"]["satisfaction_avg"] is None
    assert teams["(none)"]["fault_resolution_rate"] == 1.0
    assert teams["(none)"]["response_compliance"] is None
    handlers = {h["handler"]: h for h in r["per_handler"]}
    assert handlers["bob"]["inquiries"] == 2 and handlers["bob"]["response_compliance"] == 0.5


def test_misses_list_largest_contributors_QA_3() -> None:
    c = "2026-08-10T10:00:00"
    late = {"created_at": c, "first_response_at": after(c, minutes=5)}
    df = frame(
        {**late, "channel": "phone", "category": "A", "team": "north", "satisfaction": 5},
        {**late, "channel": "phone", "category": "B", "team": "north", "satisfaction": 6},
        {**late, "channel": "email", "category": "B", "team": "south"},
        {"created_at": c, "first_response_at": after(c, seconds=1), "satisfaction": 10},
    )
    r = q(df)
    misses = {m["metric"]: m for m in r["misses"]}
    rc = misses["response_compliance"]
    assert rc["value"] == 0.25 and rc["target"] == 0.95 and rc["failing_tickets"] == 3
    assert rc["contributors"]["channel"][0] == {"name": "phone", "failing": 2, "share": 2 / 3}
    assert rc["contributors"]["category"][0]["name"] == "B"
    assert rc["contributors"]["team"][0]["name"] == "north"
    sat = misses["satisfaction_avg"]
    assert sat["value"] == pytest.approx(7.0) and sat["failing_tickets"] == 2


def test_commendations_at_or_above_9_5_QA_4() -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {"created_at": c, "team": "north", "handler": "alice", "satisfaction": 9.5},
        {"created_at": c, "team": "south", "handler": "bob", "satisfaction": 10},
        {"created_at": c, "team": "south", "handler": "carol", "satisfaction": 8.9},
    )
    r = q(df)
    assert [t["team"] for t in r["commendations"]["teams"]] == ["north"]  # south avg 9.45
    assert [h["handler"] for h in r["commendations"]["handlers"]] == ["alice", "bob"]


def test_previous_month_uses_shanghai_time() -> None:
    # 2026-09-30 17:00 UTC is 2026-10-01 01:00 in Shanghai: the previous month is September
    assert previous_month(datetime(2026, 9, 30, 17, tzinfo=UTC)) == "2026-09"
    assert previous_month(datetime(2026, 9, 30, 15, tzinfo=UTC)) == "2026-08"
    assert previous_month(datetime(2026, 1, 2, tzinfo=UTC)) == "2025-12"


def test_vector_calendar_matches_work_calendar_add() -> None:
    cal = WorkCalendar()
    vc = VectorCalendar(cal)
    rng = np.random.default_rng(3)
    base = pd.Timestamp("2026-09-25T00:00:00Z").value  # spans the National Day holiday
    starts = base + rng.integers(0, 25 * 86400, 300) * 10**9
    for amount, unit in ((1, Unit.WORKING_DAYS), (5, Unit.WORKING_HOURS), (3, Unit.WORKING_DAYS)):
        secs = amount * (cal.working_day_seconds() if unit == Unit.WORKING_DAYS else 3600)
        got = vc.add_ns(starts, secs)
        want = [
            pd.Timestamp(cal.add(datetime.fromtimestamp(s / 1e9, UTC), amount, unit)).value
            for s in starts
        ]
        assert list(got) == want


def test_trend_covers_the_months_before() -> None:
    df = frame(
        {"created_at": "2026-07-10T10:00:00", "satisfaction": 9},
        {"created_at": "2026-08-10T10:00:00", "satisfaction": 7},
    )
    t = monthly_trend(df, "2026-08", PROFILE, 3)
    assert list(t["month"]) == ["2026-06", "2026-07", "2026-08"]
    assert t["satisfaction_avg"].iloc[1] == 9 and t["satisfaction_avg"].iloc[2] == 7
    assert pd.isna(t["satisfaction_avg"].iloc[0])


def test_report_files_csv_html_and_charts(tmp_path: Path) -> None:
    c = "2026-08-10T10:00:00"
    df = frame(
        {"created_at": c, "first_response_at": after(c, minutes=1), "satisfaction": 8},
        {"created_at": c, "sop": "repair", "resolved_at": after(c, days=3), "team": "south"},
    )
    data = quality_report("2026-08", profile=PROFILE, frame=df, out_dir=tmp_path)
    files = data["files"]
    for key in ("csv", "html", "trend_png", "teams_png", "categories_png"):
        assert Path(files[key]).is_file()
    html = Path(files["html"]).read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3
    csv = pd.read_csv(files["csv"])
    assert set(csv["scope"]) == {"overall", "team", "handler"}


def test_cli_report_quality_json_over_an_input_file(tmp_path: Path) -> None:
    from aftersales.cli import app

    res = CliRunner().invoke(
        app,
        [
            "report",
            "quality",
            "--month",
            "2026-08",
            "--input",
            str(DATA / "history-good.csv"),
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in (
        "month",
        "response_compliance",
        "fault_resolution_rate",
        "complaint_on_time_rate",
        "satisfaction_avg",
        "per_team",
        "per_handler",
        "misses",
        "commendations",
    ):
        assert key in out
    assert out["month"] == "2026-08"
    assert out["response_compliance"] == 0.5  # H-1 30 s complies, H-2 60 s does not
    assert out["fault_resolution_rate"] == 1.0  # H-3 resolved exactly 30 days later
    assert out["complaint_on_time_rate"] is None
    assert out["satisfaction_avg"] == 8.5


def test_cli_report_quality_over_stored_history(sqlite_db: str, tmp_path: Path) -> None:
    from aftersales.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["import", str(DATA / "history-good.csv")]).exit_code == 0
    res = runner.invoke(
        app, ["report", "quality", "--month", "2026-08", "--json", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["tickets"] == 3 and out["response_compliance"] == 0.5
    human = runner.invoke(app, ["report", "quality", "--month", "2026-08", "--out", str(tmp_path)])
    assert "MISS response_compliance" in human.output
    bad = runner.invoke(app, ["report", "quality", "--month", "2026-13"])
    assert bad.exit_code == 2 and "not YYYY-MM" in bad.output
