"""The SOP step model, without Prefect: the static check over every profile, and each
reading of the spec that the model enforces, driven step by step against a real
database (``aftersales.steps.complete``, the same call the flows make)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aftersales import forms, sla, steps
from aftersales.intake import accept_intake, parse_payload
from aftersales.policy import PolicyError, load_profile
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import ClockState, SlaClock
from models.repository import clocks_for, escalations_for, get_ticket, notifications_for

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday
POLICIES = Path(__file__).resolve().parent.parent / "aftersales" / "policies"


# ---------------------------------------------------------------- the static check
@pytest.mark.parametrize("profile", ["default", "work-instruction"])
def test_static_check_passes_for_the_shipped_profiles(profile: str) -> None:
    assert steps.check_profile(load_profile(profile, check_steps=False)) == []


def _broken_profile(tmp_path: Path, rule_id: str, **change: Any) -> Path:
    data = yaml.safe_load((POLICIES / "default.yaml").read_text(encoding="utf-8"))
    data["name"] = "broken"
    for rule in data["rules"]:
        if rule["id"] == rule_id:
            rule.update(change)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("rule_id", "change", "message"),
    [
        (
            "REP-2:same-city",
            {"stops": []},
            "rule REP-2:same-city: field stops: can be armed (by repair.dispatch) but no step "
            "stops it and it is not a hard limit",
        ),
        (
            "REP-1",
            {"stops": ["repair.teleport"]},
            "rule REP-1: field stops: step: unknown step 'teleport' of repair",
        ),
        (
            "INQ-3",
            {"starts": ["billing.invoice"]},
            "rule INQ-3: field starts: unknown SOP 'billing'",
        ),
        (
            "REP-3",
            {"when": {"colour": "red"}},
            "rule REP-3: field when.colour: step 'diagnosis' has no fact or form field 'colour'",
        ),
        (
            "REP-2:other-city",
            {"when": {"same_city": "perhaps"}},
            "rule REP-2:other-city: field when.same_city: 'perhaps' is not a valid same_city",
        ),
        (
            "REP-1",
            {"escalate_to": "next-level"},
            "rule REP-1: field escalate_to: next-level is only for escalation clocks",
        ),
        ("INQ-OWNER", {"by": []}, "rule INQ-OWNER: field by: a policy rule names the steps"),
    ],
)
def test_static_check_names_the_rule_and_field_it_breaks(
    tmp_path: Path, rule_id: str, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError) as err:
        load_profile(str(_broken_profile(tmp_path, rule_id, **change)))
    assert message in str(err.value)


def test_a_clock_only_an_undeployed_sop_stops_is_never_armed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While an SOP is declared but not deployed (as the callback SOP was before issue 7),
    a clock only it stops stays dormant: nothing nobody can stop is ever armed."""
    import dataclasses

    profile = load_profile("default")
    assert steps.can_end(profile.rule("CB-2:ordinary"))  # the callback SOP runs
    assert steps.can_end(profile.rule("ESC-TIMEOUT:urgent"))  # a hard limit
    undeployed = {
        **steps.catalogue(),
        "callback": dataclasses.replace(steps.catalogue()["callback"], runnable=False),
    }
    monkeypatch.setattr(steps, "catalogue", lambda: undeployed)
    assert not steps.can_end(profile.rule("CB-2:ordinary"))
    assert steps.can_end(profile.rule("REP-2:same-city"))


def test_every_step_reference_of_every_rule_resolves_and_every_form_step_is_reachable() -> None:
    profile = load_profile("default")
    cited = {ref for r in profile.rules.values() for ref in (*r.starts, *r.stops, *r.by)}
    for sop in ("inquiry", "repair", "complaint", "escalation"):
        for st in steps.steps_of(sop):
            ref = steps.ref_of(sop, st.id)
            assert st.form is None or ref in cited or st.messages or st.apply, f"{ref} does nothing"


# ---------------------------------------------------------------- driving the steps
@pytest.fixture
def ctx(any_db: str) -> sla.Deadlines:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    return deadlines("default")


def intake(ctx: sla.Deadlines, **extra: Any) -> str:
    payload = {
        "channel": "phone",
        "intake_id": f"call-{datetime.now().timestamp()}-{len(extra)}-{sorted(extra)}",
        "customer_name": "张伟",
        "contact": "13812345678",
        "description": "X200 will not power on",
        **extra,
    }
    return accept_intake(parse_payload(payload), ctx=ctx, now=T0).ticket_id


def do(
    ctx: sla.Deadlines,
    tid: str,
    sop: str,
    step: str,
    at: datetime,
    form: forms.Form | None = None,
    key: str | None = None,
    escalation_id: int | None = None,
) -> steps.StepResult:
    with session_scope() as s:
        return steps.complete(
            s, deadlines=ctx, sop=sop, step=step, ticket_id=tid, now=at, form=form, key=key,
            escalation_id=escalation_id,
        )  # fmt: skip


def clocks(tid: str) -> dict[str, SlaClock]:
    with session_scope() as s:
        return {c.rule_id: c for c in clocks_for(s, ticket_id=tid)}


def first_response(**extra: Any) -> forms.FirstResponse:
    return forms.FirstResponse(
        **{"agent": "小吴", "category": "A", "priority": "auto", "complex_issue": False, **extra}
    )


def fire(ctx: sla.Deadlines, at: datetime) -> sla.FireReport:
    with session_scope() as s:
        return sla.fire_due(s, ctx=ctx, now=at)


def test_ESC_NORMAL_fires_30_min_after_the_first_response_deadline_not_after_submission(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx, channel="online")  # first response due T0 + 30 s
    esc_normal = clocks(tid)["ESC-NORMAL"]
    assert esc_normal.due_at == T0 + timedelta(seconds=30, minutes=30)
    fire(ctx, T0 + timedelta(minutes=30))  # 30 min after submission: nothing yet
    with session_scope() as s:
        assert escalations_for(s, ticket_id=tid) == []
    fire(ctx, T0 + timedelta(minutes=30, seconds=30))
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=tid)
    assert [(e.rule_id, e.escalated_to, e.level) for e in esc] == [
        ("ESC-NORMAL", "team_lead", "normal")
    ]
    within = clocks(tid)["ESC-NORMAL:within"]  # the lead steps in within 15 min
    assert within.instance == esc[0].id
    assert within.due_at == T0 + timedelta(minutes=45, seconds=30)
    do(ctx, tid, "escalation", "step-in", T0 + timedelta(minutes=40),
       forms.StepIn(by="组长", action="answered the chat"), escalation_id=esc[0].id)  # fmt: skip
    assert clocks(tid)["ESC-NORMAL:within"].state == ClockState.MET


def test_first_response_time_is_the_one_the_channel_reports_INQ_1(ctx: sla.Deadlines) -> None:
    tid = intake(ctx, channel="online")
    reported = T0 + timedelta(seconds=20)
    do(ctx, tid, "inquiry", "first-response", T0 + timedelta(minutes=3),
       first_response(responded_at=reported))  # fmt: skip
    c = clocks(tid)
    assert c["INQ-CH-ONLINE:response"].met_at == reported  # on time: 20 s < 30 s
    assert c["ESC-NORMAL"].state == ClockState.MET
    with session_scope() as s:
        assert get_ticket(s, ticket_id=tid).first_response_at == reported
    # a reported time in the future is not trusted beyond now
    tid2 = intake(ctx, channel="online", intake_id="chat-future")
    do(ctx, tid2, "inquiry", "first-response", T0 + timedelta(minutes=1),
       first_response(responded_at=T0 + timedelta(days=1)))  # fmt: skip
    assert clocks(tid2)["INQ-CH-ONLINE:response"].met_at == T0 + timedelta(minutes=1)


def test_resolution_clocks_count_from_submission_and_re_arm_when_the_grade_changes_PRI(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx)  # normal until classified
    assert clocks(tid)["PRI-NORMAL:resolution"].due_at == T0 + timedelta(hours=24)
    do(ctx, tid, "inquiry", "first-response", T0 + timedelta(hours=1), first_response(category="B"))
    c = clocks(tid)
    assert c["PRI-URGENT:resolution"].started_at == T0
    assert c["PRI-URGENT:resolution"].due_at == T0 + timedelta(hours=2)
    assert c["ESC-TIMEOUT:urgent"].due_at == T0 + timedelta(hours=12)
    assert c["PRI-NORMAL:resolution"].state == ClockState.CANCELLED
    assert c["ESC-TIMEOUT:normal"].state == ClockState.CANCELLED
    assert c["REP-1"].started_at == T0 + timedelta(hours=1)  # the repair request starts now
    with session_scope() as s:
        assert str(get_ticket(s, ticket_id=tid).sop) == "repair"  # handed over (INQ-2)


def test_INQ_4_is_met_by_the_report_step_not_by_the_customers_answer(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx)
    do(ctx, tid, "inquiry", "first-response", T0 + timedelta(minutes=1), first_response())
    do(ctx, tid, "inquiry", "answer", T0 + timedelta(minutes=5),
       forms.Answer(answered_from_knowledge_base=True, answer="hold the button 5 s"))  # fmt: skip
    do(ctx, tid, "inquiry", "solved", T0 + timedelta(minutes=6),
       forms.Solved(resolution="reset", root_cause="user"))  # fmt: skip
    assert clocks(tid)["INQ-4"].due_at == T0 + timedelta(minutes=6, hours=2)
    do(ctx, tid, "inquiry", "report", T0 + timedelta(minutes=30),
       forms.Report(agent="小吴", via="phone"))  # fmt: skip
    assert clocks(tid)["INQ-4"].state == ClockState.MET
    assert clocks(tid)["INQ-4"].met_at == T0 + timedelta(minutes=30)


def test_INQ_CH_PHONE_callback_is_met_by_the_specialists_callback_not_by_solving(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx)
    r = do(ctx, tid, "inquiry", "first-response", T0 + timedelta(minutes=1),
           first_response(complex_issue=True))  # fmt: skip
    assert "INQ-CH-PHONE:callback" in r.armed
    do(ctx, tid, "inquiry", "callback", T0 + timedelta(minutes=50),
       forms.Callback(specialist="技术-钱", notes="walked through the reset"))  # fmt: skip
    c = clocks(tid)["INQ-CH-PHONE:callback"]
    assert c.state == ClockState.MET and c.met_at == T0 + timedelta(minutes=50)


def test_a_walk_in_repair_without_a_city_must_get_one_at_review_REP_2(
    ctx: sla.Deadlines,
) -> None:
    """No silent "same city": the review refuses until the service city is given."""
    tid = intake(ctx, sop="repair")  # no customer record: no city
    do(ctx, tid, "repair", "register", T0)
    review = {"reviewer": "调度-孙", "approved": True, "skill": "hardware"}
    refused = do(ctx, tid, "repair", "review", T0 + timedelta(minutes=5), forms.Review(**review))
    assert not refused.done and refused.reason.startswith("service_city:")
    assert clocks(tid)["REP-1"].state == ClockState.ARMED  # nothing recorded
    ok = do(ctx, tid, "repair", "review", T0 + timedelta(minutes=6),
            forms.Review(**review, service_city="苏州"), key="review-2")  # fmt: skip
    assert ok.done
    do(ctx, tid, "repair", "dispatch", T0 + timedelta(minutes=7))
    c = clocks(tid)
    assert c["REP-1"].state == ClockState.MET
    assert "REP-2:same-city" in c  # E-02 is based in Suzhou


def test_satisfaction_is_asked_1_to_5_on_three_dimensions_and_scored_0_to_10_CB_3_QA_1(
    ctx: sla.Deadlines,
) -> None:
    with pytest.raises(ValidationError) as err:
        forms.Feedback(outcome="rated", attitude=5, efficiency=4)
    assert "attitude, efficiency, effectiveness" in str(err.value)
    with pytest.raises(ValidationError):
        forms.Feedback(outcome="rated", attitude=9, efficiency=4, effectiveness=4)
    tid = intake(ctx)
    do(ctx, tid, "inquiry", "feedback", T0 + timedelta(hours=1),
       forms.Feedback(outcome="rated", attitude=4, efficiency=5, effectiveness=3))  # fmt: skip
    with session_scope() as s:
        t = get_ticket(s, ticket_id=tid)
    assert (t.satisfaction_attitude, t.satisfaction_efficiency, t.satisfaction_effectiveness) == (
        4,
        5,
        3,
    )
    assert t.satisfaction == 8.0  # mean 4 x 2 (conflicts table)


def test_a_diagnosis_over_1000_CNY_opens_an_important_escalation_to_the_CS_manager_ESC_IMPORTANT(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx, sop="repair", customer_id="C-1001")
    do(ctx, tid, "repair", "register", T0)
    do(ctx, tid, "repair", "review", T0 + timedelta(minutes=5),
       forms.Review(reviewer="孙", approved=True, skill="hardware"))  # fmt: skip
    do(ctx, tid, "repair", "dispatch", T0 + timedelta(minutes=5))
    at = T0 + timedelta(hours=1)
    r = do(ctx, tid, "repair", "diagnosis", at, forms.Diagnosis(
        cause="board", mode="on_site", charge="paid_repair", cost_cny=1500, customer_agreed=True))  # fmt: skip
    assert len(r.escalations) == 1
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=tid)
        sent = [(n.role, n.template) for n in notifications_for(s, ticket_id=tid)]
    assert [(e.trigger, e.escalated_to, e.level) for e in esc] == [
        ("ESC-IMPORTANT", "cs_manager", "important")
    ]
    assert ("cs_manager", "escalation_opened") in sent
    c = {(k.rule_id): k for k in clocks_for_instance(tid, esc[0].id)}
    assert c["ESC-IMPORTANT:within"].due_at == at + timedelta(minutes=30)
    assert c["ESC-IMPORTANT:resolution"].due_at == at + timedelta(hours=24)
    # the CS manager's contact with a compensation plan stops the 30-min clock
    do(ctx, tid, "escalation", "contact", at + timedelta(minutes=20),
       forms.Contact(by="经理-冯", compensation_plan="free part"), escalation_id=esc[0].id)  # fmt: skip
    assert {k.rule_id: k.state for k in clocks_for_instance(tid, esc[0].id)}[
        "ESC-IMPORTANT:within"
    ] == ClockState.MET
    # REP-4 resolves the ticket: the 24 h clock stops; CB-2 starts (the callback SOP)
    do(ctx, tid, "repair", "confirmation", at + timedelta(hours=3), forms.Confirmation(
        test_passed=True, customer_signed=True, signer="张伟", device_status="ok", test_report="ok"))  # fmt: skip
    states = {k.rule_id: k.state for k in clocks_for_instance(tid, esc[0].id)}
    assert states["ESC-IMPORTANT:resolution"] == ClockState.MET
    assert {"CB-2:ordinary", "CB-2:vip-second"} <= set(clocks(tid))  # C-1001 is a VIP


def clocks_for_instance(tid: str, instance: int) -> list[SlaClock]:
    with session_scope() as s:
        return [c for c in clocks_for(s, ticket_id=tid) if c.instance == instance]


def test_beyond_my_authority_is_reported_to_the_supervisor_ESC_AUTHORITY(
    ctx: sla.Deadlines,
) -> None:
    tid = intake(ctx)
    do(ctx, tid, "ticket", "beyond-authority", T0 + timedelta(minutes=10))
    with session_scope() as s:
        esc = escalations_for(s, ticket_id=tid)
    assert [(e.trigger, e.escalated_to, e.level, str(e.state)) for e in esc] == [
        ("ESC-AUTHORITY", "supervisor", "normal", "open")
    ]
    assert clocks_for_instance(tid, esc[0].id)[0].rule_id == "ESC-NORMAL:within"


def test_a_step_recorded_once_is_not_applied_again(ctx: sla.Deadlines) -> None:
    tid = intake(ctx)
    form = first_response()
    first = do(ctx, tid, "inquiry", "first-response", T0 + timedelta(minutes=1), form)
    again = do(ctx, tid, "inquiry", "first-response", T0 + timedelta(minutes=9), form)
    assert first.done and not first.already and again.already
    assert clocks(tid)["PRI-NORMAL:response"].met_at == T0 + timedelta(minutes=1)
