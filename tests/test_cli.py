"""``aftersales deadline``: explains a deadline; unknown rule or profile exits non-zero."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aftersales.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("rule", "start", "profile", "due"),
    [
        ("REP-2:same-city", "2026-11-20T16:00:00+08:00", "default", "2026-11-20T20:00:00+08:00"),
        ("REP-1", "2026-11-20T16:00:00+08:00", "work-instruction", "2026-11-20T18:00:00+08:00"),
        # 2 working days from Wednesday 10:00 is Friday 10:00 (REP-3)
        ("REP-3", "2026-11-25T10:00:00+08:00", "default", "2026-11-27T10:00:00+08:00"),
        # National Day 2026-10-01..07 skipped; make-up Saturday 10-10 counts (CMP-3, 1 working day)
        ("CMP-3", "2026-09-30T16:00:00+08:00", "default", "2026-10-08T16:00:00+08:00"),
        ("CB-2:ordinary", "2026-10-09T10:00:00+08:00", "default", "2026-10-13T10:00:00+08:00"),
        # 3 working days seed 002 from Friday evening: Mon, Tue, Wed until 18:00 (PRI-NORMAL)
        (
            "PRI-NORMAL:resolution",
            "2026-11-20T19:00:00+08:00",
            "work-instruction",
            "2026-11-25T18:00:00+08:00",
        ),
    ],
)
def test_deadline_json_gives_rule_start_and_due_with_offset(
    rule: str, start: str, profile: str, due: str
) -> None:
    res = runner.invoke(app, ["deadline", rule, "--start", start, "--profile", profile, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["rule"], out["start"], out["due"]) == (rule, start, due)


def test_deadline_text_explains_skipped_holidays_CMP_3() -> None:
    res = runner.invoke(app, ["deadline", "CMP-3", "--start", "2026-09-30T16:00:00+08:00"])
    assert res.exit_code == 0
    assert "National Day" in res.output and "2026-10-08T16:00:00+08:00" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deadline", "REP-9", "--start", "2026-11-20T16:00:00+08:00"], "unknown rule 'REP-9'"),
        (
            ["deadline", "REP-1", "--start", "2026-11-20T16:00:00+08:00", "--profile", "nope"],
            "unknown profile 'nope'",
        ),
        (["deadline", "REP-1", "--start", "yesterday"], "--start"),
        (["deadline", "REP-1", "--start", "2026-11-20T16:00:00"], "UTC offset"),
        (["deadline", "INQ-OWNER", "--start", "2026-11-20T16:00:00+08:00"], "no deadline"),
    ],
)
def test_deadline_bad_input_exits_non_zero_with_a_clear_message(
    args: list[str], message: str
) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    assert message in res.output


def test_deadline_into_an_uncovered_year_uses_the_documented_fallback() -> None:
    res = runner.invoke(
        app, ["deadline", "CB-2:ordinary", "--start", "2026-12-31T10:00:00+08:00", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["fallback_years"] == [2027]
    # Fri 1 New Year's Day (statutory, from the holidays package), weekend, Mon 4, Tue 5, 1 h Wed 6
    assert out["due"] == "2027-01-06T10:00:00+08:00"


def test_deadline_into_an_uncovered_year_errors_in_strict_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aftersales.settings import reset_settings

    monkeypatch.setenv("AFTERSALES_CALENDAR_UNKNOWN_YEAR", "error")
    reset_settings()
    try:
        res = runner.invoke(
            app, ["deadline", "CB-2:ordinary", "--start", "2026-12-31T10:00:00+08:00"]
        )
    finally:
        monkeypatch.delenv("AFTERSALES_CALENDAR_UNKNOWN_YEAR")
        reset_settings()
    assert res.exit_code != 0 and "2027" in res.output


def test_policy_check_names_rule_and_field(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "bad.yaml"
    f.write_text("extends: default\nrules:\n  - {id: REP-1, unit: fortnights}\n", encoding="utf-8")
    res = runner.invoke(app, ["policy", "check", str(f)])
    assert res.exit_code == 2 and "rule REP-1: field unit" in res.output


def test_clock_pause_and_resume_from_the_cli_keep_the_remaining_time(sqlite_db: str) -> None:
    from models.db import session_scope
    from models.repository import clocks_for

    out = runner.invoke(
        app,
        [
            "intake",
            "--channel",
            "phone",
            "--name",
            "A",
            "--contact",
            "13812345678",
            "--description",
            "x",
            "--intake-id",
            "c-p",
            "--sop",
            "repair",
            "--no-event",
        ],
    )
    tid = json.loads(out.output)["ticket_id"]
    # only a target pauses: REP-1 (a step deadline) and ESC-TIMEOUT (a hard limit) never do
    res = runner.invoke(app, ["clock", "pause", tid, "--rule", "REP-1", "--rule", "ESC-TIMEOUT"])
    assert res.exit_code == 0 and json.loads(res.output) == []
    res = runner.invoke(app, ["clock", "pause", tid, "--rule", "PRI-URGENT"])
    assert res.exit_code == 0 and json.loads(res.output) == ["PRI-URGENT:resolution"]
    with session_scope() as s:
        target = next(
            c for c in clocks_for(s, ticket_id=tid) if c.rule_id == "PRI-URGENT:resolution"
        )
    assert target.state == "paused" and 0 < target.remaining_seconds <= 2 * 3600
    res = runner.invoke(app, ["clock", "resume", tid])
    assert res.exit_code == 0 and json.loads(res.output) == ["PRI-URGENT:resolution"]
    shown = runner.invoke(app, ["ticket", tid])
    assert shown.exit_code == 0
    assert "138****5678" in shown.output and "13812345678" not in shown.output  # PRIV-1
    assert "REP-1" in shown.output and "armed" in shown.output
