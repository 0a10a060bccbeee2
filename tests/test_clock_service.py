"""The SLA service: clocks live in the database. (A start event the server dropped is the
run supervisor's: tests/test_reconciler.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from aftersales.clock import ManualClock
from aftersales.intake import accept_intake, parse_payload
from aftersales.notify import Notifier
from aftersales.runtime import deadlines
from aftersales.sla_service import SlaService
from models.db import session_scope

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def test_a_clock_armed_by_one_service_instance_fires_from_the_database_in_the_next(
    sqlite_db: str, sink
) -> None:  # noqa: ANN001
    """Nothing lives in the process: a new service instance (after a restart of every
    process) finds the clock armed by the old one and breaches it on time."""
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
    del first  # the process is gone
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
    import json

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
