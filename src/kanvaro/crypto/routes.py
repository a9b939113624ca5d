"""``/api/v1/admin/keys``: data keys and rotation progress, and starting a rotation, for admins
(the super admin acting on no tenant: the instance; a tenant's ``settings:update``: its own)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from kanvaro.crypto import rotation_requests
from kanvaro.crypto.status import key_status
from kanvaro.deps import Ctx, authenticated, require
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/admin/keys", tags=["admin"])


@router.get("/status")
async def status(ctx: Annotated[Ctx, authenticated()]) -> dict[str, Any]:
    """The instance's keys for the super admin; the tenant's own keys for ``settings:update``.

    Counts and states only: no key material, wrapped or not, ever leaves the server.
    """
    scope = await _scope(ctx)
    result = await key_status(ctx.db, scope)
    result["provider"] = ctx.services.keyring.provider.name if ctx.services.keyring else None
    result["scope"] = "instance" if scope is None else "tenant"
    return result


@router.post("/rotations", status_code=202)
async def rotate(
    ctx: Annotated[Ctx, require(P.SETTINGS_UPDATE)], response: Response
) -> dict[str, Any]:
    """Retire the active data keys (the tenant's own, or the instance's for the super admin)
    from new writes and re-encrypt their values in the background; 409 while a rotation of
    the same keys is under way. No body."""
    started = await rotation_requests.request_rotation(ctx)
    response.headers["Location"] = "/api/v1/admin/keys/status"
    return started


async def _scope(ctx: Ctx) -> Any:
    """None for the instance (the super admin acting on no tenant), else the caller's tenant."""
    principal = ctx.me()
    # Instance-wide figures (every tenant's key counts, the rotation's row counts) belong to
    # the super admin only; a permission a tenant role may hold is not enough (fail closed).
    if principal.is_super_admin and principal.tenant_id is None:
        return None
    if principal.has(P.SETTINGS_UPDATE.value) or principal.has(P.SYSTEM_ADMIN.value):
        return ctx.tenant_id
    raise await ctx.deny(P.SETTINGS_UPDATE.value)
