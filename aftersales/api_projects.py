"""The installation projects over HTTP (spec §6, issue 8).

POST /projects                           -> 201 the project, its plan and equipment list
                                            stored and its run started; 422 listing every
                                            ``{field, rule}`` (nothing stored); 409 when
                                            the id exists
GET  /projects/{id}                      -> the project and its progress table
GET  /projects/{id}/documents/{name}     -> a document the run built (PDF, XLSX, ZIP)

The equipment list comes inline (``equipment``: ``[{line_no, model, quantity, …}]``); the
CLI reads the same from CSV/XLSX (``aftersales project create --equipment FILE``).
Errors are in the API's one shape, ``{"code", "errors": [{"field", "rule"}]}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ValidationError

from aftersales.clock import get_clock
from aftersales.errors import ErrorBody, error_response, json_body
from aftersales.events import send_outbox_events
from aftersales.runtime import deadlines
from aftersales.settings import get_settings
from models.db import session_scope
from models.installation import ProjectCreate, ProjectPublic
from models.repository import NotFoundError
from tasks.installation import documents_dir

router = APIRouter(tags=["installation projects"])
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "not_found"},
    409: {"model": ErrorBody, "description": "project_exists"},
    422: {"model": ErrorBody, "description": "invalid_project"},
}


class PhaseRow(BaseModel):
    phase: str
    clause: str
    title: str
    planned: str
    state: str
    done: str
    signed_by: str


class ProjectView(BaseModel):
    project: ProjectPublic
    ticket_id: str
    progress: list[PhaseRow]
    documents: list[str]


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``equipment.2.quantity: Input should be greater than or equal to 1`` …"""
    return [
        (".".join(str(x) for x in e["loc"]) or "(body)", e["msg"].removeprefix("Value error, "))
        for e in exc.errors()
    ]


def create_project(data: ProjectCreate) -> str:
    """Store the project and queue its start; send the event after the commit (the SLA
    service's courier sends it if the Prefect server is down)."""
    from tasks.installation import open_project

    now = get_clock().now()
    with session_scope() as s:
        p = open_project(s, data=data, deadlines=deadlines(), now=now)
        tid = p.ticket_id
    try:
        send_outbox_events(now=now, ticket_ids=[tid])
    except Exception:  # noqa: BLE001 - the courier retries
        pass
    return tid


def project_view(project_id: str) -> ProjectView:
    from tasks.installation import get_project, progress

    tz = deadlines().calendar.tz
    with session_scope() as s:
        p = get_project(s, project_id=project_id)
        rows = progress(s, project_id=project_id)
        public = ProjectPublic.model_validate(p, from_attributes=True)
    folder = documents_dir(project_id)
    docs = sorted(f.name for f in folder.iterdir()) if folder.is_dir() else []

    def fmt(t: Any) -> str:
        return t.astimezone(tz).isoformat(timespec="minutes") if t else ""

    return ProjectView(
        project=public,
        ticket_id=p.ticket_id,
        progress=[
            PhaseRow(
                phase=r.phase,
                clause=r.clause,
                title=r.title,
                planned=fmt(r.planned),
                state=r.state,
                done=fmt(r.done_at),
                signed_by=r.signed_by,
            )  # fmt: skip
            for r in rows
        ],
        documents=docs,
    )


@router.post("/projects", status_code=201, response_model=ProjectView, responses=REFUSALS)
async def post_project(request: Request) -> JSONResponse:
    from tasks.installation import ProjectError

    body = await json_body(request, max_bytes=get_settings().api_max_body_bytes)
    try:
        data = ProjectCreate.model_validate(body)
    except ValidationError as exc:
        return error_response("invalid_project", validation_errors(exc), status=422)
    try:
        create_project(data)
    except ProjectError as exc:
        field, _, rule = str(exc).partition(": ")
        return error_response("project_exists", [(field, rule)], status=409)
    return JSONResponse(status_code=201, content=project_view(data.id).model_dump(mode="json"))


@router.get("/projects/{project_id}", response_model=ProjectView, responses=REFUSALS)
def get_project_view(project_id: str) -> JSONResponse:
    try:
        return JSONResponse(project_view(project_id).model_dump(mode="json"))
    except NotFoundError as exc:
        return error_response("not_found", [("project_id", str(exc))])


@router.get("/projects/{project_id}/documents/{name}", responses=REFUSALS, response_model=None)
def get_document(project_id: str, name: str) -> FileResponse | JSONResponse:
    folder = documents_dir(project_id).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return error_response(
            "not_found", [("name", f"project {project_id} has no document {name!r}")]
        )
    media = {".pdf": "application/pdf", ".zip": "application/zip",
             ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}  # fmt: skip
    return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"),
                        filename=name)  # fmt: skip
