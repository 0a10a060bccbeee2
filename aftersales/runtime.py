"""Wiring shared by the CLI, the HTTP endpoint, the SLA service and the flows: the
clock context from settings, the delivery of stored Prefect events (one events client
per batch, with a timeout), run tags, the resume callback, and the SLA service.
Built lazily; importing this module connects to nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from aftersales.calendar import WorkCalendar
from aftersales.clock import Clock, get_clock
from aftersales.policy import get_profile
from aftersales.settings import get_settings
from aftersales.sla import Deadlines, deliver_outbox, fire_due, next_wakeup
from models.db import session_scope

log = logging.getLogger("aftersales.runtime")


@lru_cache(maxsize=4)
def _calendar(tz: str, hours: str, unknown: str, files: tuple[str, ...]) -> WorkCalendar:
    return WorkCalendar.from_settings(get_settings())


def deadlines(profile: str | None = None) -> Deadlines:
    s = get_settings()
    name = profile or (str(s.policy_file) if s.policy_file else s.policy_profile)
    return Deadlines(
        profile=get_profile(name),
        calendar=_calendar(
            s.timezone,
            s.working_hours,
            s.calendar_unknown_year,
            tuple(str(f) for f in s.calendar_files),
        ),
        time_scale=s.time_scale,
    )


async def _emit_all(events: list[Any], timeout: float) -> int:
    """Send events over one events client; returns how many were accepted in order."""
    from prefect.events.clients import get_events_client

    sent = 0
    async with asyncio.timeout(timeout):
        async with get_events_client() as client:
            for ev in events:
                await client.emit(ev)
                sent += 1
    return sent


def send_outbox_events(*, now: datetime, ticket_id: str | None = None, batch: int = 200) -> int:
    """Send the stored Prefect events (oldest first; one ticket's, or all due), over one
    client, then apply their run tags. Unsent ones stay for the next round (backoff)."""
    from prefect.events import Event
    from sqlmodel import select

    from models.entities import OutboxEvent

    s_ = get_settings()
    with session_scope() as s:
        q = select(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
        q = (
            q.where(OutboxEvent.ticket_id == ticket_id)
            if ticket_id
            else q.where(OutboxEvent.next_attempt_at <= now)
        )
        rows = list(s.exec(q.order_by(OutboxEvent.id).limit(batch)).all())
        events = [
            Event(
                event=r.event,
                resource={
                    "prefect.resource.id": f"aftersales.ticket.{r.ticket_id}",
                    "prefect.resource.name": r.ticket_id,
                    "aftersales.sop": str(r.payload.get("sop", "")),
                },
                payload=r.payload,
                related=r.related,
            )
            for r in rows
        ]
        tags = [(r.ticket_id, r.tag) for r in rows if r.tag]
        ids = [r.id for r in rows]
    if not events:
        return 0
    sent, error = 0, None
    try:
        sent = _run_async(_emit_all(events, s_.prefect_call_timeout_seconds))
    except Exception as exc:  # noqa: BLE001 - the server is down: keep them for later
        error = str(exc) or type(exc).__name__
    with session_scope() as s:
        for i, rid in enumerate(ids):
            row = s.get(OutboxEvent, rid)
            if row is None:
                continue
            if i < sent:
                row.sent_at = now
            else:
                row.attempts += 1
                row.last_error = error
                row.next_attempt_at = now + timedelta(
                    seconds=min(s_.event_retry_max_seconds, 2 ** min(row.attempts, 10))
                )
            s.add(row)
    for tid, tag in tags:
        try:
            tag_ticket_runs(tid, tag)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not tag the runs of %s with %s: %s", tid, tag, exc)
    return sent


def _run_async(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[Any] = []

    def runner() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box.append(exc)

    t = threading.Thread(target=runner)
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def tag_run(run_id: str, tags: list[str]) -> None:
    """Set tags on a run; a tag ``prefix:value`` replaces the run's other ``prefix:`` tag."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    prefixes = {t.split(":", 1)[0] + ":" for t in tags}
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(UUID(run_id))
        kept = [t for t in fr.tags or [] if not any(t.startswith(p) for p in prefixes)]
        client.update_flow_run(UUID(run_id), tags=sorted({*kept, *tags}))


def tag_ticket_runs(ticket_id: str, tag: str) -> None:
    """Tag every run of the ticket (its SOP runs and its escalations' runs)."""
    from sqlmodel import select

    from models.entities import Escalation, SopRun

    with session_scope() as s:
        runs = [r.flow_run_id for r in s.exec(select(SopRun).where(SopRun.ticket_id == ticket_id))]
        runs += [
            e.flow_run_id
            for e in s.exec(select(Escalation).where(Escalation.ticket_id == ticket_id))
            if e.flow_run_id
        ]
    for run_id in runs:
        tag_run(run_id, [tag])


def resume_prefect_run(flow_run_id: str, run_input: dict[str, Any]) -> None:
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(flow_run_id), run_input=run_input)


class SlaService:
    """The long-lived SLA clock: fires due clocks and delivers the notification outbox.
    It sleeps until the next due moment (or the poll interval), so its work per wake-up
    is the due clocks only."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        notifier: Any | None = None,
        ctx: Deadlines | None = None,
        on_resume: Any = resume_prefect_run,
        send_events: bool = True,
    ) -> None:
        from aftersales.notify import Notifier

        s = get_settings()
        self.clock = clock or get_clock()
        self.ctx = ctx or deadlines()
        self.notifier = notifier or Notifier.from_settings(s)
        self.on_resume = on_resume
        self.poll = s.clock_poll_seconds
        self.batch = s.clock_batch
        self.max_attempts = s.notify_max_attempts
        self.backoff = s.notify_backoff_seconds
        self._stop = threading.Event()
        self.send_events_enabled = send_events
        self.grace = s.lost_start_grace_seconds
        self.board_every = s.sla_board_seconds
        self.board_limit = s.sla_board_limit
        self._last_scan = 0.0
        self._last_board = 0.0

    def fire(self) -> int:
        """Fire every due clock (reminders, breaches, repeats), batch by batch."""
        now = self.clock.now()
        fired = 0
        while True:
            with session_scope() as s:
                report = fire_due(
                    s, ctx=self.ctx, now=now, batch=self.batch, on_resume=self.on_resume
                )
            fired += report.fired
            if report.fired < self.batch:
                return fired

    def deliver(self) -> int:
        """One round of the notification outbox."""
        with session_scope() as s:
            rows = deliver_outbox(
                s,
                notifier=self.notifier,
                now=self.clock.now(),
                max_attempts=self.max_attempts,
                backoff_seconds=self.backoff,
            )
        return len(rows)

    def tick(self) -> int:
        """Fire, then deliver (the service runs both in their own loops)."""
        fired = self.fire()
        self.deliver()
        return fired

    def requeue_lost_starts(self) -> list[str]:
        """Queue the start event again for an open ticket whose SOP has no run although its
        start event was sent more than the grace ago (the server or its triggers dropped
        it), and likewise for an open escalation without a run. Counted from the last
        start event (a class-B hand-over included), so a ticket is re-queued at most once
        per grace: no storm."""
        from models.repository import lost_starts

        now = self.clock.now()
        with session_scope() as s:
            queued = lost_starts(s, now=now, grace=timedelta(seconds=self.grace))
        for what in queued:
            log.warning("%s had no run; its start event is queued again", what)
        return queued

    def refresh_board(self) -> int:
        """The ``sla-board`` table artifact: every open ticket's next due clock."""
        from prefect.artifacts import create_table_artifact

        from models.repository import sla_board

        tz = self.ctx.calendar.tz
        with session_scope() as s:
            rows = [r.as_row(tz) for r in sla_board(s, limit=self.board_limit)]
        create_table_artifact(
            key="sla-board",
            table=rows or [{"ticket": "-", "state": "no open tickets"}],
            description="Open tickets, soonest due first (refreshed by the SLA service)",
        )
        return len(rows)

    def seconds_until_next(self) -> float:
        with session_scope() as s:
            nxt: datetime | None = next_wakeup(s, include_outbox=False)
        if nxt is None:
            return self.poll
        return max(0.0, min(self.poll, (nxt - self.clock.now()).total_seconds()))

    def run_forever(self) -> None:
        """Firing and delivery run in two loops, so a slow or large outbox round never
        delays a reminder or a breach."""
        log.info("SLA clock service started (poll %.1fs)", self.poll)
        courier = threading.Thread(target=self._deliver_forever, name="sla-outbox", daemon=True)
        courier.start()
        while not self._stop.is_set():
            try:
                self.fire()
                wait = self.seconds_until_next()
            except Exception:  # keep the clock alive through a transient DB error
                log.exception("SLA clock tick failed; retrying")
                wait = self.poll
            self._stop.wait(wait)
        courier.join(timeout=10)

    def _deliver_forever(self) -> None:
        """The courier: notifications, stored Prefect events, lost starts, the sla-board.
        Nothing here runs in the firing loop, so a slow server never delays a clock."""
        while not self._stop.is_set():
            sent = 0
            for what, job in (
                ("notification outbox", self.deliver),
                ("event outbox", self.send_events),
            ):
                try:
                    sent += job()
                except Exception:  # noqa: BLE001 - keep the courier alive
                    log.exception("%s round failed; retrying", what)
            tick = time.monotonic()
            if tick - self._last_scan > self.grace / 2:
                self._last_scan = tick
                try:
                    self.requeue_lost_starts()
                except Exception:  # noqa: BLE001
                    log.exception("lost-start scan failed")
            if self.board_every and tick - self._last_board > self.board_every:
                self._last_board = tick
                try:
                    self.refresh_board()
                except Exception as exc:  # noqa: BLE001 - the Prefect server may be down
                    log.warning("sla-board not refreshed: %s", exc)
            if not sent:
                self._stop.wait(min(self.poll, 0.5))

    def send_events(self) -> int:
        if not self.send_events_enabled:
            return 0
        return send_outbox_events(now=self.clock.now())

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.run_forever, name="sla-clock", daemon=True)
        t.start()
        return t
