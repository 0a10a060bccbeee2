"""The clock service restarts SOP runs whose start event was lost (nothing is lost at intake)."""

from __future__ import annotations

from datetime import datetime, timedelta

from aftersales.clock import ManualClock
from aftersales.intake import accept_intake, parse_payload
from aftersales.notify import Notifier
from aftersales.runtime import ClockService, clock_context
from models.db import session_scope
from models.entities import Sop
from models.repository import claim_sop_run

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def test_lost_start_event_is_re_emitted_once_per_minute_until_a_run_claims_it(
    sqlite_db: str,
) -> None:
    clock = ManualClock(T0)
    ctx = clock_context()
    lost = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "intake_id": "c-lost",
                "customer_name": "A",
                "contact": "13812345678",
                "description": "x",
            }
        ),
        ctx=ctx,
        now=T0,
        emit=None,
    )  # the event never left
    started = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "intake_id": "c-ok",
                "customer_name": "B",
                "contact": "13812345679",
                "description": "y",
            }
        ),
        ctx=ctx,
        now=T0,
        emit=None,
    )
    with session_scope() as s:
        claim_sop_run(s, ticket_id=started.ticket_id, sop=Sop.INQUIRY, flow_run_id="run-1", now=T0)
    emitted: list[tuple[str, str]] = []
    svc = ClockService(
        clock=clock,
        notifier=Notifier({}),
        ctx=ctx,
        emit=lambda ev, tid, payload: emitted.append((ev, tid)),
    )
    assert svc.restart_lost_starts() == []  # within the 60 s grace
    clock.advance(timedelta(seconds=61))
    assert svc.restart_lost_starts() == [lost.ticket_id]
    assert emitted == [("aftersales.inquiry.received", lost.ticket_id)]
    clock.advance(timedelta(seconds=10))
    assert svc.restart_lost_starts() == []  # not again within a minute
    with session_scope() as s:
        claim_sop_run(s, ticket_id=lost.ticket_id, sop=Sop.INQUIRY, flow_run_id="run-2", now=T0)
    clock.advance(timedelta(minutes=5))
    assert svc.restart_lost_starts() == []


def test_clock_armed_before_a_restart_fires_after_it_from_the_database(
    sqlite_db: str, sink
) -> None:  # noqa: ANN001
    """Nothing lives in the process: a new service instance (after a restart of every
    process) finds the clock armed by the old one and breaches it on time."""
    from models.entities import ClockState
    from models.repository import clocks_for, escalations_for

    clock = ManualClock(T0)
    ctx = clock_context()
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
        emit=None,
    )
    first = ClockService(
        clock=clock, notifier=Notifier({"team_lead": [sink.url("/team_lead")]}), ctx=ctx, emit=None
    )
    clock.advance(timedelta(minutes=10))
    first.tick()
    del first  # the process is gone
    second = ClockService(
        clock=clock, notifier=Notifier({"team_lead": [sink.url("/team_lead")]}), ctx=ctx, emit=None
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
