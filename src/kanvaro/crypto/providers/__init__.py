"""Key-encryption-key providers: they wrap and unwrap data keys and never reveal their KEKs.

Four providers sit behind one Protocol, chosen by ``KANVARO_KEY_PROVIDER``, one module each:

* ``local`` (:mod:`.local`): KEKs derived from ``KANVARO_MASTER_KEY`` and a key store directory.
* ``vault`` (:mod:`.vault`): HashiCorp Vault / OpenBao transit keys (hvac).
* ``aws-kms`` (:mod:`.aws_kms`): AWS KMS keys behind aliases (boto3).
* ``azure-keyvault`` (:mod:`.azure_keyvault`): RSA keys in Azure Key Vault, RSA-OAEP-256 wrapping.

KEK names: ``INSTANCE_KEK`` for instance data keys, ``tenant_kek(id)`` per tenant and
``user_kek(id)`` per user. Tenant and user KEKs live only in the provider, so destroying one
(crypto-shredding) reaches every database backup too.

Every wrap is bound to a :class:`WrapContext` (purpose, tenant, data key id): unwrapping with any
other context is refused with :class:`KeyUnavailable`. Calls are synchronous (hvac, boto3 and the
Azure SDK are); the keyring caches unwrapped data keys so a provider is asked once per data key
and process, not once per field. Every provider turns its transport failures into
:class:`ProviderError` whose message names the provider and the operation, never a URL or secret.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kanvaro.crypto.errors import ProviderError

if TYPE_CHECKING:
    from kanvaro.config import Settings

INSTANCE_KEK = "instance"
KEK_NAME = re.compile(r"^[a-z0-9-]{1,80}$")


def user_kek(user_id: object) -> str:
    return f"user-{user_id}"


def tenant_kek(tenant_id: object) -> str:
    return f"tenant-{tenant_id}"


def kek_for(scope: str, owner_id: object) -> str:
    """The KEK that wraps a data key of this scope and owner."""
    if scope == "user":
        return user_kek(owner_id)
    if scope == "tenant":
        return tenant_kek(owner_id)
    return INSTANCE_KEK


def check_kek(kek: str) -> str:
    if not KEK_NAME.match(kek):
        raise ProviderError("invalid KEK name")
    return kek


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped data key is bound to: its purpose, its tenant and its own id.

    Providers with a native context (KMS ``EncryptionContext``) get :meth:`as_dict`; the others
    authenticate :meth:`encode` with the wrapped key (AEAD associated data, or a hash sealed
    inside the wrapped plaintext). A wrapped key copied to another row or tenant then fails.
    """

    key_id: uuid.UUID
    tenant_id: uuid.UUID | None
    purpose: str = "data-key"

    def encode(self) -> bytes:
        tenant = self.tenant_id.bytes if self.tenant_id else b"-"
        return b"\x00".join([b"kanvaro/wrap/v2", self.purpose.encode(), self.key_id.bytes, tenant])

    def as_dict(self) -> dict[str, str]:
        return {
            "kanvaro:purpose": self.purpose,
            "kanvaro:tenant": str(self.tenant_id) if self.tenant_id else "-",
            "kanvaro:dataKey": str(self.key_id),
        }


class KeyProvider(Protocol):
    name: str

    def key_identifier(self, kek: str) -> str:
        """How the KEK is named outside Kanvaro (stored in ``encryption_keys.key_identifier``)."""

    def ensure(self, kek: str) -> None:
        """Create the KEK when it does not exist yet (idempotent)."""

    def wrap(self, kek: str, dek: bytes, context: WrapContext) -> str: ...

    def unwrap(self, kek: str, wrapped: str, context: WrapContext) -> bytes: ...

    def rewrap(self, kek: str, wrapped: str, context: WrapContext) -> str:
        """Re-wrap under the KEK's newest version without exposing the data key (if possible)."""

    def rotate(self, kek: str) -> None:
        """Start a new KEK version: new wraps use it, old versions still unwrap."""

    def destroy(self, kek: str) -> None:
        """Destroy the KEK for good: everything wrapped by it becomes unreadable."""


def make_provider(settings: Settings) -> KeyProvider:
    from kanvaro.config import KeyProviderName

    name = settings.key_provider
    if name is KeyProviderName.vault:
        from kanvaro.crypto.providers.vault import from_settings as vault

        return vault(settings)
    if name is KeyProviderName.aws_kms:
        from kanvaro.crypto.providers.aws_kms import from_settings as aws

        return aws(settings)
    if name is KeyProviderName.azure_keyvault:
        from kanvaro.crypto.providers.azure_keyvault import from_settings as azure

        return azure(settings)
    from kanvaro.crypto.providers.local import from_settings as local

    return local(settings)


def __getattr__(name: str) -> object:
    # ``from kanvaro.crypto.providers import LocalProvider`` keeps working without importing
    # every provider's SDK when only one is configured.
    homes = {
        "LocalProvider": "local",
        "VaultProvider": "vault",
        "AwsKmsProvider": "aws_kms",
        "AzureKeyVaultProvider": "azure_keyvault",
    }
    if name in homes:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{homes[name]}"), name)
    raise AttributeError(name)
