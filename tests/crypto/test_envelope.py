"""The ciphertext format: key id and version in the header, fresh nonce, bound location."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kanvaro.crypto import envelope
from kanvaro.crypto.errors import DecryptionError

KEY = AESGCM(os.urandom(32))
HEADER = envelope.Header(uuid.uuid4(), 3)
TENANT = uuid.uuid4()
HERE = envelope.FieldLocation(TENANT, "users", "phone", str(uuid.uuid4()))


def test_round_trip_and_header() -> None:
    stored = envelope.seal(KEY, HEADER, "+4915112345678", HERE)
    prefix, key_hex, version, _body = stored.split(":")
    assert (prefix, key_hex, version) == ("kv1", HEADER.key_id.hex, "3")
    assert "+4915112345678" not in stored
    assert envelope.key_id_of(stored) == HEADER.key_id
    assert envelope.open_(KEY, stored, HERE) == "+4915112345678"


def test_nonce_is_fresh_per_value() -> None:
    a = envelope.seal(KEY, HEADER, "same", HERE)
    b = envelope.seal(KEY, HEADER, "same", HERE)
    assert a != b
    nonce_a = envelope.parse(a, "x")[1][: envelope.NONCE_BYTES]
    nonce_b = envelope.parse(b, "x")[1][: envelope.NONCE_BYTES]
    assert len(nonce_a) == 12 and nonce_a != nonce_b


@pytest.mark.parametrize(
    "elsewhere",
    [
        envelope.FieldLocation(TENANT, "users", "phone", str(uuid.uuid4())),  # another row
        envelope.FieldLocation(TENANT, "users", "mfa_secret", HERE.row_id),  # another column
        envelope.FieldLocation(TENANT, "invoices", "phone", HERE.row_id),  # another table
        envelope.FieldLocation(uuid.uuid4(), "users", "phone", HERE.row_id),  # another tenant
    ],
)
def test_copied_ciphertext_fails_with_clear_error(elsewhere: envelope.FieldLocation) -> None:
    stored = envelope.seal(KEY, HEADER, "+4915112345678", HERE)
    with pytest.raises(DecryptionError) as info:
        envelope.open_(KEY, stored, elsewhere)
    message = str(info.value)
    assert message.startswith(f"{elsewhere.table}.{elsewhere.column}:")
    assert "+49" not in message and stored not in message


def test_header_is_authenticated() -> None:
    stored = envelope.seal(KEY, HEADER, "v", HERE)
    forged = stored.replace(":3:", ":4:", 1)
    with pytest.raises(DecryptionError):
        envelope.open_(KEY, forged, HERE)


def test_tampered_and_foreign_values_refused() -> None:
    stored = envelope.seal(KEY, HEADER, "value", HERE)
    head, body = stored.rsplit(":", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{head}:{flipped}", "plaintext", "kv1:zz:1:AAAA", "kv2:" + stored[4:]):
        with pytest.raises(DecryptionError):
            envelope.open_(KEY, bad, HERE)


def test_key_lineage_per_scope() -> None:
    from kanvaro.crypto.fields import FieldSpec

    tenant, user = uuid.uuid4(), uuid.uuid4()

    def spec(scope: str, owner: str | None = None) -> FieldSpec:
        return FieldSpec(object, "secret", "secret_encrypted", scope, owner, None, None)

    assert spec("user", "user_id").lineage(tenant, user).owner_id == str(user)
    assert spec("user", "user_id").lineage(tenant, user).kek == f"user-{user}"
    assert spec("tenant").lineage(tenant, None).owner_id == str(tenant)
    assert spec("tenant").lineage(tenant, None).kek == f"tenant-{tenant}"  # own KEK: shreddable
    assert spec("tenant").lineage(None, None).scope == "instance"  # instance-wide rows
    assert spec("instance").lineage(tenant, None).owner_id == "instance"
    assert spec("instance").lineage(tenant, None).kek == "instance"
