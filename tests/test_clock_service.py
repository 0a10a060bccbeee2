"""The SLA service: a start event the server dropped is queued again; clocks live in the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from aftersales.clock import ManualClock
from aftersales.intake import accept_intake, parse_payload
from aftersales.notify import Notifier
from aftersales.runtime import SlaService, deadlines
from models.db import session_scope
from models.entities import Sop
from models.repository import claim_sop_run

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def test_a_start_event_the_server_dropped_is_queued_again_once_per_grace_until_a_run_claims_it(
    sqlite_db: str,
) -> None:
    """The start event is stored with the ticket; if it was sent but no run claimed the
    ticket within the grace (the server or its triggers dropped it), the service queues it
    again — counted from the last start event, at most once per grace, never a storm."""
    from sqlmodel import select

    from models.entities import OutboxEvent

    clock = ManualClock(T0)
    ctx = deadlines()

    def intake(intake_id: str, contact: str) -> str:
        payload = {"channel": "phone", "intake_id": intake_id, "customer_name": "A",
                   "contact": contact, "description": "x"}  # fmt: skip
        return accept_intake(parse_payload(payload), ctx=ctx, now=T0).ticket_id

    lost, started = intake("c-lost", "13812345678"), intake("c-ok", "13812345679")

    def starts(tid: str) -> list[OutboxEvent]:
        with session_scope() as s:
            return list(
                s.exec(
                    select(OutboxEvent).where(
                        OutboxEvent.ticket_id == tid,
                        OutboxEvent.event == "aftersales.inquiry.received",
                    )
                ).all()
            )

    with session_scope() as s:  # both start events went out; one run claimed its ticket
        for row in s.exec(select(OutboxEvent)).all():
            row.sent_at = T0
            s.add(row)
        claim_sop_run(s, ticket_id=started, sop=Sop.INQUIRY, flow_run_id="run-1", now=T0)
    svc = SlaService(clock=clock, notifier=Notifier({}), ctx=ctx, send_events=False)
    assert svc.requeue_lost_starts() == []  # within the 60 s grace
    clock.advance(timedelta(seconds=61))
    assert svc.requeue_lost_starts() == [f"ticket {lost} (inquiry)"]
    assert len(starts(lost)) == 2 and len(starts(started)) == 1
    clock.advance(timedelta(seconds=90))
    assert svc.requeue_lost_starts() == []  # the re-queued one is not sent yet
    with session_scope() as s:
        claim_sop_run(s, ticket_id=lost, sop=Sop.INQUIRY, flow_run_id="run-2", now=T0)
    clock.advance(timedelta(minutes=5))
    assert svc.requeue_lost_starts() == []


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
