"""Crypto-shredding: destroy a user's (or a whole tenant's) keys so that the data is gone
everywhere.

The user's and the tenant's KEKs live in the provider (a key store file, or a Vault transit key), never in the
database, so a database backup that still holds the wrapped data key cannot unwrap it after
the KEK is destroyed. Limits: docs/security-model.md, "Crypto-shredding".
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import SYSTEM, AuditContext
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.keyring import Keyring
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import kek_for
from kanvaro.db import utcnow
from kanvaro.identity.models import User


async def _destroy_lineage(
    session: AsyncSession, keyring: Keyring, *, scope: str, owner: str
) -> int:
    """Destroy the lineage's KEK in the provider and every data key row of it."""
    keys = (
        (
            await session.execute(
                select(EncryptionKey).where(
                    EncryptionKey.scope == scope, EncryptionKey.owner_id == owner
                )
            )
        )
        .scalars()
        .all()
    )
    keyring.provider.destroy(kek_for(scope, owner))
    now = utcnow()
    for key in keys:
        key.wrapped_key = None
        key.state = "destroyed"
        key.is_active = False
        key.destroyed_at = now
        keyring.forget(key.id)
    return len(keys)


async def _clear_fields(session: AsyncSession, *, scope: str, owner: uuid.UUID) -> None:
    """Clear the live ciphertexts (and blind indexes) of the shredded lineage's fields."""
    for spec in REGISTRY.values():
        if spec.scope != scope:
            continue
        owner_column = spec.owner if scope == "user" else "tenant_id"
        if owner_column is None:
            continue
        table = spec.model.__table__  # type: ignore[attr-defined]
        values = {spec.storage_column: None}
        if spec.blind_index:
            values[table.c[spec.blind_index].name] = None
        await session.execute(update(table).where(table.c[owner_column] == owner).values(values))


async def _shred(session: AsyncSession, keyring: Keyring, *, scope: str, owner: uuid.UUID) -> int:
    destroyed = await _destroy_lineage(session, keyring, scope=scope, owner=str(owner))
    await _clear_fields(session, scope=scope, owner=owner)
    return destroyed


async def shred_user(
    session: AsyncSession,
    keyring: Keyring,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    context: AuditContext = SYSTEM,
) -> int:
    """Crypto-shred a user's personal data: destroy the user's KEK and data keys.

    Returns the number of data keys destroyed. The live rows' ciphertexts are cleared too;
    copies elsewhere (backups, replicas, exports) stay as ciphertext nobody can open.
    """
    destroyed = await _shred(session, keyring, scope="user", owner=user_id)
    await session.flush()
    await audit.record(
        session,
        action="system:key:shred",
        category="system",
        tenant_id=tenant_id,
        context=context,
        resource_type="user",
        resource_id=user_id,
        changes={"destroyedKeys": destroyed},
    )
    return destroyed


async def shred_tenant(
    session: AsyncSession,
    keyring: Keyring,
    *,
    tenant_id: uuid.UUID,
    context: AuditContext = SYSTEM,
) -> int:
    """Crypto-shred a tenant: its own KEK and data keys, and every one of its users' keys.

    The session must span all tenants. Returns the number of data keys destroyed. The entry
    goes to the instance chain: the tenant's own chain is about to become unreadable.
    """
    destroyed = await _shred(session, keyring, scope="tenant", owner=tenant_id)
    user_ids = (await session.execute(select(User.id).where(User.tenant_id == tenant_id))).scalars()
    for user_id in list(user_ids):
        destroyed += await _shred(session, keyring, scope="user", owner=user_id)
    await session.flush()
    await audit.record(
        session,
        action="system:tenant:shred",
        category="system",
        tenant_id=None,
        context=context,
        resource_type="tenant",
        resource_id=tenant_id,
        changes={"destroyedKeys": destroyed},
    )
    return destroyed
