"""CMP-4 service improvement report: the month's complaints grouped by theme, and every
theme that recurs (at least ``complaints.recurring_threshold`` complaints, a profile
number) with its tickets, the solutions applied and the actions still open.

A complaint's theme is what the person closing it named (``complaint.theme``), else its
product model and root cause, else its category — the three dimensions of the issue,
in that order of precision. Complaints imported from another tool (``history_ticket``,
``aftersales import``; the optional columns ``complaint_theme``, ``product_model``,
``root_cause``, ``solution``) count with the same rule, unless a live ticket has the
same id (the live ticket wins, as in the quality report). Pure over the database: no
Prefect; the flow in ``flows/improvement.py`` publishes it and notifies the CS manager.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists
from sqlmodel import Session, select

from models.entities import Complaint, Ticket
from models.history import HistoryTicket


@dataclass(frozen=True)
class ThemeTicket:
    ticket_id: str
    solution: str  # apology / compensation / repair / process_change, or "open"
    open_action: str | None  # what is still to be done (not closed, reopened, or tracking)


@dataclass
class Theme:
    name: str
    tickets: list[ThemeTicket] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.tickets)

    @property
    def solutions(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for t in self.tickets:
            out[t.solution] += 1
        return dict(out)

    @property
    def open_actions(self) -> list[str]:
        return [f"{t.ticket_id}: {t.open_action}" for t in self.tickets if t.open_action]


@dataclass(frozen=True)
class ImprovementReport:
    month: str
    complaints: int
    threshold: int
    recurring: list[Theme]

    def markdown(self, chart: str | None = None) -> str:
        lines = [
            f"# Service improvement report {self.month} (CMP-4)",
            "",
            f"{self.complaints} complaints; themes with at least {self.threshold} are recurring.",
            "",
        ]
        if not self.recurring:
            lines.append("No recurring theme this month.")
        for th in self.recurring:
            sol = ", ".join(f"{k} {v}" for k, v in sorted(th.solutions.items()))
            lines += [
                f"## {th.name} — {th.count} complaints",
                f"- tickets: {', '.join(t.ticket_id for t in th.tickets)}",
                f"- solutions applied: {sol}",
                "- open actions: " + ("; ".join(th.open_actions) or "none"),
                "",
            ]
        if chart:
            lines += ["", f"Chart: [{chart}]({chart})"]
        return "\n".join(lines)


def theme_of(t: Ticket, c: Complaint) -> str:
    return theme(c.theme, t.product_model, t.root_cause, t.category)


def theme(
    named: str | None, product_model: str | None, root_cause: str | None, category: str | None
) -> str:
    """The theme rule (CMP-4), for live and imported complaints alike."""
    if named:
        return named
    if product_model and root_cause:
        return f"{product_model} / {root_cause}"
    return f"category {category or 'unclassified'}"


def _open_action(t: Ticket, c: Complaint) -> str | None:
    if c.outcome == "reopened":
        return "reopened by the customer"
    if t.status not in ("closed",):
        return f"complaint {t.status}"
    if c.tracking:
        return f"tracking: {c.tracking}"
    return None


def improvement_report(
    session: Session, *, month: str, start: datetime, end: datetime, threshold: int
) -> ImprovementReport:
    """Complaints created in ``[start, end)`` (the month in the configured zone), live and
    imported, in creation order."""
    rows = session.exec(
        select(Ticket, Complaint)
        .join(Complaint, Complaint.ticket_id == Ticket.id)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .order_by(Ticket.created_at)
    ).all()
    found: list[tuple[datetime, str, ThemeTicket]] = [
        (t.created_at, theme_of(t, c), ThemeTicket(t.id, c.solution or "open", _open_action(t, c)))
        for t, c in rows
    ]
    found += _history(session, start, end)
    found.sort(key=lambda f: f[0])  # stable: live before imported at the same instant
    themes: dict[str, Theme] = {}
    for _, name, ticket in found:
        themes.setdefault(name, Theme(name)).tickets.append(ticket)
    recurring = sorted(
        (th for th in themes.values() if th.count >= threshold), key=lambda th: (-th.count, th.name)
    )
    return ImprovementReport(month, len(found), threshold, recurring)


def _history(
    session: Session, start: datetime, end: datetime
) -> list[tuple[datetime, str, ThemeTicket]]:
    """Imported complaints of ``[start, end)`` without a live twin (index on sop, created_at)."""
    h = HistoryTicket.__table__
    rows = session.execute(
        select(
            h.c.ticket_id,
            h.c.created_at,
            h.c.complaint_theme,
            h.c.product_model,
            h.c.root_cause,
            h.c.category,
            h.c.solution,
            h.c.resolved_at,
        )
        .where(
            h.c.sop == "complaint",
            h.c.created_at >= start,  # EpochMicros binds the instants as microseconds
            h.c.created_at < end,
        )
        .where(~exists().where(Ticket.id == h.c.ticket_id))
    ).all()
    return [
        (
            r.created_at,
            theme(r.complaint_theme, r.product_model, r.root_cause, r.category),
            ThemeTicket(
                r.ticket_id,
                r.solution or ("not recorded" if r.resolved_at else "open"),
                None if r.resolved_at else "not resolved in the imported history",
            ),
        )
        for r in rows
    ]
