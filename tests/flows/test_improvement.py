"""CMP-4: the month's complaints grouped by theme; a theme with at least the profile's
threshold of complaints is recurring, with its tickets, solutions and open actions; the
scheduled flow publishes it and queues it for the CS manager."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from aftersales.improvement import improvement_report
from aftersales.intake import accept_intake, parse_payload
from aftersales.report_model import month_bounds
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import Complaint, Notification

OCT = datetime.fromisoformat("2026-10-10T10:00:00+08:00")


def complaint(key: str, at: datetime, theme: str | None, **c: object) -> str:
    tid = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "sop": "complaint",
                "intake_id": key,
                "customer_name": "A",
                "contact": f"1381234{len(key):04d}",
                "product_model": "X200",
                "description": "x",
            }
        ),  # fmt: skip
        ctx=deadlines(),
        now=at,
    ).ticket_id
    with session_scope() as s:
        s.add(Complaint(ticket_id=tid, theme=theme, **c))
    return tid


def test_recurring_themes_are_listed_with_tickets_solutions_and_open_actions_CMP_4(
    sqlite_db: str,
) -> None:
    a = complaint("c-a", OCT, "late engineer", solution="apology", outcome="accepted")
    b = complaint("c-b", OCT + timedelta(days=3), "late engineer", solution="compensation",
                  outcome="reopened")  # fmt: skip
    complaint("c-c", OCT + timedelta(days=4), "billing error", solution="apology")
    complaint("c-d", OCT + timedelta(days=40), "late engineer", solution="apology")  # November
    start, end = month_bounds("2026-10")
    with session_scope() as s:
        r = improvement_report(s, month="2026-10", start=start, end=end, threshold=2)
    assert r.complaints == 3
    assert [(t.name, t.count) for t in r.recurring] == [("late engineer", 2)]
    theme = r.recurring[0]
    assert [t.ticket_id for t in theme.tickets] == [a, b]
    assert theme.solutions == {"apology": 1, "compensation": 1}
    assert f"{b}: reopened by the customer" in theme.open_actions
    assert "## late engineer — 2 complaints" in r.markdown()


def test_the_monthly_flow_publishes_the_report_and_queues_it_for_the_cs_manager(
    sqlite_db: str, tmp_path: object, monkeypatch: object
) -> None:
    from flows.improvement import service_improvement

    monkeypatch.setenv("AFTERSALES_REPORTS_DIR", str(tmp_path))  # type: ignore[attr-defined]
    from aftersales.settings import reset_settings

    reset_settings()
    for i in range(3):
        complaint(f"c-{i}", OCT + timedelta(days=i), "noisy fan", solution="repair")
    markdown = service_improvement(month="2026-10")
    assert "## noisy fan — 3 complaints" in markdown and "Chart:" in markdown
    with session_scope() as s:
        (note,) = s.exec(
            select(Notification).where(Notification.template == "improvement_report")
        ).all()
    assert note.role == "cs_manager" and "2026-10" in note.title and "1 recurring" in note.title
