"""Append audit entries inside the caller's transaction.

An entry is committed together with the change it describes, or not at all. Appends to one
chain are serialized by locking the chain's head row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite transactions start with ``BEGIN IMMEDIATE`` and so hold the database write
lock), so concurrent writers can never fork a chain or reuse a sequence number.

Event tags are ``<source>:<subject>:<action>`` (``api:project:create``,
``auth:login:failure``). Payloads are built from allow-listed fields only, and every key that
names a secret is dropped before hashing: redaction happens at write time, so no secret can
ever be part of the permanent, hash-protected record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.chain import expected_record_hash, hashed_document, to_document
from kanvaro.audit.hashing import GENESIS_HASH, content_digest, new_salt, timestamp
from kanvaro.audit.models import CATEGORIES, INSTANCE_CHAIN, AuditChainHead, AuditLog
from kanvaro.db import on_commit, utcnow
from kanvaro.logging import SECRET_KEY_PATTERN

# Seed 000: every audited action is also a ``data_access`` security event (forwarded to SIEM).
security_log = structlog.get_logger("kanvaro.security")


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where; built once per request."""

    actor_id: uuid.UUID | None = None
    ip_address: str | None = None
    user_agent: str | None = None

    def __repr__(self) -> str:
        return f"AuditContext(actor_id={self.actor_id})"


SYSTEM = AuditContext()


def chain_for(tenant_id: uuid.UUID | None) -> str:
    return str(tenant_id) if tenant_id else INSTANCE_CHAIN


def to_payload(value: Any) -> Any:
    """Values in the canonical-JSON profile: no floats, dates as ISO strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {
            str(k): to_payload(v) for k, v in value.items() if not SECRET_KEY_PATTERN.search(str(k))
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_payload(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return str(value)


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {name: to_payload(getattr(obj, name)) for name in fields}


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"before": {...}, "after": {...}}`` holding only the fields that changed."""
    before = dict(before or {})
    after = dict(after or {})
    keys = sorted(set(before) | set(after))
    changed = [k for k in keys if before.get(k) != after.get(k)]
    return {
        "before": {k: before[k] for k in changed if k in before},
        "after": {k: after[k] for k in changed if k in after},
    }


async def _lock_head(
    session: AsyncSession, chain_id: str, tenant_id: uuid.UUID | None
) -> AuditChainHead:
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(AuditChainHead)
        .values(chain_id=chain_id, tenant_id=tenant_id, sequence_number=0, head_hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["chain_id"])
    )
    result = await session.execute(
        select(AuditChainHead)
        .where(AuditChainHead.chain_id == chain_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def record(
    session: AsyncSession,
    *,
    action: str,
    category: str,
    tenant_id: uuid.UUID | None,
    context: AuditContext = SYSTEM,
    resource_type: str | None = None,
    resource_id: Any = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Append one entry to the tenant's chain (or the instance chain) and flush it."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}")
    if action.count(":") != 2:
        raise ValueError("audit actions are tagged <source>:<subject>:<action>")
    chain_id = chain_for(tenant_id)
    head = await _lock_head(session, chain_id, tenant_id)
    sequence = head.sequence_number + 1
    payload = to_payload(dict(changes or {}))
    user_agent = (context.user_agent or None) and context.user_agent[:512]
    salt = new_salt()
    entry = AuditLog(
        id=uuid.uuid4(),
        chain_id=chain_id,
        tenant_id=tenant_id,
        sequence_number=sequence,
        actor_id=context.actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        changes=payload,
        ip_address=context.ip_address,
        user_agent=user_agent,
        category=category,
        created_at=utcnow(),
        previous_hash=head.head_hash,
        content_salt=salt,
        content_digest=content_digest(
            salt, changes=payload, ip_address=context.ip_address, user_agent=user_agent
        ),
    )
    entry.record_hash = expected_record_hash(to_document(entry))
    head.sequence_number = sequence
    head.head_hash = entry.record_hash
    session.add(entry)
    await session.flush()
    event = {
        "action": action,
        "category": category,
        "user_id": str(context.actor_id) if context.actor_id else None,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "resource": resource_type,
        "resource_id": entry.resource_id,
        "ip": context.ip_address,
        "sequence": sequence,
    }

    async def forward() -> None:
        security_log.info("data_access", **event)

    # The security event (and so its SIEM copy) only for an entry that committed: a rolled-
    # back change must not show up in the SIEM as if it had happened.
    on_commit(session, forward)
    return entry


def hashed_fields(entry: AuditLog) -> dict[str, Any]:
    """Every field of the entry that the record hash covers (all but the hashes themselves)."""
    return hashed_document(to_document(entry))
