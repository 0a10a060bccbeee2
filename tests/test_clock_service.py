"""The SLA service: clocks live in the database. (A start event the server dropped is the
run supervisor's: tests/test_reconciler.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aftersales.clock import ManualClock
from aftersales.intake import accept_intake, parse_payload
from aftersales.notify import Notifier
from aftersales.runtime import deadlines
from aftersales.sla_service import SlaService
from models.db import session_scope

RESTART_PROFILE = Path(__file__).parent / "data" / "restart-profile.yaml"
T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def test_a_clock_armed_by_one_service_instance_fires_from_the_database_in_the_next(
    sqlite_db: str, sink
) -> None:  # noqa: ANN001
    """Nothing lives in the service object: a second instance (same process, a manual
    clock) finds the clock armed before it and breaches it once. The real restart, a
    killed process and a new one, is the next test."""
    from models.entities import ClockState
    from models.repository import clocks_for, escalations_for

    clock = ManualClock(T0)
    ctx = deadlines()
    r = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "intake_id": "c-restart",
                "customer_name": "A",
                "contact": "13812345678",
                "description": "x",
                "sop": "repair",
            }
        ),
        ctx=ctx,
        now=T0,
    )
    first = SlaService(
        clock=clock,
        notifier=Notifier({"team_lead": [sink.url("/team_lead")]}),
        ctx=ctx,
        send_events=False,
    )
    clock.advance(timedelta(minutes=10))
    first.tick()
    del first
    second = SlaService(
        clock=clock,
        notifier=Notifier({"team_lead": [sink.url("/team_lead")]}),
        ctx=ctx,
        send_events=False,
    )
    clock.advance(timedelta(minutes=21))  # REP-1 (30 min) has passed
    second.tick()
    with session_scope() as s:
        rep1 = next(c for c in clocks_for(s, ticket_id=r.ticket_id) if c.rule_id == "REP-1")
        assert rep1.state == ClockState.BREACHED
        assert [e.rule_id for e in escalations_for(s, ticket_id=r.ticket_id)].count("REP-1") == 1
    assert sink.wait_for(
        lambda: any("REP-1" in m.body.get("title", "") for m in sink.messages("/team_lead")),
        timeout=5,
    )


def test_the_sla_board_lists_open_tickets_soonest_first_with_owner_and_state(
    sqlite_db: str,
) -> None:
    """One table artifact, ``sla-board``: every open ticket, its next due clock, owner
    and state (breached / at-risk / on-track), soonest first; read back from the server."""

    from prefect.client.orchestration import get_client

    from aftersales import sla

    ctx = deadlines()

    def intake(intake_id: str, channel: str) -> str:
        payload = {"channel": channel, "intake_id": intake_id, "customer_name": "A",
                   "contact": "13812345678", "description": "x"}  # fmt: skip
        return accept_intake(parse_payload(payload), ctx=ctx, now=T0).ticket_id

    email, online, phone = intake("m-1", "email"), intake("o-1", "online"), intake("p-1", "phone")
    with session_scope() as s:  # 31 s later: the online (30 s) clock has breached
        sla.fire_due(s, ctx=ctx, now=T0 + timedelta(seconds=31))
    svc = SlaService(clock=ManualClock(T0), notifier=Notifier({}), ctx=ctx, send_events=False)
    assert svc.refresh_board() == 3
    with get_client(sync_client=True) as client:
        arts = client.request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": ["sla-board"]}},
                "sort": "CREATED_DESC",
                "limit": 1,
            },
        ).json()
    data = arts[0]["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    # phone (10 s) and online (30 s) first responses breached; each one's next clock is
    # ESC-NORMAL, 30 min after that deadline; the email's is PRI-NORMAL:response at 2 h
    assert [(r["ticket"], r["state"], r["rule"]) for r in rows] == [
        (phone, "breached", "ESC-NORMAL"),
        (online, "breached", "ESC-NORMAL"),
        (email, "on-track", "PRI-NORMAL:response"),
    ]
    assert rows[0]["next due"] == "2026-11-23T10:30+08:00"
    assert all(r["owner"] for r in rows)


def test_restart_a_killed_sla_service_process_and_the_new_one_fires_what_fell_due_once(
    sqlite_db: str, sink, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """`aftersales clock run` as its own process: it fires ticket 1's REP-1 (REM-1 then the
    breach's escalation), is SIGKILLed, ticket 2's REP-1 falls due while no service runs, and a new
    `aftersales clock run` process fires ticket 2's clocks (marked late) and re-sends
    nothing of ticket 1's. Prefect is unreachable throughout: firing never waits for it."""
    from aftersales.settings import ROLES, reset_settings
    from models.entities import ClockState
    from models.repository import clocks_for, escalations_for

    monkeypatch.setenv("AFTERSALES_POLICY_FILE", str(RESTART_PROFILE))
    reset_settings()
    env = {
        **os.environ,
        **{f"AFTERSALES_NOTIFY_{r.upper()}": sink.url(f"/{r}") for r in ROLES},
        "AFTERSALES_CLOCK_POLL_SECONDS": "0.2",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # nothing listens: Prefect is down
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "aftersales.cli", "clock", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def intake(n: int) -> str:
        payload = {
            "channel": "phone",
            "intake_id": f"restart-{n}",
            "customer_name": "A",
            "contact": "13812345678",
            "description": "no power",
            "sop": "repair",
        }
        r = accept_intake(parse_payload(payload), ctx=deadlines(), now=datetime.now(UTC))
        return r.ticket_id

    def rep1(ticket_id: str) -> list[str]:
        """The titles of the sink's messages about the ticket's REP-1 clock (its reminders
        and its breach; the intake's repair request mentions REP-1 only in its text)."""
        titles = [str(m.body.get("title", "")) for m in sink.messages()]
        return [t for t in titles if ticket_id in t and "REP-1" in t]

    def breached(ticket_id: str) -> bool:
        with session_scope() as s:
            c = next(c for c in clocks_for(s, ticket_id=ticket_id) if c.rule_id == "REP-1")
            return c.state == ClockState.BREACHED

    first = start()
    second = None
    try:
        t1 = intake(1)
        # REM-1 to the handler and the supervisor, then the breach's ESC-NORMAL to the lead
        assert sink.wait_for(lambda: len(rep1(t1)) >= 3, timeout=60), rep1(t1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        sent_for_t1 = rep1(t1)
        t2 = intake(2)
        time.sleep(12)  # REP-1 of ticket 2 falls due while no service runs
        assert not breached(t2) and rep1(t2) == []
        second = start()
        assert sink.wait_for(lambda: len(rep1(t2)) >= 3, timeout=60), rep1(t2)
        time.sleep(3)  # give a wrongly re-sent message of ticket 1 the time to arrive
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        monkeypatch.delenv("AFTERSALES_POLICY_FILE")
        reset_settings()
    assert breached(t1) and breached(t2)
    assert rep1(t1) == sent_for_t1  # nothing of ticket 1 fired or sent again
    assert len(sent_for_t1) == 3 and len(rep1(t2)) == 3, (sent_for_t1, rep1(t2))
    # the reminder fired after its moment says so (issue 11 §6) and still precedes the breach
    reminders = [m for m in rep1(t2) if "[REM-1]" in m]
    assert len(reminders) == 2 and all("[LATE " in m for m in reminders), rep1(t2)
    assert "[ESC-NORMAL]" in rep1(t2)[-1], rep1(t2)
    with session_scope() as s:
        for tid in (t1, t2):
            assert [e.rule_id for e in escalations_for(s, ticket_id=tid)].count("REP-1") == 1
