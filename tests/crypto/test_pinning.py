"""certPinning (issue 16 point 5) of the providers' outbound TLS: a pinned peer whose key
matches is reached, any other is refused with a clear error naming the pins, never the URL.
The Key Vault stand-in (HTTPS, throwaway CA) is the TLS peer for all three remote providers:
the pin is checked during the handshake, before any provider's API is spoken."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import uuid
from typing import Any
from urllib.parse import urlparse

import pytest

from kanvaro.crypto.errors import ProviderError
from kanvaro.crypto.providers import (
    AwsKmsProvider,
    AzureKeyVaultProvider,
    VaultProvider,
    WrapContext,
    tenant_kek,
)
from kanvaro.security.pinning import PinMismatch, check, parse_pins, spki_sha256
from tests.crypto.peers import MOTO_CREDENTIALS

WRONG = base64.b64encode(hashlib.sha256(b"another key").digest()).decode()


def _pin_of(url: str) -> str:
    parsed = urlparse(url)
    pem = ssl.get_server_certificate(("127.0.0.1", parsed.port))
    return spki_sha256(ssl.PEM_cert_to_DER_cert(pem))


def _azure(peer: Any, pins: str) -> AzureKeyVaultProvider:
    standin, ca_file, credential = peer
    return AzureKeyVaultProvider(
        standin.url,
        credential,
        key_prefix=f"pin-{uuid.uuid4().hex[:8]}-",
        key_size=2048,
        pins=parse_pins(pins),
        connection_verify=ca_file,
        verify_challenge_resource=False,
    )


def test_parse_pins() -> None:
    pin = _b64(b"k")
    assert parse_pins(f"Vault.Internal=sha256/{pin}|{WRONG}, kms.example={pin}") == {
        "vault.internal": frozenset({pin, WRONG}),
        "kms.example": frozenset({pin}),
    }
    assert parse_pins("") == {}
    for bad in ("vault.internal", "=abc", "host=notbase64!", f"host={_b64(b'')[:8]}"):
        with pytest.raises(ValueError, match="KANVARO_TLS_PINS"):
            parse_pins(bad)
    with pytest.raises(PinMismatch):
        check({"a": frozenset({pin})}, "A", None)
    check({"a": frozenset({pin})}, "b", None)  # a host without pins is not affected


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_azure_pinned_peer_reached_other_refused(azure_peer: Any) -> None:
    pin = _pin_of(azure_peer[0].url)
    good = _azure(azure_peer, f"localhost={WRONG}|{pin}")  # a rollover: either key
    kek = tenant_kek(uuid.uuid4())
    good.ensure(kek)
    context = WrapContext(uuid.uuid4(), uuid.uuid4())
    dek = os.urandom(32)
    assert good.unwrap(kek, good.wrap(kek, dek, context), context) == dek

    bad = _azure(azure_peer, f"localhost={WRONG}")
    with pytest.raises(ProviderError, match="not one of its pins") as info:
        bad.ensure(kek)
    assert azure_peer[0].url not in str(info.value)


def test_vault_and_kms_transports_check_pins(azure_peer: Any) -> None:
    standin, ca_file, _ = azure_peer
    pin = _pin_of(standin.url)
    vault = VaultProvider(
        standin.url, "t" * 24, mount="transit", instance_key="k", user_prefix="u-",
        pins=parse_pins(f"localhost={WRONG}"), ca_file=ca_file,
    )  # fmt: skip
    with pytest.raises(ProviderError, match="not one of its pins"):
        vault.ensure(tenant_kek(uuid.uuid4()))
    kms = AwsKmsProvider(
        region="eu-central-1", endpoint_url=standin.url, credentials=MOTO_CREDENTIALS,
        verify=ca_file, pins=parse_pins(f"localhost={WRONG}"),
    )  # fmt: skip
    with pytest.raises(ProviderError, match="not one of its pins"):
        kms.ensure(tenant_kek(uuid.uuid4()))
    # With the right pin the handshake passes; the stand-in then answers as what it is (no
    # Vault, no KMS): an ordinary provider error, not a pin error.
    kms = AwsKmsProvider(
        region="eu-central-1", endpoint_url=standin.url, credentials=MOTO_CREDENTIALS,
        verify=ca_file, pins=parse_pins(f"localhost={pin}"),
    )  # fmt: skip
    with pytest.raises(ProviderError) as info:
        kms.ensure(tenant_kek(uuid.uuid4()))
    assert "pins" not in str(info.value)
