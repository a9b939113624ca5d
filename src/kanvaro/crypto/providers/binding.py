"""Binding a wrapped data key to its context for providers that have no native context.

Vault transit keys (non-derived) and RSA-OAEP-256 in Key Vault take no associated data, so the
plaintext they wrap carries the context's SHA-256 in front of the data key. Both wrappings are
authenticated (AES-GCM) or non-malleable (OAEP), so the hash cannot be swapped without the KEK;
unwrapping compares it in constant time and refuses a mismatch.

A bare 32-byte plaintext is a data key wrapped before the binding existed (Vault wraps of
earlier releases): it is accepted as such, and ``kanvaro keys rotate-kek`` on a provider whose
rewrap exposes the plaintext replaces it with a bound one.
"""

from __future__ import annotations

import hashlib
import hmac

from kanvaro.crypto.errors import KeyUnavailable
from kanvaro.crypto.providers import WrapContext

MAGIC = b"kvb1"
_DIGEST = 32
LEGACY_LENGTH = 32


def bind(dek: bytes, context: WrapContext) -> bytes:
    return MAGIC + hashlib.sha256(context.encode()).digest() + dek


def unbind(blob: bytes, context: WrapContext, *, where: str) -> bytes:
    if len(blob) == LEGACY_LENGTH:
        return blob
    head, digest, dek = blob[:4], blob[4 : 4 + _DIGEST], blob[4 + _DIGEST :]
    if head != MAGIC or not dek:
        raise KeyUnavailable(f"{where}: the unwrapped data key has an unknown format")
    if not hmac.compare_digest(digest, hashlib.sha256(context.encode()).digest()):
        raise KeyUnavailable(
            f"{where}: the wrapped data key belongs to another context (tenant, purpose or key)"
        )
    return dek
