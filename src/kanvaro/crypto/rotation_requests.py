"""A key rotation asked for by an admin (``POST /api/v1/admin/keys/rotations``, the keys page).

A tenant admin (``settings:update``) rotates his organization's data keys; the super admin,
acting on no tenant, every active key of the instance (what ``kanvaro keys rotate`` does). One
rotation at a time: while any rotation is under way (this tenant's, another's, the
instance's) the request is refused, so no request restarts a scan under way and a loop of
requests cannot keep one from finishing. Starters take one lock (``lock_rotations``), so two
requests at once make one rotation and one 409.

The keys are retired and the caller's ``api:key_rotation:create`` entry written (in the
tenant's chain, or the instance's for the super admin) in the request's transaction; once it
has committed the re-encryption starts in this process's background, and the shared
``keys.maintenance`` job carries it on wherever it stopped.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from kanvaro import background
from kanvaro.acting import Acting
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.rotation import lock_rotations, reencrypt, running_rotation, start_rotation
from kanvaro.db import on_commit, widen_to_all_tenants
from kanvaro.errors import Conflict

UNDER_WAY = (
    "A key rotation is under way: it must end before another starts "
    "(GET /api/v1/admin/keys/status follows it)."
)
NOTHING = "There are no active data keys to rotate yet: one is made with the first encrypted value."


async def _count(session: Any, state: str, tenant_id: uuid.UUID | None) -> int:
    query = select(func.count()).where(EncryptionKey.state == state)
    if tenant_id is not None:
        query = query.where(EncryptionKey.tenant_id == tenant_id)
    return int((await session.execute(query)).scalar_one())


async def request_rotation(ctx: Acting) -> dict[str, Any]:
    principal = ctx.me()
    instance = principal.is_super_admin and principal.tenant_id is None
    tenant_id = None if instance else ctx.tenant_id
    services = ctx.services
    if instance:  # every tenant's keys, past row-level security
        await widen_to_all_tenants(ctx.db)
    if services.keyring is None:
        raise Conflict("This instance has no key provider: there are no data keys to rotate.")
    await lock_rotations(ctx.db)
    if await running_rotation(ctx.db) is not None or await _count(ctx.db, "retiring", tenant_id):
        raise Conflict(UNDER_WAY)
    active = await _count(ctx.db, "active", tenant_id)
    if not active:
        raise Conflict(NOTHING)
    scope = "instance" if instance else "tenant"
    rotation = await start_rotation(
        ctx.db,
        reason="manual" if instance else "tenant",
        tenant_id=tenant_id,
        context=ctx.audit,
        action="api:key_rotation:create",
    )
    rotation_id = rotation.id

    async def kick() -> None:
        settings = services.settings
        background.spawn(
            reencrypt(
                services.db,
                services.keyring,
                batch_size=settings.reencrypt_batch_size,
                pause=settings.reencrypt_pause_seconds,
            ),
            name=f"key-rotation-{rotation_id}",
        )

    on_commit(ctx.db, kick)
    return {"rotationId": str(rotation_id), "scope": scope, "retiringKeys": active}
