"""``POST /surveys/{token}``: a customer answers the online callback survey (CB-3).

The link's token is one-time and expires (``callbacks.survey_days``); only its hash is
stored. An unknown token answers 404, a used or expired one 410, a bad answer 422
naming the field — and nothing is stored in any of these cases. A good answer is stored
durably as the ``survey`` step's submission (issue 11 §2) and resumes the callback run
waiting for it, or waits for it while the run or the Prefect server is down (202 either
way: the run records it once). A second answer to a link whose first is stored is 410."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlmodel import select

from aftersales import errors
from aftersales.clock import get_clock
from aftersales.forms import Survey
from models.db import session_scope
from models.entities import Callback, StepSubmission, SubmissionState

router = APIRouter()


def _error(status: int, code: str, field: str, rule: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"code": code, "errors": [{"field": field, "rule": rule}]}
    )


@router.post(
    "/surveys/{token}",
    status_code=202,
    responses=errors.responses(
        "survey_unknown", "survey_not_waiting", "survey_used", "invalid_survey"
    ),
)
def answer_survey(token: str, data: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008
    from aftersales.humansteps import submit_step
    from aftersales.steps import StepError
    from tasks.callback import token_hash

    now = get_clock().now()
    with session_scope() as s:
        cb = s.exec(select(Callback).where(Callback.survey_token_hash == token_hash(token))).first()
        if cb is None:
            return _error(404, "survey_unknown", "token", "no survey has this link")
        answered = s.exec(
            select(StepSubmission.id).where(
                StepSubmission.ticket_id == cb.ticket_id,
                StepSubmission.sop == "callback",
                StepSubmission.step == "survey",
                StepSubmission.state != SubmissionState.REFUSED,
            )
        ).first()
        if cb.survey_used_at is not None or answered is not None:
            return _error(410, "survey_used", "token", "this survey was already answered")
        if cb.survey_expires_at is None or cb.survey_expires_at <= now:
            return _error(410, "survey_expired", "token", "this survey link has expired")
        ticket_id = cb.ticket_id
    try:
        Survey.model_validate(data)
    except ValidationError as exc:
        return JSONResponse(
            status_code=422,
            content={
                "code": "invalid_survey",
                "errors": [
                    {"field": ".".join(str(x) for x in e["loc"]) or "(form)", "rule": e["msg"]}
                    for e in exc.errors()
                ],
            },
        )
    try:
        done = submit_step(ticket_id, "survey", data, now=now, actor="customer")
    except StepError as exc:
        return _error(409, "survey_not_waiting", "token", str(exc))
    return JSONResponse(
        status_code=202, content={"ticket_id": ticket_id, "status": "accepted", "run": done.status}
    )
