"""The page an invitation link opens: ``GET /accept-invitation#token=...``.

The token travels in the URL fragment, which browsers never send to a server (so it is in no
access log and no ``Referer``); the page's own script file (no inline JS: the CSP stays strict)
reads it and posts it with the chosen password to ``POST /api/v1/auth/invitations/accept``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from kanvaro.deps import public

ACCEPT_PATH = "/accept-invitation"
_STATIC = Path(str(resources.files("kanvaro.web") / "static"))

router = APIRouter(dependencies=[public()], include_in_schema=False)


@router.get(ACCEPT_PATH)
async def accept_invitation_page() -> FileResponse:
    return FileResponse(_STATIC / "accept-invitation.html", media_type="text/html; charset=utf-8")


@router.get("/static/accept-invitation.js")
async def accept_invitation_script() -> FileResponse:
    return FileResponse(
        _STATIC / "accept-invitation.js",
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )
