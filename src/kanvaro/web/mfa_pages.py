"""The browser pages of sign-in and second factors: ``GET /sign-in`` (password, then the MFA
step) and ``GET /account/mfa`` (methods, TOTP enrollment, backup codes).

The pages are static HTML; their hand-written script files do the work through the JSON API
with the cookie session of issue 10 (``"transport": "cookie"``, the CSRF token read from its
cookie). No inline script or style, so the strict CSP holds. Each asset has its own route
(no ``/static/{name}`` catch-all), so other page modules can serve their own ``/static/...``
files whatever the order the routers are included in.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from kanvaro.deps import public

SIGN_IN_PATH = "/sign-in"
ACCOUNT_MFA_PATH = "/account/mfa"

_STATIC = Path(str(resources.files("kanvaro.web") / "static"))
_HTML = "text/html; charset=utf-8"
# The scripts and styles change only with a release; an hour keeps a fix from waiting long.
_ASSET_CACHE = {"Cache-Control": "public, max-age=3600"}
_ASSETS = {
    "kanvaro-api.js": "text/javascript; charset=utf-8",
    "sign-in.js": "text/javascript; charset=utf-8",
    "account-mfa.js": "text/javascript; charset=utf-8",
    "kanvaro-pages.css": "text/css; charset=utf-8",
}

router = APIRouter(dependencies=[public()], include_in_schema=False)


@router.get(SIGN_IN_PATH)
async def sign_in_page() -> FileResponse:
    return FileResponse(_STATIC / "sign-in.html", media_type=_HTML)


@router.get(ACCOUNT_MFA_PATH)
async def account_mfa_page() -> FileResponse:
    """Served to anyone: the page's script finds out whether a session came with it."""
    return FileResponse(_STATIC / "account-mfa.html", media_type=_HTML)


def _asset_route(name: str, media_type: str) -> None:
    async def asset() -> FileResponse:
        return FileResponse(_STATIC / name, media_type=media_type, headers=_ASSET_CACHE)

    router.add_api_route(f"/static/{name}", asset, methods=["GET"], name=f"asset:{name}")


for _name, _media_type in _ASSETS.items():
    _asset_route(_name, _media_type)
