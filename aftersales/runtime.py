"""Wiring shared by the CLI, the HTTP endpoint, the clock service and the flows:
the clock context from settings, the Prefect event emitter, the resume callback.
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
from aftersales.intake import INQUIRY_EVENT, REPAIR_EVENT
from aftersales.policy import get_profile
from aftersales.settings import get_settings
from aftersales.sla import ClockContext, deliver_outbox, fire_due, next_wakeup
from models.db import session_scope

log = logging.getLogger("aftersales.runtime")


@lru_cache(maxsize=4)
def _calendar(tz: str, hours: str, unknown: str) -> WorkCalendar:
    s = get_settings()
    return WorkCalendar(tz=tz, periods=s.work_periods(), unknown_year=unknown)  # type: ignore[arg-type]


def clock_context(profile: str | None = None) -> ClockContext:
    s = get_settings()
    name = profile or (str(s.policy_file) if s.policy_file else s.policy_profile)
    return ClockContext(
        profile=get_profile(name),
        calendar=_calendar(s.timezone, s.working_hours, s.calendar_unknown_year),
        time_scale=s.time_scale,
    )


def emit_prefect_event(
    event: str,
    ticket_id: str,
    payload: dict[str, Any],
    related: list[dict[str, str]] | None = None,
) -> None:
    """Send one event to the Prefect server and wait until it is accepted."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    ev = Event(
        event=event,
        resource={
            "prefect.resource.id": f"aftersales.ticket.{ticket_id}",
            "prefect.resource.name": ticket_id,
            "aftersales.sop": str(payload.get("sop", "")),
            "aftersales.channel": str(payload.get("channel", "")),
        },
        payload=payload,
        related=related or [],
    )

    async def _send() -> None:
        async with get_events_client() as client:
            await client.emit(ev)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_send())
        return
    # called from inside an event loop (the HTTP endpoint): run in a helper thread
    err: list[BaseException] = []

    def runner() -> None:
        try:
            asyncio.run(_send())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            err.append(exc)

    t = threading.Thread(target=runner)
    t.start()
    t.join()
    if err:
        raise err[0]


def resume_prefect_run(flow_run_id: str, run_input: dict[str, Any]) -> None:
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(flow_run_id), run_input=run_input)


class ClockService:
    """The long-lived SLA clock: fires due clocks and delivers the notification outbox.
    It sleeps until the next due moment (or the poll interval), so its work per wake-up
    is the due clocks only."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        notifier: Any | None = None,
        ctx: ClockContext | None = None,
        on_resume: Any = resume_prefect_run,
        emit: Any = emit_prefect_event,
    ) -> None:
        from aftersales.notify import Notifier

        s = get_settings()
        self.clock = clock or get_clock()
        self.ctx = ctx or clock_context()
        self.notifier = notifier or Notifier.from_settings(s)
        self.on_resume = on_resume
        self.poll = s.clock_poll_seconds
        self.batch = s.clock_batch
        self.max_attempts = s.notify_max_attempts
        self.backoff = s.notify_backoff_seconds
        self._stop = threading.Event()
        self.emit = emit
        self._reemitted: dict[str, datetime] = {}
        self._last_orphan_scan = 0.0

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

    def restart_lost_starts(
        self, grace_seconds: float = 60, every_seconds: float = 60
    ) -> list[str]:
        """Re-emit the start event of open tickets whose SOP run never started (the event
        was lost while the Prefect server or the triggers were down). A duplicate run is
        harmless: the first run claims the ticket, the second stops."""
        from models.entities import Sop
        from models.repository import unstarted_tickets

        if self.emit is None:
            return []
        now = self.clock.now()
        with session_scope() as s:
            lost = unstarted_tickets(
                s,
                older_than=now - timedelta(seconds=grace_seconds),
                newer_than=now - timedelta(days=7),
            )
            todo = [(t.id, t.sop, t.channel) for t in lost]
        sent = []
        for tid, sop, channel in todo:
            last = self._reemitted.get(tid)
            if last is not None and (now - last).total_seconds() < every_seconds:
                continue
            event = REPAIR_EVENT if sop == Sop.REPAIR else INQUIRY_EVENT
            try:
                self.emit(event, tid, {"ticket_id": tid, "sop": str(sop), "channel": str(channel)})
            except Exception as exc:  # noqa: BLE001 - the server is still down; try next time
                log.warning("could not re-emit %s for %s: %s", event, tid, exc)
                break
            self._reemitted[tid] = now
            sent.append(tid)
            log.warning("ticket %s had no %s run; start event re-emitted", tid, sop)
        return sent

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
                if time.monotonic() - self._last_orphan_scan > 30:
                    self._last_orphan_scan = time.monotonic()
                    self.restart_lost_starts()
                wait = self.seconds_until_next()
            except Exception:  # keep the clock alive through a transient DB error
                log.exception("SLA clock tick failed; retrying")
                wait = self.poll
            self._stop.wait(wait)
        courier.join(timeout=10)

    def _deliver_forever(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver()
            except Exception:
                log.exception("notification outbox round failed; retrying")
                sent = 0
            if not sent:
                self._stop.wait(min(self.poll, 0.5))

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.run_forever, name="sla-clock", daemon=True)
        t.start()
        return t
