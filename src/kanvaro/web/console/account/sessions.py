"""``/t/{slug}/account/sessions``: where I am signed in, and the devices I signed in from.

The same actions as ``/api/v1/users/{userId}/sessions`` and ``/devices``
(``identity.sessions.service``): list, end one session, log out everywhere (this browser's
session too, so it is sent to sign-in), forget a device (its trust goes and its sessions
end). The current session and device are marked.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import RedirectResponse, Response

from kanvaro.deps import Ctx, own_account
from kanvaro.errors import ProblemError
from kanvaro.identity.sessions import cookies, service
from kanvaro.identity.sessions.schemas import DEVICE_ID_PATTERN
from kanvaro.web.console.account.common import attempt, redirect
from kanvaro.web.console.routing import console_router, tenant_path
from kanvaro.web.console.signin.common import Slug, field_errors
from kanvaro.web.console.templating import NOTICES, render
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Own = Annotated[Ctx, own_account()]
DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]

NOTICES.update(
    {
        "session-revoked": "The session has ended.",
        "device-forgotten": "The device is forgotten; its sessions have ended.",
        "signed-out-everywhere": "You are signed out everywhere.",
    }
)


async def _page(
    request: Request, ctx: Ctx, slug: str, *, status: int = 200, problem: str | None = None
) -> Response:
    tenant = await page_tenant(ctx, slug)
    me = ctx.me().user_id
    sessions = await service.list_sessions(ctx, me, include_ended=False, cursor=None, limit=100)
    devices = await service.list_devices(ctx, me, cursor=None, limit=100)
    return render(
        request,
        "account/sessions.html",
        ctx=ctx,
        status=status,
        tenant=tenant,
        sessions=sessions["items"],
        devices=devices["items"],
        problem=problem,
    )


def _signed_out(slug: str, notice: str) -> Response:
    ended = RedirectResponse(
        f"{tenant_path(slug.lower(), '/sign-in')}?notice={notice}",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
    for value in cookies.cleared_cookies():
        ended.headers.append("set-cookie", value)
    return ended


@router.get("/t/{slug}/account/sessions")
async def sessions_page(slug: Slug, ctx: Own, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/account/sessions/{session_id}/revoke")
async def revoke(slug: Slug, session_id: uuid.UUID, ctx: Own, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, service.revoke_session(ctx, ctx.me().user_id, session_id))
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return await _page(request, ctx, slug, status=exc.status, problem=exc.detail)
    if session_id == ctx.me().session_id:
        return _signed_out(slug, "signed-out")
    return redirect(slug, "/account/sessions", "session-revoked")


@router.post("/t/{slug}/account/sessions/revoke-all")
async def revoke_all(slug: Slug, ctx: Own, request: Request) -> Response:
    """Log out everywhere, this browser included."""
    await page_tenant(ctx, slug)
    await service.revoke_all_sessions(ctx, ctx.me().user_id)
    return _signed_out(slug, "signed-out-everywhere")


@router.post("/t/{slug}/account/devices/{device_id}/forget")
async def forget_device(slug: Slug, device_id: DeviceId, ctx: Own, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        ended = await attempt(ctx, service.remove_device(ctx, ctx.me().user_id, device_id))
    except ProblemError as exc:
        if exc.status == 404:
            raise
        detail = exc.detail + (" " + "; ".join(field_errors(exc.errors)) if exc.errors else "")
        return await _page(request, ctx, slug, status=exc.status, problem=detail)
    if ctx.me().session_id in ended:
        return _signed_out(slug, "signed-out")
    return redirect(slug, "/account/sessions", "device-forgotten")
