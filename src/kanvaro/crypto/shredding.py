"""Crypto-shredding: destroy a user's keys so that their personal data is gone everywhere.

The user's KEK lives in the provider (a key store file, or a Vault transit key), never in the
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
from kanvaro.crypto.providers import user_kek
from kanvaro.db import utcnow


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
    owner = str(user_id)
    keys = (
        (
            await session.execute(
                select(EncryptionKey).where(
                    EncryptionKey.scope == "user", EncryptionKey.owner_id == owner
                )
            )
        )
        .scalars()
        .all()
    )
    keyring.provider.destroy(user_kek(owner))
    now = utcnow()
    for key in keys:
        key.wrapped_key = None
        key.state = "destroyed"
        key.is_active = False
        key.destroyed_at = now
        keyring.forget(key.id)
    for spec in REGISTRY.values():
        if spec.scope != "user" or spec.owner is None:
            continue
        table = spec.model.__table__  # type: ignore[attr-defined]
        values = {spec.storage_column: None}
        if spec.blind_index:
            values[table.c[spec.blind_index].name] = None
        await session.execute(update(table).where(table.c[spec.owner] == user_id).values(values))
    await session.flush()
    await audit.record(
        session,
        action="system:key:shred",
        category="system",
        tenant_id=tenant_id,
        context=context,
        resource_type="user",
        resource_id=user_id,
        changes={"destroyedKeys": len(keys)},
    )
    return len(keys)
