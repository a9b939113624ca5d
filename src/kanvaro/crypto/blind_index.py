"""Blind indexes: equality search on encrypted fields without decrypting them.

``HMAC-SHA256(k_tenant_field, normalize(value))`` stored beside the ciphertext. The HMAC key is
derived (HKDF) from its own root, separate from every encryption key, and differs per tenant
and per field, so equal values in two tenants or two columns do not match. A blind index
reveals equality (who shares a phone number) within one tenant and field, and nothing else;
it only helps values with enough entropy (phone numbers qualify, yes/no flags would not).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from functools import lru_cache

import phonenumbers

from kanvaro.security.aead import derive_key


class BlindIndexer:
    def __init__(self, root: bytes) -> None:
        self._root = root

    def __repr__(self) -> str:
        return "BlindIndexer()"

    @lru_cache(maxsize=4096)  # noqa: B019 - one instance per process, bounded
    def _key(self, tenant_id: uuid.UUID | None, field: str) -> bytes:
        return derive_key(self._root, f"kanvaro/blind-index/{tenant_id or '-'}/{field}")

    def digest(self, tenant_id: uuid.UUID | None, field: str, normalized: str) -> str:
        return hmac.new(
            self._key(tenant_id, field), normalized.encode(), hashlib.sha256
        ).hexdigest()


def normalize_phone(value: str) -> str:
    """E.164 (``+4915112345678``) so that "+49 151 1234 5678" and "+4915112345678" match."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return "".join(value.split())
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_ssn(value: str) -> str:
    """Digits only, so "123-45-6789" and "123 45 6789" match."""
    return "".join(ch for ch in value if ch.isdigit()) or value.strip()


def normalize_text(value: str) -> str:
    return " ".join(value.split()).casefold()
