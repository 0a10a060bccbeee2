"""One error shape for the HTTP API and the CLI.

Every 4xx (and the 503 of an unreachable Prefect server) is ``{"code": <stable code>,
"errors": [{"field": …, "rule": …}, …]}``: the code says what kind of refusal it is,
each error names the field (``body``, ``step``, ``engineer_id``, ``role`` …) and the
rule it breaks. FastAPI's own shapes (a query parameter's validation, an unknown path,
a wrong method) are converted by :func:`install`; request bodies are read by
:func:`json_body`, which refuses a wrong content type (415), a body over the limit
(413), bytes that are not UTF-8 (400) and text that is not JSON (400) in that shape.

The CLI prints the same errors one line each (``error: field: rule``) and exits 2.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

#: the stable codes, by HTTP status
CODES: dict[str, int] = {
    "invalid_json": 400,
    "invalid_encoding": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_waiting": 409,
    "not_resumed": 409,
    "step_done": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_intake": 422,
    "invalid_form": 422,
    "invalid_parameter": 422,
    "refused": 422,
    "prefect_unavailable": 503,
    # the online survey (aftersales/api_surveys.py, CB-3)
    "survey_unknown": 404,
    "survey_not_waiting": 409,
    "survey_used": 410,
    "survey_expired": 410,
    "invalid_survey": 422,
}


class ErrorItem(BaseModel):
    field: str
    rule: str


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    code: str
    errors: list[ErrorItem]


class ApiError(Exception):
    def __init__(self, code: str, errors: list[tuple[str, str]]) -> None:
        self.code = code
        self.status = CODES[code]
        self.errors = errors
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))


def error_response(
    code: str, errors: list[tuple[str, str]], status: int | None = None
) -> JSONResponse:
    body = ErrorBody(code=code, errors=[ErrorItem(field=f, rule=r) for f, r in errors])
    return JSONResponse(status_code=status or CODES[code], content=body.model_dump())


def responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer with these codes."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = CODES[code]
        entry = out.setdefault(status, {"model": ErrorBody, "description": ""})
        entry["description"] = ", ".join(filter(None, [entry["description"], code]))
    return out


#: what any route may answer besides its own refusals
COMMON = ("not_found", "method_not_allowed")
BODY = ("invalid_json", "invalid_encoding", "payload_too_large", "unsupported_media_type")


def document_common(schema: dict[str, Any]) -> None:
    """Every operation documents the answers any route may give in the one shape: an
    unknown path or a wrong method, a bad parameter (FastAPI's own 422 schema is replaced:
    :func:`install` answers it in the one shape), and for a route that takes a body (any
    POST, PUT or PATCH: :func:`json_body`) the body's refusals."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    common = responses(*COMMON, "invalid_parameter")
    body = responses(*BODY)
    for ops in schema.get("paths", {}).values():
        for method, op in ops.items():
            answers = op.setdefault("responses", {})
            has_body = "requestBody" in op or method in ("post", "put", "patch")
            wanted = {**common, **(body if has_body else {})}
            for status, entry in wanted.items():
                answers.setdefault(str(status), {"description": entry["description"]})
            for status, answer in answers.items():
                if status.startswith(("4", "5")):
                    answer["content"] = {"application/json": {"schema": ref}}
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(x) for x in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(request)"


def install(app: FastAPI) -> None:
    """Answer FastAPI's and Starlette's own errors in the one shape."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            "invalid_parameter",
            [(_loc(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return error_response(
                "method_not_allowed", [("method", f"{request.method} is not allowed here")]
            )
        if exc.status_code == 404:
            return error_response("not_found", [("path", f"no route {request.url.path}")])
        if exc.status_code == 400:
            # FastAPI's own refusal of a body it cannot parse (a route with a body model):
            # fuzzing found it answered as invalid_parameter, a 422 code, with status 400
            return error_response("invalid_json", [("body", str(exc.detail))])
        return error_response(
            "invalid_parameter", [("(request)", str(exc.detail))], status=exc.status_code
        )

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.code, exc.errors)


async def json_body(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or an :class:`ApiError` in the one shape."""
    ctype = request.headers.get("content-type", "")
    media, _, params = ctype.partition(";")
    if media.strip().lower() != "application/json":
        raise ApiError(
            "unsupported_media_type",
            [("content-type", f"must be application/json, got {media.strip() or 'none'!r}")],
        )
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
    if charset not in ("utf-8", "utf8"):
        raise ApiError(
            "unsupported_media_type", [("content-type", f"charset must be utf-8, got {charset!r}")]
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        _too_large(max_bytes)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            _too_large(max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            "invalid_encoding", [("body", f"is not UTF-8 (byte {exc.start}: {exc.reason})")]
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            "invalid_json",
            [("body", f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")],
        ) from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError("invalid_encoding", [("body", "contains a lone surrogate escape")]) from None
    if "\\u0000" in text.lower():
        raise ApiError("invalid_encoding", [("body", "contains a NUL character (\\u0000)")])
    if not isinstance(data, dict):
        raise ApiError(
            "invalid_json", [("body", f"must be a JSON object, got {type(data).__name__}")]
        )
    return data


def _too_large(max_bytes: int) -> NoReturn:
    raise ApiError("payload_too_large", [("body", f"is larger than {max_bytes} bytes")])
