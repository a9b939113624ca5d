"""``/t/{slug}/admin/keys``: the organization's data keys, the rotation status, and a form
that rotates the organization's own keys.

What ``GET /api/v1/admin/keys/status`` answers for a tenant admin (``settings:update``):
counts of keys by scope and state, never key material. The form runs the API's action
(``rotation_requests.request_rotation``): the organization's active keys are retired from new
writes and their values re-encrypted in the background; another tenant's keys are not
touched. While a rotation runs the page follows it through the JSON endpoint (console.js
``data-poll``) until it reports an end.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from kanvaro.crypto import rotation_requests
from kanvaro.crypto import routes as key_routes
from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import Problem, Slug, attempt, page, problem_of, redirect
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]

NOTICES.update(
    {
        "rotation-started": "Rotation started: new values use new keys from now on; the "
        "organization's older values are being re-encrypted.",
    }
)


async def _page(request: Request, ctx: Ctx, slug: str, problem: Problem | None = None) -> Response:
    tenant = await page_tenant(ctx, slug)
    status = await key_routes.status(ctx)
    rotation = status.get("rotation")
    retiring = any(k["state"] == "retiring" for k in status["keys"])
    return page(
        request,
        "admin/keys.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        key_status=status,
        rotation=rotation,
        running=bool(rotation and not rotation.get("finishedAt")),
        retiring=retiring,
        problem=problem,
    )


@router.get("/t/{slug}/admin/keys")
async def keys_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _page(request, ctx, slug)


@router.post("/t/{slug}/admin/keys/rotate")
async def rotate_keys(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, rotation_requests.request_rotation(ctx))
    except ProblemError as exc:
        return await _page(request, ctx, slug, problem=problem_of(exc, "rotate"))
    return redirect(slug, "/admin/keys", "rotation-started")
