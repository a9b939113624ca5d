"""One audit entry as a plain JSON document, and the hashes computed from it.

The same document is what the database row maps to, what ``kanvaro audit export`` writes one
per line, and what the offline verifier reads back: a single definition of "what the hash
covers", used on both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.hashing import canonical_json, content_digest, record_hash, timestamp
from kanvaro.audit.models import AuditLog

# Fields of the entry header: always kept, covered by the record hash directly.
HEADER_FIELDS = (
    "id",
    "chainId",
    "tenantId",
    "actorId",
    "action",
    "resourceType",
    "resourceId",
    "category",
    "createdAt",
)
# Erasable content: covered through the salted ``contentDigest``.
CONTENT_FIELDS = ("changes", "ipAddress", "userAgent")


def to_document(entry: AuditLog) -> dict[str, Any]:
    return {
        "sequenceNumber": entry.sequence_number,
        "id": str(entry.id),
        "chainId": entry.chain_id,
        "tenantId": str(entry.tenant_id) if entry.tenant_id else None,
        "actorId": str(entry.actor_id) if entry.actor_id else None,
        "action": entry.action,
        "resourceType": entry.resource_type,
        "resourceId": entry.resource_id,
        "category": entry.category,
        "createdAt": timestamp(entry.created_at),
        "changes": entry.changes,
        "ipAddress": entry.ip_address,
        "userAgent": entry.user_agent,
        "contentSalt": entry.content_salt,
        "contentDigest": entry.content_digest,
        "previousHash": entry.previous_hash,
        "recordHash": entry.record_hash,
    }


async def iter_chain(
    session: AsyncSession,
    chain_id: str,
    *,
    after: int = 0,
    upto: int | None = None,
    batch: int = 1000,
) -> AsyncIterator[AuditLog]:
    """The chain's entries in sequence order (ties by id), read in batches of ``batch``: the
    one reader of a chain for export, verification and listings (memory stays bounded)."""
    last = after
    while upto is None or last < upto:
        stmt = select(AuditLog).where(
            AuditLog.chain_id == chain_id, AuditLog.sequence_number > last
        )
        if upto is not None:
            stmt = stmt.where(AuditLog.sequence_number <= upto)
        rows = (
            (
                await session.execute(
                    stmt.order_by(AuditLog.sequence_number, AuditLog.id).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield row
        last = rows[-1].sequence_number


def hashed_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields the record hash covers (besides previous hash and sequence number)."""
    fields = {name: doc.get(name) for name in HEADER_FIELDS}
    if doc.get("contentDigest") is None:
        # An entry written before migration 0002: its content is hashed directly.
        fields.update({name: doc.get(name) for name in CONTENT_FIELDS})
    else:
        fields["contentDigest"] = doc["contentDigest"]
    return fields


def expected_record_hash(doc: dict[str, Any], *, sequence_number: int | None = None) -> str:
    seq = doc["sequenceNumber"] if sequence_number is None else sequence_number
    return record_hash(hashed_document(doc), previous_hash=doc["previousHash"], sequence_number=seq)


def content_state(doc: dict[str, Any]) -> str:
    """``ok``, ``altered``, or ``erased`` (content and salt removed by retention)."""
    if doc.get("contentDigest") is None:
        return "ok"  # legacy entry: the record hash covers the content itself
    salt = doc.get("contentSalt")
    if salt is None:
        if any(doc.get(name) is not None for name in CONTENT_FIELDS):
            return "altered"  # content without its salt cannot be checked: refuse it
        return "erased"
    digest = content_digest(
        salt,
        changes=doc.get("changes"),
        ip_address=doc.get("ipAddress"),
        user_agent=doc.get("userAgent"),
    )
    return "ok" if digest == doc["contentDigest"] else "altered"


def document_digest(doc: dict[str, Any]) -> str:
    """A digest of the whole document (used by tests to compare exports)."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()
