"""``azure-keyvault``: every KEK is an RSA key in Azure Key Vault (azure-keyvault-keys).

* Names: ``<prefix>instance``, ``<prefix>tenant-<id>``, ``<prefix>user-<id>`` (Key Vault key
  names allow letters, digits and dashes). A missing KEK is created on first use as RSA 3072
  with only ``wrapKey``/``unwrapKey`` allowed.
* Wrapping is ``wrapKey`` with RSA-OAEP-256; the stored value names the key *version* that
  wrapped it, and ``unwrapKey`` is sent to that version. RSA-OAEP has no associated data, so
  the context is sealed inside the wrapped plaintext (:mod:`.binding`) and checked on unwrap.
* Rotation creates a new key version (new wraps use it; older versions keep unwrapping until an
  admin disables them); re-wrapping unwraps under the old version and wraps under the newest.
* Shredding deletes the key (all versions). With soft-delete, which Azure now always enables,
  the key stays recoverable for the vault's retention period (7 to 90 days) unless it is
  purged: ``KANVARO_AZURE_PURGE_ON_SHRED`` (default on) purges it at once. A vault with purge
  protection refuses the purge; the key is then gone when its retention ends, and the refusal
  is logged.

Credentials: client credentials (``KANVARO_AZURE_TENANT_ID``, ``KANVARO_AZURE_CLIENT_ID``,
``KANVARO_AZURE_CLIENT_SECRET``) or, without a secret, the managed identity (optionally the
user-assigned one named by ``KANVARO_AZURE_CLIENT_ID``). Verified only against the local
stand-in in tests/crypto/azure_standin.py (see docs/security-model.md).
"""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import structlog

from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.crypto.providers import INSTANCE_KEK, WrapContext, check_kek
from kanvaro.crypto.providers.binding import bind, unbind
from kanvaro.security.pinning import PinMismatch, parse_pins

if TYPE_CHECKING:
    from kanvaro.config import Settings

PREFIX = "azure-kv:v1:"
log = structlog.get_logger("kanvaro.keys")


class AzureKeyVaultProvider:
    name = "azure-keyvault"

    def __init__(
        self,
        vault_url: str,
        credential: Any,
        *,
        key_prefix: str = "kanvaro-",
        key_size: int = 3072,
        purge_on_shred: bool = True,
        pins: dict[str, frozenset[str]] | None = None,
        **client_options: Any,
    ) -> None:
        from azure.keyvault.keys import KeyClient

        if pins:
            from kanvaro.crypto.providers.transport import pinned_requests_session

            ca = client_options.get("connection_verify")
            client_options["session"] = pinned_requests_session(
                pins, ca if isinstance(ca, str) else None
            )

        # Few retries, short timeouts: an outage must surface as an error within seconds, not
        # after the SDK's default ten retries with back-off.
        self._options = {
            "retry_total": 1,
            "connection_timeout": 5,
            "read_timeout": 10,
            **client_options,
        }
        self._credential = credential
        self._keys = KeyClient(vault_url, credential, **self._options)
        self._crypto: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.vault_url = vault_url
        self.key_prefix = key_prefix
        self.key_size = key_size
        self.purge_on_shred = purge_on_shred

    def __repr__(self) -> str:
        return f"AzureKeyVaultProvider(vault={urlparse(self.vault_url).hostname!r})"

    def _name(self, kek: str) -> str:
        return self.key_prefix + check_kek(kek)

    def key_identifier(self, kek: str) -> str:
        return f"azure-keyvault:{urlparse(self.vault_url).hostname}/keys/{self._name(kek)}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return fn(*args, **kwargs)
        except ResourceNotFoundError:
            raise KeyDestroyed(
                f"azure-keyvault: {what}: the key does not exist (deleted?)"
            ) from None
        except ClientAuthenticationError:
            raise ProviderError(f"azure-keyvault: {what}: authentication failed") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            if _pin_failed(exc):
                raise ProviderError(
                    f"azure-keyvault: {what}: the server's key is not one of its pins "
                    "(KANVARO_TLS_PINS)"
                ) from None
            raise ProviderError(
                f"azure-keyvault: {what}: {type(exc).__name__} (unreachable?)"
            ) from None
        except HttpResponseError as exc:
            status = exc.status_code
            if status in (400, 403) and what == "unwrap":
                raise KeyUnavailable(
                    f"azure-keyvault: {what}: refused ({status}): wrong key or wrapped value"
                ) from None
            raise ProviderError(f"azure-keyvault: {what}: HTTP {status}") from None
        except (KeyUnavailable, ProviderError):
            raise
        except Exception as exc:  # transport errors of the SDK's stack: never their text
            raise ProviderError(f"azure-keyvault: {what}: {type(exc).__name__}") from None

    def _crypto_client(self, key_id: str) -> Any:
        from azure.keyvault.keys.crypto import CryptographyClient

        with self._lock:
            client = self._crypto.get(key_id)
            if client is None:
                client = CryptographyClient(key_id, self._credential, **self._options)
                self._crypto[key_id] = client
            return client

    def _latest(self, kek: str) -> Any:
        return self._call("get key", self._keys.get_key, self._name(kek))

    def ensure(self, kek: str) -> None:
        try:
            self._latest(kek)
            return
        except KeyDestroyed:
            pass
        self._create_version(kek)

    def _create_version(self, kek: str) -> Any:
        from azure.keyvault.keys import KeyOperation

        return self._call(
            "create key",
            self._keys.create_rsa_key,
            self._name(kek),
            size=self.key_size,
            key_operations=[KeyOperation.wrap_key, KeyOperation.unwrap_key],
            tags={"kanvaro-kek": kek},
        )

    def wrap(self, kek: str, dek: bytes, context: WrapContext) -> str:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        key = self._latest(kek)
        result = self._call(
            "wrap",
            self._crypto_client(key.id).wrap_key,
            KeyWrapAlgorithm.rsa_oaep_256,
            bind(dek, context),
        )
        version = key.properties.version
        return f"{PREFIX}{version}:{base64.b64encode(result.encrypted_key).decode()}"

    def unwrap(self, kek: str, wrapped: str, context: WrapContext) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        version, _, body = wrapped.removeprefix(PREFIX).partition(":")
        if not wrapped.startswith(PREFIX) or not version.isalnum() or not body:
            raise KeyUnavailable("wrapped key was not made by the azure-keyvault provider")
        key_id = f"{self.vault_url.rstrip('/')}/keys/{self._name(kek)}/{version}"
        result = self._call(
            "unwrap",
            self._crypto_client(key_id).unwrap_key,
            KeyWrapAlgorithm.rsa_oaep_256,
            base64.b64decode(body),
        )
        return unbind(result.key, context, where="azure-keyvault: unwrap")

    def rewrap(self, kek: str, wrapped: str, context: WrapContext) -> str:
        # Key Vault has no re-wrap: the data key passes through this process, as it does on
        # every read anyway.
        return self.wrap(kek, self.unwrap(kek, wrapped, context), context)

    def rotate(self, kek: str) -> None:
        self._create_version(kek)

    def destroy(self, kek: str) -> None:
        if kek == INSTANCE_KEK:
            raise ProviderError("the instance KEK cannot be destroyed")
        name = self._name(kek)
        try:
            poller = self._call("delete key", self._keys.begin_delete_key, name)
        except KeyDestroyed:
            poller = None  # already deleted: purge below if still soft-deleted
        if poller is not None:
            self._call("delete key", poller.wait)
        with self._lock:
            for key_id in [k for k in self._crypto if f"/keys/{name}/" in k]:
                del self._crypto[key_id]
        if not self.purge_on_shred:
            return
        try:
            self._call("purge key", self._keys.purge_deleted_key, name)
        except KeyDestroyed:
            return
        except ProviderError:
            # Purge protection: the key stays soft-deleted (unusable) until retention ends.
            log.warning("kek_purge_refused", kek=kek)


def from_settings(settings: Settings) -> AzureKeyVaultProvider:
    if not settings.azure_vault_url:
        raise ProviderError("key_provider=azure-keyvault needs KANVARO_AZURE_VAULT_URL")
    if settings.azure_client_secret is not None:
        from azure.identity import ClientSecretCredential

        if not (settings.azure_tenant_id and settings.azure_client_id):
            raise ProviderError(
                "KANVARO_AZURE_CLIENT_SECRET needs KANVARO_AZURE_TENANT_ID and "
                "KANVARO_AZURE_CLIENT_ID"
            )
        credential: Any = ClientSecretCredential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret.get_secret_value(),
        )
    else:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.azure_client_id)
    return AzureKeyVaultProvider(
        settings.azure_vault_url,
        credential,
        key_prefix=settings.azure_key_prefix,
        purge_on_shred=settings.azure_purge_on_shred,
        pins=parse_pins(settings.tls_pins) or None,
    )


def _pin_failed(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, PinMismatch) or "TLS pin mismatch" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
