"""RFC 9457 problem+json on the wire: the responses and the FastAPI handlers that turn domain
errors (``kanvaro.errors``, which knows no web framework), validation errors, unique
violations and HTTP errors into them."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from kanvaro.db import unique_violation_columns
from kanvaro.errors import PROBLEM_JSON, TITLES, TYPE_SUFFIXES, ProblemError
from kanvaro.schemas import FieldError


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
        "type": f"https://kanvaro.dev/problems/{type_suffix or TYPE_SUFFIXES.get(status, 'error')}",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# A database restart takes seconds; a client that honours Retry-After comes back after it.
RETRY_AFTER_SECONDS = 5


def unavailable_response(instance: str | None, **extra: Any) -> JSONResponse:
    """The answer while the database is unreachable: 503 problem+json, nothing written (the
    transaction was rolled back or never began), retry later."""
    return problem_response(
        503,
        detail="The service is temporarily unavailable; retry in a few seconds.",
        type_suffix="unavailable",
        instance=instance,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        **extra,
    )


_SNAKE = re.compile(r"_([a-z0-9])")
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _camel(part: str) -> str:
    # Path parameters keep their Python names in FastAPI's loc (project_id); the wire and the
    # docs say projectId. Header names (X-Tenant-ID) are left as sent.
    return part if "-" in part else _SNAKE.sub(lambda m: m.group(1).upper(), part)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    rest = list(loc[1:]) if loc and loc[0] in _LOCATIONS else list(loc)
    return ".".join(_camel(str(p)) for p in rest) or "body"


def _sentence(message: str) -> str:
    """Pydantic's "Value error, must ..." / "Field required" as a sentence."""
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ").strip()
    if not message:
        return "Is invalid."
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Name each failing field; never echo the rejected value (it may be a secret)."""
    out = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        if kind == "json_invalid":
            continue
        message = _sentence(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            message = "Unknown field."
        field = _field_path(loc)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):  # a cross-field rule names its own field
            field, message = cause.field, _sentence(str(cause))
        out.append(
            {
                "field": field,
                "in": str(loc[0]) if loc and loc[0] in _LOCATIONS else "body",
                "message": message,
                "type": kind,
            }
        )
    return out


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    router = request.app.router
    return [
        method
        for method in _METHODS
        if any(
            r.matches({**request.scope, "method": method})[0] == Match.FULL for r in router.routes
        )
    ]


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
            # Raised errors mostly name body fields; say so where the raiser did not.
            errors=[{"in": "body", **e} for e in exc.errors] if exc.errors else exc.errors,
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
            detail=f"Some input is invalid: {fields}.",
            type_suffix="validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed here."
            # Starlette's Allow names the methods of the one route it matched first; a path
            # served by several routes (GET and POST /projects) supports all of theirs.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(
            exc.status_code,
            detail=detail,
            type_suffix="body-too-large" if exc.status_code == 413 else None,
            instance=request.url.path,
            headers=headers,
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

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        columns = unique_violation_columns(exc)
        if columns is None:
            raise exc  # not a duplicate: the catch-all answers 500 and logs it
        field = _camel(columns[-1]) if columns else "body"
        return problem_response(
            409,
            type_suffix="conflict",
            instance=request.url.path,
            detail=f"Another record already has this {field}.",
            errors=[{"field": field, "in": "body", "message": "Must be unique; it is taken."}],
        )
