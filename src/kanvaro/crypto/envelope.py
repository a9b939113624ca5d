"""The field ciphertext format and its associated data.

A field is stored as text::

    kv1:<data key id, 32 hex>:<data key version>:<base64url(nonce(12) || ciphertext || tag(16))>

* ``kv1`` is the format version: a later format gets a new prefix and both are read.
* The key id and version say which data key (a row of ``encryption_keys``) sealed the value,
  so rotation can find rows still on an old key without decrypting them.
* AES-256-GCM with a fresh random 96-bit nonce per value (NIST SP 800-38D); the 128-bit tag
  authenticates the ciphertext *and* the associated data.
* The associated data is the header above plus the tenant, table, column and row id. It is not
  stored: it is rebuilt from where the value is read, so a ciphertext copied into another row,
  column, table or tenant fails to open.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kanvaro.crypto.errors import DecryptionError

PREFIX = "kv1"
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class FieldLocation:
    """Where a value lives: bound into the ciphertext as associated data."""

    tenant_id: uuid.UUID | None
    table: str
    column: str
    row_id: str

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    def aad(self, header: str) -> bytes:
        tenant = str(self.tenant_id) if self.tenant_id else "-"
        # NUL-separated: none of the parts can contain NUL, so the encoding is unambiguous.
        return "\x00".join(
            ("kanvaro/field/v1", header, tenant, self.table, self.column, self.row_id)
        ).encode()


@dataclass(frozen=True)
class Header:
    key_id: uuid.UUID
    key_version: int

    def text(self) -> str:
        return f"{PREFIX}:{self.key_id.hex}:{self.key_version}"


def parse(stored: str, where: str) -> tuple[Header, bytes]:
    """Split a stored value into its header and sealed bytes (no key needed)."""
    parts = stored.split(":") if isinstance(stored, str) else []
    if len(parts) != 4 or parts[0] != PREFIX:
        raise DecryptionError(f"{where}: not a Kanvaro ciphertext (unknown format)")
    try:
        header = Header(uuid.UUID(hex=parts[1]), int(parts[2]))
        body = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4))
    except (ValueError, binascii.Error):
        raise DecryptionError(f"{where}: malformed ciphertext header") from None
    if len(body) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"{where}: truncated ciphertext")
    return header, body


def is_ciphertext(stored: str) -> bool:
    """A Kanvaro ciphertext (as opposed to plaintext of a field not yet converted)."""
    return stored.startswith(PREFIX + ":")


def key_id_of(stored: str) -> uuid.UUID | None:
    """The data key id of a stored value, or None when it is not in our format."""
    try:
        return parse(stored, "?")[0].key_id
    except DecryptionError:
        return None


def seal(aead: AESGCM, header: Header, plaintext: str, where: FieldLocation) -> str:
    nonce = os.urandom(NONCE_BYTES)
    head = header.text()
    sealed = aead.encrypt(nonce, plaintext.encode(), where.aad(head))
    body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
    return f"{head}:{body}"


def open_(
    aead: AESGCM, stored: str, where: FieldLocation, parsed: tuple[Header, bytes] | None = None
) -> str:
    _header, body = parsed or parse(stored, where.name)
    # The header as stored is what is authenticated: any change to it fails the tag.
    head = stored[: stored.rindex(":")]
    try:
        plain = aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], where.aad(head))
    except InvalidTag:
        raise DecryptionError(
            f"{where.name}: ciphertext failed authentication "
            "(wrong key, tampered, or copied from another row, column or tenant)"
        ) from None
    return plain.decode()
