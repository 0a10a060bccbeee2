"""HTTP intake endpoint and human-step API.

POST /intake                      -> 201 new ticket, 200 the same intake again, 422 naming field and rule
GET  /tickets/{id}                -> the ticket (personal data masked) and its clocks
POST /tickets/{id}/steps/{step}   -> resume the waiting run with the step's form
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, HTTPException
from fastapi.responses import JSONResponse

from aftersales.clock import get_clock
from aftersales.humansteps import resume_step
from aftersales.intake import IntakeError, accept_intake, parse_payload
from aftersales.runtime import deadlines, send_outbox_events
from aftersales.steps import StepError
from models.db import session_scope
from models.entities import SlaClockPublic, TicketPublic
from models.repository import NotFoundError, clocks_for, get_ticket


def create_app(send: Any = send_outbox_events) -> FastAPI:
    app = FastAPI(title="aftersales intake", version="0.1.0")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/intake")
    def intake(payload: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008
        try:
            parsed = parse_payload(payload)
        except IntakeError as exc:
            return JSONResponse(
                status_code=422,
                content={
                    "error": "invalid intake",
                    "errors": [{"field": f, "rule": r} for f, r in exc.errors],
                },
            )
        try:
            result = accept_intake(parsed, ctx=deadlines(), now=get_clock().now(), send=send)
        except IntakeError as exc:
            return JSONResponse(
                status_code=422,
                content={
                    "error": "invalid intake",
                    "errors": [{"field": f, "rule": r} for f, r in exc.errors],
                },
            )
        return JSONResponse(status_code=201 if result.created else 200, content=result.model_dump())

    @app.get("/tickets/{ticket_id}")
    def ticket(ticket_id: str) -> dict[str, Any]:
        try:
            with session_scope() as s:
                t = get_ticket(s, ticket_id=ticket_id)
                return {
                    "ticket": TicketPublic.model_validate(t, from_attributes=True).model_dump(
                        mode="json"
                    ),
                    "clocks": [
                        SlaClockPublic.model_validate(c, from_attributes=True).model_dump(
                            mode="json"
                        )
                        for c in clocks_for(s, ticket_id=ticket_id)
                    ],
                }
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.post("/tickets/{ticket_id}/steps/{step}")
    def step(ticket_id: str, step: str, data: dict[str, Any] = Body(...)) -> dict[str, str]:  # noqa: B008
        try:
            run_id = resume_step(ticket_id, step, data)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except StepError as exc:
            raise HTTPException(
                status_code=409 if "not waiting" in str(exc) else 422, detail=str(exc)
            ) from None
        return {"ticket_id": ticket_id, "step": step, "flow_run_id": run_id, "status": "resumed"}

    return app
