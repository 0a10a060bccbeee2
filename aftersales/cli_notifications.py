"""``aftersales notifications``: what the outbox still has to deliver, and sending it again.

Works on the store (the project database) alone: no Prefect server is needed. Bodies are
never shown; errors are masked (PRIV-1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated

import typer

notifications_app = typer.Typer(
    help="The notification outbox (issue 11): what waits or cannot be routed; resend now.",
)


@dataclass(frozen=True)
class OutboxRow:
    """One undelivered notification as listed (masked)."""

    id: int
    state: str  # "waiting" (not delivered yet, will be retried) | "unroutable" (FAILED)
    role: str
    template: str
    clause: str
    ticket: str
    attempts: int
    last_error: str
    next_attempt: str
    created: str


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def list_undelivered(*, failed_only: bool, limit: int, tz: object) -> list[OutboxRow]:
    """Undelivered notifications, oldest first. ``failed_only``: those that failed at
    least once (waiting for a retry) or cannot be routed."""
    from sqlmodel import or_, select

    from aftersales.privacy import mask_text
    from models.db import session_scope
    from models.entities import Notification, NotificationStatus

    q = select(Notification).where(
        Notification.status.in_([NotificationStatus.PENDING, NotificationStatus.FAILED])
    )
    if failed_only:
        q = q.where(
            or_(Notification.status == NotificationStatus.FAILED, Notification.attempts > 0)
        )
    with session_scope() as s:
        rows = list(s.exec(q.order_by(Notification.id).limit(limit)).all())

    def at(t: datetime | None) -> str:
        return t.astimezone(tz).isoformat(timespec="seconds") if t else "-"  # type: ignore[arg-type]

    return [
        OutboxRow(
            id=n.id or 0,
            state="unroutable" if n.status == NotificationStatus.FAILED else "waiting",
            role=n.role,
            template=n.template,
            clause=n.clause,
            ticket=n.ticket_id or "-",
            attempts=n.attempts,
            last_error=mask_text(n.last_error or "-"),
            next_attempt=at(n.next_attempt_at),
            created=at(n.created_at),
        )
        for n in rows
    ]


def reschedule(*, now: datetime, notification_id: int | None) -> list[int]:
    """Make the undelivered notifications (one, or all) due ``now``: a waiting one is
    retried at once, an unroutable one (its route fixed meanwhile) is pending again. The
    courier of the running SLA service delivers them."""
    from sqlmodel import select

    from models.db import session_scope
    from models.entities import Notification, NotificationStatus

    undelivered = [NotificationStatus.PENDING, NotificationStatus.FAILED]
    with session_scope() as s:
        q = select(Notification).where(Notification.status.in_(undelivered))
        if notification_id is not None:
            q = q.where(Notification.id == notification_id)
        rows = list(s.exec(q.order_by(Notification.id)).all())
        for n in rows:
            n.status = NotificationStatus.PENDING
            n.next_attempt_at = now
            s.add(n)
        return [n.id or 0 for n in rows]


@notifications_app.callback(invoke_without_command=True)
def notifications(
    ctx: typer.Context,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="only those that failed at least once (waiting for a retry) or cannot be routed",
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="list at most this many")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """List the undelivered notifications (masked): id, role, template, ticket, attempts,
    last error, next attempt. Unroutable ones (no route, invalid URL) are terminal until
    the route is fixed and they are retried."""
    if ctx.invoked_subcommand is not None:
        return
    from zoneinfo import ZoneInfo

    from aftersales.settings import get_settings

    tz = ZoneInfo(get_settings().timezone)
    rows = list_undelivered(failed_only=failed, limit=limit, tz=tz)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], ensure_ascii=False))
        return
    if not rows:
        typer.echo("no undelivered notifications" if not failed else "no failed notifications")
        return
    head = ("id", "state", "role", "template", "ticket", "attempts", "next attempt", "last error")
    table = [
        (str(r.id), r.state, r.role, r.template, r.ticket, str(r.attempts), r.next_attempt,
         r.last_error[:100])
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    for row in (head, *table):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@notifications_app.command("retry")
def retry(
    notification_id: Annotated[
        int | None, typer.Option("--id", min=1, help="only this notification")
    ] = None,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver",
            help="also deliver now from this process (one courier round) instead of leaving "
            "it to the SLA service's courier; on SQLite only when no SLA service runs",
        ),
    ] = False,
) -> None:
    """Send undelivered notifications again now (all, or ``--id N``): they become due at
    once and the running SLA service's courier delivers them within its poll interval."""
    from aftersales.clock import get_clock

    now = get_clock().now()
    ids = reschedule(now=now, notification_id=notification_id)
    if notification_id is not None and not ids:
        _fail(f"--id: notification {notification_id} does not exist or was already delivered")
    typer.echo(f"{len(ids)} notification(s) due now: {', '.join(map(str, ids)) or '-'}")
    if not deliver or not ids:
        return
    from aftersales.notify import Notifier
    from aftersales.sla import OutboxPolicy, deliver_outbox
    from models.entities import NotificationStatus

    rows = deliver_outbox(
        notifier=Notifier.from_settings(),
        now=now,
        batch=len(ids),
        policy=OutboxPolicy.from_settings(),
    )
    sent = [r.id for r in rows if r.status == NotificationStatus.SENT]
    typer.echo(f"delivered {len(sent)} of {len(rows)} attempted")
    if len(sent) < len(rows):
        raise typer.Exit(1)
