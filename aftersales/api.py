"""The HTTP API: intake, the work queue, a ticket, and the human steps.

POST /intake                      -> 201 new ticket, 200 the same intake again
GET  /queue                       -> every ticket waiting on a person, soonest due first
GET  /tickets/{id}                -> the ticket (personal data masked), what it waits for,
                                     its clocks, escalations and notifications
POST /tickets/{id}/steps/{step}   -> check the form and the ticket's state, then resume

Every error is ``{"code", "errors": [{"field", "rule"}]}`` (:mod:`aftersales.errors`),
documented per route in the OpenAPI schema (``/openapi.json``); times are in the
configured zone (``AFTERSALES_TIMEZONE``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from aftersales import errors
from aftersales.clock import get_clock
from aftersales.errors import BODY, COMMON, ApiError, json_body
from aftersales.events import PUMP
from aftersales.humansteps import ResumeRefused, submit_step
from aftersales.intake import IntakeError, IntakePayload, IntakeResult, accept_intake, parse_payload
from aftersales.queue import STATES, QueueFilter, local
from aftersales.runtime import deadlines
from aftersales.settings import ROLES, get_settings
from aftersales.steps import catalogue
from aftersales.submissions import SubmissionView, views
from aftersales.tickets import TicketView, ticket_view
from models.db import session_scope
from models.repository import NotFoundError, sla_board

Role = Literal[ROLES]  # type: ignore[valid-type]
StateName = Literal[STATES]  # type: ignore[valid-type]


class QueueRow(BaseModel):
    """One step a person has to take (times in the configured zone)."""

    ticket_id: str
    sop: str
    escalation_id: int | None
    step: str
    role: str
    person: str | None
    since: str
    next_due: str
    rule: str | None
    state: str
    priority: str


class Resumed(BaseModel):
    """A human step's submission: ``resumed`` (200, the waiting run has it) or ``queued``
    (202, stored durably; the run takes it when it asks for the step, or the reconciler
    resumes it when the run waits: Prefect down, a dead or not yet waiting run)."""

    ticket_id: str
    step: str
    flow_run_id: str | None
    status: Literal["resumed", "queued"]
    submission_id: int
    created: bool = True  # False: the same body for the same step was submitted before
    sop: str = ""
    step_key: str = ""  # the step round it completes (``resolve``, ``resolve-r2``)
    note: str = ""


class TicketWithSubmissions(TicketView):
    """The ticket view with its human-step submissions not applied yet (or refused)."""

    submissions: list[SubmissionView] = []


def _forms() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for spec in catalogue().values():
        for st in spec.steps:
            if st.form is not None:
                seen.setdefault(st.form.__name__, st.form)
    return list(seen.values())


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def queue_rows(flt: QueueFilter, limit: int) -> list[QueueRow]:
    """The work queue (the sla-board's query, filtered to the steps people take)."""
    ctx = deadlines()
    tz = ctx.calendar.tz
    with session_scope() as s:
        rows = sla_board(s, limit=limit, now=get_clock().now(), profile=ctx.profile, keep=flt.keep)
    return [
        QueueRow(
            ticket_id=r.ticket_id, sop=r.sop, escalation_id=r.escalation_id, step=r.step or "",
            role=r.role or "", person=r.person, since=local(r.since, tz),
            next_due=local(r.next_due, tz), rule=r.next_rule, state=r.state, priority=r.priority,
        )
        for r in rows
    ]  # fmt: skip


def create_app(send: Any = PUMP.queue) -> FastAPI:
    app = FastAPI(title="aftersales", version="0.2.0")
    errors.install(app)
    from aftersales.api_surveys import router as surveys  # CB-3 online survey (issue 7)

    app.include_router(surveys)
    from aftersales.api_projects import router as projects  # installation projects (issue 8)

    app.include_router(projects)
    max_bytes = get_settings().api_max_body_bytes

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/intake",
        status_code=201,
        response_model=IntakeResult,
        responses={200: {"model": IntakeResult, "description": "the same intake again"}}
        | errors.responses(*BODY, *COMMON, "invalid_intake"),
        openapi_extra=_body(_ref(IntakePayload)),
    )
    async def intake(request: Request) -> JSONResponse:
        data = await json_body(request, max_bytes=max_bytes)

        def accept() -> IntakeResult:
            return accept_intake(
                parse_payload(data), ctx=deadlines(), now=get_clock().now(), send=send
            )

        try:
            result = await run_in_threadpool(accept)
        except IntakeError as exc:
            raise ApiError("invalid_intake", exc.errors) from None
        return JSONResponse(status_code=201 if result.created else 200, content=result.model_dump())

    @app.get(
        "/queue",
        response_model=list[QueueRow],
        responses=errors.responses(*COMMON, "invalid_parameter"),
    )
    def queue(
        role: Role | None = Query(None, description="only the steps of this role"),
        sop: str | None = Query(None, description="only this SOP (inquiry, repair, escalation …)"),
        state: StateName | None = Query(None, description="breached, at-risk, on-track"),
        limit: int = Query(500, ge=1, le=10_000),
    ) -> list[QueueRow]:
        if sop is not None and sop not in catalogue():
            raise ApiError(
                "invalid_parameter",
                [("sop", f"unknown SOP {sop!r}; known: {', '.join(catalogue())}")],
            )
        return queue_rows(QueueFilter(role=role, sop=sop, state=state), limit)

    @app.get(
        "/tickets/{ticket_id}",
        response_model=TicketWithSubmissions,
        responses=errors.responses(*COMMON),
    )
    def ticket(ticket_id: str) -> TicketWithSubmissions:
        ctx = deadlines()
        tz = ctx.calendar.tz
        try:
            with session_scope() as s:
                view = ticket_view(s, ticket_id=ticket_id, tz=tz, now=get_clock().now())
                return TicketWithSubmissions(
                    **view.model_dump(), submissions=views(s, ticket_id=ticket_id, tz=tz)
                )
        except NotFoundError as exc:
            raise ApiError("not_found", [("ticket_id", str(exc))]) from None

    @app.post(
        "/tickets/{ticket_id}/steps/{step}",
        response_model=Resumed,
        responses={202: {"model": Resumed, "description": "stored; the run takes it later"}}
        | errors.responses(
            *BODY,
            *COMMON,
            "not_waiting",
            "step_done",
            "invalid_form",
            "refused",
            "invalid_parameter",
        ),  # fmt: skip
        openapi_extra=_body({"anyOf": [_ref(f) for f in _forms()]}),
    )
    async def step(
        ticket_id: str,
        step: str,
        request: Request,
        escalation: int | None = Query(None, description="which escalation, when several wait"),
    ) -> JSONResponse:
        data = await json_body(request, max_bytes=max_bytes)
        try:
            out = await run_in_threadpool(
                submit_step, ticket_id, step, data, escalation_id=escalation
            )
        except NotFoundError as exc:
            raise ApiError("not_found", [("ticket_id", str(exc))]) from None
        except ResumeRefused as exc:
            raise ApiError(exc.code, [(p.field, p.rule) for p in exc.problems]) from None
        body = Resumed(
            ticket_id=ticket_id, step=step, flow_run_id=out.flow_run_id,
            status="resumed" if out.status == "resumed" else "queued",
            submission_id=out.submission_id, created=out.created, sop=out.sop,
            step_key=out.step_key, note=out.note,
        )  # fmt: skip
        return JSONResponse(status_code=200 if out.status == "resumed" else 202,
                            content=body.model_dump())  # fmt: skip

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (IntakePayload, *_forms(), errors.ErrorBody, errors.ErrorItem):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps[model.__name__] = js
        errors.document_common(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


__all__ = ["create_app", "queue_rows", "QueueRow", "local"]
