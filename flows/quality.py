"""Monthly quality evaluation (QA-1..4) and response-speed diagnosis (SPD-1/2) as flows.

``quality_evaluation`` is deployed on a schedule before the 5th of each month
(cron ``0 6 1 * *``, Asia/Shanghai) for the previous month; ``speed_diagnosis``
monthly (``0 7 1 * *``) over the last three months. Both read the stored history
and live tickets, write CSV + HTML + PNG files into the reports folder
(``AFTERSALES_REPORTS_DIR``) and publish Prefect table and markdown artifacts
that link the files. The quality flow stores a summary notification for the
managers (role ``cs_manager``, template ``quality_report_summary``) in the
outbox; the SLA clock service delivers it through Apprise. The default month
comes from the injected clock (``aftersales.clock.get_clock``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from aftersales.clock import get_clock
from aftersales.quality import fmt_num, fmt_pct, previous_month

NOTIFY_ROLE = "cs_manager"
NOTIFY_TEMPLATE = "quality_report_summary"


def _profile(name: str | None) -> Any:
    from aftersales.policy import load_profile
    from aftersales.settings import get_settings

    s = get_settings()
    if name:
        return load_profile(name)
    return load_profile(str(s.policy_file) if s.policy_file else s.policy_profile)


def _link(path: str) -> str:
    return Path(path).resolve().as_uri()


@task(name="compute-quality-report")
def compute_quality_report(month: str, profile: str | None = None) -> dict[str, Any]:
    from aftersales.quality import quality_report
    from aftersales.settings import get_settings
    from models.db import init_db

    init_db()
    return quality_report(month, profile=_profile(profile), out_dir=get_settings().reports_dir)


def summary_context(data: dict[str, Any]) -> dict[str, Any]:
    """Placeholders of the ``quality_report_summary`` template."""
    t = data["targets"]
    misses = "; ".join(
        f"{m['metric']} {fmt_pct(m['value']) if m['metric'] != 'satisfaction_avg' else fmt_num(m['value'])}"
        f" (largest: "
        + ", ".join(f"{dim} {lst[0]['name']}" for dim, lst in m["contributors"].items() if lst)
        + ")"
        for m in data["misses"]
    )
    return {
        "period": data["month"],
        "response_compliance": fmt_pct(data["response_compliance"]),
        "response_compliance_target": fmt_pct(t["response_compliance"]),
        "satisfaction_avg": fmt_num(data["satisfaction_avg"]),
        "satisfaction_target": f"{t['satisfaction_avg']:g}",
        "fault_resolution_rate": fmt_pct(data["fault_resolution_rate"]),
        "complaint_on_time_rate": fmt_pct(data["complaint_on_time_rate"]),
        "misses": misses or "none",
        "report_path": data.get("files", {}).get("html", "-"),
    }


@task(name="publish-quality-artifacts")
def publish_quality_artifacts(data: dict[str, Any]) -> list[str]:
    month = data["month"]
    key = f"quality-report-{month}".lower()
    rows = [
        {
            "team": r["team"],
            "inquiries": r["inquiries"],
            "response_compliance": fmt_pct(r["response_compliance"]),
            "repairs": r["repairs"],
            "fault_resolution_rate": fmt_pct(r["fault_resolution_rate"]),
            "complaints": r["complaints"],
            "complaint_on_time_rate": fmt_pct(r["complaint_on_time_rate"]),
            "satisfaction_avg": fmt_num(r["satisfaction_avg"]),
        }
        for r in data["per_team"]
    ]
    table_id = create_table_artifact(
        table=rows or [{"team": "-", "note": "no tickets this month"}],
        key=f"{key}-teams",
        description=f"QA-2 per team, {month}",
    )
    files = data.get("files", {})
    t = data["targets"]
    lines = [
        f"# Service quality {month}",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| response compliance (≤ {t['inquiry_response_seconds']:g} s) | "
        f"{fmt_pct(data['response_compliance'])} | ≥ {fmt_pct(t['response_compliance'])} |",
        f"| fault resolution rate (≤ {t['fault_resolution_days']:g} d) | "
        f"{fmt_pct(data['fault_resolution_rate'])} | - |",
        f"| complaint on-time rate | {fmt_pct(data['complaint_on_time_rate'])} | - |",
        f"| satisfaction | {fmt_num(data['satisfaction_avg'])} | ≥ {t['satisfaction_avg']:g} |",
        "",
        "## Misses (QA-3)",
    ]
    for m in data["misses"] or []:
        contrib = "; ".join(
            f"{dim}: " + ", ".join(f"{c['name']} ({c['failing']})" for c in lst)
            for dim, lst in m["contributors"].items()
        )
        lines.append(f"- **{m['metric']}** {m['value']:.3f} < {m['target']:g}: {contrib}")
    if not data["misses"]:
        lines.append("- none")
    lines += ["", "## Commendations (QA-4)"]
    com = data["commendations"]
    names = [f"team {c['team']}" for c in com["teams"]] + [
        f"handler {c['handler']}" for c in com["handlers"]
    ]
    lines.append("- " + (", ".join(names) if names else "none"))
    if files:
        lines += [
            "",
            "## Charts and files",
            f"- [trend chart]({_link(files['trend_png'])})",
            f"- [compliance against target]({_link(files['teams_png'])})",
            f"- [top categories]({_link(files['categories_png'])})",
            f"- [HTML report]({_link(files['html'])}) · [CSV]({_link(files['csv'])})",
        ]
    md_id = create_markdown_artifact(
        markdown="\n".join(lines), key=key, description=f"Service quality report {month}"
    )
    return [str(table_id), str(md_id)]


@task(name="notify-managers")
def notify_managers(data: dict[str, Any], profile_name: str) -> int:
    from aftersales.sla import enqueue_notification
    from models.db import session_scope

    with session_scope() as s:
        row = enqueue_notification(
            s,
            dedupe_key=f"quality-report:{data['month']}:{profile_name}",
            role=NOTIFY_ROLE,
            template=NOTIFY_TEMPLATE,
            context=summary_context(data),
            now=get_clock().now(),
        )
        return int(row.id or 0)


@flow(name="quality-evaluation", log_prints=True)
def quality_evaluation(month: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """QA-1..4 for ``month`` (default: the previous month in Asia/Shanghai time)."""
    from aftersales.settings import get_settings

    log = get_run_logger()
    month = month or previous_month(get_clock().now(), get_settings().timezone)
    data = compute_quality_report(month, profile)
    publish_quality_artifacts(data)
    notification_id = notify_managers(data, data["profile"])
    log.info(
        "quality %s: response compliance %s, satisfaction %s, %d miss(es)",
        month,
        fmt_pct(data["response_compliance"]),
        fmt_num(data["satisfaction_avg"]),
        len(data["misses"]),
    )
    return {
        "month": month,
        **{
            k: data[k]
            for k in (
                "response_compliance",
                "fault_resolution_rate",
                "complaint_on_time_rate",
                "satisfaction_avg",
            )
        },
        "misses": [m["metric"] for m in data["misses"]],
        "files": data.get("files", {}),
        "notification_id": notification_id,
    }


@task(name="compute-speed-report")
def compute_speed_report(months: int, profile: str | None = None) -> dict[str, Any]:
    from aftersales.settings import get_settings
    from aftersales.speed import speed_report
    from models.db import init_db

    init_db()
    return speed_report(
        profile=_profile(profile),
        months=months,
        out_dir=get_settings().reports_dir,
        now=get_clock().now(),
    )


@task(name="publish-speed-artifacts")
def publish_speed_artifacts(data: dict[str, Any]) -> list[str]:
    key = f"speed-report-{data['end']}-{data['months']}m".lower()
    rows = [
        {
            "metric": c["metric"],
            "value": "-" if c["value"] is None else f"{c['value']:.3f}",
            "target": f"{c['target']:g}",
            "met": {True: "yes", False: "no", None: "n/a"}[c["met"]],
        }
        for c in data["comparisons"]
    ]
    table_id = create_table_artifact(table=rows, key=f"{key}-targets", description="SPD-2 targets")
    files = data.get("files", {})
    lines = [
        f"# Response speed {data['first_month']}..{data['end']}",
        "",
        f"- tickets: {data['tickets']}",
        f"- average first response: {fmt_num(data['avg_first_response_hours'])} h",
        f"- average resolution: {fmt_num(data['avg_resolution_hours'])} h",
        f"- over {data['limit_hours']:g} h: {fmt_pct(data['over_limit_share'])}",
        "- top problem types: "
        + (", ".join(f"{c['category']} ({c['tickets']})" for c in data["top_categories"]) or "-"),
    ]
    if files:
        lines += [
            "",
            f"- [weekly trend chart]({_link(files['weekly_png'])})",
            f"- [top problem types]({_link(files['categories_png'])})",
            f"- [HTML report]({_link(files['html'])})",
        ]
    md_id = create_markdown_artifact(markdown="\n".join(lines), key=key)
    return [str(table_id), str(md_id)]


@flow(name="speed-diagnosis", log_prints=True)
def speed_diagnosis(months: int = 3, profile: str | None = None) -> dict[str, Any]:
    """SPD-1/2 over the ``months`` months before the current one (Asia/Shanghai)."""
    data = compute_speed_report(months, profile)
    publish_speed_artifacts(data)
    return {
        k: data[k]
        for k in (
            "first_month",
            "end",
            "tickets",
            "avg_first_response_hours",
            "avg_resolution_hours",
            "over_limit_share",
        )
    } | {"files": data.get("files", {})}
