"""The aws-kms and azure-keyvault providers inside the application: settings, data keys of a
tenant's users, KEK rotation with re-wrap, crypto-shredding, and an outage that writes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from kanvaro.bootstrap import bootstrap
from kanvaro.config import Settings, secret_problems
from kanvaro.crypto.errors import KeyDestroyed, ProviderError
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.providers import (
    AwsKmsProvider,
    AzureKeyVaultProvider,
    WrapContext,
    make_provider,
    user_kek,
)
from kanvaro.crypto.rotation import rotate_kek
from kanvaro.crypto.shredding import shred_user
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.crypto.conftest import add_user
from tests.crypto.peers import MOTO_CREDENTIALS, free_port


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3's own credential chain: Kanvaro configures none.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_CREDENTIALS["aws_secret_access_key"])


def _azure(peer: Any, **kw: Any) -> AzureKeyVaultProvider:
    standin, ca_file, credential = peer
    return AzureKeyVaultProvider(
        kw.pop("url", standin.url),
        credential,
        key_prefix=f"app-{uuid.uuid4().hex[:8]}-",
        key_size=2048,
        connection_verify=ca_file,
        verify_challenge_resource=False,
        **kw,
    )


def test_settings_choose_and_check_the_provider(tmp_path: Path, kms_peer: str, aws_env) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite+aiosqlite:///:memory:",
        key_provider="aws-kms",
        aws_region="eu-central-1",
        aws_kms_endpoint=kms_peer,
    )
    provider = make_provider(settings)
    assert isinstance(provider, AwsKmsProvider) and provider.deletion_days == 30
    assert secret_problems(settings) == []

    bare = make_settings(tmp_path, "sqlite+aiosqlite:///:memory:", key_provider="aws-kms")
    assert any("KANVARO_AWS_REGION" in p for p in secret_problems(bare))
    with pytest.raises(ProviderError, match="KANVARO_AWS_REGION"):
        make_provider(bare)
    with pytest.raises(ValueError):
        Settings(key_provider="aws-kms", aws_kms_deletion_days=3)  # below AWS's 7 days

    azure = make_settings(tmp_path, "sqlite+aiosqlite:///:memory:", key_provider="azure-keyvault")
    assert any("KANVARO_AZURE_VAULT_URL" in p for p in secret_problems(azure))
    secret = "s3cr3t-" + uuid.uuid4().hex
    azure = make_settings(
        tmp_path,
        "sqlite+aiosqlite:///:memory:",
        key_provider="azure-keyvault",
        azure_vault_url="https://kanvaro.vault.azure.net",
        azure_client_secret=secret,
    )
    with pytest.raises(ProviderError, match="KANVARO_AZURE_TENANT_ID") as info:
        make_provider(azure)
    assert secret not in str(info.value) and secret not in repr(azure)
    azure = azure.model_copy(update={"azure_tenant_id": "t", "azure_client_id": "c"})
    provider = make_provider(azure)
    assert isinstance(provider, AzureKeyVaultProvider) and secret not in repr(provider)


async def _exercise(services: Services) -> None:
    result = await bootstrap(
        services, tenant_name="Clouded", email="a@kanvaro.example", password="Str0ng!Kanvaro-Pass"
    )
    tenant_id = uuid.UUID(result.tenant_id)
    user_id = await add_user(services, tenant_id, "+4915112345678")
    provider = services.keyring.provider
    async with services.db.session(all_tenants=True) as session:
        key = (
            await session.execute(
                select(EncryptionKey).where(EncryptionKey.owner_id == str(user_id))
            )
        ).scalar_one()
        assert key.key_identifier == provider.key_identifier(user_kek(user_id))
        before = key.wrapped_key
        assert await rotate_kek(session, services.keyring) >= 1
    services.keyring.forget()  # unwrap again through the provider
    async with services.db.session(all_tenants=True) as session:
        key = await session.get(EncryptionKey, key.id, populate_existing=True)
        assert key.wrapped_key != before
        user = await session.get(User, user_id)
        assert user.phone == "+4915112345678"
    await shred_user(services.db, services.keyring, user_id=user_id, tenant_id=tenant_id)
    # A backup's copy of the wrapped key names a KEK the provider no longer gives out.
    with pytest.raises(KeyDestroyed):
        provider.unwrap(user_kek(user_id), before, WrapContext(key.id, key.tenant_id))

    # Outage: a new user's first data key cannot be wrapped; nothing is written in plaintext.
    real = services.keyring.provider
    services.keyring.provider = _down(real)
    try:
        with pytest.raises(ProviderError):
            await add_user(services, tenant_id, "+4915187654321")
    finally:
        services.keyring.provider = real
    async with services.db.session(all_tenants=True) as session:
        count = await session.execute(
            select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
        )
        assert (
            count.scalar_one() == 2
        )  # the admin and the shredded user: the failed one rolled back


def _down(provider: Any) -> Any:
    dead = f"127.0.0.1:{free_port()}"
    if isinstance(provider, AwsKmsProvider):
        return AwsKmsProvider(
            region=provider.region,
            alias_prefix=provider.alias_prefix,
            endpoint_url=f"http://{dead}",
            credentials=MOTO_CREDENTIALS,
        )
    return AzureKeyVaultProvider(
        f"https://localhost:{dead.split(':')[1]}",
        provider._credential,
        key_prefix=provider.key_prefix,
    )


async def test_application_on_aws_kms(
    kms_peer: str, fresh_db: str, tmp_path: Path, aws_env
) -> None:
    settings = make_settings(
        tmp_path / "data",
        fresh_db,
        key_provider="aws-kms",
        aws_region="eu-central-1",
        aws_kms_endpoint=kms_peer,
        aws_kms_alias_prefix=f"app-{uuid.uuid4().hex[:8]}-",
        aws_kms_deletion_days=7,
        key_maintenance_interval_seconds=0,
    )
    services = Services.build(settings)
    await services.startup()
    try:
        await _exercise(services)
    finally:
        await services.shutdown()


async def test_application_on_azure_keyvault(
    azure_peer: Any, fresh_db: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", fresh_db, key_maintenance_interval_seconds=0)
    services = Services.build(settings)
    # The stand-in takes a static token (no Azure AD here): the provider is built by hand.
    services.keyring.provider = _azure(azure_peer)
    await services.startup()
    try:
        await _exercise(services)
        calls = azure_peer[0].vault.calls
        assert any(c.endswith("/unwrapkey") for c in calls)
        assert any(c.startswith("DELETE /deletedkeys/") for c in calls)  # purged on shred
    finally:
        await services.shutdown()


def test_azure_purge_protection_leaves_the_key_soft_deleted(tmp_path: Path) -> None:
    from tests.crypto.peers import azure_standin

    with azure_standin(tmp_path, purge_protection=True) as peer:
        provider = _azure(peer)
        kek = user_kek(uuid.uuid4())
        provider.ensure(kek)
        context = WrapContext(uuid.uuid4(), None)
        wrapped = provider.wrap(kek, b"k" * 32, context)
        provider.destroy(kek)  # the purge is refused: logged, not raised
        assert provider._name(kek) in peer[0].vault.deleted
        with pytest.raises(KeyDestroyed):
            provider.unwrap(kek, wrapped, context)
