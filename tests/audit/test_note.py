"""Signed checkpoints (C2SP tlog-checkpoint / signed-note style) with Ed25519."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kanvaro.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint, sign_checkpoint

NAME = "audit.example/kanvaro-audit"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _verifier(key: Ed25519PrivateKey, name: str = NAME) -> Verifier:
    return Verifier.from_public(name, key.public_key().public_bytes_raw())


def test_format_and_round_trip(key):
    root = hashlib.sha256(b"root").digest()
    note = sign_checkpoint(Checkpoint(f"{NAME}/instance", 42, root), NAME, key)
    lines = note.split("\n")
    assert lines[0] == f"{NAME}/instance"
    assert lines[1] == "42"
    assert base64.b64decode(lines[2]) == root
    assert lines[3] == ""
    assert lines[4].startswith(f"\u2014 {NAME} ")
    stamp = base64.b64decode(lines[4].rsplit(" ", 1)[1])
    pub = key.public_key().public_bytes_raw()
    assert stamp[:4] == hashlib.sha256(NAME.encode() + b"\n\x01" + pub).digest()[:4]
    assert len(stamp) == 68
    assert note.endswith("\n")
    assert open_checkpoint(note, _verifier(key)) == Checkpoint(f"{NAME}/instance", 42, root)


def test_verifier_key_round_trip_and_id_check(key):
    verifier = _verifier(key)
    encoded = verifier.encode()
    assert Verifier.parse(encoded) == verifier
    name, _, b64 = encoded.split("+", 2)
    with pytest.raises(NoteError, match="id does not match"):
        Verifier.parse(f"{name}+00000000+{b64}")
    with pytest.raises(NoteError):
        Verifier.parse("not-a-key")


def test_another_key_is_rejected(key):
    note = sign_checkpoint(Checkpoint("o", 1, bytes(32)), NAME, key)
    other = _verifier(Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="not signed by the trusted key"):
        open_checkpoint(note, other)


def test_same_name_and_forged_key_id_is_rejected(key):
    """A forger who copies our key id into their own signature still fails verification."""
    forger = Ed25519PrivateKey.generate()
    ours = _verifier(key)
    body = Checkpoint("o", 9, bytes(32)).body()
    stamp = base64.b64encode(ours.key_id + forger.sign(body.encode())).decode()
    forged = f"{body}\n\u2014 {NAME} {stamp}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(forged, ours)


@pytest.mark.parametrize(
    "edit",
    [
        lambda n: n.replace("\n7\n", "\n8\n", 1),  # tree size
        lambda n: n.replace("o\n", "p\n", 1),  # origin
        lambda n: n.replace("\n\n", "\n", 1),  # no signature block
    ],
)
def test_an_edited_note_is_rejected(key, edit):
    note = sign_checkpoint(Checkpoint("o", 7, bytes(32)), NAME, key)
    with pytest.raises(NoteError):
        open_checkpoint(edit(note), _verifier(key))


def test_verifier_keys_round_trip_whatever_their_base64():
    for _ in range(64):  # base64 of a random key often holds '+' and '/'
        verifier = _verifier(Ed25519PrivateKey.generate())
        assert Verifier.parse(verifier.encode()) == verifier
