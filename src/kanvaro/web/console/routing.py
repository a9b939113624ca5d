"""Console routes: HTML pages under the tenant's address, marked so errors render as pages.

Every console route is a :class:`ConsoleRoute`. Error handlers (``errors.py``) ask
:func:`is_console` whether the request being answered came through one, and render an HTML
page (or a redirect to sign-in) instead of problem+json. Access is declared exactly as on the
API (``require(...)``, ``authenticated()``, ``public()``), so the route walker and the role
matrix see the console too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request

# The tenant's console lives under its own address, like its sign-in API.
TENANT_PREFIX = "/t/{slug}"
SLUG_PATTERN = r"^[A-Za-z0-9-]+$"


class ConsoleRoute(APIRoute):
    """An HTML page or a plain form's target (the error handlers answer it in HTML)."""


def console_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False, **kwargs)


def is_console(request: Request) -> bool:
    return isinstance(request.scope.get("route"), ConsoleRoute)


def tenant_path(slug: str, path: str = "/") -> str:
    """``/t/{slug}`` + ``path``: the one way page code builds its own addresses."""
    return f"/t/{slug}{path if path.startswith('/') else '/' + path}"


def safe_next(value: str | None, default: str = "/") -> str:
    """A ``next`` address limited to a path of this site: no scheme, no host, no ``//`` or
    ``\\`` (which browsers read as another host)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x21 for c in value):
        return default
    return value
