"""AES-256-GCM sealing and HKDF key derivation (RFC 5869 test vector)."""

from __future__ import annotations

import os

import pytest

from kanvaro.security.aead import (
    FORMAT_V1,
    NONCE_BYTES,
    DecryptionError,
    derive_key,
    open_sealed,
    seal,
)


def test_hkdf_rfc5869_case_3() -> None:
    # RFC 5869 A.3: SHA-256, IKM = 22 x 0x0b, empty salt and info; first 32 bytes of the OKM.
    okm = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert derive_key(b"\x0b" * 22, "") == okm[:32]


def test_purposes_give_independent_keys() -> None:
    master = os.urandom(32)
    assert derive_key(master, "a") != derive_key(master, "b")
    assert len(derive_key(master, "a")) == 32


def test_seal_open_and_bindings() -> None:
    key = os.urandom(32)
    sealed = seal(key, b"secret", b"kid-1")
    assert sealed[:1] == FORMAT_V1 and len(sealed) == 1 + NONCE_BYTES + 6 + 16
    assert seal(key, b"secret", b"kid-1") != sealed  # fresh nonce
    assert open_sealed(key, sealed, b"kid-1") == b"secret"
    for bad_key, bad_aad, bad_blob in [
        (os.urandom(32), b"kid-1", sealed),
        (key, b"kid-2", sealed),
        (key, b"kid-1", sealed[:-1] + bytes([sealed[-1] ^ 1])),
        (key, b"kid-1", b"\x02" + sealed[1:]),
        (key, b"kid-1", sealed[:10]),
    ]:
        with pytest.raises(DecryptionError):
            open_sealed(bad_key, bad_blob, bad_aad)
