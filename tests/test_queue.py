"""The work queue (issue 10): an example day of 20 tickets at 10:00, listed by
``aftersales queue`` and ``GET /queue`` against expectations written by hand from the
default profile; the sla-board is the same query. The steps are completed as the flows
would complete them (``aftersales.steps.complete``) on a real database; no Prefect run
is needed, because the queue reads only the project database."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aftersales import forms, sla, steps
from aftersales.api import create_app
from aftersales.cli import app as cli
from aftersales.intake import accept_intake, parse_payload
from aftersales.policy import get_profile
from aftersales.queue import Scope, waiting_for
from aftersales.runtime import deadlines
from models.db import session_scope
from models.entities import Engineer
from models.repository import escalations_for, sla_board

DAY = datetime.fromisoformat("2026-11-23T09:00:00+08:00")  # a Monday
NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def at(hhmmss: str) -> datetime:
    h, m, *s = (int(x) for x in hhmmss.split(":"))
    return DAY.replace(hour=h, minute=m, second=s[0] if s else 0)


class Day:
    """Opens tickets and completes their steps at given times of the day."""

    def __init__(self, ctx: sla.Deadlines) -> None:
        self.ctx = ctx
        self.ids: dict[str, str] = {}

    def intake(self, name: str, when: str, **payload: Any) -> str:
        body = {"customer_name": "张伟", "contact": "13812345678", "description": "x",
                "intake_id": f"day-{name}", **payload}  # fmt: skip
        tid = accept_intake(parse_payload(body), ctx=self.ctx, now=at(when)).ticket_id
        self.ids[name] = tid
        sop = body.get("sop", "inquiry")
        self.do(name, sop, {"inquiry": "receive", "repair": "register"}[sop], when)
        return tid

    def do(
        self, name: str, sop: str, step: str, when: str, form: forms.Form | None = None, **kw: Any
    ) -> steps.StepResult:
        with session_scope() as s:
            return steps.complete(s, deadlines=self.ctx, sop=sop, step=step,
                                  ticket_id=self.ids[name], now=at(when), form=form, **kw)  # fmt: skip


def first(category: str = "A", **extra: Any) -> forms.FirstResponse:
    return forms.FirstResponse(
        **{
            "agent": "小吴",
            "category": category,
            "priority": "auto",
            "complex_issue": False,
            **extra,
        }
    )


def review(**extra: Any) -> forms.Review:
    return forms.Review(reviewer="调度-孙", approved=True, **{"skill": "hardware", **extra})


SIGNED = forms.Confirmation(test_passed=True, customer_signed=True, signer="张伟",
                            device_status="ok", test_report="ok")  # fmt: skip


@pytest.fixture
def day(any_db: str) -> Day:
    from aftersales.demo import seed_reference_data

    seed_reference_data()
    d = Day(deadlines("default"))
    # ---- inquiries
    d.intake("t01", "09:58", channel="phone")  # nobody answered: phone limit 10 s breached
    d.intake("t02", "09:59:50", channel="online")  # 30 s to answer, still running
    d.intake("t03", "09:10", channel="email")  # normal mail: 2 h
    d.intake("t04", "09:36", channel="email", email_grade="important")  # 30 min, reminded
    d.intake("t05", "09:29", channel="phone")
    d.do("t05", "inquiry", "first-response", "09:29:05", first(complex_issue=True))
    d.intake("t06", "09:40", channel="phone")
    d.do("t06", "inquiry", "first-response", "09:40:05", first())
    d.intake("t07", "09:00", channel="online")
    d.do("t07", "inquiry", "first-response", "09:00:20", first())
    d.do("t07", "inquiry", "answer", "09:10",
         forms.Answer(answered_from_knowledge_base=True, answer="pair it"))  # fmt: skip
    d.intake("t08", "09:00", channel="email")
    d.do("t08", "inquiry", "first-response", "09:05", first())
    d.do("t08", "inquiry", "answer", "09:10",
         forms.Answer(answered_from_knowledge_base=True, answer="a"))  # fmt: skip
    d.do("t08", "inquiry", "solved", "09:20", forms.Solved(resolution="done", root_cause=""))
    d.intake("t09", "09:00", channel="phone")
    d.do("t09", "inquiry", "first-response", "09:00:05", first())
    d.do("t09", "inquiry", "answer", "09:10",
         forms.Answer(answered_from_knowledge_base=True, answer="a"))  # fmt: skip
    d.do("t09", "inquiry", "solved", "09:30", forms.Solved(resolution="done", root_cause=""))
    d.do("t09", "inquiry", "report", "09:40", forms.Report(agent="小吴", via="phone"))
    d.intake("t10", "09:55", channel="phone", safety_risk=True)  # ESC-URGENT at intake
    d.intake("t17", "09:44", channel="phone", amount_cny=1500)  # ESC-IMPORTANT at intake
    d.intake("t18", "09:30", channel="phone")
    d.do("t18", "inquiry", "first-response", "09:30:05", first("C"))
    d.do("t18", "ticket", "beyond-authority", "09:53")  # ESC-AUTHORITY to the supervisor
    d.intake("t19", "09:00", channel="phone")  # closed: not in the queue
    for step, when, form in (
        ("first-response", "09:00:05", first()),
        ("answer", "09:05", forms.Answer(answered_from_knowledge_base=True, answer="a")),
        ("solved", "09:10", forms.Solved(resolution="r", root_cause="")),
        ("report", "09:15", forms.Report(agent="小吴", via="phone")),
        (
            "feedback",
            "09:20",
            forms.Feedback(outcome="rated", attitude=5, efficiency=5, effectiveness=5),
        ),  # fmt: skip
    ):
        d.do("t19", "inquiry", step, when, form)
    # ---- repairs
    d.intake("t11", "09:52", channel="online", sop="repair", customer_id="C-1001")
    d.intake("t12", "09:00", channel="phone", sop="repair", customer_id="C-1001")
    d.do("t12", "repair", "review", "09:05", review())
    assert d.do("t12", "repair", "dispatch", "09:05").done  # E-01, same city
    d.intake("t13", "09:00", channel="online", sop="repair", customer_id="C-1002")
    d.do("t13", "repair", "review", "09:10", review(skill="software"))
    assert d.do("t13", "repair", "dispatch", "09:10").done  # E-03, the only software engineer
    d.intake("t14", "09:41", channel="phone", sop="repair", customer_id="C-1001")
    d.do("t14", "repair", "review", "09:45", review(skill="software"))
    assert not d.do("t14", "repair", "dispatch", "09:45").done  # nobody free: dispatch names one
    d.intake("t15", "09:00", channel="phone", sop="repair", customer_id="C-1002")
    d.do("t15", "repair", "review", "09:05", review())
    assert d.do("t15", "repair", "dispatch", "09:05").done  # E-04 in Hangzhou
    d.do("t15", "repair", "arrival", "09:30", forms.Arrival(engineer_id="E-04"))
    d.do("t15", "repair", "diagnosis", "09:40",
         forms.Diagnosis(cause="board", mode="depot", charge="paid_repair", cost_cny=300,
                         customer_agreed=False))  # fmt: skip
    d.intake("t16", "09:00", channel="phone", sop="repair", customer_name="周强")
    d.do("t16", "repair", "review", "09:10", review(service_city="苏州"))
    assert d.do("t16", "repair", "dispatch", "09:10").done  # E-02 in Suzhou
    d.do("t16", "repair", "arrival", "09:20", forms.Arrival(engineer_id="E-02"))
    d.do("t16", "repair", "diagnosis", "09:30",
         forms.Diagnosis(cause="fuse", mode="on_site", charge="free", cost_cny=0,
                         customer_agreed=True))  # fmt: skip
    d.intake("t20", "09:00", channel="phone", sop="repair", customer_id="C-1002")
    d.do("t20", "repair", "review", "09:05", forms.Review(reviewer="孙", approved=False,
                                                          skill="hardware"))  # fmt: skip
    with session_scope() as s:  # the SLA service at 10:00: reminders and breaches fire
        while sla.fire_due(s, ctx=d.ctx, now=NOW).fired:
            pass
    return d


# What an operator should see at 10:00 (Asia/Shanghai), worked out by hand from the
# default profile: (ticket, sop, step, role, person, rule, next due, state), soonest due
# first; an escalation's row is its own (``sop`` "escalation").
EXPECTED = [
    # online: 30 s to answer from 09:59:50
    ("t02", "inquiry", "first-response", "handler", "online-service", "INQ-CH-ONLINE:response", "10:00", "on-track"),
    # ESC-URGENT (safety risk at 09:55): acknowledge within 10 min
    ("t10", "escalation", "acknowledge", "operations_director", None, "ESC-URGENT:within", "10:05", "on-track"),
    # important mail at 09:36: PRI-IMPORTANT 30 min (REM-1 is 30 min before: a reminder at
    # the start is no reminder, none is armed)
    ("t04", "inquiry", "first-response", "handler", "email-service", "PRI-IMPORTANT:response", "10:06", "on-track"),
    # repair chat at 09:52: the online 30 s limit breached; urgent response 15 min
    ("t11", "repair", "review", "dispatch", None, "PRI-URGENT:response", "10:07", "breached"),
    # beyond authority at 09:53: the supervisor steps in within 15 min
    ("t18", "escalation", "step-in", "supervisor", None, "ESC-NORMAL:within", "10:08", "on-track"),
    # phone at 09:55: 10 s breached; urgent response at 10:10
    ("t10", "inquiry", "first-response", "handler", "hotline", "PRI-URGENT:response", "10:10", "breached"),
    # no software engineer free at 09:45: REP-1 (30 min from 09:41) runs on
    ("t14", "repair", "engineer", "dispatch", None, "REP-1", "10:11", "on-track"),
    # amount over the limit at 09:44: important, the phone limit breached …
    ("t17", "inquiry", "first-response", "handler", "hotline", "PRI-IMPORTANT:response", "10:14", "breached"),
    # … and its ESC-IMPORTANT: the CS manager contacts within 30 min
    ("t17", "escalation", "contact", "cs_manager", None, "ESC-IMPORTANT:within", "10:14", "on-track"),
    # phone at 09:58 unanswered: breached; ESC-NORMAL 30 min after the 10 s limit
    ("t01", "inquiry", "first-response", "handler", "hotline", "ESC-NORMAL", "10:28", "breached"),
    # complex phone issue answered 09:29:05: the specialist calls back within 1 h, reminded
    ("t05", "inquiry", "callback", "tech_support", None, "INQ-CH-PHONE:callback", "10:29", "at-risk"),
    # class C answered 09:30:05: INQ-3 1 h
    ("t18", "inquiry", "answer", "handler", "小吴", "INQ-3", "10:30", "on-track"),
    ("t06", "inquiry", "answer", "handler", "小吴", "INQ-3", "10:40", "on-track"),
    # repaired on site, confirmation due with the urgent 2 h resolution, reminded 1 h before
    ("t16", "repair", "confirmation", "engineer", "E-02 赵工", "PRI-URGENT:resolution", "11:00", "at-risk"),
    # normal mail at 09:10: PRI-NORMAL 2 h (the mail channel's 24 h is later)
    ("t03", "inquiry", "first-response", "handler", "email-service", "PRI-NORMAL:response", "11:10", "on-track"),
    # solved 09:20: INQ-4 report within 2 h (resolved, still waiting on a person)
    ("t08", "inquiry", "report", "handler", "小吴", "INQ-4", "11:20", "on-track"),
    # answered 09:10: the online channel's 4 h resolution from 09:00
    ("t07", "inquiry", "solved", "handler", "小吴", "INQ-CH-ONLINE:resolution", "13:00", "on-track"),
    # dispatched 09:05 in the same city: REP-2 4 h
    ("t12", "repair", "arrival", "engineer", "E-01 王工", "REP-2:same-city", "13:05", "on-track"),
    # chargeable depot repair waits on the customer: targets paused, the 12 h hard limit runs
    ("t15", "repair", "customer-decision", "engineer", "E-04 刘工", "ESC-TIMEOUT:urgent", "21:00", "on-track"),
    # other city: REP-2 24 h from 09:10
    ("t13", "repair", "arrival", "engineer", "E-03 陈工", "REP-2:other-city", "2026-11-24 09:10", "on-track"),
    # reported 09:40: the feedback has no clock on the phone
    ("t09", "inquiry", "feedback", "handler", "小吴", None, None, "no clock"),
]  # fmt: skip


def due(text: str | None) -> str:
    if text is None:
        return ""
    day = "2026-11-23 " if len(text) == 5 else ""
    return (day + text).replace(" ", "T") + "+08:00"


def expected_rows(d: Day, rows: list[tuple[Any, ...]] = EXPECTED) -> list[dict[str, Any]]:
    return [
        {"ticket_id": d.ids[t], "sop": sop, "step": step, "role": role, "person": person,
         "rule": rule, "next_due": due(when), "state": state}
        for t, sop, step, role, person, rule, when, state in rows
    ]  # fmt: skip


KEYS = ("ticket_id", "sop", "step", "role", "person", "rule", "next_due", "state")


def picked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in KEYS} for r in rows]


def cli_queue(*args: str) -> list[dict[str, Any]]:
    res = CliRunner().invoke(cli, ["queue", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_the_queue_lists_an_example_days_twenty_tickets_as_worked_out_by_hand(day: Day) -> None:
    from aftersales.clock import ManualClock, SystemClock, set_clock

    set_clock(ManualClock(NOW))
    try:
        got = cli_queue()
        api = TestClient(create_app(send=None)).get("/queue")
    finally:
        set_clock(SystemClock())
    assert picked(got) == expected_rows(day)
    assert api.status_code == 200 and api.json() == got  # one query, two doors
    set_clock(ManualClock(NOW))
    try:
        check_filters(day)  # --role, --sop, --breached, --at-risk and GET /queue?…
    finally:
        set_clock(SystemClock())
    # t19 (closed after the rating) and t20 (rejected at review) wait on nobody
    assert {day.ids["t19"], day.ids["t20"]}.isdisjoint(r["ticket_id"] for r in got)
    # "since" is when the run reached the step: t15 since its diagnosis, t10's
    # escalation since it opened
    since = {(r["ticket_id"], r["sop"]): r["since"] for r in got}
    assert since[(day.ids["t15"], "repair")] == "2026-11-23T09:40+08:00"
    assert since[(day.ids["t10"], "escalation")] == "2026-11-23T09:55+08:00"
    check_board(day)
    check_escalations(day)
    set_clock(ManualClock(NOW))
    try:
        text = CliRunner().invoke(cli, ["queue"]).stdout.splitlines()
    finally:
        set_clock(SystemClock())
    assert text[0].split() == [
        "TICKET",
        "SOP",
        "STEP",
        "WHO",
        "SINCE",
        "NEXT",
        "DUE",
        "RULE",
        "STATE",
    ]
    assert len(text) == 1 + len(EXPECTED) + 1 and "Asia/Shanghai" in text[-1]
    assert text[1].split()[:3] == [day.ids["t02"], "inquiry", "first-response"]
    assert "2026-11-23T10:00+08:00" in text[1]  # the configured zone, not UTC


FILTERS = [
    (["--role", "engineer"], "role=engineer", lambda r: r[3] == "engineer"),
    (["--sop", "escalation"], "sop=escalation", lambda r: r[1] == "escalation"),
    (["--breached"], "state=breached", lambda r: r[7] == "breached"),
    (["--at-risk"], "state=at-risk", lambda r: r[7] == "at-risk"),
    (["--sop", "repair", "--at-risk"], "sop=repair&state=at-risk",
     lambda r: r[1] == "repair" and r[7] == "at-risk"),
    (["--role", "handler", "--breached"], "role=handler&state=breached",
     lambda r: r[3] == "handler" and r[7] == "breached"),
]  # fmt: skip


def check_filters(day: Day) -> None:
    for args, query, keep in FILTERS:
        want = expected_rows(day, [r for r in EXPECTED if keep(r)])
        assert want, f"the example day has rows for {args}"
        assert picked(cli_queue(*args)) == want, args
        resp = TestClient(create_app(send=None)).get(f"/queue?{query}")
        assert resp.status_code == 200 and picked(resp.json()) == want, query


def check_board(day: Day) -> None:
    with session_scope() as s:
        rows = sla_board(s, now=NOW)
    tz = deadlines().calendar.tz
    board = [r.as_row(tz) for r in rows]
    assert [(r["ticket"], r["step"], r["rule"], r["state"]) for r in board] == [
        (day.ids[t], step, rule or "", state) for t, _, step, _, _, rule, _, state in EXPECTED
    ]
    assert board[0]["who"] == "handler (online-service)"
    # read in chunks of 3 open tickets and cut to 5: the same soonest rows (flat memory at
    # any number of open tickets, issue 9 (f))
    with session_scope() as s:
        small = sla_board(s, now=NOW, chunk=3, limit=5)
    assert [(r.ticket_id, r.step, r.escalation_id) for r in small] == [
        (r.ticket_id, r.step, r.escalation_id) for r in rows[:5]
    ]


def check_escalations(day: Day) -> None:
    with session_scope() as s:
        opened = {
            (e.ticket_id, e.escalated_to)
            for t in day.ids.values()
            for e in escalations_for(s, ticket_id=t)
        }
    assert opened == {
        (day.ids["t10"], "operations_director"),
        (day.ids["t17"], "cs_manager"),
        (day.ids["t18"], "supervisor"),
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "boss"], "--role: unknown role 'boss'"),
        (["--sop", "sales"], "--sop: unknown SOP 'sales'"),
        (["--breached", "--at-risk"], "give one of them"),
    ],
)
def test_queue_bad_options_exit_2_naming_the_option(
    sqlite_db: str, args: list[str], message: str
) -> None:
    res = CliRunner().invoke(cli, ["queue", *args])
    assert res.exit_code == 2 and message in res.output


def test_the_waiting_step_follows_the_complaint_loops_and_optional_steps() -> None:
    """Pure: the step after the latest record, with the flows' conditions."""
    profile = get_profile("default")

    def nxt(sop: str, done: tuple[str, ...], armed: frozenset[str] = frozenset(),
            level: str | None = None, **values: Any) -> str | None:  # fmt: skip
        st = waiting_for(Scope(sop, done, armed, values, level), profile)
        return st.id if st else None

    assert nxt("inquiry", ("receive",)) == "first-response"
    assert nxt("inquiry", ("receive", "first-response")) == "answer"
    assert (
        nxt("inquiry", ("receive", "first-response"), frozenset({"INQ-CH-PHONE:callback"}))
        == "callback"
    )
    assert nxt("repair", ("register", "review")) == "engineer"  # dispatch found nobody
    assert nxt("repair", ("register", "review", "dispatch")) == "arrival"
    assert nxt("repair", ("register", "review", "engineer", "dispatch")) == "arrival"
    waiting = {"customer_agreed": False, "charge": "paid_repair"}
    assert (
        nxt("repair", ("register", "review", "dispatch", "arrival", "diagnosis"), **waiting)
        == "customer-decision"
    )
    assert nxt("repair", ("register", "review", "dispatch", "arrival", "diagnosis"),
               customer_agreed=True, charge="free") == "confirmation"  # fmt: skip
    assert (
        nxt("repair", ("register", "review", "dispatch", "arrival", "diagnosis", "confirmation"))
        is None
    )
    # CB-1's method decides the callback's step: the customer's online survey, or a call;
    # a second call only for a VIP (CB-2:vip-second armed)
    assert nxt("callback", ("schedule", "send-survey")) == "survey"
    assert nxt("callback", ("schedule",)) == "call"
    assert nxt("callback", ("schedule", "call")) is None
    assert nxt("callback", ("schedule", "call"), frozenset({"CB-2:vip-second"})) == "second-call"
    assert nxt("escalation", ("opened",), level="urgent") == "acknowledge"
    assert nxt("escalation", ("opened", "acknowledge"), level="urgent") == "plan"
    assert nxt("escalation", ("opened", "step-in"), level="normal") is None
    if "complaint" in steps.catalogue() and steps.catalogue()["complaint"].runnable:
        assert nxt("complaint", ("accept", "investigate"), cross_department=True) == "verify"
        assert nxt("complaint", ("accept", "investigate"), cross_department=False) == "resolve"
        assert (
            nxt("complaint", ("accept", "investigate", "resolve", "approve"), approved_by=None)
            == "resolve"
        )
        assert (
            nxt("complaint", ("accept", "investigate", "resolve", "approve"), approved_by="主管")
            == "inform"
        )
        assert nxt("complaint", ("accept", "investigate", "resolve", "approve", "inform", "close"),
                   outcome="reopened") == "investigate"  # fmt: skip


def test_nobody_free_means_the_dispatcher_picks_from_the_engineers_with_the_skill(day: Day) -> None:
    """The ticket view offers the valid choices from data (issue 10, resume dialogs)."""
    from aftersales.tickets import ticket_view

    tz = deadlines().calendar.tz
    with session_scope() as s:
        view = ticket_view(s, ticket_id=day.ids["t14"], tz=tz, now=NOW)
        busy = s.get(Engineer, "E-03")
    assert busy is not None and not busy.available
    (w,) = view.waiting
    assert (w.step, w.role) == ("engineer", "dispatch")
    assert [(c.field, c.value) for c in w.choices] == [("engineer_id", "E-03")]
    assert "busy" in w.choices[0].label
    assert [f.name for f in w.fields] == ["engineer_id"] and w.fields[0].required
    with session_scope() as s:
        arrival = ticket_view(s, ticket_id=day.ids["t12"], tz=tz, now=NOW).waiting[0]
    assert [(c.field, c.value) for c in arrival.choices] == [("engineer_id", "E-01")]
    assert "王工" in arrival.choices[0].label
    res = CliRunner().invoke(cli, ["ticket", day.ids["t12"]])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "waits for repair step 'arrival'" in out and "engineer (E-01 王工)" in out
    assert "--set engineer_id=…  string required" in out and "choice engineer_id=E-01" in out
    assert "REP-2:same-city" in out and "due 2026-11-23T13:05+08:00" in out
    assert "[REP-2] Work order" in out  # the notifications sent
    assert "138****5678" in out and "13812345678" not in out  # PRIV-1
    body = TestClient(create_app(send=None)).get(f"/tickets/{day.ids['t12']}").json()
    assert body["waiting"][0]["step"] == "arrival" and body["timezone"] == "Asia/Shanghai"
    assert body["ticket"]["created_at"] == "2026-11-23T09:00+08:00"
    # intake, dispatch, and at 10:00 the REM-1 reminder of the urgent 2 h resolution
    assert [(n["role"], n["template"]) for n in body["notifications"]] == [
        ("sync_group", "sync_group_post"), ("dispatch", "repair_request"),
        ("engineer", "work_order"), ("handler", "reminder"), ("supervisor", "reminder"),
    ]  # fmt: skip
