"""Data-key rotation with resumable background re-encryption, retirement and crypto-shredding.

Rotation happens in two steps:

1. :func:`start_rotation` marks every active data key ``retiring`` in one transaction. From
   that commit on, no write uses them: the next write of a lineage creates its next version.
2. :func:`reencrypt` walks every encrypted column in primary-key order, in batches. Each batch
   re-encrypts the rows still on a non-active key (compare-and-swap on the old ciphertext, so
   a concurrent write is never overwritten) and advances the rotation's cursor *in the same
   transaction*: a process killed at any moment resumes after the last committed batch.
   When every column is done, keys that no row uses any more become ``retired``.

Crypto-shredding (:mod:`kanvaro.crypto.shredding`) destroys a user's KEK in the provider and the wrapped
data key in the database; see docs/security-model.md for what that does to backups.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.audit.service import SYSTEM, AuditContext
from kanvaro.crypto import envelope
from kanvaro.crypto.errors import DecryptionError, KeyUnavailable
from kanvaro.crypto.fields import REGISTRY, FieldSpec
from kanvaro.crypto.keyring import KEYS, Keyring
from kanvaro.crypto.models import EncryptionKey, KeyRotation
from kanvaro.crypto.providers import INSTANCE_KEK, WrapContext, kek_for
from kanvaro.db import Database, utcnow

DONE = "done"
UNREADABLE = "_unreadable"
log = structlog.get_logger("kanvaro.keys")
Progress = Callable[[int, int], None]


def _fields() -> list[FieldSpec]:
    return [REGISTRY[name] for name in sorted(REGISTRY)]


async def lock_rotations(session: AsyncSession) -> None:
    """One starter of a rotation at a time, across processes and instances, until this
    transaction ends (PostgreSQL; SQLite has a single writer)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('kanvaro:key-rotation'))")
        )


async def running_rotation(session: AsyncSession, *, lock: bool = False) -> KeyRotation | None:
    """The rotation under way, if any; ``lock`` takes its row lock and reloads it."""
    stmt = (
        select(KeyRotation)
        .where(KeyRotation.state == "running")
        .order_by(KeyRotation.started_at)
        .limit(1)
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def _count_rows(session: AsyncSession) -> int:
    total = 0
    for spec in _fields():
        column = spec.model.__table__.c[spec.storage_column]  # type: ignore[attr-defined]
        total += (
            await session.execute(select(func.count()).where(column.is_not(None)))
        ).scalar_one()
    return total


async def start_rotation(
    session: AsyncSession,
    *,
    reason: str = "manual",
    context: AuditContext = SYSTEM,
    tenant_id: uuid.UUID | None = None,
    action: str = "system:key:rotate",
) -> KeyRotation:
    """Retire every active data key (``tenant_id``: that tenant's only) from new writes and
    open a re-encryption run, or widen the one under way; audited as ``action`` in the chain
    of ``tenant_id`` (the instance's for None).

    The run scans every encrypted column of the instance either way, but re-encrypts only the
    values under a retiring key: a tenant's rotation rewrites that tenant's values only. The
    row count set here is what this session can see (a tenant's session: its own rows); the
    run counts again when its scan begins (``reencrypt``)."""
    await lock_rotations(session)
    current = await running_rotation(session)
    now = utcnow()
    retire = update(EncryptionKey).where(EncryptionKey.state == "active")
    if tenant_id is not None:
        retire = retire.where(EncryptionKey.tenant_id == tenant_id)
    result = await session.execute(retire.values(state="retiring", is_active=False, rotated_at=now))
    if current is not None:
        # Rotating again while a run is under way: restart its scan so the newly retiring keys
        # are covered too.
        current.cursor = {}
        current.total_rows = await _count_rows(session)
        current.done_rows = 0
        rotation = current
    else:
        rotation = KeyRotation(
            id=uuid.uuid4(),
            state="running",
            reason=reason,
            total_rows=await _count_rows(session),
            cursor={},
            started_at=now,
            updated_at=now,
        )
        session.add(rotation)
    await session.flush()
    changes: dict[str, Any] = {"reason": reason, "retiringKeys": result.rowcount}
    if tenant_id is None:  # a tenant's chain gets no figures of other tenants
        changes["rows"] = rotation.total_rows
    await audit.record(
        session,
        action=action,
        category="system",
        tenant_id=tenant_id,
        context=context,
        resource_type="key_rotation",
        resource_id=rotation.id,
        changes=changes,
    )
    return rotation


async def rotation_due(session: AsyncSession, days: int) -> bool:
    if days <= 0:
        return False
    oldest = (
        await session.execute(
            select(func.min(EncryptionKey.created_at)).where(EncryptionKey.state == "active")
        )
    ).scalar()
    if oldest is None:
        return False
    if oldest.tzinfo is None:  # SQLite aggregate results come back naive (UTC)
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return oldest <= utcnow() - timedelta(days=days)


async def _batch(
    session: AsyncSession,
    keyring: Keyring,
    spec: FieldSpec,
    after: str | None,
    size: int,
    unreadable: dict[str, int],
) -> tuple[int, int, str | None]:
    """Re-encrypt one batch of one column; returns (scanned, re-encrypted, last key).

    A value that does not decrypt (tampered, or moved from another row) is skipped and logged
    as a security event; its key id is counted in ``unreadable`` so the key is kept."""
    table = spec.model.__table__  # type: ignore[attr-defined]
    pk = table.c[spec.row_id]
    column = table.c[spec.storage_column]
    owner = table.c[spec.owner] if spec.owner else None
    tenant = table.c.get("tenant_id", None)
    wanted = [pk, column]
    if owner is not None:
        wanted.append(owner.label("owner"))
    if tenant is not None:
        wanted.append(tenant.label("tenant"))
    query = select(*wanted).where(column.is_not(None)).order_by(pk).limit(size)
    if after is not None:
        query = query.where(pk > pk.type.python_type(after))
    rows = (await session.execute(query)).all()
    if not rows:
        return 0, 0, None
    ids = {envelope.key_id_of(r[1]) for r in rows} - {None}
    states = dict(
        (await session.execute(select(KEYS.c.id, KEYS.c.state).where(KEYS.c.id.in_(ids)))).all()
    )
    changed = 0
    for row in rows:
        stored = row[1]
        if spec.convertible and not envelope.is_ciphertext(stored):
            continue  # plaintext awaiting `kanvaro keys encrypt-field`: not this job's
        if states.get(envelope.key_id_of(stored)) == "active":
            continue
        tenant_id = row.tenant if tenant is not None else None
        where = spec.location(tenant_id, row[0])
        lineage = spec.lineage(tenant_id, row.owner if owner is not None else None)

        def reseal(
            sync: Any, stored: str = stored, where: Any = where, lineage: Any = lineage
        ) -> str:
            plain = keyring.decrypt(sync, stored, where)
            return keyring.encrypt(sync, lineage, plain, where)

        try:
            fresh = await session.run_sync(reseal)
        except KeyUnavailable:
            continue  # destroyed (shredded) data stays unreadable; nothing to carry over
        except DecryptionError:
            log.warning("undecryptable_value", field=spec.qualified, row_id=str(row[0]))
            key_hex = str(envelope.key_id_of(stored))
            unreadable[key_hex] = unreadable.get(key_hex, 0) + 1
            continue
        result = await session.execute(
            update(table).where(pk == row[0], column == stored).values({column.name: fresh})
        )
        changed += result.rowcount
    return len(rows), changed, str(rows[-1][0])


async def reencrypt(
    db: Database,
    keyring: Keyring,
    *,
    batch_size: int = 500,
    pause: float = 0.0,
    progress: Progress | None = None,
) -> KeyRotation | None:
    """Finish the running rotation (resuming where it stopped); None when there is none."""
    for _pass in range(3):
        for spec in _fields():
            while True:
                async with db.session(all_tenants=True) as session:
                    rotation = await running_rotation(session, lock=True)
                    if rotation is None:
                        return None
                    if not rotation.cursor:
                        # A scan (re)starts: count what it will walk, every tenant's rows.
                        rotation.total_rows = await _count_rows(session)
                        rotation.done_rows = 0
                    after = rotation.cursor.get(spec.qualified)
                    if after == DONE:
                        break
                    unreadable = dict(rotation.cursor.get(UNREADABLE, {}))
                    scanned, changed, last = await _batch(
                        session, keyring, spec, after, batch_size, unreadable
                    )
                    rotation.cursor = {
                        **rotation.cursor,
                        spec.qualified: last or DONE,
                        UNREADABLE: unreadable,
                    }
                    rotation.unreadable_rows = sum(unreadable.values())
                    rotation.done_rows = min(rotation.done_rows + scanned, rotation.total_rows)
                    rotation.reencrypted_rows += changed
                    rotation.updated_at = utcnow()
                    done, total = rotation.done_rows, rotation.total_rows
                if progress:
                    progress(done, total)
                if last is None:
                    break
                if pause:
                    await asyncio.sleep(pause)
        async with db.session(all_tenants=True) as session:
            rotation = await running_rotation(session, lock=True)
            if rotation is None:
                return None
            skipped = {uuid.UUID(k) for k in rotation.cursor.get(UNREADABLE, {})}
            if not (await _retire_unused(session) - skipped):
                rotation.state = "completed"
                rotation.done_rows = rotation.total_rows
                rotation.finished_at = rotation.updated_at = utcnow()
                await audit.record(
                    session,
                    action="system:key:rotation-complete",
                    category="system",
                    tenant_id=None,
                    resource_type="key_rotation",
                    resource_id=rotation.id,
                    changes={
                        "reencrypted": rotation.reencrypted_rows,
                        "unreadable": rotation.unreadable_rows,
                    },
                )
                return rotation
            rotation.cursor = {}  # a row still uses a retiring key: scan again
    return None


async def keys_in_use(session: AsyncSession) -> set[uuid.UUID]:
    used: set[uuid.UUID] = set()
    for spec in _fields():
        column = spec.model.__table__.c[spec.storage_column]  # type: ignore[attr-defined]
        result = await session.stream_scalars(select(column).where(column.is_not(None)))
        async for stored in result:
            key_id = envelope.key_id_of(stored)
            if key_id is not None:
                used.add(key_id)
    return used


async def _retire_unused(session: AsyncSession) -> set[uuid.UUID]:
    """Retire every retiring key no row uses; returns the retiring keys still in use."""
    retiring = set(
        (
            await session.execute(select(EncryptionKey.id).where(EncryptionKey.state == "retiring"))
        ).scalars()
    )
    still_used = retiring & await keys_in_use(session)
    unused = retiring - still_used
    if unused:
        await session.execute(
            update(EncryptionKey)
            .where(EncryptionKey.id.in_(unused))
            .values(state="retired", retired_at=utcnow())
        )
    return still_used


async def rotate_kek(session: AsyncSession, keyring: Keyring) -> int:
    """Rotate the provider's KEKs (instance and per-user) and re-wrap every data key under the
    newest KEK version. No field is re-encrypted: only the wrapped data keys change, so an
    admin can then raise the KEK's minimum decryption version (Vault) safely."""
    provider = keyring.provider
    rows = (
        await session.execute(select(EncryptionKey).where(EncryptionKey.wrapped_key.is_not(None)))
    ).scalars()
    rotated: set[str] = set()
    count = 0
    for row in rows:
        kek = kek_for(row.scope, row.owner_id)
        if kek not in rotated:
            provider.ensure(kek)
            provider.rotate(kek)
            rotated.add(kek)
        row.wrapped_key = provider.rewrap(kek, row.wrapped_key, WrapContext(row.id, row.tenant_id))
        count += 1
    if INSTANCE_KEK not in rotated:
        provider.ensure(INSTANCE_KEK)
        provider.rotate(INSTANCE_KEK)
    await session.flush()
    await audit.record(
        session,
        action="system:kek:rotate",
        category="system",
        tenant_id=None,
        resource_type="kek",
        resource_id=None,
        changes={"provider": provider.name, "rewrapped": count, "keks": len(rotated)},
    )
    return count
