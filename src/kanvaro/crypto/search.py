"""Equality search on encrypted fields through their blind index."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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


async def find_users_by_phone(
    session: AsyncSession, keyring: Keyring, *, tenant_id: uuid.UUID | None, phone: str
) -> Sequence[object]:
    from kanvaro.identity.models import User

    digest = blind_index_for(keyring, "users.phone", tenant_id, phone)
    query = select(User).where(User.phone_bidx == digest)
    if tenant_id is None:
        query = query.where(User.tenant_id.is_(None))
    return (await session.execute(query.order_by(User.id))).scalars().all()
