"""``/t/{slug}/admin/keys``: the organization's data keys and the rotation status.

What ``GET /api/v1/admin/keys/status`` answers for a tenant admin (``settings:update``):
counts of keys by scope and state, never key material. A rotation runs over the whole
instance and is started by its operator (``kanvaro keys rotate``): the API offers a tenant
no way to start one, so neither does this page. While one runs, the page follows it through
that JSON endpoint (console.js ``data-poll``) until it reports an end.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from kanvaro.crypto import routes as key_routes
from kanvaro.deps import Ctx, require
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import Slug, page
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]


@router.get("/t/{slug}/admin/keys")
async def keys_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    tenant = await page_tenant(ctx, slug)
    status = await key_routes.status(ctx)
    rotation = status.get("rotation")
    return page(
        request,
        "admin/keys.html",
        ctx,
        tenant=tenant,
        key_status=status,
        rotation=rotation,
        running=bool(rotation and not rotation.get("finishedAt")),
    )
