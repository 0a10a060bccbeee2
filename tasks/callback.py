"""The callback SOP (客户回访, spec §5, CB-1..3) as data: its steps, who takes them, their
forms, what each records and the messages it sends. A completed repair (REP-4) hands
its ticket to this SOP at once, so the CB-2 clocks (3 working days; a VIP's second call
within 7 days) are met by a call, not by a monthly batch; the monthly plan (CB-1,
``flows/callback.py``) lists them and adds the VIP customers. No Prefect here."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import select

from aftersales.forms import CallResult, Survey
from aftersales.steps import Message, SopSpec, Step, StepContext, StepOutcome
from models.entities import Callback, Channel, Customer, TicketStatus


def callback_of(sc: StepContext) -> Callback:
    row = sc.session.exec(select(Callback).where(Callback.ticket_id == sc.ticket.id)).first()
    if row is None:
        row = Callback(ticket_id=sc.ticket.id, customer_id=sc.ticket.customer_id)
        sc.session.add(row)
    return row


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def schedule(sc: StepContext) -> StepOutcome:
    """CB-1: how the customer is called back: a VIP by phone; an ordinary customer who
    reached us online or by email gets an online survey link (one-time, expiring), the
    others a phone call."""
    c = callback_of(sc)
    customer = sc.session.get(Customer, sc.ticket.customer_id) if sc.ticket.customer_id else None
    vip = bool(customer and customer.vip)
    online = sc.ticket.channel in (Channel.ONLINE, Channel.EMAIL)
    c.method = "online" if online and not vip else "phone"
    c.reason = c.reason if c.plan_month else "repair"
    sc.session.add(c)
    return StepOutcome(value=c.method)


def send_survey(sc: StepContext) -> StepOutcome:
    """The online survey: a one-time token (only its hash is stored) that expires."""
    c = callback_of(sc)
    token = secrets.token_urlsafe(24)
    c.survey_token_hash = token_hash(token)
    c.survey_expires_at = sc.now + timedelta(days=sc.deadlines.profile.callbacks.survey_days)
    sc.session.add(c)
    from aftersales.settings import get_settings

    # the message carries the link; the token itself is never stored
    sc.outputs["survey_url"] = f"{get_settings().public_base_url.rstrip('/')}/surveys/{token}"
    return StepOutcome()


def _record(sc: StepContext, survey: Survey) -> None:
    """CB-3: the survey on the ticket (0-10 for the quality report: mean x 2) and a low
    score (any dimension <= 2) opens a complaint linked to the ticket."""
    from aftersales.intake import IntakePayload, store_intake

    t, c = sc.ticket, callback_of(sc)
    c.attitude, c.efficiency, c.effectiveness = (
        survey.attitude,
        survey.efficiency,
        survey.effectiveness,
    )
    c.answer = survey.answer
    t.satisfaction_attitude, t.satisfaction_efficiency = survey.attitude, survey.efficiency
    t.satisfaction_effectiveness = survey.effectiveness
    t.satisfaction = survey.satisfaction_0_10
    if t.status == TicketStatus.RESOLVED:
        t.status = TicketStatus.CLOSED
        t.closed_at = t.closed_at or sc.now
    sc.session.add_all([t, c])
    if survey.low and c.complaint_ticket_id is None:
        complaint, _ = store_intake(
            sc.session,
            IntakePayload(
                channel=t.channel,
                intake_id=f"low-score:{t.id}",
                sop="complaint",
                customer_id=t.customer_id,
                customer_name=t.customer_name,
                contact=t.contact,
                product_model=t.product_model,
                description=f"low callback score on {t.id} (attitude {survey.attitude}, "
                f"efficiency {survey.efficiency}, effectiveness {survey.effectiveness}): "
                f"{survey.answer or '-'}",
            ),
            deadlines=sc.deadlines,
            now=sc.now,
            parent_ticket_id=t.id,
        )
        c.complaint_ticket_id = complaint.id
        sc.session.add(c)


def call(sc: StepContext) -> StepOutcome:
    """CB-2: not reached: asked again for the next working day, up to the profile's
    attempts, then recorded unreachable; reached: the survey is recorded (CB-3)."""
    form = sc.form
    assert isinstance(form, CallResult)
    c = callback_of(sc)
    at = sc.reported(form.called_at)
    if not form.reached:
        c.attempts += 1
        sc.session.add(c)
        limit = sc.deadlines.profile.callbacks.max_attempts
        if c.attempts < limit:
            nxt = sc.deadlines.calendar.next_working_instant(at + timedelta(days=1))
            return StepOutcome(
                done=False,
                reason=f"reached: not reached (attempt {c.attempts} of {limit}); call again "
                f"on the next working day ({nxt.astimezone(sc.deadlines.calendar.tz):%Y-%m-%d})",
            )
        c.unreachable = True
        return StepOutcome(at=at)
    c.attempts += 1
    c.reached_at = at
    survey = form.survey()
    assert survey is not None
    _record(sc, survey)
    return StepOutcome(at=at)


def survey(sc: StepContext) -> StepOutcome:
    """CB-3 online: the customer's answer through ``POST /surveys/{token}``."""
    form = sc.form
    assert isinstance(form, Survey)
    c = callback_of(sc)
    c.reached_at = c.reached_at or sc.now
    c.survey_used_at = sc.now
    _record(sc, form)
    return StepOutcome()


def second_call(sc: StepContext) -> StepOutcome:
    """CB-2: a VIP's second callback within 7 days of the repair."""
    form = sc.form
    assert isinstance(form, CallResult)
    if not form.reached:
        return StepOutcome(
            done=False, reason="reached: the second call must reach the VIP; try again"
        )
    c = callback_of(sc)
    c.second_call_at = sc.reported(form.called_at)
    sc.session.add(c)
    return StepOutcome(at=c.second_call_at)


CALLBACK = SopSpec(
    name="callback",
    title="Callback (客户回访), spec §5",
    steps=(
        Step(
            "schedule",
            "system",
            "CB-1: phone or online survey, by tier and channel",
            apply=schedule,
        ),  # fmt: skip
        Step(
            "send-survey",
            "system",
            "CB-3: the online survey link goes to the customer",
            apply=send_survey,
            messages=(Message("survey_link", "customer"),),
        ),
        Step(
            "call",
            "handler",
            "CB-2/CB-3: call the customer back; if reached, ask the three survey questions",
            CallResult,
            apply=call,
            messages=(Message("callback_done", "handler"),),
        ),
        Step(
            "survey",
            "customer",
            "CB-3: the customer answers the survey online",
            Survey,
            apply=survey,
            messages=(Message("callback_done", "handler"),),
        ),
        Step(
            "second-call",
            "handler",
            "CB-2: the VIP's second callback, within 7 days of the repair",
            CallResult,
            apply=second_call,
        ),
    ),
)
