"""The web console: server-rendered pages (Jinja2) for the whole product.

Pages use the same access declarations and the same framework-free actions as the API; the
console adds only presentation: templates, plain forms (their CSRF token lifted into the
header by ``forms.FormCsrfMiddleware``), errors answered as pages (``errors.py``), and small
script modules for what a plain form cannot do. Layout:

* ``routing.py``   ConsoleRoute (errors render as pages), safe ``next`` addresses
* ``templating.py``  the Jinja2 environment, ``render()``, the fixed notices
* ``forms.py``     the form CSRF field, reading form fields
* ``actions.py``   around an action: the form through the API's schema, undo on refusal, redirect
* ``errors.py``    sign-in redirects and error pages for console routes
* ``tenant.py``    the tenant of a page: the signed-in person's own
* ``session_pages.py`` sign-in, the silent refresh, sign-out; ``home.py`` ``/`` and ``/t/{slug}/``
* one package per area of pages: ``signin/`` (the MFA step, password reset, invitations),
  ``account/`` (my account), ``admin/`` (the tenant's administration), ``work/`` (projects,
  the board, tasks); templates in ``templates/<area>/``, scripts in ``static/<area>-*.js``
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from kanvaro.deps import public
from kanvaro.web.console import errors, home, session_pages
from kanvaro.web.console.forms import FormCsrfMiddleware

__all__ = ["FormCsrfMiddleware", "install", "routers"]

_STATIC = Path(str(resources.files("kanvaro.web.console") / "static"))
# Served by name (no directory walk): a file is public only when it is listed here.
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
_ASSET_CACHE = {"Cache-Control": "public, max-age=3600"}

assets = APIRouter(dependencies=[public()], include_in_schema=False)


def _asset_route(name: str, media_type: str) -> None:
    async def asset() -> FileResponse:
        return FileResponse(_STATIC / name, media_type=media_type, headers=_ASSET_CACHE)

    assets.add_api_route(f"/static/console/{name}", asset, methods=["GET"], name=f"console:{name}")


def register_asset(name: str, media_type: str = "text/javascript; charset=utf-8") -> None:
    """A page module's own script or style, served from this package's static folder."""
    ASSETS[name] = media_type
    _asset_route(name, media_type)


for _name, _media_type in list(ASSETS.items()):
    _asset_route(_name, _media_type)


def routers() -> list[APIRouter]:
    # The area packages are imported here, late: their modules may register assets above.
    from kanvaro.web.console import account, admin, signin, work

    areas = [*signin.routers, *account.routers, *admin.routers, *work.routers]
    return [assets, session_pages.router, home.router, *areas]


def install(app: FastAPI) -> None:
    """Console error pages; call after the API's error handlers are installed."""
    errors.install(app)
