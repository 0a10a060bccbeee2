"""The scheduled report flows (issue 3 §2, §3, §5): files, artifacts, manager notification."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from aftersales.clock import ManualClock, get_clock, set_clock
from aftersales.settings import ROLES, reset_settings
from tests.conftest import route_roles_to

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(autouse=True)
def _restore_logger_levels():
    """Running a flow in this process applies Prefect's logging config once (the
    ``prefect`` loggers go to PREFECT_LOGGING_LEVEL); put the levels back so later
    tests see the logging they saw before."""
    manager = logging.root.manager
    before = {
        name: lg.level
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and name.startswith("prefect")
    }
    yield
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.startswith("prefect"):
            lg.setLevel(before.get(name, logging.NOTSET))


@pytest.fixture
def report_env(sqlite_db: str, sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for role in ROLES:
        monkeypatch.setenv(f"AFTERSALES_NOTIFY_{role.upper()}", "")
    monkeypatch.setenv("AFTERSALES_REPORTS_DIR", str(tmp_path / "reports"))
    route_roles_to(sink)
    saved = get_clock()
    # 2026-09-01 01:00 in Shanghai is still 2026-08-31 in UTC: the previous month is August
    set_clock(ManualClock(datetime(2026, 8, 31, 17, 0, tzinfo=UTC)))
    from aftersales.history import import_file

    import_file(DATA / "history-good.csv")
    yield tmp_path / "reports"
    set_clock(saved)
    reset_settings()


def test_quality_evaluation_defaults_to_previous_shanghai_month_and_notifies_managers(
    report_env: Path, sink
) -> None:
    from aftersales.notify import Notifier, template_fields
    from aftersales.sla import deliver_outbox
    from flows.quality import quality_evaluation, summary_context
    from models.db import session_scope
    from models.entities import Notification

    out = quality_evaluation()
    assert out["month"] == "2026-08"
    assert out["response_compliance"] == 0.5 and out["misses"] == ["response_compliance"]
    for key in ("csv", "html", "trend_png", "teams_png", "categories_png"):
        assert Path(out["files"][key]).is_file()
    assert Path(out["files"]["html"]).is_relative_to(report_env)

    # the summary covers every placeholder of the template
    ctx = summary_context({**_fake_report(), "files": {}})
    assert set(template_fields("quality_report_summary", required_only=True)) <= set(ctx)

    quality_evaluation(month="2026-08")  # same month again: one message, not two
    with session_scope() as s:
        rows = s.exec(select(Notification).where(Notification.role == "cs_manager")).all()
        assert len(rows) == 1
        assert rows[0].template == "quality_report_summary" and rows[0].clause == "QA-3"
        deliver_outbox(s, notifier=Notifier.from_settings(), now=get_clock().now())
    msgs = sink.wait_for(lambda: sink.messages("/cs_manager"), timeout=10)
    assert msgs
    body = str(sink.messages("/cs_manager")[0].body)
    assert "2026-08" in body and "50.0%" in body


def test_quality_artifacts_link_the_charts(report_env: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.quality import quality_evaluation

    quality_evaluation(month="2026-08")
    keys = ["quality-report-2026-08", "quality-report-2026-08-teams"]
    with get_client(sync_client=True) as client:
        arts = client.request(
            "POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": keys}}}
        ).json()
    kinds = {a["key"]: a for a in arts}
    assert kinds["quality-report-2026-08-teams"]["type"] == "table"
    md = kinds["quality-report-2026-08"]
    assert md["type"] == "markdown"
    data = md["data"]
    assert "trend chart" in data and ".png" in data and "Misses" in data


def test_speed_diagnosis_flow_writes_weekly_chart(report_env: Path) -> None:
    from flows.quality import speed_diagnosis

    out = speed_diagnosis(months=3)
    assert (out["first_month"], out["end"]) == ("2026-06", "2026-08")
    assert out["tickets"] == 3
    assert Path(out["files"]["weekly_png"]).is_file()


def test_deployments_schedule_the_reports_in_shanghai_time() -> None:
    import yaml

    from deployments.serve import SCHEDULED, build_deployments

    served = {d.name: d for d in build_deployments()}
    q = served["quality-evaluation"].schedules[0].schedule
    assert (q.cron, q.timezone) == ("0 6 1 * *", "Asia/Shanghai")  # before the 5th (QA-1)
    assert served["speed-diagnosis"].schedules[0].schedule.timezone == "Asia/Shanghai"
    assert served["inquiry"].triggers and served["repair-dispatch"].triggers
    root = Path(__file__).resolve().parent.parent.parent
    declared = {
        d["name"]: d for d in yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    }
    for name in ("quality-evaluation", "speed-diagnosis"):
        sched = served[name].schedules[0].schedule
        assert declared[name]["schedules"] == [{"cron": sched.cron, "timezone": sched.timezone}]
        path = SCHEDULED[name][0]
        assert declared[name]["entrypoint"] == path.replace(".", "/").replace(":", ".py:")


def _fake_report() -> dict:
    return {
        "month": "2026-08",
        "response_compliance": 0.5,
        "fault_resolution_rate": None,
        "complaint_on_time_rate": None,
        "satisfaction_avg": 8.5,
        "misses": [],
        "targets": {"response_compliance": 0.95, "satisfaction_avg": 8.5},
    }
