"""Sample reference data and the demo script of ``aftersales up --demo``.

The script plays the people: it opens tickets, answers the forms the runs wait
for, and holds one engineer back so a reminder (REM-1), a breach (REP-2) and its
escalation (ESC) happen while you watch the Prefect UI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aftersales.clock import get_clock
from models.db import session_scope
from models.entities import CustomerCreate, EngineerCreate, Skill
from models.repository import upsert_customer, upsert_engineer

log = logging.getLogger("aftersales.demo")

CUSTOMERS = [
    CustomerCreate(
        id="C-1001",
        name="张伟",
        phone="13812345678",
        city="上海",
        lat=31.2304,
        lon=121.4737,
        address="上海市浦东新区世纪大道100号",
        vip=True,
    ),
    CustomerCreate(
        id="C-1002",
        name="李娜",
        phone="13987654321",
        city="杭州",
        lat=30.2741,
        lon=120.1551,
        address="杭州市西湖区文三路1号",
    ),
]
ENGINEERS = [
    EngineerCreate(
        id="E-01", name="王工", skill=Skill.HARDWARE, city="上海", lat=31.2397, lon=121.4998
    ),
    EngineerCreate(
        id="E-02", name="赵工", skill=Skill.HARDWARE, city="苏州", lat=31.2990, lon=120.5853
    ),
    EngineerCreate(
        id="E-03", name="陈工", skill=Skill.SOFTWARE, city="上海", lat=31.1880, lon=121.4365
    ),
    EngineerCreate(
        id="E-04", name="刘工", skill=Skill.HARDWARE, city="杭州", lat=30.2460, lon=120.2100
    ),
]


def seed_reference_data() -> int:
    now = get_clock().now()
    with session_scope() as s:
        for c in CUSTOMERS:
            upsert_customer(s, data=c, now=now)
        for e in ENGINEERS:
            upsert_engineer(s, data=e)
    return len(CUSTOMERS) + len(ENGINEERS)


def _wait_step(ticket_id: str, step: str, timeout: float = 300) -> bool:
    from aftersales.humansteps import waiting_step

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if any(st == step for _, st in waiting_step(ticket_id)):
                return True
        except Exception:  # noqa: BLE001 - the run may not exist yet
            pass
        time.sleep(1)
    return False


def _do(ticket_id: str, step: str, data: dict[str, Any], say: Callable[[str], None]) -> None:
    from aftersales.humansteps import resume_step

    if not _wait_step(ticket_id, step):
        say(f"[demo] {ticket_id} never waited for {step}; giving up on it")
        return
    resume_step(ticket_id, step, data)
    say(f"[demo] {ticket_id}: submitted '{step}'")


def play_complaint(ctx: Any, say: Callable[[str], None]) -> str:
    """CMP-1..4: a complaint whose first solution the supervisor rejects."""
    from aftersales.events import send_outbox_events
    from aftersales.intake import accept_intake, bounded, parse_payload

    c = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "sop": "complaint",
                "intake_id": f"demo-complaint-{int(time.time())}",
                "customer_id": "C-1002",
                "customer_name": "李娜",
                "contact": "13987654321",
                "description": "The engineer came late twice and was rude",
            }
        ),
        ctx=ctx,
        now=get_clock().now(),
        send=bounded(send_outbox_events),
    )
    tid = c.ticket_id
    say(f"[demo] opened complaint {tid}: watch complaint-{tid} and the supervisor's approval")
    _do(tid, "accept", {"agent": "小周", "cause": "late and rude engineer",
                        "expected_outcome": "an apology", "staff_involved": "王工"}, say)  # fmt: skip
    _do(tid, "investigate", {"investigator": "主管-孙", "service_records": "WO-17, WO-19",
                             "recording_refs": ["rec://demo/0931.wav"],
                             "cross_department": False}, say)  # fmt: skip
    _do(tid, "resolve", {"by": "小周", "kind": "apology", "details": "a phone call"}, say)
    _do(tid, "approve", {"supervisor": "主管-孙", "approved": False,
                         "reason": "offer a service voucher as well"}, say)  # fmt: skip
    _do(tid, "resolve-r2", {"by": "小周", "kind": "compensation", "compensation_cny": 100,
                           "details": "apology and a 100 CNY voucher"}, say)  # fmt: skip
    _do(tid, "approve-r2", {"supervisor": "主管-孙", "approved": True}, say)
    _do(tid, "inform-r2", {"agent": "小周", "via": "phone"}, say)
    _do(tid, "close-r2", {"outcome": "accepted", "tracking": "engineer coached",
                         "theme": "engineer punctuality"}, say)  # fmt: skip
    return tid


def play_installation(say: Callable[[str], None]) -> str:
    """Spec §6: a small installation project (2 racks, 6 devices), one ground value that
    fails and is measured again, the signed acceptance with its documents."""
    from aftersales.demo_installation import play

    return play(say, _do, get_clock().now())


def run_demo_script(say: Callable[[str], None] = print, hold_arrival_seconds: float = 150) -> None:
    """Open two tickets and play the people behind them."""
    from aftersales.events import send_outbox_events
    from aftersales.intake import accept_intake, bounded, parse_payload
    from aftersales.runtime import deadlines

    ctx = deadlines()
    stamp = int(time.time())
    a = accept_intake(
        parse_payload(
            {
                "channel": "phone",
                "intake_id": f"demo-call-{stamp}",
                "customer_id": "C-1002",
                "customer_name": "李娜",
                "contact": "13987654321",
                "product_model": "X200",
                "description": "How do I reset the X200 to factory settings?",
            }
        ),
        ctx=ctx,
        now=get_clock().now(),
        send=bounded(send_outbox_events),
    )
    b = accept_intake(
        parse_payload(
            {
                "channel": "online",
                "intake_id": f"demo-chat-{stamp}",
                "customer_id": "C-1001",
                "customer_name": "张伟",
                "contact": "13812345678",
                "product_model": "X200",
                "purchase_date": "2026-03-01",
                "description": "The X200 does not power on any more",
            }
        ),
        ctx=ctx,
        now=get_clock().now(),
        send=bounded(send_outbox_events),
    )
    say(f"[demo] opened {a.ticket_id} (phone, class A) and {b.ticket_id} (online, class B)")
    _do(
        a.ticket_id,
        "first-response",
        {"agent": "小周", "category": "A", "priority": "auto", "complex_issue": False},
        say,
    )
    _do(
        b.ticket_id,
        "first-response",
        {"agent": "小吴", "category": "B", "priority": "auto", "complex_issue": False},
        say,
    )
    _do(a.ticket_id, "answer", {"answered_from_knowledge_base": True, "answer": "KB-17"}, say)
    _do(a.ticket_id, "solved", {"resolution": "reset explained", "root_cause": "usage"}, say)
    _do(a.ticket_id, "report", {"agent": "小周", "via": "phone"}, say)
    _do(
        a.ticket_id,
        "feedback",
        {"outcome": "rated", "attitude": 5, "efficiency": 4, "effectiveness": 5},
        say,
    )
    _do(b.ticket_id, "review", {"reviewer": "调度-孙", "approved": True, "skill": "hardware"}, say)
    say(
        f"[demo] the engineer of {b.ticket_id} is late on purpose: watch REM-1 and the REP-2 "
        "breach escalate to the team lead"
    )
    time.sleep(hold_arrival_seconds)
    _do(b.ticket_id, "arrival", {"engineer_id": "E-01"}, say)
    _do(
        b.ticket_id,
        "diagnosis",
        {
            "cause": "power board",
            "mode": "on_site",
            "charge": "free",
            "cost_cny": 0,
            "customer_agreed": True,
        },
        say,
    )
    _do(
        b.ticket_id,
        "confirmation",
        {
            "test_passed": True,
            "customer_signed": True,
            "signer": "张伟",
            "device_status": "in service",
            "test_report": "boots, 2 h soak ok",
        },
        say,
    )
    _do(b.ticket_id, "step-in", {"by": "组长-周", "action": "engineer chased; customer told"}, say)
    # CB-2/CB-3: the completed repair went to its callback; 张伟 is a VIP: two calls
    call = {"caller": "回访-林", "reached": True, "attitude": 5, "efficiency": 4,
            "effectiveness": 5, "answer": "fast and friendly"}  # fmt: skip
    _do(b.ticket_id, "call", call, say)
    _do(b.ticket_id, "second-call", {**call, "answer": "still working"}, say)
    play_complaint(ctx, say)
    say(
        "[demo] done: both tickets completed and the escalation stepped in; see the clocks "
        "artifacts and the sla-board in the Prefect UI"
    )
    play_installation(say)
