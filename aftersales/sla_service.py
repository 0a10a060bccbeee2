"""The long-lived SLA clock service: fires due clocks in one loop and, in a courier
thread, delivers the notification outbox, the stored Prefect events and the sla-board.
Importing this module connects to nothing."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from aftersales.clock import Clock, get_clock
from aftersales.events import send_outbox_events
from aftersales.runtime import deadlines
from aftersales.settings import get_settings
from aftersales.sla import Deadlines, OutboxPolicy, deliver_outbox, fire_due, next_wakeup
from models.db import session_scope

log = logging.getLogger("aftersales.sla_service")


class SlaService:
    """The long-lived SLA clock: fires due clocks and delivers the notification outbox.
    It sleeps until the next due moment (or the poll interval), so its work per wake-up
    is the due clocks only.

    On PostgreSQL several instances may run at once: each firing batch takes its clocks
    with ``FOR UPDATE SKIP LOCKED`` in one short transaction, and each courier round
    leases its outbox rows (``claimed_until``), so no clock fires twice and no message is
    sent twice. On SQLite run one instance (SQLite has no row locks to skip)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        notifier: Any | None = None,
        ctx: Deadlines | None = None,
        send_events: bool = True,
    ) -> None:
        from aftersales.notify import Notifier

        s = get_settings()
        self.clock = clock or get_clock()
        self.ctx = ctx or deadlines()
        self.notifier = notifier or Notifier.from_settings(s)
        self.poll = s.clock_poll_seconds
        self.batch = s.clock_batch
        self.outbox = OutboxPolicy.from_settings(s)
        self.outbox_batch = 200
        self.late_after = s.late_fire_seconds
        self._stop = threading.Event()
        self.send_events_enabled = send_events
        self.board_every = s.sla_board_seconds
        self.board_limit = s.sla_board_limit
        self._last_board = 0.0

    def fire(self) -> int:
        """Fire every due clock (reminders, breaches, repeats), batch by batch; each
        batch is one short transaction stamped with its own time."""
        fired = 0
        while True:
            now = self.clock.now()
            with session_scope() as s:
                report = fire_due(
                    s,
                    ctx=self.ctx,
                    now=now,
                    batch=self.batch,
                    late_after=self.late_after,
                )
            fired += report.fired
            if report.clocks < self.batch:
                return fired

    def deliver(self) -> int:
        """One round of the notification outbox: claim (a short transaction), deliver
        concurrently outside any transaction, record (a short transaction)."""
        rows = deliver_outbox(
            notifier=self.notifier,
            now=self.clock.now(),
            batch=self.outbox_batch,
            policy=self.outbox,
        )
        return len(rows)

    def tick(self) -> int:
        """Fire, then deliver (the service runs both in their own loops)."""
        fired = self.fire()
        self.deliver()
        return fired

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
        """Firing, message delivery and the Prefect-side housekeeping run in three loops,
        so a slow or large outbox round never delays a reminder or a breach, and a slow
        Prefect server never delays a message."""
        log.info("SLA clock service started (poll %.1fs)", self.poll)
        courier = threading.Thread(target=self._deliver_forever, name="sla-outbox", daemon=True)
        courier.start()
        keeper = threading.Thread(target=self._housekeep_forever, name="sla-events", daemon=True)
        keeper.start()
        while not self._stop.is_set():
            try:
                self.fire()
                wait = self.seconds_until_next()
            except Exception:  # keep the clock alive through a transient DB error
                log.exception("SLA clock tick failed; retrying")
                wait = self.poll
            self._stop.wait(wait)
        courier.join(timeout=10)
        keeper.join(timeout=10)

    def _deliver_forever(self) -> None:
        """The courier: the notification outbox. Nothing here runs in the firing loop."""
        while not self._stop.is_set():
            try:
                sent = self.deliver()
            except Exception:  # noqa: BLE001 - keep the courier alive
                log.exception("notification outbox round failed; retrying")
                sent = 0
            if not sent:
                self._stop.wait(min(self.poll, 0.5))

    def _housekeep_forever(self) -> None:
        """Stored Prefect events and the sla-board (lost starts are the run supervisor's,
        ``aftersales.reconciler``): the Prefect side, in its own loop, so a slow server
        delays neither a clock nor a message."""
        while not self._stop.is_set():
            sent = 0
            try:
                sent = self.send_events()
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("event outbox round failed; retrying")
            tick = time.monotonic()
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
