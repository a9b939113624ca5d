"""The WebAuthn page and script: ``GET /auth/webauthn/register`` (add a security key or
passkey, for a signed-in browser session) and ``/static/webauthn.js``, the module that also
fills the WebAuthn hooks of the sign-in and account pages (the second step, passkey sign-in).
Static files only: the script uses the cookie session and its CSRF token, and nothing inline
weakens the CSP."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from kanvaro.deps import public

REGISTER_PATH = "/auth/webauthn/register"
_STATIC = Path(str(resources.files("kanvaro.web") / "static"))

router = APIRouter(dependencies=[public()], include_in_schema=False)


@router.get(REGISTER_PATH)
async def register_page() -> FileResponse:
    """Served to anyone: the script's first API call finds out whether a session came."""
    return FileResponse(_STATIC / "webauthn-register.html", media_type="text/html; charset=utf-8")


@router.get("/static/webauthn.js")
async def webauthn_script() -> FileResponse:
    return FileResponse(
        _STATIC / "webauthn.js",
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )
