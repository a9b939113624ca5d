"""Clear the erasable content of audit entries through the one path migration 0014 allows.

An entry's record hash covers ``changes``, IP address and user agent only through the salted
``content_digest`` (docs/ARCHITECTURE.md, "Audit retention"): dropping them *and the salt*
leaves every record hash, Merkle root and signed checkpoint valid, and the verifier counts
the entry as ``erased``. Without the salt a guess (an IP address) cannot be tested against
the digest that stays. The database refuses every other UPDATE of ``audit_logs``; on
PostgreSQL the application goes through ``kanvaro_erase_audit_content()``, so its role needs
no UPDATE grant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import literal_column, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.models import AuditLog

CHUNK = 500


async def erase(session: AsyncSession, entry_ids: Sequence[uuid.UUID]) -> int:
    """Erase the content of these entries (those that still have it and have a digest);
    returns how many were erased. Runs in the caller's transaction."""
    erased = 0
    postgres = session.bind.dialect.name == "postgresql"
    for start in range(0, len(entry_ids), CHUNK):
        chunk = list(entry_ids[start : start + CHUNK])
        if postgres:
            result = await session.execute(
                text("SELECT kanvaro_erase_audit_content(CAST(:ids AS uuid[]))"),
                {"ids": chunk},
            )
            erased += int(result.scalar_one())
            continue
        result = await session.execute(
            update(AuditLog)
            .where(
                AuditLog.id.in_(chunk),
                AuditLog.content_digest.is_not(None),
                AuditLog.content_salt.is_not(None),
            )
            # JSON null, not SQL NULL: the column is NOT NULL, and the verifier reads both as
            # "no content". A literal, because the column type would encode None as NULL.
            .values(
                changes=literal_column("'null'"),
                ip_address=None,
                user_agent=None,
                content_salt=None,
            )
            .execution_options(synchronize_session=False)
        )
        erased += result.rowcount or 0
    return erased
