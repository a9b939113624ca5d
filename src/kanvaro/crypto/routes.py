"""``GET /api/v1/admin/keys/status``: data keys and rotation progress, for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from kanvaro.crypto.status import key_status
from kanvaro.deps import Ctx, authenticated
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/admin/keys", tags=["admin"])


@router.get("/status")
async def status(ctx: Annotated[Ctx, authenticated()]) -> dict[str, Any]:
    """The instance's keys for the super admin; the tenant's own keys for ``settings:update``.

    Counts and states only: no key material, wrapped or not, ever leaves the server.
    """
    principal = ctx.me()
    # Instance-wide figures (every tenant's key counts, the rotation's row counts) belong to
    # the super admin only; a permission a tenant role may hold is not enough (fail closed).
    if principal.is_super_admin and principal.tenant_id is None:
        scope = None
    elif principal.has(P.SETTINGS_UPDATE.value) or principal.has(P.SYSTEM_ADMIN.value):
        scope = ctx.tenant_id
    else:
        raise await ctx.deny(P.SETTINGS_UPDATE.value)
    result = await key_status(ctx.db, scope)
    result["provider"] = ctx.services.keyring.provider.name if ctx.services.keyring else None
    result["scope"] = "instance" if scope is None else "tenant"
    return result
