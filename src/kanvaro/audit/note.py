"""Signed checkpoints in the text format of C2SP tlog-checkpoint and signed-note.

A checkpoint body is three lines: the origin (which log), the tree size in decimal, and the
base64 Merkle root. The note adds a blank line and one signature line per signer::

    kanvaro.example/audit/3f1c...-tenant-id
    42
    qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=

    — kanvaro.example/audit Az3grlgAAAA...

The signature line is an em dash, the key name, and ``base64(key_id(4) || signature)``; the
key id is the first four bytes of ``SHA-256(name || "\\n" || 0x01 || public_key)`` and the
Ed25519 signature covers the body bytes. Verifier keys travel as ``name+hexid+base64(0x01 ||
public_key)``. Pure functions: the offline verifier uses them with no database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_ALG = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash + space


class NoteError(ValueError):
    """A checkpoint or verifier key is malformed, or its signature does not verify."""


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    """A public key that checks signatures: its name, id and raw Ed25519 key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_public(cls, name: str, public_key: bytes) -> Verifier:
        _check_name(name)
        return cls(name, key_id(name, public_key), public_key)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Read a ``name+hexid+base64key`` verifier key and check that its id matches."""
        parts = text.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise NoteError("a verifier key has the form name+keyid+base64(0x01||key)")
        name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
            claimed = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError("the verifier key is not valid hex/base64") from None
        if len(raw) != 33 or raw[:1] != ED25519_ALG:
            raise NoteError("the verifier key is not an Ed25519 key")
        verifier = cls.from_public(name, raw[1:])
        if verifier.key_id != claimed:
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def encode(self) -> str:
        b64 = base64.b64encode(ED25519_ALG + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root_hash).decode()}\n"


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    _check_name(name)
    if "\n" in checkpoint.origin or not checkpoint.origin:
        raise NoteError("the origin must be one non-empty line")
    body = checkpoint.body()
    public = private_key.public_key().public_bytes_raw()
    signature = private_key.sign(body.encode())
    stamp = base64.b64encode(key_id(name, public) + signature).decode()
    return f"{body}\n{SIG_PREFIX}{name} {stamp}\n"


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("the checkpoint body needs an origin, a tree size and a root hash")
    origin, size, root_b64 = lines[0], lines[1], lines[2]
    if not origin:
        raise NoteError("the checkpoint has no origin line")
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError("the checkpoint tree size is not a decimal number")
    try:
        root_hash = base64.b64decode(root_b64, validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint root hash is not base64") from None
    if len(root_hash) != 32:
        raise NoteError("the checkpoint root hash is not 32 bytes")
    return Checkpoint(origin, int(size), root_hash)


def open_checkpoint(note: str, verifier: Verifier) -> Checkpoint:
    """Parse a signed checkpoint and check its signature by ``verifier``; else NoteError."""
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise NoteError("the checkpoint has no signature block")
    body += "\n"
    checkpoint = _parse_body(body)
    found = False
    for line in signatures.split("\n"):
        if not line:
            continue
        if not line.startswith(SIG_PREFIX):
            raise NoteError("a signature line must start with an em dash")
        name, _, stamp = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(stamp, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if len(raw) != 4 + 64:
            raise NoteError("a signature has the wrong length")
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise NoteError(
                f"the checkpoint signature by {verifier.name} does not verify"
            ) from None
        found = True
    if not found:
        raise NoteError(f"the checkpoint is not signed by the trusted key {verifier.name}")
    return checkpoint


def signers_of(note: str) -> list[tuple[str, bytes]]:
    """(key name, key id) of every well-formed signature line, unverified: which keys to try."""
    _, sep, signatures = note.partition("\n\n")
    found = []
    for line in signatures.split("\n") if sep else ():
        if not line.startswith(SIG_PREFIX):
            continue
        name, _, stamp = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(stamp, validate=True)
        except binascii.Error:
            continue
        if len(raw) == 4 + 64:
            found.append((name, raw[:4]))
    return found


def cosign(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Add a signature line by another key to a signed note (the body is unchanged)."""
    _check_name(name)
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise NoteError("the checkpoint has no signature block")
    body += "\n"
    _parse_body(body)
    public = private_key.public_key().public_bytes_raw()
    stamp = base64.b64encode(key_id(name, public) + private_key.sign(body.encode())).decode()
    return f"{body}\n{signatures.rstrip(chr(10))}\n{SIG_PREFIX}{name} {stamp}\n"
