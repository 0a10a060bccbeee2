"""Prefect events from the project's outbox: rows written in the step's transaction,
sent after commit over the process's one long-lived events client (``EventsLink``) with
a timeout; the unsent stay for the courier's next round (backoff). Importing this module
connects to nothing."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from aftersales.settings import get_settings
from models.db import session_scope

log = logging.getLogger("aftersales.events")


class EventsLink:
    """One Prefect events client per process (issue 9 §3), owned by a background thread
    running its own event loop: every send reuses the open websocket instead of opening
    one per event or per batch. Prefect's client reconnects by itself (and re-sends what
    the server had not confirmed); a send that still fails or times out drops the client
    and the next send connects again. Sends from several threads (the intake's bounded
    send, the SLA service's courier, the run supervisor in one process) take turns under
    one lock on the loop: one connect however many arrive at once, and no send drops the
    client under another's feet. A forked child (the launcher's) starts its own.
    Nothing connects until the first send; the link closes the websocket at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._api_url: str | None = None
        self._turn: asyncio.Lock | None = None  # created on the link's loop
        self.connects = 0  # how many websockets this process opened (benchmarks, tests)
        self.drops = 0  # how many clients a failed send or connect dropped
        self.slow = 0  # sends that ran out of time on a live client (kept)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                self._pid, self._client = os.getpid(), None
                self.connects = self.drops = self.slow = 0
                self._turn = None
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="aftersales-events", daemon=True
                ).start()
                self._loop = loop
                atexit.register(self.close)
            return self._loop

    async def _emit(self, events: list[Any], timeout: float, sent: list[int]) -> None:
        from prefect.events.clients import get_events_client
        from prefect.settings import PREFECT_API_URL

        if self._turn is None:
            self._turn = asyncio.Lock()
        async with asyncio.timeout(timeout):  # waiting for the other senders
            await self._turn.acquire()
        try:
            async with asyncio.timeout(timeout):  # this send's own connect and emits
                api_url = str(PREFECT_API_URL.value())
                if self._client is not None and self._api_url != api_url:
                    await self._drop()
                if self._client is None:
                    client = get_events_client()
                    self.connects += 1
                    try:
                        await client.__aenter__()
                    except BaseException as exc:
                        self.drops += 1
                        log.warning("events client could not connect: %r", exc)
                        with contextlib.suppress(Exception):
                            await client.__aexit__(None, None, None)
                        raise
                    self._client, self._api_url = client, api_url
                try:
                    for ev in events:
                        await self._client.emit(ev)
                        sent[0] += 1
                except asyncio.CancelledError:
                    # too slow (a loaded server answers its pings late), not broken: the
                    # websocket stays; a closed one is reconnected by Prefect's client,
                    # which re-sends what the server had not confirmed
                    self.slow += 1
                    raise
                except BaseException as exc:
                    self.drops += 1
                    log.warning("events client dropped after a failed send: %r", exc)
                    await self._drop()
                    raise
        finally:
            self._turn.release()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.__aexit__(None, None, None)

    def emit(self, events: list[Any], timeout: float) -> tuple[int, str | None]:
        """Send in order; returns how many the client took and the error that stopped it."""
        from prefect.settings import PREFECT_API_URL

        loop = self._ensure_loop()
        sent = [0]
        # the caller's Prefect settings (API URL) hold in the loop thread too
        url = PREFECT_API_URL.value()
        fut = asyncio.run_coroutine_threadsafe(self._emit_with(url, events, timeout, sent), loop)
        try:
            fut.result(2 * timeout + 5.0)  # the wait for the turn, then the send
        except Exception as exc:  # noqa: BLE001 - the server is down: the rest stay stored
            fut.cancel()
            return sent[0], str(exc) or type(exc).__name__
        return sent[0], None

    async def _emit_with(
        self, url: Any, events: list[Any], timeout: float, sent: list[int]
    ) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: url}):
            await self._emit(events, timeout, sent)

    def close(self) -> None:
        loop = self._loop
        if loop is None or self._pid != os.getpid() or not loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._drop(), loop).result(3.0)


LINK = EventsLink()


def send_outbox_events(
    *, now: datetime, ticket_ids: Collection[str] | None = None, batch: int = 200
) -> int:
    """Send the stored Prefect events that are due (oldest first; these tickets', or
    all), over one client, then apply their run tags. Unsent ones stay for the next round
    (backoff). Rows are claimed before they are sent, so two senders never send one."""
    from prefect.events import Event
    from sqlalchemy import update
    from sqlmodel import select

    from models.entities import OutboxEvent

    s_ = get_settings()
    due = (OutboxEvent.next_attempt_at.is_(None)) | (OutboxEvent.next_attempt_at <= now)
    with session_scope() as s:
        q = select(OutboxEvent.id).where(OutboxEvent.sent_at.is_(None), due)
        if ticket_ids:
            q = q.where(OutboxEvent.ticket_id.in_(list(ticket_ids)))
        wanted = list(s.exec(q.order_by(OutboxEvent.id).limit(batch)).all())
        if not wanted:
            return 0
        # claim them (compare and set): the API's pump, a step and the SLA service's
        # courier may reach the same rows at once; only the claimer sends a row. A sender
        # that dies leaves its claim to expire, then the courier sends the row again.
        lease = timedelta(seconds=2 * s_.prefect_call_timeout_seconds + 5)
        mine = set(
            s.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(wanted), OutboxEvent.sent_at.is_(None), due)
                .values(next_attempt_at=now + lease)
                .returning(OutboxEvent.id)
            ).scalars()
        )
        rows = list(
            s.exec(
                select(OutboxEvent).where(OutboxEvent.id.in_(mine)).order_by(OutboxEvent.id)
            ).all()
        )
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
    sent, error = LINK.emit(events, s_.prefect_call_timeout_seconds)
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
            from aftersales.runtime import tag_ticket_runs

            tag_ticket_runs(tid, tag)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not tag the runs of %s with %s: %s", tid, tag, exc)
    return sent


def _run_async(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also under a running loop (in a
    thread then). Used by aftersales.reconciler."""
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


class OutboxPump:
    """The intake API's sender (issue 9 §3): a request commits its ticket and start event
    and returns at once; one background thread per process sends what the requests queued
    since its last round, every ticket of the round in one batch over the process's link.
    What it cannot send (the server is down or slow) stays stored, with its attempt
    recorded, for the SLA service's courier. Each round runs in the Prefect settings
    context of the latest request that queued a ticket (the API URL it was configured
    with). Nothing starts until the first ``queue``; a forked child starts its own."""

    def __init__(self, send: Any = None) -> None:
        self._send = send or send_outbox_events
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[str] = []
        self._ctx: contextvars.Context | None = None
        self._pid = -1
        self.rounds = 0  # sending rounds so far (tests, benchmarks)

    def queue(self, *, now: datetime, ticket_id: str) -> int:
        """Queue the ticket's stored events for the next round; never waits. Returns 0
        (nothing sent yet), like a send that left its events for later."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._pending = os.getpid(), []
                threading.Thread(target=self._run, name="aftersales-pump", daemon=True).start()
            self._pending.append(ticket_id)
            self._ctx = contextvars.copy_context()
        self._wake.set()
        return 0

    def _run(self) -> None:
        from aftersales.clock import get_clock

        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                tickets, self._pending, ctx = self._pending, [], self._ctx
            if not tickets or ctx is None:
                continue
            try:
                ctx.run(self._send, now=get_clock().now(), ticket_ids=tickets)
            except Exception as exc:  # noqa: BLE001 - stored: the courier sends them later
                log.warning("start events of %d tickets left for the SLA service: %s",
                            len(tickets), exc)  # fmt: skip
            self.rounds += 1


PUMP = OutboxPump()
