"""``local``: the instance KEK is derived (HKDF) from ``KANVARO_MASTER_KEY``; per-tenant and
per-user KEKs (crypto-shredding) are random keys in a key store directory *outside the
database*, each sealed under a master-derived key; destroying one deletes its file.

Wraps are ``local:v2:`` (the whole :class:`WrapContext` is associated data). ``local:v1:``
wraps of earlier releases bound only the data key id; they still open, with that context.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

from kanvaro.crypto.errors import KeyDestroyed, KeyUnavailable, ProviderError
from kanvaro.crypto.providers import INSTANCE_KEK, WrapContext, check_kek
from kanvaro.security.aead import DecryptionError, derive_key, open_sealed, seal

if TYPE_CHECKING:
    from kanvaro.config import Settings

_AAD = b"kanvaro/dek\x00"


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
        return self.keystore / f"{check_kek(kek)}.key"

    def _kek(self, kek: str) -> bytes:
        if kek == INSTANCE_KEK:
            return self._instance
        path = self._path(kek)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise KeyDestroyed(f"key {kek} does not exist (destroyed or never created)") from None
        except OSError as exc:
            raise ProviderError(f"local: key store unreadable ({type(exc).__name__})") from None
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

    def wrap(self, kek: str, dek: bytes, context: WrapContext) -> str:
        sealed = seal(self._kek(kek), dek, _AAD + context.encode())
        return "local:v2:" + base64.b64encode(sealed).decode()

    def unwrap(self, kek: str, wrapped: str, context: WrapContext) -> bytes:
        version, _, body = wrapped.removeprefix("local:").partition(":")
        if not wrapped.startswith("local:") or version not in ("v1", "v2") or not body:
            raise KeyUnavailable("wrapped key was not made by the local provider")
        aad = _AAD + (context.key_id.bytes if version == "v1" else context.encode())
        try:
            return open_sealed(self._kek(kek), base64.b64decode(body), aad)
        except DecryptionError as exc:
            if isinstance(exc, KeyUnavailable):
                raise
            raise KeyUnavailable(
                f"data key wrapped by {kek} does not open (wrong context or master key)"
            ) from None

    def rewrap(self, kek: str, wrapped: str, context: WrapContext) -> str:
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


def from_settings(settings: Settings) -> LocalProvider:
    assert settings.master_key is not None, "Settings.prepare() was not called"
    keystore = settings.keystore_dir or settings.data_dir / "keystore"
    return LocalProvider(settings.master_key.get_secret_value().encode(), keystore)
