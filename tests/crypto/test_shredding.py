"""Crypto-shredding: destroying a user's key makes their phone unreadable everywhere,
including in a backup taken before the shredding (the backup holds the wrapped data key,
but the KEK that unwraps it lived outside the database and is gone)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from kanvaro.crypto.errors import DecryptionError, KeyDestroyed
from kanvaro.crypto.keyring import Keyring
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import make_provider
from kanvaro.crypto.shredding import shred_user
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.crypto.conftest import add_user, stored_phone


async def _snapshot(services: Services, user_id: uuid.UUID) -> tuple[str, list]:  # type: ignore[type-arg]
    """What a backup holds for this user: the ciphertext and the wrapped data key rows."""
    ciphertext, _ = await stored_phone(services, user_id)
    async with services.db.session(all_tenants=True) as session:
        keys = (
            await session.execute(
                select(EncryptionKey.__table__).where(EncryptionKey.owner_id == str(user_id))
            )
        ).all()
    return ciphertext, keys


def _read_from_backup(settings, snapshot, tenant_id, user_id) -> str:  # type: ignore[no-untyped-def]
    """Decrypt as a restored instance would: a fresh keyring (empty cache), same secrets."""
    from kanvaro.crypto import envelope
    from kanvaro.crypto.fields import REGISTRY

    ciphertext, keys = snapshot
    keyring = Keyring(
        make_provider(settings), master=settings.master_key.get_secret_value().encode()
    )
    key_id = envelope.key_id_of(ciphertext)
    row = next(k for k in keys if k.id == key_id)
    key = keyring._unwrap_row(row)
    where = REGISTRY["users.phone"].location(uuid.UUID(tenant_id), user_id)
    return envelope.open_(key.aead, ciphertext, where)


async def test_shredded_phone_is_gone_from_live_db_and_backup(
    services: Services, settings, tenant, tmp_path: Path
) -> None:
    victim = await add_user(services, tenant.id, "+33612345678")
    bystander = await add_user(services, tenant.id, "+33612345679")
    backup = await _snapshot(services, victim)
    assert _read_from_backup(settings, backup, tenant.id, victim) == "+33612345678"
    backup_file = None
    if services.db.dialect == "sqlite":
        backup_file = tmp_path / "backup.db"
        live = sqlite3.connect(services.db.url.split("///", 1)[1])
        with sqlite3.connect(backup_file) as copy:
            live.backup(copy)
        live.close()

    destroyed = await shred_user(
        services.db, services.keyring, user_id=victim, tenant_id=uuid.UUID(tenant.id)
    )
    assert destroyed == 1

    # Live database: the ciphertext is cleared, the key row keeps no material.
    assert await stored_phone(services, victim) == (None, None)
    async with services.db.session(all_tenants=True) as session:
        row = (
            await session.execute(
                select(EncryptionKey).where(EncryptionKey.owner_id == str(victim))
            )
        ).scalar_one()
        assert row.state == "destroyed" and row.wrapped_key is None

    # The backup still holds the ciphertext *and* the wrapped key, and still cannot be read.
    assert backup[0] is not None and backup[1][0].wrapped_key is not None
    with pytest.raises(KeyDestroyed):
        _read_from_backup(settings, backup, tenant.id, victim)

    if backup_file is not None:
        # The same through the whole application, on a restored copy of the database file.
        restored = Services.build(
            settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{backup_file}"})
        )
        try:
            async with restored.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
                user = await session.get(User, victim)
                with pytest.raises(DecryptionError, match=r"users\.phone"):
                    _ = user.phone
                other = await session.get(User, bystander)
                assert other.phone == "+33612345679"  # nobody else is affected
                raw = (
                    await session.execute(
                        text("SELECT wrapped_key FROM encryption_keys WHERE owner_id = :o"),
                        {"o": str(victim)},
                    )
                ).scalar()
                assert raw  # the backup does contain the wrapped key
        finally:
            await restored.db.dispose()


class Crash(Exception):
    """The process dies between the committed intent and the destruction of the KEK."""


async def test_an_interrupted_shredding_is_recorded_and_resumed(
    services: Services, tenant, monkeypatch
) -> None:
    from kanvaro.audit.models import AuditLog
    from kanvaro.crypto import shredding
    from kanvaro.crypto.models import KeyShredding
    from kanvaro.crypto.shredding import resume_shreds

    settings = services.settings
    tid = uuid.UUID(tenant.id)
    victim = await add_user(services, tenant.id, "+33612340001")
    backup = await _snapshot(services, victim)

    async def crash(db, keyring):  # type: ignore[no-untyped-def]
        raise Crash

    monkeypatch.setattr(shredding, "resume_shreds", crash)
    with pytest.raises(Crash):
        await shred_user(services.db, services.keyring, user_id=victim, tenant_id=tid)
    monkeypatch.undo()

    async def state() -> tuple[list[str], list[str]]:
        await services.audit.drain()  # entries are sequenced after commit
        async with services.db.session(all_tenants=True) as session:
            records = (
                await session.execute(
                    select(KeyShredding.state).where(KeyShredding.owner_id == str(victim))
                )
            ).scalars()
            actions = (
                await session.execute(
                    select(AuditLog.action)
                    .where(
                        AuditLog.chain_id == tenant.id,
                        AuditLog.resource_id == str(victim),
                        AuditLog.action.like("system:key:%"),
                    )
                    .order_by(AuditLog.sequence_number)
                )
            ).scalars()
            return list(records), list(actions)

    # The intent committed with its audit entry; the KEK still exists (a backup still opens).
    assert await state() == (["intent"], ["system:key:shred"])
    assert await stored_phone(services, victim) == (None, None)
    assert _read_from_backup(settings, backup, tenant.id, victim) == "+33612340001"

    # Key maintenance (or re-running the command) completes it: KEK gone, recorded, audited.
    assert await resume_shreds(services.db, services.keyring) >= 1
    assert await state() == (["done"], ["system:key:shred", "system:key:destroyed"])
    with pytest.raises(KeyDestroyed):
        _read_from_backup(settings, backup, tenant.id, victim)
    assert await resume_shreds(services.db, services.keyring) == 0
