"""One contract every key provider passes: local, vault (OpenBao), aws-kms (moto's KMS server)
and azure-keyvault (the HTTPS stand-in of tests/crypto/azure_standin.py), each a real peer on
loopback started by the fixtures in tests/crypto/peers.py.

The contract: wrap/unwrap, rotate (old wraps still open, rewrap moves to the newest version),
shred (everything wrapped by the KEK is refused afterwards, a backup's copy included), wrong
context refused, the instance KEK cannot be destroyed, and an outage gives a clear
ProviderError without secrets while nothing already wrapped is lost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.crypto.providers import (
    INSTANCE_KEK,
    AwsKmsProvider,
    AzureKeyVaultProvider,
    KeyProvider,
    LocalProvider,
    VaultProvider,
    WrapContext,
    tenant_kek,
    user_kek,
)
from tests.crypto.peers import MOTO_CREDENTIALS, free_port

PROVIDERS = ["local", "vault", "aws-kms", "azure-keyvault"]
SECRETS: dict[str, str] = {}  # per provider: strings that must never appear in an error


@pytest.fixture
def peers(bao_peer: Any, kms_peer: Any, azure_peer: Any, tmp_path: Path) -> dict[str, Any]:
    return {"vault": bao_peer, "aws-kms": kms_peer, "azure-keyvault": azure_peer, "dir": tmp_path}


Factory = Callable[..., KeyProvider]


def _factory(name: str, peers: dict[str, Any]) -> Factory:
    """A function making a provider of this kind; ``down=True`` points it at a closed port."""
    tag = uuid.uuid4().hex[:8]
    dead = f"127.0.0.1:{free_port()}"
    if name == "local":
        master = os.urandom(32)
        store = peers["dir"] / f"keystore-{tag}"
        return lambda down=False: LocalProvider(master, store)
    if name == "vault":
        url, token = peers["vault"]
        SECRETS[name] = token
        return lambda down=False: VaultProvider(
            f"http://{dead}" if down else url,
            token,
            mount="transit",
            instance_key=f"kc-{tag}",
            user_prefix=f"kc-{tag}-u-",
            tenant_prefix=f"kc-{tag}-t-",
        )
    if name == "aws-kms":
        url = peers["aws-kms"]
        SECRETS[name] = MOTO_CREDENTIALS["aws_secret_access_key"]
        return lambda down=False: AwsKmsProvider(
            region="eu-central-1",
            alias_prefix=f"kc-{tag}-",
            endpoint_url=f"http://{dead}" if down else url,
            credentials=MOTO_CREDENTIALS,
            deletion_days=7,
        )
    standin, ca_file, credential = peers["azure-keyvault"]
    SECRETS[name] = credential._token
    return lambda down=False: AzureKeyVaultProvider(
        f"https://localhost:{dead.split(':')[1]}" if down else standin.url,
        credential,
        key_prefix=f"kc-{tag}-",
        key_size=2048,  # the stand-in generates RSA keys itself: keep the suite quick
        connection_verify=ca_file,
        # The stand-in's challenge names vault.azure.net, which localhost is not.
        verify_challenge_resource=False,
    )


@pytest.fixture(params=PROVIDERS)
def make(request: pytest.FixtureRequest, peers: dict[str, Any]) -> Factory:
    return _factory(request.param, peers)


def ctx(tenant: uuid.UUID | None = None) -> WrapContext:
    return WrapContext(uuid.uuid4(), tenant or uuid.uuid4())


@pytest.mark.parametrize("kek", [INSTANCE_KEK, "tenant", "user"])
def test_wrap_unwrap(make: Factory, kek: str) -> None:
    provider = make()
    kek = {"tenant": tenant_kek(uuid.uuid4()), "user": user_kek(uuid.uuid4())}.get(kek, kek)
    provider.ensure(kek)
    provider.ensure(kek)  # idempotent
    dek, context = os.urandom(32), ctx()
    wrapped = provider.wrap(kek, dek, context)
    assert isinstance(wrapped, str) and dek.hex() not in wrapped
    assert provider.unwrap(kek, wrapped, context) == dek
    assert provider.key_identifier(kek).startswith(provider.name)


def test_wrong_context_refused(make: Factory) -> None:
    provider = make()
    kek = tenant_kek(uuid.uuid4())
    provider.ensure(kek)
    context = ctx()
    wrapped = provider.wrap(kek, os.urandom(32), context)
    other_tenant = WrapContext(context.key_id, uuid.uuid4())
    other_key = WrapContext(uuid.uuid4(), context.tenant_id)
    other_purpose = WrapContext(context.key_id, context.tenant_id, purpose="something-else")
    for wrong in (other_tenant, other_key, other_purpose):
        with pytest.raises(KeyUnavailable):
            provider.unwrap(kek, wrapped, wrong)


def test_wrapped_under_another_kek_refused(make: Factory) -> None:
    provider = make()
    mine, theirs = tenant_kek(uuid.uuid4()), tenant_kek(uuid.uuid4())
    provider.ensure(mine)
    provider.ensure(theirs)
    context = ctx()
    wrapped = provider.wrap(theirs, os.urandom(32), context)
    with pytest.raises(KeyUnavailable):
        provider.unwrap(mine, wrapped, context)


def test_rotate_and_rewrap(make: Factory) -> None:
    provider = make()
    kek = tenant_kek(uuid.uuid4())
    provider.ensure(kek)
    dek, context = os.urandom(32), ctx()
    old = provider.wrap(kek, dek, context)
    provider.rotate(kek)
    fresh = provider.rewrap(kek, old, context)
    assert provider.unwrap(kek, fresh, context) == dek
    assert provider.unwrap(kek, old, context) == dek  # the older version still opens
    assert provider.unwrap(kek, provider.wrap(kek, dek, context), context) == dek
    # Re-wrapping under a wrong context is refused, or (Vault re-wraps inside the server,
    # without looking at the plaintext) yields a wrap that still opens only in its own context.
    wrong = WrapContext(uuid.uuid4(), context.tenant_id)
    try:
        moved = provider.rewrap(kek, old, wrong)
    except KeyUnavailable:
        return
    assert provider.name == "vault"
    with pytest.raises(KeyUnavailable):
        provider.unwrap(kek, moved, wrong)
    assert provider.unwrap(kek, moved, context) == dek


@pytest.mark.parametrize("scope", ["tenant", "user"])
def test_shred_refuses_afterwards(make: Factory, scope: str) -> None:
    provider = make()
    kek = (tenant_kek if scope == "tenant" else user_kek)(uuid.uuid4())
    provider.ensure(kek)
    context = ctx()
    backup_copy = provider.wrap(kek, os.urandom(32), context)
    provider.destroy(kek)
    provider.destroy(kek)  # idempotent: a resumed shredding runs it again
    with pytest.raises(KeyDestroyed):
        provider.unwrap(kek, backup_copy, context)
    with pytest.raises(KeyDestroyed):
        make().unwrap(kek, backup_copy, context)  # another process, no cache


def test_instance_kek_cannot_be_destroyed(make: Factory) -> None:
    provider = make()
    provider.ensure(INSTANCE_KEK)
    with pytest.raises(ProviderError):
        provider.destroy(INSTANCE_KEK)
    context = ctx()
    dek = os.urandom(32)
    assert provider.unwrap(INSTANCE_KEK, provider.wrap(INSTANCE_KEK, dek, context), context) == dek


def test_outage_is_a_clear_error_and_loses_nothing(make: Factory, request) -> None:  # type: ignore[no-untyped-def]
    provider = make()
    if provider.name == "local":
        pytest.skip("the local provider has no peer to lose")
    kek = tenant_kek(uuid.uuid4())
    provider.ensure(kek)
    dek, context = os.urandom(32), ctx()
    wrapped = provider.wrap(kek, dek, context)

    down = make(down=True)
    for call in (
        lambda: down.ensure(kek),
        lambda: down.wrap(kek, dek, context),
        lambda: down.unwrap(kek, wrapped, context),
        lambda: down.rewrap(kek, wrapped, context),
    ):
        with pytest.raises(ProviderError) as info:
            call()
        message = str(info.value)
        assert message.startswith(provider.name)
        assert SECRETS[provider.name] not in message and "127.0.0.1" not in message
        assert not isinstance(info.value, KeyDestroyed)  # an outage never reads as shredded
    # The peer is back (a provider that reaches it): the wrapped key is intact.
    assert provider.unwrap(kek, wrapped, context) == dek


def test_repr_names_no_secret(make: Factory) -> None:
    provider = make()
    for secret in SECRETS.values():
        assert secret not in repr(provider)


def test_local_v1_wraps_of_earlier_releases_still_open(tmp_path: Path) -> None:
    import base64

    from kanvaro.security.aead import derive_key, seal

    master = os.urandom(32)
    provider = LocalProvider(master, tmp_path)
    context = ctx()
    dek = os.urandom(32)
    # What the provider wrote before the context named tenant and purpose.
    legacy_kek = derive_key(master, "kanvaro/kek/instance/v1")
    sealed = seal(legacy_kek, dek, b"kanvaro/dek\x00" + context.key_id.bytes)
    legacy = "local:v1:" + base64.b64encode(sealed).decode()
    assert provider.unwrap(INSTANCE_KEK, legacy, context) == dek
    with pytest.raises(KeyUnavailable):
        provider.unwrap(INSTANCE_KEK, legacy, ctx())
