"""Response-speed diagnosis (issue 3 §3, spec §7 SPD-1/2) against a hand-computed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftersales.policy import load_profile
from aftersales.speed import compute_speed, speed_report
from tests.test_quality import after, frame

PROFILE = load_profile("default")
DATA = Path(__file__).parent / "data"


def table():
    c = "2026-08-04T10:00:00"  # Tuesday, week of 2026-08-03
    d = "2026-08-12T10:00:00"  # Wednesday, week of 2026-08-10
    return frame(
        {
            "created_at": c,
            "first_response_at": after(c, hours=1),
            "closed_at": after(c, hours=10),
            "category": "screen",
            "satisfaction": 8,
        },
        {
            "created_at": c,
            "first_response_at": after(c, hours=4),
            "closed_at": after(c, hours=20),
            "category": "screen",
        },  # exactly 4 h: not over the limit
        {
            "created_at": d,
            "first_response_at": after(d, hours=7),
            "category": "battery",
            "satisfaction": 6,
        },
        {"created_at": d, "category": "screen"},  # never answered: over the limit
        {"created_at": d, "first_response_at": after(d, hours=1), "category": "login"},
        {
            "created_at": "2026-04-10T10:00:00",
            "first_response_at": "2026-04-10T20:00:00",
        },  # outside
    )


def test_speed_figures_hand_computed_SPD_1() -> None:
    r = compute_speed(table(), "2026-08", PROFILE, months=3)
    assert r["first_month"] == "2026-06" and r["tickets"] == 5
    assert r["avg_first_response_hours"] == pytest.approx((1 + 4 + 7 + 1) / 4)
    assert r["avg_resolution_hours"] == pytest.approx((10 + 20) / 2)
    assert r["over_limit"] == 2 and r["over_limit_share"] == pytest.approx(2 / 5)
    assert [c["category"] for c in r["top_categories"]] == ["screen", "battery", "login"]
    assert r["top_categories"][0]["tickets"] == 3
    assert r["top_categories"][0]["over_limit_share"] == pytest.approx(1 / 3)
    assert [w["week"] for w in r["weekly"]] == ["2026-08-03", "2026-08-10"]
    assert r["weekly"][0]["avg_first_response_hours"] == pytest.approx(2.5)
    assert r["weekly"][1]["over_limit_share"] == pytest.approx(2 / 3)
    assert r["speed_satisfaction_5"] == pytest.approx(3.5)


def test_speed_compared_with_SPD_2_targets_from_the_profile() -> None:
    r = compute_speed(table(), "2026-08", PROFILE)
    by = {c["metric"]: c for c in r["comparisons"]}
    assert by["avg_first_response_hours"]["target"] == 2.0
    assert by["avg_first_response_hours"]["met"] is False  # 3.25 h > 2 h
    assert by["over_limit_share"]["met"] is False  # 40 % > 10 %
    assert by["speed_satisfaction_5"]["met"] is False  # 3.5 < 4.2
    assert by["first_contact_resolution"]["value"] is None


def test_configurable_response_limit_SPD_1() -> None:
    r = compute_speed(table(), "2026-08", PROFILE, limit_hours=8)
    assert r["limit_hours"] == 8 and r["over_limit"] == 1  # only the unanswered one
    one_month = compute_speed(table(), "2026-04", PROFILE, months=1)
    assert one_month["tickets"] == 1 and one_month["over_limit"] == 1  # 10 h > 4 h


def test_empty_window_gives_none_not_errors() -> None:
    r = compute_speed(table(), "2025-01", PROFILE)
    assert r["tickets"] == 0
    assert r["avg_first_response_hours"] is None and r["over_limit_share"] is None
    assert r["weekly"] == [] and r["top_categories"] == []
    json.dumps(r)


def test_speed_report_writes_weekly_chart(tmp_path: Path) -> None:
    data = speed_report(profile=PROFILE, end="2026-08", frame=table(), out_dir=tmp_path)
    files = data["files"]
    assert Path(files["weekly_png"]).is_file() and Path(files["weekly_csv"]).is_file()
    assert Path(files["html"]).read_text().count("data:image/png;base64,") == 2


def test_cli_report_speed_json(tmp_path: Path) -> None:
    from aftersales.cli import app

    res = CliRunner().invoke(
        app,
        [
            "report",
            "speed",
            "--months",
            "3",
            "--end",
            "2026-08",
            "--input",
            str(DATA / "history-good.csv"),
            "--limit-hours",
            "0.1",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["tickets"] == 3 and out["limit_hours"] == 0.1
    assert out["over_limit"] == 1  # H-3 answered after 10 min
    for key in (
        "avg_first_response_hours",
        "avg_resolution_hours",
        "over_limit_share",
        "top_categories",
        "weekly",
        "comparisons",
    ):
        assert key in out
