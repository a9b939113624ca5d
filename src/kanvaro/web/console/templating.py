"""Rendering the console's pages: one Jinja2 environment, autoescaped, templates in the package.

Pages never carry inline script or style (the CSP forbids both): behaviour lives in the
console's script modules under ``/static/console/``. Every page is ``no-store``: it shows a
person's data, and a shared computer's back button must not bring it back after sign-out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kanvaro.acting import Acting
from kanvaro.identity.sessions import cookies

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("kanvaro.web.console", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,  # a typo in a template fails its test, not silently
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _day(value: Any) -> str:
    return value.isoformat()[:10] if value else "—"


# Messages a redirect can ask the next page to show (``?notice=<key>``): fixed texts, so an
# address can never put words of its own on our page. Page modules add theirs.
NOTICES: dict[str, str] = {
    "signed-out": "You are signed out.",
    "saved": "Saved.",
}

_ENV.globals["NOTICES"] = NOTICES
_ENV.filters["when"] = _when
_ENV.filters["day"] = _day

PAGE_HEADERS = {"Cache-Control": "no-store"}


def csrf_of(ctx: Acting | None) -> str:
    """The form token of the signed-in session (the same HMAC the API's header carries)."""
    if ctx is None or ctx.principal is None:
        return ""
    return cookies.csrf_token(ctx.services.keyring, ctx.principal.session_id)


def render(
    request: Request,
    template: str,
    *,
    ctx: Acting | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    """The named template with the page's common values: who is signed in, the form token,
    the tenant's slug (from the address) and the current path (for the navigation)."""
    context = {
        "me": ctx.principal if ctx else None,
        "csrf_token": csrf_of(ctx),
        "slug": request.path_params.get("slug", values.pop("slug", None)),
        "path": request.url.path,
        "notice": request.query_params.get("notice"),
        **values,
    }
    body = _ENV.get_template(template).render(context)
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def template_names() -> list[str]:
    return sorted(_ENV.list_templates(extensions=["html"]))
