"""Crypto-shredding: destroy a user's (or a whole tenant's) keys so that the data is gone
everywhere.

The user's and the tenant's KEKs live in the provider (a key store file, or a Vault transit key), never in the
database, so a database backup that still holds the wrapped data key cannot unwrap it after
the KEK is destroyed. Limits: docs/security-model.md, "Crypto-shredding".

Shredding is a recorded, resumable two-step (a KEK destroyed for a change that rolled back
would lose data for nothing; one destroyed before its audit entry committed would be
unaccounted for):

1. *intent*, one transaction: the data key rows lose their wrapped material, the live
   ciphertexts are cleared, a ``key_shreddings`` row per lineage records the intent, and the
   ``system:key:shred`` / ``system:tenant:shred`` entry is appended: all committed together;
2. *destroy* the KEK in the provider (idempotent), then mark the record ``done`` with a
   ``system:key:destroyed`` entry.

A crash between the steps leaves ``intent`` rows: :func:`resume_shreds` (key maintenance,
or re-running ``kanvaro keys shred-*``) completes them. This module knows no users: callers
pass the ids (the tenant's members come from identity).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import SYSTEM, AuditContext
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.keyring import Keyring
from kanvaro.crypto.models import EncryptionKey, KeyShredding
from kanvaro.crypto.providers import kek_for
from kanvaro.db import Database, utcnow


async def _clear_keys(session: AsyncSession, keyring: Keyring, *, scope: str, owner: str) -> int:
    """Drop the wrapped material of every data key row of the lineage (the KEK goes later)."""
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


async def _intend(
    session: AsyncSession,
    keyring: Keyring,
    *,
    scope: str,
    owner: uuid.UUID,
    record_tenant: uuid.UUID | None,
) -> int:
    """Step 1 for one lineage, in the caller's transaction: the database side and the record."""
    destroyed = await _clear_keys(session, keyring, scope=scope, owner=str(owner))
    await _clear_fields(session, scope=scope, owner=owner)
    session.add(
        KeyShredding(
            scope=scope,
            owner_id=str(owner),
            tenant_id=record_tenant,
            state="intent",
            destroyed_keys=destroyed,
        )
    )
    return destroyed


async def intend_user_shred(
    session: AsyncSession, keyring: Keyring, *, user_id: uuid.UUID, tenant_id: uuid.UUID | None
) -> int:
    """Step 1 for one user inside the caller's transaction, for an action that must commit
    together with it (a GDPR erasure); the caller audits it and runs :func:`resume_shreds`
    after commit (key maintenance completes it if that never happens). Returns the number of
    data keys whose material was dropped."""
    destroyed = await _intend(
        session, keyring, scope="user", owner=user_id, record_tenant=tenant_id
    )
    await session.flush()
    return destroyed


async def resume_shreds(db: Database, keyring: Keyring) -> int:
    """Step 2 for every recorded intent: destroy the KEK, then mark it done (audited).

    Safe to run again and from several processes: destroying a KEK twice is a no-op, and the
    record is re-read under a row lock before it is marked.
    """
    async with db.session(all_tenants=True) as session:
        pending = (
            (
                await session.execute(
                    select(KeyShredding.id)
                    .where(KeyShredding.state == "intent")
                    .order_by(KeyShredding.requested_at)
                )
            )
            .scalars()
            .all()
        )
    done = 0
    for shred_id in pending:
        async with db.session(all_tenants=True) as session:
            row = (
                await session.execute(
                    select(KeyShredding).where(KeyShredding.id == shred_id).with_for_update()
                )
            ).scalar_one()
            if row.state != "intent":
                continue
            # Only after the intent has committed: the KEK goes, backups included.
            keyring.provider.destroy(kek_for(row.scope, row.owner_id))
            row.state = "done"
            row.done_at = utcnow()
            await audit.record(
                session,
                action="system:key:destroyed",
                category="system",
                tenant_id=row.tenant_id,
                resource_type=row.scope,
                resource_id=row.owner_id,
                changes={"kek": row.scope, "shreddingId": str(row.id)},
            )
            done += 1
    return done


async def shred_user(
    db: Database,
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
    async with db.session(all_tenants=True) as session:
        destroyed = await _intend(
            session, keyring, scope="user", owner=user_id, record_tenant=tenant_id
        )
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
    await resume_shreds(db, keyring)
    return destroyed


async def shred_tenant(
    db: Database,
    keyring: Keyring,
    *,
    tenant_id: uuid.UUID,
    user_ids: list[uuid.UUID],
    context: AuditContext = SYSTEM,
) -> int:
    """Crypto-shred a tenant: its own KEK and data keys, and the keys of ``user_ids`` (its
    members, as identity knows them; users with a key lineage under the tenant are added).

    Returns the number of data keys destroyed. The entries go to the instance chain: the
    tenant's own chain is about to become unreadable.
    """
    async with db.session(all_tenants=True) as session:
        lineages = (
            await session.execute(
                select(EncryptionKey.owner_id)
                .where(EncryptionKey.scope == "user", EncryptionKey.tenant_id == tenant_id)
                .distinct()
            )
        ).scalars()
        users = set(user_ids) | {uuid.UUID(owner) for owner in lineages}
        destroyed = await _intend(
            session, keyring, scope="tenant", owner=tenant_id, record_tenant=None
        )
        for user_id in sorted(users):
            destroyed += await _intend(
                session, keyring, scope="user", owner=user_id, record_tenant=None
            )
        await session.flush()
        await audit.record(
            session,
            action="system:tenant:shred",
            category="system",
            tenant_id=None,
            context=context,
            resource_type="tenant",
            resource_id=tenant_id,
            changes={"destroyedKeys": destroyed, "users": len(users)},
        )
    await resume_shreds(db, keyring)
    return destroyed
