"""When the scan runs without the end-to-end suites (``pytest tests/zz_privacy``) it has
nothing to read: this module drives one ticket itself first — a phone, a street address
and an e-mail in the description, through the HTTP API and the step engine on the whole
stack — so the scan in ``test_personal_data_scan.py`` reads a real run. With any module
using the ``stack`` fixture in the session it is skipped (``tests/conftest.py``)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Stack
from tests.flows.test_end_to_end import submit, wait

pytestmark = pytest.mark.e2e

PHONE = "13700001111"
EMAIL = "wang.lei@example.com"
ADDRESS = "上海市徐汇区漕溪北路88号3单元1201室"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_alone_a_ticket_with_a_phone_an_address_and_an_email_goes_through_the_inquiry_steps(
    stack: Stack,
) -> None:
    from aftersales.api import create_app

    api = TestClient(create_app())
    resp = api.post(
        "/intake",
        json={
            "channel": "email",
            "email_grade": "important",
            "intake_id": f"<privacy-{time.time_ns()}@example.com>",
            "customer_name": "王磊",
            "contact": EMAIL,
            "description": f"The remote fails at {ADDRESS}; call me on {PHONE} or mail {EMAIL}",
        },
    )
    assert resp.status_code == 201, resp.text
    ticket_id = resp.json()["ticket_id"]
    submit(
        ticket_id,
        "first-response",
        {"agent": "小周", "category": "A", "priority": "auto", "complex_issue": False},
    )
    submit(ticket_id, "answer", {"answered_from_knowledge_base": False, "answer": "not in KB"})
    submit(ticket_id, "solved", {"resolution": "firmware 2.1 or later", "root_cause": "docs gap"})
    submit(ticket_id, "report", {"agent": "小周", "via": "phone"})
    # what the scan reads must have happened: the group post, tech support's hand-over and
    # the customer's mails were delivered
    for role in ("sync_group", "tech_support", "customer"):
        wait(
            lambda role=role: any(
                ticket_id in str(m.body) for m in stack.sink.messages(f"/{role}")
            ),
            60,
            f"a message about {ticket_id} at the {role} sink",
        )
