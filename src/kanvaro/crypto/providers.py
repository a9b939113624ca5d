"""Key-encryption-key providers: they wrap and unwrap data keys and never reveal their KEKs.

Two providers sit behind one Protocol, chosen by ``KANVARO_KEY_PROVIDER``:

* ``local``: the instance KEK is derived (HKDF) from ``KANVARO_MASTER_KEY``. Per-user KEKs
  (crypto-shredding) are random keys in a key store directory *outside the database*, each
  sealed under the master-derived KEK; destroying one deletes its file.
* ``vault``: HashiCorp Vault / OpenBao transit engine (through hvac). Every KEK is a transit
  key that never leaves Vault; wrap/unwrap/rewrap are transit encrypt/decrypt/rewrap calls.
  Per-user KEKs are transit keys too, destroyed by deleting them in Vault.

AWS KMS and Azure Key Vault are not provided (no real peer to test them against here).

KEK names: ``INSTANCE_KEK`` for instance data keys, ``tenant_kek(id)`` per tenant and
``user_kek(id)`` per user. Tenant and user KEKs live only in the provider, so destroying one
(crypto-shredding) reaches every database backup too.
Calls are synchronous (hvac is); the keyring caches unwrapped data keys so a provider is
asked once per data key and process, not once per field.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Protocol

from kanvaro.config import KeyProviderName, Settings
from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.security.aead import DecryptionError, derive_key, open_sealed, seal

INSTANCE_KEK = "instance"
_NAME = re.compile(r"^[a-z0-9-]{1,80}$")


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


class KeyProvider(Protocol):
    name: str

    def key_identifier(self, kek: str) -> str:
        """How the KEK is named outside Kanvaro (stored in ``encryption_keys.key_identifier``)."""

    def ensure(self, kek: str) -> None:
        """Create the KEK when it does not exist yet (idempotent)."""

    def wrap(self, kek: str, dek: bytes, context: bytes) -> str: ...

    def unwrap(self, kek: str, wrapped: str, context: bytes) -> bytes: ...

    def rewrap(self, kek: str, wrapped: str, context: bytes) -> str:
        """Re-wrap under the KEK's newest version without exposing the data key (if possible)."""

    def rotate(self, kek: str) -> None:
        """Start a new KEK version: new wraps use it, old versions still unwrap."""

    def destroy(self, kek: str) -> None:
        """Destroy the KEK for good: everything wrapped by it becomes unreadable."""


class LocalProvider:
    """KEKs from the master secret (instance) and from a key store directory (per user)."""

    name = "local"

    def __init__(self, master: bytes, keystore: Path) -> None:
        self._instance = derive_key(master, "kanvaro/kek/instance/v1")
        # Key store files are sealed under their own master-derived key: the directory alone
        # reveals nothing.
        self._store_key = derive_key(master, "kanvaro/keystore/v1")
        self.keystore = keystore

    def __repr__(self) -> str:
        return f"LocalProvider(keystore={str(self.keystore)!r})"

    def key_identifier(self, kek: str) -> str:
        return f"local:{kek}"

    def _path(self, kek: str) -> Path:
        if not _NAME.match(kek):
            raise ProviderError("invalid KEK name")
        return self.keystore / f"{kek}.key"

    def _kek(self, kek: str) -> bytes:
        if kek == INSTANCE_KEK:
            return self._instance
        path = self._path(kek)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise KeyDestroyed(f"key {kek} does not exist (destroyed or never created)") from None
        try:
            return open_sealed(self._store_key, sealed, kek.encode())
        except DecryptionError:
            raise KeyUnavailable(
                f"key store entry {kek} cannot be opened (wrong master key?)"
            ) from None

    def ensure(self, kek: str) -> None:
        if kek == INSTANCE_KEK:
            return
        path = self._path(kek)
        if path.exists():
            return
        self.keystore.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealed = seal(self._store_key, os.urandom(32), kek.encode())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
            handle.flush()
            os.fsync(handle.fileno())

    def wrap(self, kek: str, dek: bytes, context: bytes) -> str:
        sealed = seal(self._kek(kek), dek, b"kanvaro/dek\x00" + context)
        return "local:v1:" + base64.b64encode(sealed).decode()

    def unwrap(self, kek: str, wrapped: str, context: bytes) -> bytes:
        prefix, _, body = wrapped.partition("local:v1:")
        if prefix or not body:
            raise KeyUnavailable("wrapped key was not made by the local provider")
        try:
            return open_sealed(self._kek(kek), base64.b64decode(body), b"kanvaro/dek\x00" + context)
        except DecryptionError as exc:
            if isinstance(exc, KeyUnavailable):
                raise
            raise KeyUnavailable(
                f"data key wrapped by {kek} does not open (wrong master key?)"
            ) from None

    def rewrap(self, kek: str, wrapped: str, context: bytes) -> str:
        return self.wrap(kek, self.unwrap(kek, wrapped, context), context)

    def rotate(self, kek: str) -> None:
        # The local instance KEK changes only with the master key (kanvaro keys rotate-master).
        return None

    def destroy(self, kek: str) -> None:
        if kek == INSTANCE_KEK:
            raise ProviderError("the instance KEK cannot be destroyed")
        path = self._path(kek)
        try:
            # Overwrite before unlinking: a best effort on file systems that write in place.
            size = path.stat().st_size
            with path.open("r+b") as handle:
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
        except FileNotFoundError:
            return


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
    ) -> None:
        import hvac

        self._client = hvac.Client(url=url, token=token, timeout=10)
        self.mount = mount
        self.instance_key = instance_key
        self.user_prefix = user_prefix
        self.tenant_prefix = tenant_prefix

    def __repr__(self) -> str:
        return f"VaultProvider(mount={self.mount!r}, key={self.instance_key!r})"

    def _transit_name(self, kek: str) -> str:
        if kek == INSTANCE_KEK:
            return self.instance_key
        if _NAME.match(kek) and kek.startswith("user-"):
            return self.user_prefix + kek.removeprefix("user-")
        if _NAME.match(kek) and kek.startswith("tenant-"):
            return self.tenant_prefix + kek.removeprefix("tenant-")
        raise ProviderError("invalid KEK name")

    def key_identifier(self, kek: str) -> str:
        return f"vault:{self.mount}/{self._transit_name(kek)}"

    def _call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
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
        except Exception as exc:  # connection errors: no URL or token in the message
            raise ProviderError(f"vault: {what}: {type(exc).__name__}") from None

    def ensure(self, kek: str) -> None:
        name = self._transit_name(kek)
        transit = self._client.secrets.transit
        try:
            transit.read_key(name=name, mount_point=self.mount)
            return
        except Exception:  # noqa: S110 - absent: create it below
            pass
        self._call("create key", transit.create_key, name=name, key_type="aes256-gcm96")
        if kek != INSTANCE_KEK:
            self._call(
                "configure key", transit.update_key_configuration, name=name, deletion_allowed=True
            )

    def wrap(self, kek: str, dek: bytes, context: bytes) -> str:
        r = self._call(
            "encrypt",
            self._client.secrets.transit.encrypt_data,
            name=self._transit_name(kek),
            plaintext=base64.b64encode(dek).decode(),
        )
        return r["data"]["ciphertext"]

    def unwrap(self, kek: str, wrapped: str, context: bytes) -> bytes:
        r = self._call(
            "decrypt",
            self._client.secrets.transit.decrypt_data,
            name=self._transit_name(kek),
            ciphertext=wrapped,
        )
        return base64.b64decode(r["data"]["plaintext"])

    def rewrap(self, kek: str, wrapped: str, context: bytes) -> str:
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
        name = self._transit_name(kek)
        transit = self._client.secrets.transit
        try:
            self._call(
                "configure key", transit.update_key_configuration, name=name, deletion_allowed=True
            )
        except KeyDestroyed:
            return
        self._call("delete key", transit.delete_key, name=name)


def make_provider(settings: Settings) -> KeyProvider:
    if settings.key_provider is KeyProviderName.vault:
        if not settings.vault_addr or settings.vault_token is None:
            raise ProviderError(
                "key_provider=vault needs KANVARO_VAULT_ADDR and KANVARO_VAULT_TOKEN"
            )
        return VaultProvider(
            settings.vault_addr,
            settings.vault_token.get_secret_value(),
            mount=settings.vault_transit_mount,
            instance_key=settings.vault_transit_key,
            user_prefix=settings.vault_user_key_prefix,
            tenant_prefix=settings.vault_tenant_key_prefix,
        )
    assert settings.master_key is not None, "Settings.prepare() was not called"
    keystore = settings.keystore_dir or settings.data_dir / "keystore"
    return LocalProvider(settings.master_key.get_secret_value().encode(), keystore)
