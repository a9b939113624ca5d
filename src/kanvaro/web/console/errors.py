"""Errors on console routes answer as pages: sign-in when the session is missing or ended,
an error page naming what went wrong otherwise. API routes keep problem+json.

The console's handlers wrap the API's (``problems.install_error_handlers``): a request that did
not come through a :class:`~kanvaro.web.console.routing.ConsoleRoute` goes to the original.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kanvaro.errors import MfaEnrollmentRequired, ProblemError, Unauthorized
from kanvaro.identity.sessions import cookies
from kanvaro.problems import validation_errors
from kanvaro.web.console.routing import is_console, tenant_path
from kanvaro.web.console.templating import render


def sign_in_redirect(request: Request) -> RedirectResponse:
    """Back to sign-in (or first through the silent refresh, when the browser still holds a
    refresh cookie), returning to this page afterwards. A form's target is not a page to
    come back to: its referring page is."""
    slug = request.path_params.get("slug")
    back = request.url.path if request.method == "GET" else tenant_path(slug) if slug else "/"
    if request.method == "GET" and request.url.query:
        back = f"{back}?{request.url.query}"
    nxt = quote(back, safe="/")
    base = f"/t/{slug}" if slug else ""
    if request.cookies.get(cookies.REFRESH_COOKIE):
        target = f"{base}/session/refresh?next={nxt}" if slug else f"/?next={nxt}"
    else:
        target = f"{base}/sign-in?next={nxt}" if slug else f"/?next={nxt}"
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, title: str, detail: str, errors: Any) -> Response:
    return render(
        request,
        "error.html",
        status=status,
        title=title,
        detail=detail,
        errors=errors or [],
    )


def install(app: FastAPI) -> None:
    api_problem = app.exception_handlers[ProblemError]
    api_validation = app.exception_handlers[RequestValidationError]

    async def problem(request: Request, exc: Exception) -> Response:
        if not is_console(request) or not isinstance(exc, ProblemError):
            return await api_problem(request, exc)
        if isinstance(exc, Unauthorized):
            return sign_in_redirect(request)
        slug = request.path_params.get("slug")
        if isinstance(exc, MfaEnrollmentRequired) and slug:  # the policy wants a factor first
            target = tenant_path(slug.lower(), "/account/security")
            return RedirectResponse(f"{target}?notice=mfa-enrollment-required", status_code=303)
        return error_page(request, exc.status, exc.title, exc.detail, exc.errors)

    async def validation(request: Request, exc: Exception) -> Response:
        if not is_console(request) or not isinstance(exc, RequestValidationError):
            return await api_validation(request, exc)
        errors = validation_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return error_page(request, 422, "Some input is invalid", f"Check: {fields}.", errors)

    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(RequestValidationError, validation)
