"""Errors of the encryption layer. Messages name where (table.column, key id), never a value."""

from __future__ import annotations

from kanvaro.security.aead import DecryptionError


class KeyUnavailable(DecryptionError):
    """The data key (or the key that wraps it) cannot be used: destroyed, unknown or refused."""


class KeyDestroyed(KeyUnavailable):
    """The key was destroyed on purpose (crypto-shredding): the data is gone for good."""


class ProviderError(RuntimeError):
    """The key provider (local keystore, Vault/OpenBao) failed or refused a request."""


__all__ = ["DecryptionError", "KeyDestroyed", "KeyUnavailable", "ProviderError"]
