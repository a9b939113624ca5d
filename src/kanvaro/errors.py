"""Domain errors and the one handler that renders every error as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error with a status, a short title and a safe detail for the client."""

    status = 400
    title = "Bad Request"
    type_suffix = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ProblemError):
    pass


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"
    type_suffix = "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="kanvaro"'})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"
    type_suffix = "forbidden"


class NotFound(ProblemError):
    status = 404
    title = "Not Found"
    type_suffix = "not-found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"
    type_suffix = "conflict"


class PreconditionFailed(ProblemError):
    status = 412
    title = "Precondition Failed"
    type_suffix = "precondition-failed"


class PreconditionRequired(ProblemError):
    status = 428
    title = "Precondition Required"
    type_suffix = "precondition-required"


class Unprocessable(ProblemError):
    status = 422
    title = "Unprocessable Content"
    type_suffix = "validation"


class TooManyRequests(ProblemError):
    status = 429
    title = "Too Many Requests"
    type_suffix = "rate-limited"


class ServiceUnavailable(ProblemError):
    status = 503
    title = "Service Unavailable"
    type_suffix = "unavailable"


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_suffix: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://kanvaro.dev/problems/{type_suffix or status}",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Name each failing field; never echo the rejected value (it may be a secret)."""
    out = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        if kind == "json_invalid":
            continue
        message = err.get("msg", "invalid")
        if kind == "extra_forbidden":
            message = "unknown field"
        out.append(
            {
                "field": _field_path(loc),
                "in": str(loc[0]) if loc else "body",
                "message": message,
                "type": kind,
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            title=exc.title,
            detail=exc.detail,
            type_suffix=exc.type_suffix,
            instance=request.url.path,
            headers=exc.headers,
            errors=exc.errors,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(
                400,
                detail="The request body is not valid JSON.",
                type_suffix="malformed-json",
                instance=request.url.path,
            )
        errors = validation_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return problem_response(
            422,
            detail=f"Invalid input: {fields}",
            type_suffix="validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource."
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed here."
        return problem_response(
            exc.status_code,
            detail=detail,
            type_suffix="body-too-large" if exc.status_code == 413 else None,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        return problem_response(
            409,
            title="Conflict",
            type_suffix="conflict",
            instance=request.url.path,
            detail="The resource was changed by someone else; reload it and retry.",
        )
