"""Crypto-shredding a whole tenant: its data keys are wrapped by a KEK of its own that lives
only in the provider, so destroying it makes the tenant's data unreadable in backups too,
together with every one of its users' personal data; other tenants are untouched."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from kanvaro.crypto import envelope
from kanvaro.crypto.errors import KeyDestroyed
from kanvaro.crypto.keyring import Keyring, Lineage
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import VaultProvider, kek_for, make_provider
from kanvaro.crypto.shredding import shred_tenant
from kanvaro.services import Services
from tests.crypto.conftest import add_user
from tests.crypto.test_shredding import _read_from_backup, _snapshot


def _fresh_keyring(settings) -> Keyring:  # type: ignore[no-untyped-def]
    """A restored instance: same secrets and key store, empty cache."""
    return Keyring(make_provider(settings), master=settings.master_key.get_secret_value().encode())


async def _tenant_secret(
    services: Services, tenant_id: uuid.UUID
) -> tuple[str, envelope.FieldLocation]:
    """Seal a value under the tenant's data key, as a tenant-scoped field would."""
    where = envelope.FieldLocation(tenant_id, "projects", "notes", str(uuid.uuid4()))
    lineage = Lineage("tenant", str(tenant_id), tenant_id)
    async with services.db.session(tenant_id=tenant_id) as session:
        sealed = await session.run_sync(
            lambda s: services.keyring.encrypt(s, lineage, "tenant confidential", where)
        )
    return sealed, where


async def _key_rows(services: Services, owner: str) -> list:  # type: ignore[type-arg]
    async with services.db.session(all_tenants=True) as session:
        return list(
            (
                await session.execute(
                    select(EncryptionKey.__table__).where(EncryptionKey.owner_id == owner)
                )
            ).all()
        )


async def test_shredding_a_tenant_reaches_its_backups_and_spares_others(
    services: Services, settings, tenant, other_tenant
) -> None:
    tid, other = uuid.UUID(tenant.id), uuid.UUID(other_tenant.id)
    sealed, where = await _tenant_secret(services, tid)
    kept, kept_where = await _tenant_secret(services, other)
    member = await add_user(services, tenant.id, "+33612345670")
    outsider = await add_user(services, other_tenant.id, "+33612345671")

    # What a database backup taken now holds: ciphertexts and wrapped data keys.
    tenant_keys = await _key_rows(services, str(tid))
    assert tenant_keys and all(k.wrapped_key for k in tenant_keys)
    assert all(kek_for("tenant", tid) in k.key_identifier for k in tenant_keys)
    member_backup = await _snapshot(services, member)
    restored = _fresh_keyring(settings)
    assert envelope.open_(restored._unwrap_row(tenant_keys[0]).aead, sealed, where) == (
        "tenant confidential"
    )

    destroyed = await shred_tenant(services.db, services.keyring, tenant_id=tid, user_ids=[member])
    assert destroyed >= 2  # the tenant's key and the member's key

    # The backup still holds the wrapped keys, and nothing can unwrap them any more.
    restored = _fresh_keyring(settings)
    with pytest.raises(KeyDestroyed):
        restored._unwrap_row(tenant_keys[0])
    with pytest.raises(KeyDestroyed):
        _read_from_backup(settings, member_backup, tenant.id, member)

    # The other tenant and its people are untouched.
    other_keys = await _key_rows(services, str(other))
    assert envelope.open_(restored._unwrap_row(other_keys[0]).aead, kept, kept_where) == (
        "tenant confidential"
    )
    assert _read_from_backup(
        settings, await _snapshot(services, outsider), other_tenant.id, outsider
    ) == ("+33612345671")


def test_vault_names_a_transit_key_per_tenant() -> None:
    provider = VaultProvider(
        "http://127.0.0.1:1",
        "unused",
        mount="transit",
        instance_key="kanvaro",
        user_prefix="kanvaro-user-",
        tenant_prefix="kanvaro-tenant-",
    )
    tid = uuid.uuid4()
    assert provider.key_identifier(kek_for("tenant", tid)) == f"vault:transit/kanvaro-tenant-{tid}"
    assert provider.key_identifier(kek_for("instance", "instance")) == "vault:transit/kanvaro"
