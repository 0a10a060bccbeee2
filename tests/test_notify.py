"""Notifications rendered from templates and delivered through Apprise to a real HTTP sink.

No mocks of Apprise or HTTP: every delivery is a real ``json://`` POST to
``tests.sink.HttpSink`` on 127.0.0.1. Only ``sleep`` is injected, so retry
backoff is recorded instead of waited for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aftersales.notify import (
    DeliveryError,
    DeliveryReport,
    NoRouteError,
    Notifier,
    RenderedMessage,
    TemplateError,
    load_templates,
    render,
    template_fields,
)
from aftersales.settings import Settings

try:  # run as the ``tests`` package (python -m pytest, rootdir conftest) ...
    from tests.sink import HttpSink
except ImportError:  # ... or with tests/ itself on sys.path (plain pytest)
    from sink import HttpSink  # type: ignore[no-redef]

PHONE = "13812345678"
ADDRESS = "北京市朝阳区建国路88号SOHO现代城3号楼1201"
ID_NUMBER = "11010519900307123X"
CARD = "6222600260001072444"

# One context that fills every placeholder of every packaged template.
SAMPLE: dict[str, Any] = {
    # the producers' ticket context
    "ticket_id": "T-20240513-0001",
    "customer_name": "张三",
    "contact": PHONE,
    "channel": "online",
    "priority": "urgent",
    "category": "B",
    "status": "in_progress",
    "handler": "李四",
    "owner_team": "after-sales",
    "description": "printer shows error E-07 after power cut",
    "product_model": "LP-3000",
    # clock-fired messages
    "rule_id": "INQ-CH-PHONE:resolution",
    "clause": "INQ-CH-PHONE",
    "due": "2024-05-13T18:00:00+08:00",
    "started": "2024-05-13T09:00:00+08:00",
    "stops": "solved",
    "level": "normal",
    "escalate_to": "team_lead",
    "fire_count": 2,
    "reason": f"no response 30 min after submission; customer ID {ID_NUMBER}",
    # a clock that fired late after an outage fills these (empty when on time)
    "late_mark": "",
    "late_note": "",
    # step-specific extras
    "address": ADDRESS,
    "purchase_date": "2023-11-02",
    "engineer": "王工",
    "skill": "hardware",
    "distance_km": 3.2,
    "location": "北京市朝阳区",
    "progress": "Spare part ordered, arrives tomorrow.",
    "device_status": "repaired",
    "callback_due": "2024-05-17",
    "solution": "firmware updated to 2.1",
    "tier": "VIP",
    "period": "2024-04",
    "response_compliance": "93.1%",
    "response_compliance_target": "95%",
    "satisfaction_avg": "8.7",
    "satisfaction_target": "8.5",
    "fault_resolution_rate": "97.0%",
    "complaint_on_time_rate": "100%",
    "misses": "response compliance 93.1% < 95%",
    "report_path": "reports/2024-04/quality.xlsx",
    # the step model: the form fields of the step that sent the message
    "step": "diagnosis",
    "result": "firmware updated to 2.1",
    "cause": "power board",
    "mode": "on_site",
    "charge": "paid_repair",
    "cost_cny": 300,
    "by": "王经理",
    "plan": "replace the batch; public statement at 18:00",
    "outcome": "rated",
    "agent": "小周",
    "staff_involved": "王工",
    "expected_outcome": "an apology",
    "amount_claimed_cny": 0,
    "kind": "apology",
    "compensation_cny": 0,
    "details": "written apology by the manager",
    "approved": True,
    "supervisor": "主管-孙",
    "tracking": "training booked",
    "complaints": 12,
    "recurring": 2,
    "report": "## X200 / power board — 3 complaints",
    "survey_url": "https://service.example.com/surveys/abc123",
    # installation projects (INS-11)
    "customer_signer": "张伟",
    "engineer_signer": "王工",
    "project_manager_signer": "项目经理-刘",
    "handed_over_to": "张伟",
    "remarks": "accepted; two spare fans kept on site",
}

# Template id -> clause the brief assigns to it.
REQUIRED = {
    "reminder": "REM-1",
    "breach_escalation": "ESC-*",
    "delay_alert": "INQ-*",  # the clause of the clock that fired (INQ-CH-PHONE …)
    "sync_group_post": "INQ-SYNC",
    "tech_support_escalation": "INQ-3",
    "repair_request": "INQ-3",
    "work_order": "REP-2",
    "no_engineer_available": "REP-2",
    "progress_report": "REP-3",
    "repair_confirmation": "REP-4",
    "feedback_request": "INQ-4",
    "email_followup": "INQ-CH-EMAIL",
    "ticket_auto_closed": "INQ-CH-EMAIL",
    "callback_due": "CB-2",
    "quality_report_summary": "QA-3",
}
CLAUSE_ID = re.compile(r"^[A-Z]+(?:-[A-Z0-9]+)+$")


class SleepRecorder:
    """Injected instead of time.sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as s:
        yield s


def escalation(**extra: Any) -> RenderedMessage:
    return render("breach_escalation", {**SAMPLE, **extra})


# -- delivery ---------------------------------------------------------------------


def test_breach_escalation_reaches_team_lead_sink_ESC_NORMAL(sink: HttpSink) -> None:
    sleep = SleepRecorder()
    notifier = Notifier({"team_lead": [sink.url("/team_lead")]}, sleep=sleep)
    message = escalation(level="normal")
    assert message.clause == "ESC-NORMAL"

    report = notifier.send("team_lead", message)

    assert report == DeliveryReport("team_lead", "breach_escalation", 1, True, None)
    assert sleep.delays == []
    [payload] = [m.body for m in sink.messages("/team_lead")]
    assert payload["title"] == message.title
    assert payload["message"] == message.body
    assert payload["type"] == "info"
    assert payload["version"] == "1.0"
    assert payload["title"].startswith("[ESC-NORMAL]")
    assert "INQ-CH-PHONE:resolution" in payload["title"]  # the breached rule
    assert "INQ-CH-PHONE:resolution" in payload["message"]
    [request] = sink.requests("/team_lead")
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"


def test_urgent_escalation_reaches_operations_director_only_ESC_URGENT(sink: HttpSink) -> None:
    notifier = Notifier(
        {
            "team_lead": [sink.url("/team_lead")],
            "operations_director": [sink.url("/operations_director")],
        },
        sleep=SleepRecorder(),
    )
    message = escalation(level="urgent", reason="public complaint on Weibo")
    notifier.send("operations_director", message)
    assert message.clause == "ESC-URGENT"
    assert sink.messages("/team_lead") == []
    [payload] = [m.body for m in sink.messages("/operations_director")]
    assert payload["title"].startswith("[ESC-URGENT]")


def test_phone_is_masked_in_notification_body_PRIV_1(sink: HttpSink) -> None:
    notifier = Notifier({"dispatch": [sink.url("/dispatch")]}, sleep=SleepRecorder())
    context = {
        **SAMPLE,
        "contact": "+86 138-1234-5678",
        "description": f"customer says: call me on {PHONE}, card {CARD} was charged",
    }
    notifier.send("dispatch", render("repair_request", context))

    [request] = sink.requests("/dispatch")
    raw = str(request.body)
    digits_only = re.sub(r"\D", "", raw)
    assert PHONE not in digits_only
    assert CARD not in digits_only
    assert "建国路" not in raw and "1201" not in raw
    body = request.body["message"]
    assert "+86 138****5678" in body
    assert "call me on 138****5678" in body
    assert "**** **** **** 2444" in body
    assert "北京市朝阳区***" in body


def test_retry_after_sink_fails_twice_then_succeeds_with_exponential_backoff(
    sink: HttpSink,
) -> None:
    sleep = SleepRecorder()
    notifier = Notifier(
        {"team_lead": [sink.url("/team_lead")]}, max_attempts=5, backoff_seconds=0.5, sleep=sleep
    )
    sink.fail_next(2)

    report = notifier.send("team_lead", escalation())

    assert report.delivered and report.attempts == 3 and report.error is None
    assert sleep.delays == [0.5, 1.0]
    assert [r.status for r in sink.requests("/team_lead")] == [500, 500, 200]
    assert len(sink.messages("/team_lead")) == 1


def test_delivery_error_after_max_attempts_names_role_template_attempts(sink: HttpSink) -> None:
    sleep = SleepRecorder()
    notifier = Notifier(
        {"supervisor": [sink.url("/supervisor")]}, max_attempts=3, backoff_seconds=2, sleep=sleep
    )
    sink.fail_next(100)

    with pytest.raises(DeliveryError) as caught:
        notifier.send("supervisor", render("delay_alert", SAMPLE))

    err = caught.value
    assert (err.role, err.template, err.attempts) == ("supervisor", "delay_alert", 3)
    assert "500" in err.reason
    assert "'supervisor'" in str(err) and "'delay_alert'" in str(err)
    assert "3 attempt(s)" in str(err)
    assert sleep.delays == [2, 4]  # no sleep after the last attempt
    assert len(sink.requests("/supervisor")) == 3
    assert sink.messages() == []


def test_unreachable_endpoint_raises_delivery_error_with_connection_reason() -> None:
    with HttpSink() as closed:
        url = closed.url("/team_lead")
    notifier = Notifier(
        {"team_lead": [url]}, max_attempts=2, backoff_seconds=1, sleep=SleepRecorder()
    )
    with pytest.raises(DeliveryError, match="Connection error") as caught:
        notifier.send("team_lead", escalation())
    assert caught.value.attempts == 2


def test_no_route_error_for_unconfigured_role(sink: HttpSink) -> None:
    sleep = SleepRecorder()
    notifier = Notifier({"team_lead": [sink.url("/team_lead")], "pr": []}, sleep=sleep)
    for role in ("customer", "pr"):
        with pytest.raises(NoRouteError) as caught:
            notifier.send(role, escalation())
        assert isinstance(caught.value, DeliveryError)
        assert caught.value.role == role and caught.value.attempts == 0
        assert f"AFTERSALES_NOTIFY_{role.upper()}" in str(caught.value)
    assert sleep.delays == [] and sink.requests() == []


def test_invalid_apprise_url_fails_without_echoing_the_url(sink: HttpSink) -> None:
    notifier = Notifier(
        {"pr": [sink.url("/pr"), "nosuchscheme://secret-token@example"]}, sleep=SleepRecorder()
    )
    with pytest.raises(DeliveryError) as caught:
        notifier.send("pr", escalation())
    assert not caught.value.retryable
    assert "secret-token" not in str(caught.value)
    assert "#2 of 2" in str(caught.value)
    assert sink.requests() == []  # nothing is sent while the configuration is broken


def test_from_settings_uses_routes_attempts_and_backoff(sink: HttpSink) -> None:
    settings = Settings(
        _env_file=None,
        notify_team_lead=f"{sink.url('/lead-a')}, {sink.url('/lead-b')}",
        notify_max_attempts=2,
        notify_backoff_seconds=0.25,
    )
    sleep = SleepRecorder()
    notifier = Notifier.from_settings(settings, sleep=sleep)
    assert (notifier.max_attempts, notifier.backoff_seconds) == (2, 0.25)

    report = notifier.send("team_lead", escalation())
    assert report.delivered
    assert len(sink.messages("/lead-a")) == len(sink.messages("/lead-b")) == 1

    with pytest.raises(NoRouteError):
        notifier.send("customer", escalation())
    with pytest.raises(ValueError, match="unknown recipient role"):
        notifier.send("nobody", escalation())

    sink.fail_next(5)
    with pytest.raises(DeliveryError) as caught:
        notifier.send("team_lead", escalation())
    assert caught.value.attempts == 2
    assert sleep.delays == [0.25]


def test_retry_resends_only_to_the_urls_that_failed(sink: HttpSink) -> None:
    sleep = SleepRecorder()
    notifier = Notifier(
        {"sync_group": [sink.url("/group-a"), sink.url("/group-b")]}, backoff_seconds=1, sleep=sleep
    )
    sink.fail_next(1)  # the first URL's first request

    report = notifier.send("sync_group", render("sync_group_post", SAMPLE))

    assert report.attempts == 2 and report.delivered
    assert sleep.delays == [1]
    assert [r.status for r in sink.requests("/group-a")] == [500, 200]
    assert [r.status for r in sink.requests("/group-b")] == [200]


def test_try_send_reports_failure_without_raising_or_sleeping(sink: HttpSink) -> None:
    sleep = SleepRecorder()
    notifier = Notifier({"handler": [sink.url("/handler")]}, sleep=sleep)
    message = render("reminder", SAMPLE)
    sink.fail_next(1)

    failed = notifier.try_send("handler", message)
    assert (failed.delivered, failed.attempts, failed.retryable) == (False, 1, True)
    assert failed.error is not None and "500" in failed.error and "'handler'" in failed.error

    ok = notifier.try_send("handler", message)
    assert ok == DeliveryReport("handler", "reminder", 1, True, None, route="primary")

    no_route = notifier.try_send("customer", message)
    assert (no_route.delivered, no_route.attempts, no_route.retryable) == (False, 0, False)
    assert sleep.delays == []
    assert len(sink.messages("/handler")) == 1


def test_notifier_logs_never_carry_the_body_PRIV_1(
    sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(
        {"team_lead": [sink.url("/team_lead")]}, max_attempts=2, sleep=SleepRecorder()
    )
    message = escalation()
    sink.fail_next(1)
    with caplog.at_level(logging.DEBUG):
        notifier.send("team_lead", message)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("aftersales")]
    assert ours, "the notifier logs its attempts"
    assert all(message.body not in line for line in ours)
    assert PHONE not in caplog.text and ID_NUMBER not in caplog.text


def test_notifier_rejects_bad_retry_settings() -> None:
    with pytest.raises(ValueError):
        Notifier({}, max_attempts=0)
    with pytest.raises(ValueError):
        Notifier({}, backoff_seconds=-1)


# -- templates --------------------------------------------------------------------


def test_required_templates_exist_with_their_clauses() -> None:
    templates = load_templates()
    for template_id, clause in REQUIRED.items():
        assert template_id in templates, template_id
        assert templates[template_id]["clause"] == clause, template_id


@pytest.mark.parametrize("template_id", sorted(load_templates()))
def test_every_template_renders_with_full_sample_context_and_names_a_clause(
    template_id: str,
) -> None:
    assert set(template_fields(template_id)) - {"clause"} <= set(SAMPLE)

    message = render(template_id, SAMPLE)

    assert message.template == template_id
    assert CLAUSE_ID.match(message.clause), message.clause
    assert message.title and message.body
    assert "{" not in message.title + message.body
    assert re.search(r"[\u4e00-\u9fff]", message.title), "a Chinese subtitle"
    for secret in (PHONE, ID_NUMBER, "建国路88号"):
        assert secret not in message.title + message.body


@pytest.mark.parametrize(
    ("context", "clause"),
    [
        ({"level": "normal"}, "ESC-NORMAL"),
        ({"level": "important"}, "ESC-IMPORTANT"),
        ({"level": "URGENT"}, "ESC-URGENT"),
        ({"level": "timeout"}, "ESC-TIMEOUT"),
        ({"level": "urgent", "clause": "ESC-TIMEOUT"}, "ESC-TIMEOUT"),
    ],
)
def test_breach_escalation_clause_resolves_from_level_or_clause_ESC(
    context: dict[str, str], clause: str
) -> None:
    message = render("breach_escalation", {**SAMPLE, **context})
    assert message.clause == clause
    assert f"[{clause}]" in message.title


def test_breach_of_any_rule_escalates_by_its_level_ESC_IMPORTANT() -> None:
    # The clock passes the breached rule's clause (INQ-3) and the rule's level.
    message = render("breach_escalation", {**SAMPLE, "clause": "INQ-3", "level": "important"})
    assert message.clause == "ESC-IMPORTANT"
    assert "INQ-CH-PHONE:resolution" in message.body


def test_breach_escalation_without_level_or_ESC_clause_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="not in family") as caught:
        render("breach_escalation", {**SAMPLE, "clause": "REP-2", "level": "-"})
    assert caught.value.field == "clause"
    ctx = {k: v for k, v in SAMPLE.items() if k not in ("level", "clause")}
    with pytest.raises(TemplateError, match="'level'") as caught:
        render("breach_escalation", ctx)
    assert caught.value.field == "level"


@pytest.mark.parametrize("template_id", sorted(load_templates()))
def test_every_template_renders_with_only_its_required_fields(template_id: str) -> None:
    required = template_fields(template_id, required_only=True)
    assert "ticket_id" in required or template_id in (
        "quality_report_summary",
        "improvement_report",
    )
    context = {name: SAMPLE[name] for name in required}
    message = render(template_id, context)
    assert "{" not in message.title + message.body
    for name in required:
        with pytest.raises(TemplateError) as caught:
            render(template_id, {k: v for k, v in context.items() if k != name})
        assert caught.value.field in (name, "clause")


def test_none_values_fall_back_to_template_defaults() -> None:
    message = render("sync_group_post", {"ticket_id": "T-1", "contact": None, "description": None})
    assert "Customer: - (-)" in message.body
    assert "None" not in message.body


def test_template_error_names_the_missing_placeholder() -> None:
    context = {k: v for k, v in SAMPLE.items() if k != "engineer"}
    with pytest.raises(TemplateError) as caught:
        render("work_order", context)
    assert caught.value.template_id == "work_order"
    assert caught.value.field == "engineer"
    assert "'work_order'" in str(caught.value) and "{engineer}" in str(caught.value)


def test_template_error_for_unknown_template() -> None:
    with pytest.raises(TemplateError, match="'no_such_template'.*unknown template"):
        render("no_such_template", SAMPLE)


def test_custom_template_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "hello:\n  clause: CB-2\n  title: 'Hi {customer_name}'\n  body: 'Call {contact}'\n",
        encoding="utf-8",
    )
    message = render("hello", {"customer_name": "张三", "contact": PHONE}, path=good)
    assert message == RenderedMessage("hello", "CB-2", "Hi 张三", "Call 138****5678")

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "oops:\n  clause: CB-2\n  title: 'x {ticket.id}'\n  body: 'y'\n", encoding="utf-8"
    )
    with pytest.raises(TemplateError, match="plain name") as caught:
        load_templates(bad)
    assert caught.value.template_id == "oops"

    no_clause = tmp_path / "no_clause.yaml"
    no_clause.write_text("x:\n  title: t\n  body: b\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="'clause'"):
        load_templates(no_clause)


def test_load_templates_returns_a_copy_of_the_cache() -> None:
    first = load_templates()
    first["reminder"]["title"] = "changed"
    assert load_templates()["reminder"]["title"] != "changed"


def test_sink_records_every_post_and_its_helpers_work(sink: HttpSink) -> None:
    notifier = Notifier({"pr": [sink.url("pr")]}, sleep=SleepRecorder())
    assert sink.url("pr") == sink.url("/pr") == f"json://127.0.0.1:{sink.port}/pr"
    notifier.try_send("pr", render("feedback_request", SAMPLE))
    assert sink.wait_for(lambda: len(sink.messages("/pr")) == 1, timeout=5)
    [received] = sink.messages()
    assert received.path == "/pr" and received.delivered and received.body["type"] == "info"
    assert set(received.body) >= {"version", "title", "message", "type"}
    sink.fail_next(3)
    sink.clear()  # forgets requests and pending failures
    assert sink.requests() == []
    assert notifier.try_send("pr", render("feedback_request", SAMPLE)).delivered
    assert not sink.wait_for(lambda: len(sink.messages()) == 2, timeout=0.1)


@pytest.mark.parametrize(
    "template_id",
    ["reminder", "breach_escalation", "delay_alert", "escalation_opened", "phase_overdue",
     "callback_due", "ticket_auto_closed"],
)  # fmt: skip
def test_clock_templates_say_when_a_clock_fired_late_and_nothing_when_on_time(
    template_id: str,
) -> None:
    """Issue 11 §4: a late firing is visible in the title and the first body line."""
    late = {
        **SAMPLE,
        "late_mark": "[LATE 47 min] ",
        "late_note": "Fired 47 min late after an outage; due was 2024-05-13T17:00+08:00.\n",
    }
    on_time = render(template_id, SAMPLE)
    message = render(template_id, late)
    assert message.title.startswith("[LATE 47 min] ")
    assert message.body.startswith("Fired 47 min late after an outage; due was 2024-05-13T17:00")
    assert "LATE" not in on_time.title and "late after an outage" not in on_time.body
    assert not on_time.body.startswith("\n")


@pytest.mark.parametrize("template_id", ["progress_report", "email_followup"])
def test_customer_messages_never_mention_our_outage(template_id: str) -> None:
    late = {**SAMPLE, "late_mark": "[LATE 47 min] ", "late_note": "Fired 47 min late.\n"}
    message = render(template_id, late)
    assert "LATE" not in message.title and "Fired" not in message.body
