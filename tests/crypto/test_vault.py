"""The ``vault`` provider against a real OpenBao dev server started by the tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import hvac
import pytest
from sqlalchemy import select

from kanvaro.bootstrap import bootstrap
from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import INSTANCE_KEK, VaultProvider, WrapContext, user_kek
from kanvaro.crypto.rotation import rotate_kek
from kanvaro.crypto.shredding import shred_user
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.crypto.conftest import add_user

CTX = WrapContext(uuid.uuid4(), uuid.uuid4())


@pytest.fixture
def bao(bao_peer: tuple[str, str]) -> tuple[str, str]:
    return bao_peer


@pytest.fixture
def provider(bao: tuple[str, str]) -> VaultProvider:
    url, token = bao
    return VaultProvider(
        url,
        token,
        mount="transit",
        instance_key=f"kv-{uuid.uuid4().hex[:8]}",
        user_prefix=f"kv-{uuid.uuid4().hex[:8]}-user-",
    )


def test_wrap_rotate_rewrap_and_min_decryption_version(provider: VaultProvider, bao) -> None:
    provider.ensure(INSTANCE_KEK)
    dek = os.urandom(32)
    old = provider.wrap(INSTANCE_KEK, dek, CTX)
    assert old.startswith("vault:v1:") and dek.hex() not in old
    assert provider.unwrap(INSTANCE_KEK, old, CTX) == dek

    provider.rotate(INSTANCE_KEK)
    fresh = provider.rewrap(INSTANCE_KEK, old, CTX)
    assert fresh.startswith("vault:v2:")
    assert provider.unwrap(INSTANCE_KEK, fresh, CTX) == dek
    assert provider.unwrap(INSTANCE_KEK, old, CTX) == dek  # v1 still decrypts ...

    url, token = bao
    hvac.Client(url=url, token=token).secrets.transit.update_key_configuration(
        name=provider.instance_key, min_decryption_version=2
    )
    with pytest.raises(KeyUnavailable, match="min_decryption_version") as info:
        provider.unwrap(INSTANCE_KEK, old, CTX)  # ... until the admin retires v1
    assert token not in str(info.value) and url not in str(info.value)
    assert provider.unwrap(INSTANCE_KEK, fresh, CTX) == dek


def test_user_kek_destroyed(provider: VaultProvider) -> None:
    kek = user_kek(uuid.uuid4())
    provider.ensure(kek)
    wrapped = provider.wrap(kek, b"k" * 32, CTX)
    provider.destroy(kek)
    with pytest.raises(KeyDestroyed):
        provider.unwrap(kek, wrapped, CTX)


async def test_application_on_vault(bao, fresh_db: str, tmp_path: Path) -> None:
    url, token = bao
    settings = make_settings(
        tmp_path / "data",
        fresh_db,
        key_provider="vault",
        vault_addr=url,
        vault_token=token,
        vault_transit_key=f"kanvaro-{uuid.uuid4().hex[:8]}",
        vault_user_key_prefix=f"kv-{uuid.uuid4().hex[:8]}-u-",
        key_maintenance_interval_seconds=0,
    )
    services = Services.build(settings)
    await services.startup()
    try:
        result = await bootstrap(
            services,
            tenant_name="Vaulted",
            email="a@kanvaro.example",
            password="Str0ng!Kanvaro-Pass",
        )
        user_id = await add_user(services, result.tenant_id, "+4915112345678")
        async with services.db.session(all_tenants=True) as session:
            key = (
                await session.execute(
                    select(EncryptionKey).where(EncryptionKey.owner_id == str(user_id))
                )
            ).scalar_one()
            assert key.key_identifier == f"vault:transit/{settings.vault_user_key_prefix}{user_id}"
            assert key.wrapped_key.startswith("vault:v1:")
            rewrapped = await rotate_kek(session, services.keyring)
        assert rewrapped >= 1
        services.keyring.forget()  # unwrap again through Vault
        async with services.db.session(all_tenants=True) as session:
            key = await session.get(EncryptionKey, key.id, populate_existing=True)
            assert key.wrapped_key.startswith("vault:v2:")
            user = await session.get(User, user_id)
            assert user.phone == "+4915112345678"
            wrapped_before_shred = key.wrapped_key
        await shred_user(
            services.db, services.keyring, user_id=user_id, tenant_id=uuid.UUID(result.tenant_id)
        )
        # A backup's copy of the wrapped key names a transit key Vault no longer has.
        with pytest.raises(KeyDestroyed):
            services.keyring.provider.unwrap(
                user_kek(user_id), wrapped_before_shred, WrapContext(key.id, key.tenant_id)
            )
    finally:
        await services.shutdown()
