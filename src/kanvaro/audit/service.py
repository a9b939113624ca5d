"""Write audit entries inside the caller's transaction.

An entry is committed together with the change it describes, or not at all. It is written
*pending* (``audit_pending``): complete but for its sequence number and hashes, and without
any lock, so writers of one tenant do not wait for each other's transactions. Once the
transaction has committed, the sequencer gives it its place in the chain
(:mod:`kanvaro.audit.sequencer`; in a server process in the background, :mod:`worker`).

Event tags are ``<source>:<subject>:<action>`` (``api:project:create``,
``auth:login:failure``). Payloads are built from allow-listed fields only, and every key that
names a secret is dropped before hashing: redaction happens at write time, so no secret can
ever be part of the permanent, hash-protected record.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import bindparam, exists, insert, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import CTE

from kanvaro.audit import observe, worker
from kanvaro.audit.chain import hashed_document, to_document
from kanvaro.audit.hashing import content_digest, new_salt, timestamp
from kanvaro.audit.models import CATEGORIES, INSTANCE_CHAIN, AuditLog, AuditPending
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


@dataclass(frozen=True)
class RecordedEntry:
    """What ``record()`` wrote: the entry's id and header. Its sequence number does not exist
    yet; the sequencer assigns it after commit (find the entry by ``id``)."""

    id: uuid.UUID
    chain_id: str
    tenant_id: uuid.UUID | None
    action: str
    category: str
    created_at: datetime
    content_digest: str


# One statement object for every entry, the values passed as parameters: built with
# ``.values(...)`` per call, SQLAlchemy constructed, keyed and looked up a new statement each
# time, about a fifth of a secured write's CPU (py-spy, issue 9).
_INSERT_PENDING = insert(AuditPending.__table__)
_PENDING_TABLE = AuditPending.__table__
# Every column of a pending entry but its position (an identity column).
ENTRY_COLUMNS = tuple(c.name for c in _PENDING_TABLE.columns if c.name != "position")


def insert_pending_after(change: CTE) -> CTE:
    """A data-modifying CTE that inserts one pending entry, its values the ``entry_*`` binds
    of :meth:`PendingEntry.binds`, when the ``change`` CTE returned a row: in one statement
    with that change, the entry exists if and only if the change does."""
    values = [
        bindparam(f"entry_{name}", type_=_PENDING_TABLE.c[name].type) for name in ENTRY_COLUMNS
    ]
    return (
        insert(_PENDING_TABLE)
        .from_select(
            ENTRY_COLUMNS,
            select(*values).where(exists(select(literal_column("1")).select_from(change))),
        )
        .cte("entry")
    )


@dataclass(frozen=True)
class PendingEntry:
    """An entry ready to be written: its ``audit_pending`` row and what happens once the
    transaction that writes it has committed. ``record()`` writes it through the ORM session;
    a one-statement change on PostgreSQL (``kanvaro.work.task_writes``, a token refresh)
    inserts it with :func:`insert_pending_after` and calls ``after_commit`` itself."""

    entry: RecordedEntry
    row: dict[str, Any] = field(repr=False)
    event: dict[str, Any] = field(repr=False)

    def binds(self) -> dict[str, Any]:
        """The row as the binds of :func:`insert_pending_after`."""
        return {f"entry_{name}": self.row[name] for name in ENTRY_COLUMNS}

    def after_commit(self, engine: Any) -> Callable[[], Awaitable[None]]:
        async def committed() -> None:
            # Only for an entry that committed: a rolled-back change must not show up in the
            # SIEM (or the metrics) as if it had happened.
            security_log.info("data_access", **self.event)
            observe.entry_appended(self.entry.category)
            await worker.after_commit(engine, self.entry.chain_id)

        return committed


def pending_entry(
    *,
    action: str,
    category: str,
    tenant_id: uuid.UUID | None,
    context: AuditContext = SYSTEM,
    resource_type: str | None = None,
    resource_id: Any = None,
    changes: Mapping[str, Any] | None = None,
) -> PendingEntry:
    """One entry for the tenant's chain (or the instance chain), not written yet."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}")
    if action.count(":") != 2:
        raise ValueError("audit actions are tagged <source>:<subject>:<action>")
    chain_id = chain_for(tenant_id)
    payload = to_payload(dict(changes or {}))
    user_agent = (context.user_agent or None) and context.user_agent[:512]
    salt = new_salt()
    entry = RecordedEntry(
        id=uuid.uuid4(),
        chain_id=chain_id,
        tenant_id=tenant_id,
        action=action,
        category=category,
        created_at=utcnow(),
        content_digest=content_digest(
            salt, changes=payload, ip_address=context.ip_address, user_agent=user_agent
        ),
    )
    resource = str(resource_id) if resource_id is not None else None
    row = {
        "id": entry.id,
        "chain_id": chain_id,
        "tenant_id": tenant_id,
        "actor_id": context.actor_id,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource,
        "changes": payload,
        "ip_address": context.ip_address,
        "user_agent": user_agent,
        "category": category,
        "created_at": entry.created_at,
        "content_salt": salt,
        "content_digest": entry.content_digest,
    }
    # The entry id and content digest go into the security event (and so the SIEM): until it
    # is sequenced a pending row could be changed or deleted by someone with database access,
    # and the SIEM copy is what such an edit can be reconciled against.
    event = {
        "action": action,
        "category": category,
        "user_id": str(context.actor_id) if context.actor_id else None,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "resource": resource_type,
        "resource_id": resource,
        "ip": context.ip_address,
        "entry_id": str(entry.id),
        "content_digest": entry.content_digest,
    }
    return PendingEntry(entry, row, event)


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
) -> RecordedEntry:
    """Write one entry for the tenant's chain (or the instance chain), pending until the
    transaction commits and the sequencer places it."""
    pending = pending_entry(
        action=action,
        category=category,
        tenant_id=tenant_id,
        context=context,
        resource_type=resource_type,
        resource_id=resource_id,
        changes=changes,
    )
    await session.execute(_INSERT_PENDING, pending.row)
    on_commit(session, pending.after_commit(session.bind))
    return pending.entry


def hashed_fields(entry: AuditLog) -> dict[str, Any]:
    """Every field of the entry that the record hash covers (all but the hashes themselves)."""
    return hashed_document(to_document(entry))
