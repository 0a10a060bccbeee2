"""What-if replay (issue 3 §4): breaches per rule under A and B; stored data untouched."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from aftersales.policy import load_profile
from aftersales.replay import assignments, replay
from tests.test_quality import after, frame

DATA = Path(__file__).parent / "data"
DEFAULT = load_profile("default")
WORK = load_profile("work-instruction")
AS_OF = datetime(2026, 9, 1, tzinfo=UTC)


def by_rule(r: dict) -> dict:
    return {x["rule"]: x for x in r["rules"]}


def test_rules_per_ticket_follow_priority_channel_and_sop() -> None:
    c = "2026-08-03T10:00:00"
    df = frame(
        {"created_at": c, "channel": "email", "priority": "important"},
        {"created_at": c, "channel": "phone", "priority": "urgent", "sop": "repair"},
        {"created_at": c, "channel": "social", "sop": "complaint"},
    )
    a = assignments(df)
    rules = {t: sorted(g["rule"]) for t, g in a.groupby("ticket_id")}
    assert rules["T-1"] == [
        "ESC-TIMEOUT:important",
        "INQ-CH-EMAIL:important",
        "PRI-IMPORTANT:resolution",
        "PRI-IMPORTANT:response",
    ]
    assert "REP-1" in rules["T-2"] and "INQ-CH-PHONE:response" in rules["T-2"]
    assert {"CMP-1+CMP-2", "CMP-3", "INQ-CH-SOCIAL:response"} <= set(rules["T-3"])


def test_replay_counts_breaches_under_a_and_b() -> None:
    mon = "2026-08-03T10:00:00"  # Monday
    df = frame(
        # resolved after 30 h: breaches 24 h (default) but not 3 working days (work-instruction)
        {
            "created_at": mon,
            "first_response_at": after(mon, minutes=20),
            "resolved_at": after(mon, hours=30),
        },
        # resolved after 4 days: breaches both
        {
            "created_at": mon,
            "first_response_at": after(mon, minutes=20),
            "resolved_at": after(mon, days=4),
        },
        # never resolved, created just before as_of: open under both
        {"created_at": "2026-08-31T23:00:00+00:00", "first_response_at": "2026-08-31T23:00:10Z"},
    )
    r = replay(df, DEFAULT, WORK, as_of=AS_OF)
    res = by_rule(r)["PRI-NORMAL:resolution"]
    assert (res["limit_a"], res["limit_b"]) == ("24 hours", "3 working_days")
    assert (res["met_a"], res["breached_a"], res["open_a"]) == (0, 2, 1)
    assert (res["met_b"], res["breached_b"], res["open_b"]) == (1, 1, 1)
    assert res["compliance_a"] == 0.0 and res["compliance_b"] == 0.5
    assert res["no_longer_breached"] == 1 and res["newly_breached"] == 0
    resp = by_rule(r)["PRI-NORMAL:response"]
    assert resp["met_a"] == 3 and resp["breached_a"] == 0
    online = by_rule(r)["INQ-CH-ONLINE:response"]
    assert online["breached_a"] == 2 and online["met_a"] == 1  # 20 min > 30 s
    assert r["tickets_changed"] == 1 and r["examples_changed"] == ["T-1"]


def test_a_rule_missing_from_a_profile_is_not_applicable() -> None:
    rules = {k: v for k, v in DEFAULT.rules.items() if k != "ESC-TIMEOUT:normal"}
    lean = DEFAULT.model_copy(update={"name": "lean", "rules": rules})
    c = "2026-08-03T10:00:00"
    r = replay(
        frame({"created_at": c, "resolved_at": after(c, days=3)}), DEFAULT, lean, as_of=AS_OF
    )
    assert r["missing_rules"] == {"a": [], "b": ["ESC-TIMEOUT:normal"]}
    esc = by_rule(r)["ESC-TIMEOUT:normal"]
    assert esc["breached_a"] == 1 and esc["breached_b"] == 0 and esc["compliance_b"] is None


def _table_digest(url: str) -> str:
    from models.db import session_scope

    h = hashlib.sha256()
    with session_scope(url) as s:
        for table in ("history_ticket", "import_batch", "ticket", "sla_clock", "notification"):
            for row in s.execute(text(f"SELECT * FROM {table} ORDER BY 1")):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def test_replay_leaves_stored_data_untouched_and_gives_the_same_answer_twice(
    any_db: str, tmp_path: Path
) -> None:
    from aftersales.cli import app
    from aftersales.history import import_file
    from models.db import session_scope
    from models.entities import Channel, Priority, Sop, Ticket

    import_file(DATA / "history-good.csv")
    with session_scope() as s:
        s.add(
            Ticket(
                id="T-LIVE",
                intake_key="k-live",
                sop=Sop.INQUIRY,
                channel=Channel.EMAIL,
                customer_name="李四",
                contact="13912345678",
                description="question",
                priority=Priority.IMPORTANT,
                created_at=datetime(2026, 8, 5, 1, 0, tzinfo=UTC),
                first_response_at=datetime(2026, 8, 5, 6, 0, tzinfo=UTC),
            )
        )
    before = _table_digest(any_db)
    args = [
        "replay",
        "--profile",
        "work-instruction",
        "--against",
        "default",
        "--as-of",
        "2026-10-01T00:00:00+08:00",
        "--json",
        "--out",
        str(tmp_path),
    ]
    runner = CliRunner()
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert _table_digest(any_db) == before
    out = json.loads(first.stdout)
    rules = by_rule(out)
    assert out["tickets"] == 4 and out["profile_b"] == "work-instruction"
    # the live e-mail ticket answered after 5 h breaches INQ-CH-EMAIL:important (4 h)
    assert rules["INQ-CH-EMAIL:important"]["breached_a"] == 1
    assert Path(out["files"]["png"]).is_file()
    assert rules["REP-1"]["limit_b"] == "2 hours"


def test_cli_replay_over_an_input_file_prints_a_table(tmp_path: Path) -> None:
    from aftersales.cli import app

    res = CliRunner().invoke(
        app,
        [
            "replay",
            "--profile",
            "work-instruction",
            "--input",
            str(DATA / "history-good.csv"),
            "--as-of",
            "2026-10-01T00:00:00+08:00",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "PRI-NORMAL:resolution" in res.output and "tickets with a breach" in res.output
    bad = CliRunner().invoke(app, ["replay", "--profile", "nope"])
    assert bad.exit_code == 2 and "unknown profile" in bad.output


@pytest.mark.parametrize("profile", ["default", "work-instruction"])
def test_replay_of_a_profile_against_itself_changes_nothing(profile: str) -> None:
    c = "2026-08-03T10:00:00"
    p = load_profile(profile)
    r = replay(frame({"created_at": c, "resolved_at": after(c, days=2)}), p, p, as_of=AS_OF)
    assert r["tickets_changed"] == 0 and r["breaches_a"] == r["breaches_b"]
