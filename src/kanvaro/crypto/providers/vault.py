"""``vault``: HashiCorp Vault / OpenBao transit engine (through hvac). Every KEK is a transit
key that never leaves Vault; wrap/unwrap/rewrap are transit encrypt/decrypt/rewrap calls, and a
per-tenant or per-user KEK is destroyed by deleting its transit key.

Transit keys of type ``aes256-gcm96`` take no associated data, so the context is sealed inside
the wrapped plaintext (:mod:`.binding`); rewrap happens inside Vault and keeps it.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.crypto.providers import INSTANCE_KEK, KEK_NAME, WrapContext
from kanvaro.crypto.providers.binding import bind, unbind
from kanvaro.security.pinning import parse_pins

if TYPE_CHECKING:
    from kanvaro.config import Settings


class VaultProvider:
    """Vault / OpenBao transit engine: KEKs never leave the server."""

    name = "vault"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        mount: str,
        instance_key: str,
        user_prefix: str,
        tenant_prefix: str = "kanvaro-tenant-",
        pins: dict[str, frozenset[str]] | None = None,
        ca_file: str | None = None,
    ) -> None:
        import hvac

        session = None
        if pins:
            from kanvaro.crypto.providers.transport import pinned_requests_session

            session = pinned_requests_session(pins, ca_file)
        self._client = hvac.Client(
            url=url, token=token, timeout=10, session=session, verify=ca_file or True
        )
        self.mount = mount
        self.instance_key = instance_key
        self.user_prefix = user_prefix
        self.tenant_prefix = tenant_prefix

    def __repr__(self) -> str:
        return f"VaultProvider(mount={self.mount!r}, key={self.instance_key!r})"

    def _transit_name(self, kek: str) -> str:
        if kek == INSTANCE_KEK:
            return self.instance_key
        if KEK_NAME.match(kek) and kek.startswith("user-"):
            return self.user_prefix + kek.removeprefix("user-")
        if KEK_NAME.match(kek) and kek.startswith("tenant-"):
            return self.tenant_prefix + kek.removeprefix("tenant-")
        raise ProviderError("invalid KEK name")

    def key_identifier(self, kek: str) -> str:
        return f"vault:{self.mount}/{self._transit_name(kek)}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import hvac.exceptions as hx

        try:
            return fn(*args, mount_point=self.mount, **kwargs)
        except hx.InvalidPath:
            raise KeyDestroyed(f"vault: {what}: transit key does not exist (destroyed?)") from None
        except hx.InvalidRequest as exc:
            text = str(exc).split(", on ")[0]  # hvac appends the URL; keep Vault's reason only
            if "not found" in text or "no existing key" in text:
                raise KeyDestroyed(f"vault: {what}: transit key does not exist") from None
            if "too old" in text or "disallowed by policy" in text:
                raise KeyUnavailable(
                    f"vault: {what}: the KEK version that wrapped this data key is below the "
                    "key's min_decryption_version; lower it or restore the key version"
                ) from None
            raise KeyUnavailable(f"vault: {what}: {text}") from None
        except hx.VaultError as exc:
            raise ProviderError(f"vault: {what}: {type(exc).__name__}") from None
        except ProviderError:
            raise
        except Exception as exc:  # connection errors: no URL or token in the message
            raise ProviderError(f"vault: {what}: {_reason(exc)}") from None

    def ensure(self, kek: str) -> None:
        name = self._transit_name(kek)
        transit = self._client.secrets.transit
        try:
            self._call("read key", transit.read_key, name=name)
            return
        except KeyDestroyed:
            pass  # absent: create it below
        self._call("create key", transit.create_key, name=name, key_type="aes256-gcm96")
        if kek != INSTANCE_KEK:
            self._call(
                "configure key", transit.update_key_configuration, name=name, deletion_allowed=True
            )

    def wrap(self, kek: str, dek: bytes, context: WrapContext) -> str:
        r = self._call(
            "encrypt",
            self._client.secrets.transit.encrypt_data,
            name=self._transit_name(kek),
            plaintext=base64.b64encode(bind(dek, context)).decode(),
        )
        return r["data"]["ciphertext"]

    def unwrap(self, kek: str, wrapped: str, context: WrapContext) -> bytes:
        r = self._call(
            "decrypt",
            self._client.secrets.transit.decrypt_data,
            name=self._transit_name(kek),
            ciphertext=wrapped,
        )
        return unbind(base64.b64decode(r["data"]["plaintext"]), context, where="vault: decrypt")

    def rewrap(self, kek: str, wrapped: str, context: WrapContext) -> str:
        r = self._call(
            "rewrap",
            self._client.secrets.transit.rewrap_data,
            name=self._transit_name(kek),
            ciphertext=wrapped,
        )
        return r["data"]["ciphertext"]

    def rotate(self, kek: str) -> None:
        self._call("rotate", self._client.secrets.transit.rotate_key, name=self._transit_name(kek))

    def destroy(self, kek: str) -> None:
        if kek == INSTANCE_KEK:
            raise ProviderError("the instance KEK cannot be destroyed")
        name = self._transit_name(kek)
        transit = self._client.secrets.transit
        try:
            self._call(
                "configure key", transit.update_key_configuration, name=name, deletion_allowed=True
            )
        except KeyDestroyed:
            return
        self._call("delete key", transit.delete_key, name=name)


def _reason(exc: Exception) -> str:
    """A transport failure's kind, without the URL (requests puts it in every message)."""
    if "TLS pin mismatch" in str(exc):
        return "the server's key is not one of its pins (KANVARO_TLS_PINS)"
    return f"{type(exc).__name__} (unreachable?)"


def from_settings(settings: Settings) -> VaultProvider:
    if not settings.vault_addr or settings.vault_token is None:
        raise ProviderError("key_provider=vault needs KANVARO_VAULT_ADDR and KANVARO_VAULT_TOKEN")
    return VaultProvider(
        settings.vault_addr,
        settings.vault_token.get_secret_value(),
        mount=settings.vault_transit_mount,
        instance_key=settings.vault_transit_key,
        user_prefix=settings.vault_user_key_prefix,
        tenant_prefix=settings.vault_tenant_key_prefix,
        pins=parse_pins(settings.tls_pins) or None,
        ca_file=str(settings.vault_ca_file) if settings.vault_ca_file else None,
    )
