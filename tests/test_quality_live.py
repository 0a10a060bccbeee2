"""The quality report over live tickets (issue 7 §5), on SQLite and PostgreSQL: a live
complaint is on time when it was answered and none of its CMP clocks was late (the clocks
are the record), a history complaint by the deadline chain of its instants; a CB-3 survey
gives the ticket's 0-10 score (mean x 2) in the satisfaction average and the below-target
count, and its resolution-efficiency dimension is SPD-2's speed satisfaction."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aftersales import forms, sla, steps
from aftersales.history import CORE_COLUMNS, import_file, load_tickets
from aftersales.intake import accept_intake, parse_payload
from aftersales.policy import load_profile
from aftersales.quality import quality_report
from aftersales.runtime import deadlines
from aftersales.speed import speed_report
from models.db import session_scope
from models.entities import ClockState, SlaClock
from models.repository import clocks_for
from tests.test_callback_steps import call, repaired

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday
MONTH = "2026-11"
DEFAULT = load_profile("default")


@pytest.fixture
def ctx(any_db: str) -> sla.Deadlines:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    return deadlines("default")


def complaint(ctx: sla.Deadlines, n: int) -> str:
    """A complaint from its own walk-in customer (no second complaint: no ESC-IMPORTANT)."""
    payload = {
        "channel": "phone",
        "sop": "complaint",
        "intake_id": f"cmp-{n}",
        "customer_name": "李娜",
        "contact": f"1398765{n:04d}",
        "description": "the engineer was late",
    }
    return accept_intake(parse_payload(payload), ctx=ctx, now=T0).ticket_id


def do(ctx: sla.Deadlines, tid: str, sop: str, step: str, at: datetime,
       form: forms.Form | None = None) -> steps.StepResult:  # fmt: skip
    with session_scope() as s:
        return steps.complete(s, deadlines=ctx, sop=sop, step=step, ticket_id=tid, now=at,
                              form=form)  # fmt: skip


def fire(ctx: sla.Deadlines, now: datetime) -> None:
    with session_scope() as s:
        while sla.fire_due(s, ctx=ctx, now=now).fired:
            pass


def clocks(tid: str) -> dict[str, SlaClock]:
    with session_scope() as s:
        return {c.rule_id: c for c in clocks_for(s, ticket_id=tid)}


def accept(ctx: sla.Deadlines, tid: str, at: datetime) -> None:
    do(ctx, tid, "complaint", "accept", at,
       forms.ComplaintRecord(agent="小周", cause="late engineer", expected_outcome="apology"))  # fmt: skip


def investigate(ctx: sla.Deadlines, tid: str, at: datetime) -> None:
    do(ctx, tid, "complaint", "investigate", at,
       forms.Investigation(investigator="主管-孙", service_records="WO-1",
                           cross_department=False))  # fmt: skip


def settle(ctx: sla.Deadlines, tid: str, at: datetime) -> None:
    """Solution proposed at ``at``, approved 30 min later, the customer informed 1 h later."""
    do(ctx, tid, "complaint", "resolve", at,
       forms.Resolution(by="小周", kind="apology", details="a call from the engineer"))  # fmt: skip
    do(ctx, tid, "complaint", "approve", at + timedelta(minutes=30),
       forms.Approval(supervisor="主管-孙", approved=True))  # fmt: skip
    do(ctx, tid, "complaint", "inform", at + timedelta(hours=1),
       forms.Inform(agent="小周", via="phone"))  # fmt: skip


def write_history(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CORE_COLUMNS), restval="")
        w.writeheader()
        w.writerows(rows)
    return path


def history_complaint(tid: str, c: datetime) -> dict[str, Any]:
    """A complaint answered 20 min after creation and resolved 2 h later: on time by the
    chain (CMP-1 + CMP-2 = 1 h 10 min; CMP-3 = 1 working day)."""
    return {
        "ticket_id": tid,
        "sop": "complaint",
        "channel": "email",
        "priority": "normal",
        "created_at": c.isoformat(),
        "first_response_at": (c + timedelta(minutes=20)).isoformat(),
        "resolved_at": (c + timedelta(hours=2, minutes=20)).isoformat(),
        "team": "north",
    }


def test_live_complaints_on_time_by_their_clocks_history_by_the_chain_QA_2_CMP_1_3(
    ctx: sla.Deadlines, any_db: str, tmp_path: Path
) -> None:
    # on time: every step well within its clock
    ok = complaint(ctx, 1)
    accept(ctx, ok, T0 + timedelta(minutes=5))
    investigate(ctx, ok, T0 + timedelta(minutes=30))
    settle(ctx, ok, T0 + timedelta(hours=1))
    # CMP-2 breached: the investigation had not started 1 h after the record, the SLA
    # service fired the clock; the instants alone (answered at 5 min, resolved the same
    # day) would pass the chain
    breached = complaint(ctx, 2)
    accept(ctx, breached, T0 + timedelta(minutes=5))
    fire(ctx, T0 + timedelta(hours=1, minutes=30))
    assert clocks(breached)["CMP-2"].state == ClockState.BREACHED
    assert clocks(ok)["CMP-2"].state == ClockState.MET
    investigate(ctx, breached, T0 + timedelta(hours=1, minutes=40))
    settle(ctx, breached, T0 + timedelta(hours=2))
    # CMP-2 met late, before the SLA service fired it: late all the same
    met_late = complaint(ctx, 3)
    accept(ctx, met_late, T0 + timedelta(minutes=5))
    investigate(ctx, met_late, T0 + timedelta(hours=1, minutes=20))
    late_clock = clocks(met_late)["CMP-2"]
    assert late_clock.state == ClockState.MET and late_clock.breached_at is None
    assert late_clock.met_at is not None and late_clock.due_at is not None
    assert late_clock.met_at > late_clock.due_at
    settle(ctx, met_late, T0 + timedelta(hours=2))
    # unanswered: recorded, never resolved
    open_ = complaint(ctx, 4)
    accept(ctx, open_, T0 + timedelta(minutes=5))
    # history: one complaint on time by the chain, and a row for the breached live ticket
    # (same id, on time by the chain) that its live twin replaces
    rows = [history_complaint("H-CMP-1", T0 - timedelta(days=7)), history_complaint(breached, T0)]
    path = write_history(tmp_path / "history.csv", rows)
    assert import_file(path).imported == 2

    got = quality_report(MONTH, profile=DEFAULT, url=any_db)
    assert got["counts"]["complaints"] == 5  # 4 live + 1 history (the twin is live)
    assert got["counts"]["complaints_on_time"] == 2  # `ok` and H-CMP-1
    assert got["complaint_on_time_rate"] == pytest.approx(2 / 5)
    # the same verdicts over the loaded frame (live rows carry their clocks' verdict)
    frame = quality_report(MONTH, profile=DEFAULT, frame=load_tickets(url=any_db))
    assert frame == got


def test_a_CB_3_survey_feeds_satisfaction_on_0_10_and_speed_satisfaction_on_1_5_SPD_2(
    ctx: sla.Deadlines, any_db: str
) -> None:
    tid = repaired(ctx, "C-1002")
    do(ctx, tid, "callback", "schedule", T0)
    r = do(ctx, tid, "callback", "call", T0 + timedelta(days=1),
           call(attitude=4, efficiency=5, effectiveness=3))  # fmt: skip
    assert r.done
    got = quality_report(MONTH, profile=DEFAULT, url=any_db)
    assert got["counts"]["ratings"] == 1
    assert got["satisfaction_avg"] == pytest.approx(8.0)  # (4 + 5 + 3) / 3 x 2
    # 8.0 is below the 8.5 target: a QA-3 miss with this one ticket failing
    miss = next(m for m in got["misses"] if m["metric"] == "satisfaction_avg")
    assert miss["failing_tickets"] == 1
    # SPD-2 speed satisfaction is the resolution-efficiency dimension (5), not 8.0 / 2
    speed = speed_report(profile=DEFAULT, end=MONTH, months=1, url=any_db)
    assert speed["speed_satisfaction_5"] == pytest.approx(5.0)
    assert speed == speed_report(
        profile=DEFAULT, end=MONTH, months=1, frame=load_tickets(url=any_db)
    )
