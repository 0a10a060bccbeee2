"""CMP-4 service improvement report as a scheduled flow.

``service_improvement`` runs on the 2nd of each month (cron ``0 6 2 * *``, Asia/Shanghai)
for the previous month: it groups the month's complaints by theme
(:mod:`aftersales.improvement`), draws the recurring themes, publishes a markdown
artifact (``improvement-YYYY-MM``) and queues the report for the CS manager.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from aftersales.clock import get_clock
from aftersales.report_model import month_bounds, previous_month


@task(name="compute-improvement-report")
def compute(month: str) -> tuple[str, int, int]:
    """(markdown, complaints, recurring themes); the chart is written to the reports folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aftersales.improvement import improvement_report
    from aftersales.runtime import deadlines
    from aftersales.settings import get_settings
    from models.db import init_db, session_scope

    init_db()
    s = get_settings()
    start, end = month_bounds(month, s.timezone)
    threshold = deadlines().profile.complaints.recurring_threshold
    with session_scope() as session:
        report = improvement_report(session, month=month, start=start, end=end, threshold=threshold)
    chart = None
    if report.recurring:
        out = Path(s.reports_dir) / month
        out.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * len(report.recurring)))
        ax.barh([t.name for t in report.recurring], [t.count for t in report.recurring])
        ax.set_xlabel("complaints")
        ax.set_title(f"Recurring complaint themes {month}")
        fig.tight_layout()
        path = out / "improvement-themes.png"
        fig.savefig(path)
        plt.close(fig)
        chart = path.resolve().as_uri()
    return report.markdown(chart), report.complaints, len(report.recurring)


@flow(name="service_improvement", flow_run_name="improvement-{month}")
def service_improvement(month: str | None = None) -> str:
    from aftersales.runtime import deadlines
    from aftersales.sla import enqueue_notification
    from models.db import session_scope

    now = get_clock().now()
    month = month or previous_month(now, deadlines().calendar.tz.key)
    markdown, complaints, recurring = compute(month)
    create_markdown_artifact(markdown=markdown, key=f"improvement-{month}")
    with session_scope() as s:
        enqueue_notification(
            s,
            dedupe_key=f"improvement:{month}",
            role="cs_manager",
            template="improvement_report",
            context={
                "period": month,
                "complaints": complaints,
                "recurring": recurring,
                "report": markdown,
            },  # fmt: skip
            now=now,
        )
    return markdown
