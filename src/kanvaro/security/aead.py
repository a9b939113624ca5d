"""AES-256-GCM sealing with a random 96-bit nonce and caller-supplied associated data.

Format (bytes): ``version(1) || nonce(12) || ciphertext || tag(16)``. The associated data is
not stored: the caller binds the ciphertext to where it lives (a key id, a table/column/row),
so a ciphertext moved elsewhere fails to open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12


class DecryptionError(ValueError):
    """The ciphertext is corrupt, was made with another key, or belongs elsewhere."""


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose from the master secret (HKDF-SHA256, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != FORMAT_V1:
        raise DecryptionError("unknown or truncated ciphertext format")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionError("ciphertext failed authentication") from None
