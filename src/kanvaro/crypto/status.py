"""What admins see of the keys: counts by scope and state, and rotation progress."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.crypto.models import EncryptionKey, KeyRotation


async def key_status(session: AsyncSession, tenant_id: uuid.UUID | None) -> dict[str, Any]:
    """Keys and rotation progress; ``tenant_id`` None means the whole instance."""
    query = select(
        EncryptionKey.scope, EncryptionKey.state, func.count(), func.max(EncryptionKey.version)
    ).group_by(EncryptionKey.scope, EncryptionKey.state)
    if tenant_id is not None:
        query = query.where(EncryptionKey.tenant_id == tenant_id)
    counts = [
        {"scope": scope, "state": state, "count": count, "maxVersion": version}
        for scope, state, count, version in (await session.execute(query)).all()
    ]
    latest = (
        await session.execute(select(KeyRotation).order_by(KeyRotation.started_at.desc()).limit(1))
    ).scalar_one_or_none()
    rotation = None
    if latest is not None and tenant_id is not None:
        # A rotation runs over the whole instance: its row counts are other tenants' figures
        # too. A tenant sees that one runs; its own progress is its keys' states above.
        rotation = {
            "id": str(latest.id),
            "state": latest.state,
            "reason": latest.reason,
            "startedAt": latest.started_at.isoformat(),
            "finishedAt": latest.finished_at.isoformat() if latest.finished_at else None,
        }
    elif latest is not None:
        total = latest.total_rows
        rotation = {
            "id": str(latest.id),
            "state": latest.state,
            "reason": latest.reason,
            "totalRows": total,
            "doneRows": latest.done_rows,
            "reencryptedRows": latest.reencrypted_rows,
            "unreadableRows": latest.unreadable_rows,
            "percent": 100 if not total else round(100 * latest.done_rows / total, 1),
            "startedAt": latest.started_at.isoformat(),
            "finishedAt": latest.finished_at.isoformat() if latest.finished_at else None,
        }
    return {
        "provider": None,
        "keys": sorted(counts, key=lambda c: (c["scope"], c["state"])),
        "rotation": rotation,
    }
