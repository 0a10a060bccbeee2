"""The SOP step model: every SOP declares its steps as data; completing a step does the rest.

A step is declared once (in ``tasks/<sop>.py``) with its id, the role that performs
it, its form (``aftersales.forms``), what it does to the SOP's records (``apply``)
and the messages it sends. Which clocks a step starts and stops is policy data: the
profile's rules name step references (``intake``, ``inquiry.first-response``,
``repair.arrival``, ``escalation.opened`` …) in ``starts:``/``stops:``, with a
``when:`` condition over the ticket's :class:`Facts` and the step's form. So the
complete meaning of a step is: its declaration here plus the rules that cite it, and
:func:`check_profile` verifies that every clock that can be armed has an end.

:func:`complete` applies one completed step inside the caller's transaction:

1. runs the step's ``apply`` (a refusal — ``StepOutcome(done=False)`` — records nothing);
2. stops the clocks the step stops, at the time the step happened (a channel-reported
   ``responded_at`` …, never later than now);
3. cancels every clock when the step closes the ticket;
4. arms the clocks the step starts whose condition holds (from the step, the ticket's
   submission, or the first-response deadline), superseding a clock of the same group;
5. pauses or resumes the targets while the SOP waits on the customer;
6. opens the escalations the step triggers (each its own process, :func:`open_escalation`);
7. queues the step's messages in the outbox and, on a hand-over, the other SOP's start;
8. records the step (``step_record``) and queues ``aftersales.step.completed``.

No Prefect import: the flows call this through ``tasks/steps.py``; intake and the SLA
service call it directly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from sqlmodel import Session, select

from aftersales.forms import Form
from aftersales.policy import Condition, Profile, Rule
from aftersales.settings import ROLES

if TYPE_CHECKING:
    from aftersales.sla import Deadlines
    from models.entities import Escalation, Ticket

log = logging.getLogger("aftersales.steps")

#: the order of "one level up" (spec §2 escalation table)
ESCALATION_CHAIN = ("handler", "team_lead", "supervisor", "cs_manager", "operations_director")
#: the event that starts each SOP's deployment (``triggers:`` in prefect.yaml)
START_EVENTS = {
    "inquiry": "aftersales.inquiry.received",
    "repair": "aftersales.repair.requested",
    "complaint": "aftersales.complaint.received",
    "callback": "aftersales.callback.requested",
    "escalation": "aftersales.escalation.opened",
}
STEP_COMPLETED_EVENT = "aftersales.step.completed"
TICKET_SOP = "ticket"  # the pseudo-SOP of the ticket-level actions: intake, beyond-authority
Recipient = Literal[(*ROLES, "assignee")]  # type: ignore[valid-type]  # assignee: the escalation's person
_ATTEMPT = re.compile(r"^(?P<step>.+?)(?:-r\d+)?(?:-\d+)?$")


class StepError(ValueError):
    """A step that cannot be taken; the message names the field or the state."""


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Message:
    """A message a step sends when it completes (template id of messages.yaml)."""

    template: str
    to: Recipient
    when: Condition = field(default_factory=list)


@dataclass(frozen=True)
class Handover:
    """The step hands the same ticket to another SOP (INQ-2: class B -> repair dispatch)."""

    sop: str
    when: Condition = field(default_factory=list)


@dataclass
class StepContext:
    """What a step's ``apply`` gets: the open session, the ticket, the form, the times."""

    session: Session
    ticket: Ticket
    form: Form | None
    now: datetime
    deadlines: Deadlines
    escalation: Escalation | None = None
    actor: str = ""
    # values the step's messages may use that are not stored (a one-time survey link)
    outputs: dict[str, Any] = field(default_factory=dict)

    def reported(self, at: datetime | None) -> datetime:
        """A time the channel or the person reports, trusted between submission and now."""
        return _clamp(at, now=self.now, floor=self.ticket.created_at)


@dataclass(frozen=True)
class StepOutcome:
    """What ``apply`` returns: ``done=False`` refuses the submission (nothing is recorded,
    the person is asked again with the reason); ``at`` is when the step really happened
    when the form reports it (the channel's first-response time …)."""

    done: bool = True
    reason: str = ""
    at: datetime | None = None
    value: str | None = None  # what the flow branches on (the callback's method …)


Apply = Callable[[StepContext], StepOutcome]


@dataclass(frozen=True)
class Refusal:
    """Why a submitted form cannot complete the step: the field and the rule it breaks."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


#: A step's pre-check: the refusal of a submission given the ticket's state, or None.
#: It is run by :func:`complete` before ``apply`` and before a submission is stored or a
#: run resumed (:func:`aftersales.humansteps.check_submission`), so a value is judged by
#: one function only.
Check = Callable[[StepContext], Refusal | None]


@dataclass(frozen=True)
class Step:
    id: str
    role: str  # who performs it: a recipient role, "assignee" (escalations) or "system"
    summary: str  # what is asked, shown above the Resume form
    form: type[Form] | None = None  # None: an automatic step
    apply: Apply | None = None
    messages: tuple[Message, ...] = ()
    pause_when: Condition = field(default_factory=list)  # waiting on the customer
    resume_when: Condition = field(default_factory=list)
    close_when: Condition = field(default_factory=list)  # the ticket closes here
    hand_over: Handover | None = None
    check: Check | None = None  # refuses a submission before apply (and before a resume)

    @property
    def automatic(self) -> bool:
        return self.form is None


@dataclass(frozen=True)
class SopSpec:
    name: str
    title: str
    steps: tuple[Step, ...]
    runnable: bool = True  # False: declared for its clauses, no flow deployed yet

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise StepError(
            f"step: unknown step {step_id!r} of {self.name}; known: "
            + ", ".join(s.id for s in self.steps)
        )


def ref_of(sop: str, step: str) -> str:
    return step if sop == TICKET_SOP else f"{sop}.{step}"


def base_step(key: str) -> str:
    """The step of a key: ``confirmation-2`` (the second attempt) and ``resolve-r2-3``
    (the third attempt in the second round of a loop) -> ``confirmation``, ``resolve``."""
    m = _ATTEMPT.match(key)
    return m.group("step") if m else key


TICKET = SopSpec(
    name=TICKET_SOP,
    title="ticket-level actions",
    steps=(
        Step(
            id="intake",
            role="system",
            summary="the ticket is stored with its first clocks (INQ-1, INQ-SYNC)",
            messages=(
                Message("sync_group_post", "sync_group"),
                Message("public_complaint_copy", "pr", when=[{"is_public": True}]),
                Message("repair_request", "dispatch", when=[{"sop": "repair"}]),
            ),
        ),
        Step(
            id="beyond-authority",
            role="handler",
            summary="ESC-AUTHORITY: beyond my authority, reported to the supervisor",
        ),
    ),
)


@lru_cache(maxsize=1)
def catalogue() -> dict[str, SopSpec]:
    """Every SOP's declared steps, by SOP name (imported lazily: no Prefect)."""
    from tasks.callback import CALLBACK
    from tasks.complaint import COMPLAINT
    from tasks.escalation import ESCALATION
    from tasks.inquiry import INQUIRY
    from tasks.installation import INSTALL_CHECKLIST, INSTALLATION
    from tasks.repair import REPAIR

    return {
        s.name: s
        for s in (
            TICKET,
            INQUIRY,
            REPAIR,
            ESCALATION,
            COMPLAINT,
            CALLBACK,
            INSTALLATION,
            INSTALL_CHECKLIST,
        )  # fmt: skip
    }


def resolve(ref: str) -> tuple[SopSpec, Step]:
    sop, _, step = ref.rpartition(".")
    spec = catalogue().get(sop or TICKET_SOP)
    if spec is None:
        raise StepError(f"unknown SOP {sop!r} in step reference {ref!r}")
    return spec, spec.step(step)


# ---------------------------------------------------------------- facts and conditions
class Facts(BaseModel):
    """What a ``when:`` condition may test besides the arming step's form fields."""

    model_config = ConfigDict(frozen=True)

    sop: str
    channel: str
    priority: str
    category: str | None = None
    email_grade: str | None = None
    is_public: bool = False
    safety_risk: bool = False
    amount_over_limit: bool = False
    second_complaint: bool = False  # the customer complained before, within the window
    solution: str | None = None  # the complaint's proposed solution (CMP-3)
    vip: bool = False
    same_city: bool | None = None
    mode: str | None = None
    level: str | None = None  # of the escalation a step belongs to
    trigger: str | None = None  # the rule that opened that escalation


def facts_for(
    session: Session, *, ticket: Ticket, profile: Profile, escalation: Escalation | None = None
) -> Facts:
    from models.entities import Complaint, Customer
    from models.repository import earlier_complaints, get_work_order

    wo = get_work_order(session, ticket_id=ticket.id)
    customer = session.get(Customer, ticket.customer_id) if ticket.customer_id else None
    cmp = session.exec(select(Complaint).where(Complaint.ticket_id == ticket.id)).first()
    amount = max(
        ticket.amount_cny or 0,
        (wo.cost_cny or 0) if wo else 0,
        cmp.amount_claimed_cny if cmp else 0,
    )
    second = (
        cmp is not None
        and earlier_complaints(
            session, ticket=ticket, window_days=profile.escalations.complaint_window_days
        )
        > 0
    )
    return Facts(
        sop=str(ticket.sop),
        channel=str(ticket.channel),
        priority=str(ticket.priority),
        category=str(ticket.category) if ticket.category else None,
        email_grade=str(ticket.email_grade) if ticket.email_grade else None,
        is_public=ticket.is_public,
        safety_risk=ticket.safety_risk,
        amount_over_limit=amount > profile.escalations.amount_limit_cny,
        second_complaint=second,
        solution=cmp.solution if cmp else None,
        vip=bool(customer and customer.vip),
        same_city=wo.same_city if wo else None,
        mode=wo.mode if wo else None,
        level=escalation.level if escalation else None,
        trigger=escalation.trigger if escalation else None,
    )


def _value_matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return any(_value_matches(actual, w) for w in wanted)
    if hasattr(actual, "value"):  # enums
        actual = actual.value
    return actual == wanted


def matches(condition: Condition, values: Mapping[str, Any]) -> bool:
    """Any alternative whose every fact has the wanted value; an empty condition always holds."""
    if not condition:
        return True
    return any(all(_value_matches(values.get(k), v) for k, v in alt.items()) for alt in condition)


# ---------------------------------------------------------------- the static check
@dataclass(frozen=True)
class Problem:
    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"rule {self.rule}: field {self.field}: {self.message}"


def _fact_types(step: Step) -> dict[str, Any]:
    types = {k: f.annotation for k, f in Facts.model_fields.items()}
    if step.form is not None:
        types.update({k: f.annotation for k, f in step.form.model_fields.items()})
    return types


def _check_condition(
    rule_id: str, where: str, condition: Condition, steps: list[Step]
) -> list[Problem]:
    """Each fact a condition names is a fact or a form field of at least one arming step
    (an alternative naming another step's field simply does not hold elsewhere), with a
    value valid for it."""
    problems = []
    for alt in condition:
        for key, wanted in alt.items():
            having = [_fact_types(st)[key] for st in steps if key in _fact_types(st)]
            if steps and not having:
                problems.append(
                    Problem(
                        rule_id,
                        f"{where}.{key}",
                        f"step {steps[0].id!r} has no fact or form field {key!r}"
                        if len(steps) == 1
                        else f"no step of {', '.join(repr(st.id) for st in steps)} has a fact "
                        f"or form field {key!r}",
                    )
                )
            for annotation in having:
                for w in wanted if isinstance(wanted, list) else [wanted]:
                    try:
                        TypeAdapter(annotation).validate_python(w)
                    except ValidationError:
                        problems.append(
                            Problem(rule_id, f"{where}.{key}", f"{w!r} is not a valid {key}")
                        )
    return problems


def can_end(rule: Rule) -> bool:
    """A clock is armed only if a deployed step stops it, or it is a hard limit: a rule
    stopped only by a declared SOP not deployed yet (CB-2 by the callback plan) stays
    dormant until that SOP runs."""
    if rule.hard:
        return True
    for ref in rule.stops:
        try:
            spec, _ = resolve(ref)
        except StepError:
            continue
        if spec.runnable:
            return True
    return False


def check_profile(profile: Profile) -> list[Problem]:
    """Every step a rule names exists; every condition names a fact or a form field of
    the step that arms it, with a valid value; every clock that can be armed (a start
    in a deployed SOP) is stopped by a step or is a hard limit whose breach escalates
    (one stopped only by an SOP not deployed yet is never armed: :func:`can_end`); a
    pausable clock is a target, never a hard limit."""
    problems: list[Problem] = []
    for rule in profile.rules.values():
        resolved: dict[str, list[Step]] = {}
        for fld in ("starts", "stops", "by"):
            resolved[fld] = []
            for ref in getattr(rule, fld):
                try:
                    resolved[fld].append(resolve(ref)[1])
                except StepError as exc:
                    problems.append(Problem(rule.id, fld, str(exc)))
        problems += _check_condition(rule.id, "when", rule.when, resolved["starts"])
        if rule.kind == "policy" and not rule.by:
            problems.append(
                Problem(rule.id, "by", "a policy rule names the steps that carry it out")
            )
        if not rule.arms_clock:
            continue
        startable = [r for r in rule.starts if _runnable(r)]
        if startable and not rule.hard and not any(_exists(r) for r in rule.stops):
            problems.append(
                Problem(
                    rule.id,
                    "stops",
                    "can be armed (by "
                    + ", ".join(startable)
                    + ") but no step stops it and it is not a hard limit",
                )
            )
        if rule.on_breach == "escalate" and rule.escalate_to == "next-level":
            if any(resolve(r)[0].name != "escalation" for r in rule.starts if _exists(r)):
                problems.append(
                    Problem(rule.id, "escalate_to", "next-level is only for escalation clocks")
                )
    return problems


def _exists(ref: str) -> bool:
    try:
        resolve(ref)
    except StepError:
        return False
    return True


def _runnable(ref: str) -> bool:
    try:
        return resolve(ref)[0].runnable
    except StepError:
        return False


# ---------------------------------------------------------------- completing a step
@dataclass(frozen=True)
class StepResult:
    """What completing a step did, typed (the flows branch on it)."""

    sop: str
    step: str
    key: str
    ticket_id: str
    done: bool
    reason: str = ""
    at: datetime | None = None
    form: Form | None = None
    armed: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    escalations: tuple[int, ...] = ()
    paused: bool = False
    resumed: bool = False
    closed: bool = False
    handed_over: str | None = None
    already: bool = False  # recorded before (a re-run or a duplicate submission)
    value: str | None = None


def _clamp(at: datetime | None, *, now: datetime, floor: datetime) -> datetime:
    """A reported time is trusted between the ticket's submission and now."""
    if at is None:
        return now
    return min(max(at, floor), now)


def complete(
    session: Session,
    *,
    deadlines: Deadlines,
    sop: str,
    step: str,
    ticket_id: str,
    now: datetime,
    form: Form | None = None,
    key: str | None = None,
    actor: str = "",
    escalation_id: int | None = None,
    flow_run_id: str | None = None,
) -> StepResult:
    """Apply one completed step (see the module docstring). Idempotent per
    (ticket, SOP, key, escalation): a step recorded before is not applied again."""
    from aftersales import sla
    from models.entities import Escalation, StepRecord, TicketStatus
    from models.repository import get_ticket

    spec = catalogue()[sop]
    st = spec.step(step)
    key = key or step
    instance = escalation_id or 0
    prior = session.exec(
        select(StepRecord).where(
            StepRecord.ticket_id == ticket_id,
            StepRecord.sop == sop,
            StepRecord.step_key == key,
            StepRecord.instance == instance,
        )
    ).first()
    if prior is not None:
        return StepResult(
            sop, step, key, ticket_id, done=True, at=prior.completed_at, form=form, already=True,
            closed=prior.closed, paused=prior.paused, handed_over=prior.handed_over,
            value=prior.value,
        )  # fmt: skip
    if (st.form is None) != (form is None):
        raise StepError(f"step {ref_of(sop, step)}: form {'missing' if form is None else 'given'}")
    ticket = get_ticket(session, ticket_id=ticket_id)
    escalation = session.get(Escalation, escalation_id) if escalation_id else None
    sc = StepContext(session, ticket, form, now, deadlines, escalation, actor)
    refused = st.check(sc) if st.check else None
    if refused is not None:
        return StepResult(sop, step, key, ticket_id, done=False, reason=str(refused), form=form)
    outcome = st.apply(sc) if st.apply else StepOutcome()
    if not outcome.done:
        return StepResult(sop, step, key, ticket_id, done=False, reason=outcome.reason, form=form)
    at = _clamp(outcome.at, now=now, floor=ticket.created_at)
    ref = ref_of(sop, step)
    profile = deadlines.profile
    values = {  # the ticket's facts win over a form field of the same name ("auto" grade)
        **(form.model_dump() if form else {}),
        **facts_for(session, ticket=ticket, profile=profile, escalation=escalation).model_dump(),
    }
    scope = instance if sop == "escalation" else None

    stopped = [
        c.rule_id
        for rule in profile.stopped_by(ref)
        for c in sla.meet(session, ticket_id=ticket_id, at=at, rule_ids=[rule.id], instance=scope)
    ]
    closed = bool(st.close_when) and matches(st.close_when, values)
    if closed:
        sla.cancel(session, ticket_id=ticket_id, at=now)
        ticket.status = TicketStatus.CLOSED
        ticket.closed_at = ticket.closed_at or now
        session.add(ticket)
    armed = [] if closed else arm_started(
        session, deadlines=deadlines, ticket=ticket, ref=ref, values=values, at=at,
        instance=instance, flow_run_id=flow_run_id,
    )  # fmt: skip
    same_step = [r for r in armed if ref in profile.rule(r).stops]  # INQ-SYNC: met at intake
    if same_step:
        sla.meet(session, ticket_id=ticket_id, at=at, rule_ids=same_step, instance=scope)
        stopped += same_step
    pausable = [r.id for r in profile.rules.values() if r.pausable]
    paused = bool(st.pause_when) and matches(st.pause_when, values)
    if paused:
        sla.pause(session, ctx=deadlines, ticket_id=ticket_id, at=now, rule_ids=pausable)
    resumed = bool(st.resume_when) and matches(st.resume_when, values)
    if resumed:
        sla.resume(session, ctx=deadlines, ticket_id=ticket_id, at=now, rule_ids=pausable)
    _send_messages(session, st=st, sop=sop, key=key, ticket=ticket, escalation=escalation,
                   values=values, form=form, now=now, instance=instance, extra=sc.outputs)  # fmt: skip
    opened = []
    if not closed:
        for rule in profile.started_by(ref):
            if rule.kind == "trigger" and matches(rule.when, values):
                already = session.exec(
                    select(Escalation.id).where(
                        Escalation.ticket_id == ticket_id, Escalation.trigger == rule.id
                    )
                ).first()
                if already is None:
                    esc = open_escalation(
                        session,
                        deadlines=deadlines,
                        ticket=ticket,
                        rule=rule,
                        reason=f"{rule.id}: {rule.note or rule.id} (at {ref})",
                        by=actor or "system",
                        now=now,
                        flow_run_id=flow_run_id,
                    )
                    opened.append(esc.id or 0)
    handed = None
    if st.hand_over is not None and not closed and matches(st.hand_over.when, values):
        handed = st.hand_over.sop
        ticket.sop = handed
        session.add(ticket)
        queue_start(session, sop=handed, ticket=ticket, now=now, from_flow_run=flow_run_id)
    session.add(
        StepRecord(
            ticket_id=ticket_id,
            sop=sop,
            step=step,
            step_key=key,
            instance=instance,
            actor=actor or (getattr(form, "agent", None) or getattr(form, "by", None) or ""),
            completed_at=at,
            recorded_at=now,
            flow_run_id=flow_run_id,
            value=outcome.value,
            closed=closed,
            paused=paused,
            handed_over=handed,
        )
    )
    queue_event(
        session,
        event=STEP_COMPLETED_EVENT,
        ticket_id=ticket_id,
        payload={"ticket_id": ticket_id, "sop": sop, "step": step, "key": key,
                 "armed": armed, "stopped": stopped},
        now=now,
        flow_run_id=flow_run_id,
    )  # fmt: skip
    session.flush()
    log.info("%s %s: %s (armed %s; stopped %s)", ticket_id, ref, key, armed, stopped)
    return StepResult(
        sop, step, key, ticket_id, done=True, at=at, form=form,
        armed=tuple(armed), stopped=tuple(stopped), escalations=tuple(opened),
        paused=paused, resumed=resumed, closed=closed, handed_over=handed, value=outcome.value,
    )  # fmt: skip


def arm_started(
    session: Session,
    *,
    deadlines: Deadlines,
    ticket: Ticket,
    ref: str,
    values: Mapping[str, Any],
    at: datetime,
    instance: int = 0,
    flow_run_id: str | None = None,
) -> list[str]:
    """Arm the clocks ``ref`` starts whose condition holds; the first-response anchor last."""
    from aftersales import sla

    profile = deadlines.profile
    rules = [r for r in profile.started_by(ref) if r.arms_clock and matches(r.when, values)]
    rules.sort(key=lambda r: r.anchor == "first-response-due")
    armed = []
    for rule in rules:
        if not can_end(rule):
            log.info("%s: %s not armed: no deployed step stops it yet", ticket.id, rule.id)
            continue
        if rule.anchor == "submission":
            start = ticket.created_at
        elif rule.anchor == "first-response-due":
            start = sla.first_response_due(session, ticket_id=ticket.id) or at
        else:
            start = at
        if rule.group:
            others = [
                r.id for r in profile.rules.values() if r.group == rule.group and r.id != rule.id
            ]
            sla.cancel(session, ticket_id=ticket.id, at=at, rule_ids=others, instance=instance)
        sla.arm(
            session,
            ctx=deadlines,
            ticket_id=ticket.id,
            rule_id=rule.id,
            start=start,
            instance=instance,
            flow_run_id=flow_run_id,
        )
        armed.append(rule.id)
    return armed


def _send_messages(
    session: Session,
    *,
    st: Step,
    sop: str,
    key: str,
    ticket: Ticket,
    escalation: Escalation | None,
    values: Mapping[str, Any],
    form: Form | None,
    now: datetime,
    instance: int,
    extra: Mapping[str, Any],
) -> None:
    from aftersales.sla import enqueue_notification, ticket_context

    for msg in st.messages:
        if not matches(msg.when, values):
            continue
        role = escalation.escalated_to if msg.to == "assignee" and escalation else msg.to
        context = {
            **ticket_context(ticket),
            **work_order_context(session, ticket),
            **{
                k: ("-" if v is None else v) for k, v in (form.model_dump() if form else {}).items()
            },
            "step": st.id,
            **extra,
        }
        if escalation is not None:
            context |= {"level": escalation.level, "reason": escalation.reason,
                        "rule_id": escalation.rule_id, "escalate_to": escalation.escalated_to}  # fmt: skip
        enqueue_notification(
            session,
            dedupe_key=f"step:{ticket.id}:{sop}:{key}:{instance}:{msg.template}:{role}",
            role=role,
            template=msg.template,
            context=context,
            now=now,
            ticket_id=ticket.id,
        )


def work_order_context(session: Session, ticket: Ticket) -> dict[str, Any]:
    """The work order fields messages may use (engineer, distance, REP-2 rule)."""
    from models.entities import Engineer
    from models.repository import get_work_order

    wo = get_work_order(session, ticket_id=ticket.id)
    if wo is None:
        return {}
    eng = session.get(Engineer, wo.engineer_id) if wo.engineer_id else None
    rule = (
        None
        if wo.same_city is None
        else ("REP-2:same-city" if wo.same_city else "REP-2:other-city")
    )
    return {
        k: v
        for k, v in {
            "engineer": eng.name if eng else None,
            "skill": str(wo.skill),
            "distance_km": wo.distance_km,
            "rule_id": rule,
            "device_status": wo.device_status,
        }.items()
        if v is not None
    }


# ---------------------------------------------------------------- events (outbox)
def queue_event(
    session: Session,
    *,
    event: str,
    ticket_id: str,
    payload: dict[str, Any],
    now: datetime,
    flow_run_id: str | None = None,
    tag: str | None = None,
) -> None:
    """Store a Prefect event in the project database, in the caller's transaction; the
    SLA service (and the producer, right after its commit) sends it. Nothing
    acknowledged is lost when the Prefect server is down."""
    from models.entities import OutboxEvent

    related = (
        [
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        ]
        if flow_run_id
        else []
    )
    session.add(
        OutboxEvent(
            event=event,
            ticket_id=ticket_id,
            payload=payload,
            related=related,
            tag=tag,
            created_at=now,
            next_attempt_at=now,
        )
    )


def queue_start(
    session: Session,
    *,
    sop: str,
    ticket: Ticket,
    now: datetime,
    from_flow_run: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue the event that starts ``sop``'s deployment for the ticket."""
    queue_event(
        session,
        event=START_EVENTS[sop],
        ticket_id=ticket.id,
        payload={
            "ticket_id": ticket.id,
            "sop": sop,
            "channel": str(ticket.channel),
            **(extra or {}),
        },
        now=now,
        flow_run_id=from_flow_run,
    )


# ---------------------------------------------------------------- escalations
def next_level(role: str) -> str:
    if role not in ESCALATION_CHAIN:
        return ESCALATION_CHAIN[1]
    i = ESCALATION_CHAIN.index(role)
    return ESCALATION_CHAIN[min(i + 1, len(ESCALATION_CHAIN) - 1)]


def open_escalation(
    session: Session,
    *,
    deadlines: Deadlines,
    ticket: Ticket,
    rule: Rule,
    reason: str,
    by: str,
    now: datetime,
    parent: Escalation | None = None,
    clock_id: int | None = None,
    flow_run_id: str | None = None,
) -> Escalation:
    """Record an escalation and notify its level at once. It becomes its own process
    (a run of the escalation flow, whose steps stop the level's clocks), unless the same
    person already holds an open escalation of the ticket: then it joins that one
    (recorded, notified, no second process)."""
    from aftersales.sla import enqueue_notification, ticket_context
    from models.entities import Escalation, EscalationState, SlaClock

    assert rule.escalate_to is not None and rule.level is not None
    role = next_level(parent.escalated_to) if rule.escalate_to == "next-level" and parent else (
        rule.escalate_to if rule.escalate_to != "next-level" else ESCALATION_CHAIN[2]
    )  # fmt: skip
    holder = session.exec(
        select(Escalation).where(
            Escalation.ticket_id == ticket.id,
            Escalation.escalated_to == role,
            Escalation.state == EscalationState.OPEN,
        )
    ).first()
    esc = Escalation(
        ticket_id=ticket.id,
        clock_id=clock_id,
        rule_id=rule.id,
        clause=rule.clause,
        level=rule.level,
        escalated_to=role,
        reason=reason,
        escalated_by=by,
        trigger=rule.id,
        parent_id=(holder.id if holder else (parent.id if parent else None)),
        state=EscalationState.JOINED if holder else EscalationState.OPEN,
        created_at=now,
    )
    session.add(esc)
    session.flush()
    breached = session.get(SlaClock, clock_id) if clock_id else None
    tz = deadlines.calendar.tz
    enqueue_notification(
        session,
        dedupe_key=f"escalation:{esc.id}",
        role=role,
        template=rule.template or "breach_escalation",
        context={
            **ticket_context(ticket),
            "rule_id": rule.id,
            "clause": rule.clause,
            "level": rule.level,
            "escalate_to": role,
            "reason": reason,
            **(
                {
                    "due": breached.due_at.astimezone(tz).isoformat(),
                    "started": breached.started_at.astimezone(tz).isoformat(),
                }
                if breached is not None and breached.due_at
                else {}
            ),
        },  # fmt: skip
        now=now,
        ticket_id=ticket.id,
    )
    if holder is None:
        complete(
            session,
            deadlines=deadlines,
            sop="escalation",
            step="opened",
            ticket_id=ticket.id,
            now=now,
            escalation_id=esc.id,
            actor=by,
        )
        queue_start(
            session,
            sop="escalation",
            ticket=ticket,
            now=now,
            from_flow_run=flow_run_id or _ticket_run(session, ticket),
            extra={"escalation_id": esc.id, "level": rule.level, "to": role},
        )
    log.warning("%s escalated (%s) to %s: %s", ticket.id, rule.level, role, reason)
    return esc


def _ticket_run(session: Session, ticket: Ticket) -> str | None:
    """The ticket's current SOP run: an escalation's run is related to it in the UI."""
    from models.repository import get_sop_run

    run = get_sop_run(session, ticket_id=ticket.id, sop=ticket.sop)
    return run.flow_run_id if run else None


def escalation_steps(level: str) -> list[str]:
    """The steps the person escalated to takes, by level (spec §2, "Readings")."""
    return {"normal": ["step-in"], "important": ["contact"], "urgent": ["acknowledge", "plan"]}[
        level
    ]


def steps_of(sop: str) -> Iterable[Step]:
    return catalogue()[sop].steps
