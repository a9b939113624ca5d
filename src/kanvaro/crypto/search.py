"""Equality search on encrypted fields through their blind index.

crypto/ computes the digest; the domain that owns the rows (identity for ``users.phone``)
runs the query, so this package knows no users.
"""

from __future__ import annotations

import uuid

from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.keyring import Keyring


def blind_index_for(keyring: Keyring, field: str, tenant_id: uuid.UUID | None, value: str) -> str:
    """The blind index a row of ``tenant_id`` holds when ``field`` (e.g. "users.phone") is
    ``value``: normalized the same way as on write."""
    spec = REGISTRY[field]
    if spec.blind_index is None:
        raise ValueError(f"{field} has no blind index")
    normalized = spec.normalize(value) if spec.normalize else value
    return keyring.blind_index(tenant_id, field, normalized)
