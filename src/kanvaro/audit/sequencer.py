"""The sequencer: committed audit entries get their place in the chain, shortly after commit.

``record()`` writes an entry to ``audit_pending`` inside the request's transaction and takes
no lock. After the commit the sequencer, in a short transaction of its own, locks the chain's
head, reads what is pending for that chain in the order it was written, gives each entry the
next sequence number, computes its record hash over the previous one, adds it to the stored
Merkle tree (:mod:`kanvaro.audit.tree`), moves it to ``audit_logs`` and advances the head.
So an entry exists if and only if its change committed (it is written in the change's
transaction), each chain stays one line (one sequencer per chain at a time, across processes
and instances: PostgreSQL's row lock on the head, ``SELECT ... FOR UPDATE``, held only by the
sequencing transaction; on SQLite ``BEGIN IMMEDIATE`` holds the database write lock), and
writers of one tenant no longer wait for each other's transactions.

Who calls it: the background worker of a server process (:mod:`kanvaro.audit.worker`) after
each commit, the periodic sweep (:func:`sweep`), anything else right after its commit, and
reads that must be complete (:func:`settle`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, bindparam, cast, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kanvaro.audit import observe
from kanvaro.audit.chain import expected_record_hash, to_document
from kanvaro.audit.hashing import GENESIS_HASH
from kanvaro.audit.models import (
    INSTANCE_CHAIN,
    AuditChainHead,
    AuditLog,
    AuditMerkleNode,
    AuditPending,
)
from kanvaro.audit.tree import Frontier, Node, stored
from kanvaro.db import on_commit, utcnow
from kanvaro.reads import Query, Reader, SessionReader, open_reader

BATCH = 1000  # entries per sequencing transaction

_pending = AuditPending.__table__
_logs = AuditLog.__table__
_heads = AuditChainHead.__table__
_nodes = AuditMerkleNode.__table__
# Everything an entry keeps when it moves; ``changes`` as its stored (canonical) text.
_MOVED = (
    _pending.c.id,
    _pending.c.chain_id,
    _pending.c.tenant_id,
    _pending.c.actor_id,
    _pending.c.action,
    _pending.c.resource_type,
    _pending.c.resource_id,
    cast(_pending.c.changes, Text).label("changes"),
    _pending.c.ip_address,
    _pending.c.user_agent,
    _pending.c.category,
    _pending.c.created_at,
    _pending.c.content_salt,
    _pending.c.content_digest,
)


def tenant_of(chain_id: str) -> uuid.UUID | None:
    return None if chain_id == INSTANCE_CHAIN else uuid.UUID(chain_id)


# The sequencer runs in the caller's session (settle on SQLite) or on a pooled connection of
# its own (the driver connection on PostgreSQL): both run the same compiled statements.
Runner = Reader | SessionReader


def _binds(table: Any, names: tuple[str, ...]) -> dict[str, Any]:
    # Every value a bind parameter of its column's type: the driver path sends exactly what
    # it is given, processed as SQLAlchemy would (no column defaults, no literals).
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


# Not "chain_id": an UPDATE keeps its columns' names for the SET clause.
_CHAIN = bindparam("chain", type_=String)
_HEAD_COLUMNS = ("sequence_number", "head_hash", "frontier", "frontier_size")


def _new_head(insert: Any) -> Any:
    values = _binds(_heads, ("chain_id", "tenant_id", *_HEAD_COLUMNS))
    return insert(_heads).values(values).on_conflict_do_nothing(index_elements=["chain_id"])


def _insert_node(insert: Any) -> Any:
    values = _binds(_nodes, ("chain_id", "level", "node_index", "tenant_id", "hash"))
    return insert(_nodes).values(values).on_conflict_do_nothing()


# The sequencer's statements, built and compiled once (:class:`kanvaro.reads.Query`); on
# PostgreSQL they run as prepared statements on the driver connection. Built through
# SQLAlchemy on every sequencing they cost about as much CPU as the write they follow.
HAS_PENDING = Query(select(_pending.c.position).where(_pending.c.chain_id == _CHAIN).limit(1))
PENDING_CHAINS = Query(select(_pending.c.chain_id).distinct())
LOCK_HEAD = Query(
    select(*(_heads.c[name] for name in _HEAD_COLUMNS))
    .where(_heads.c.chain_id == _CHAIN)
    .with_for_update()  # SQLite renders nothing: BEGIN IMMEDIATE already serializes
)
NEW_HEAD = Query(_new_head(sqlite.insert), postgresql=_new_head(postgresql.insert))
# Taken and removed in one statement; RETURNING keeps no order: sorted by position after.
TAKE = Query(
    delete(_pending)
    .where(
        _pending.c.position.in_(
            select(_pending.c.position)
            .where(_pending.c.chain_id == _CHAIN)
            .order_by(_pending.c.position)
            .limit(bindparam("limit", type_=Integer))
            .scalar_subquery()
        )
    )
    .returning(_pending.c.position, *_MOVED)
)
SEQUENCED_BETWEEN = Query(
    select(_logs.c.record_hash)
    .where(
        _logs.c.chain_id == _CHAIN,
        _logs.c.sequence_number > bindparam("after", type_=BigInteger),
        _logs.c.sequence_number <= bindparam("upto", type_=BigInteger),
    )
    .order_by(_logs.c.sequence_number)
)
_LOG_COLUMNS = (*(c.name for c in _MOVED), "sequence_number", "previous_hash", "record_hash")
INSERT_LOG = Query(_logs.insert().values(_binds(_logs, _LOG_COLUMNS)))
INSERT_NODE = Query(_insert_node(sqlite.insert), postgresql=_insert_node(postgresql.insert))
ADVANCE_HEAD = Query(
    update(_heads).where(_heads.c.chain_id == _CHAIN).values(_binds(_heads, _HEAD_COLUMNS))
)


async def _lock_head(db: Runner, chain_id: str) -> Any:
    """The chain's head row, locked until the transaction ends (created when new)."""
    head = await db.row(LOCK_HEAD, chain=chain_id)
    if head is None:
        await db.execute(
            NEW_HEAD,
            chain_id=chain_id,
            tenant_id=tenant_of(chain_id),
            sequence_number=0,
            head_hash=GENESIS_HASH,
            frontier=b"",
            frontier_size=0,
        )
        head = await db.row(LOCK_HEAD, chain=chain_id)
        assert head is not None
    return head


async def _frontier(db: Runner, chain_id: str, head: Any) -> tuple[Frontier, list[Node]]:
    """The head's compact range, caught up with entries sequenced without it (an application
    older than migration 0008 during a rolling upgrade, or a head that was tampered with)."""
    sequenced = head["sequence_number"]
    frontier = Frontier.load(head["frontier_size"], head["frontier"])
    if frontier is None or frontier.size > sequenced:
        frontier = Frontier()  # unusable: rebuilt from the entries
    nodes: list[Node] = []
    if frontier.size < sequenced:
        rows = await db.rows(SEQUENCED_BETWEEN, chain=chain_id, after=frontier.size, upto=sequenced)
        for row in rows:
            nodes += frontier.append(bytes.fromhex(row["record_hash"]))
    return frontier, nodes


async def has_pending(db: Runner, chain_id: str) -> bool:
    return await db.row(HAS_PENDING, chain=chain_id) is not None


async def pending_chains(db: Runner) -> list[str]:
    """Chains with pending entries (as far as the connection's tenant scope can see)."""
    return [row["chain_id"] for row in await db.rows(PENDING_CHAINS)]


async def sequence_in(db: Runner, chain_id: str, *, limit: int = BATCH) -> list[datetime]:
    """Sequence up to ``limit`` pending entries of one chain in the caller's transaction;
    returns their ``createdAt`` (for the delay observers, once committed)."""
    if not await has_pending(db, chain_id):  # no lock taken for nothing
        return []
    head = await _lock_head(db, chain_id)
    taken = await db.rows(TAKE, chain=chain_id, limit=limit)
    rows = sorted(taken, key=lambda row: row["position"])
    if not rows:
        return []  # a peer sequenced them while this one waited for the lock
    frontier, nodes = await _frontier(db, chain_id, head)
    sequence, previous = head["sequence_number"], head["head_hash"]
    entries = []
    for row in rows:
        sequence += 1
        values = {c.name: row[c.name] for c in _MOVED}
        entry = SimpleNamespace(
            **values, sequence_number=sequence, previous_hash=previous, record_hash=None
        )
        record_hash = expected_record_hash(to_document(entry))
        nodes += frontier.append(bytes.fromhex(record_hash))
        values.update(
            changes=values["changes"].encode(),  # moved as stored: its canonical text
            sequence_number=sequence,
            previous_hash=previous,
            record_hash=record_hash,
        )
        entries.append(values)
        previous = record_hash
    await db.execute_many(INSERT_LOG, entries)
    keep = stored(nodes)
    if keep:
        tenant_id = tenant_of(chain_id)
        await db.execute_many(
            INSERT_NODE,
            [
                {
                    "chain_id": chain_id,
                    "level": level,
                    "node_index": index,
                    "tenant_id": tenant_id,
                    "hash": value,
                }
                for level, index, value in keep
            ],
        )
    await db.execute(
        ADVANCE_HEAD,
        chain=chain_id,
        sequence_number=sequence,
        head_hash=previous,
        frontier=frontier.dump(),
        frontier_size=frontier.size,
    )
    return [row["created_at"] for row in rows]


def _observe(created: list[datetime]) -> None:
    if created:
        now = utcnow()
        observe.entries_sequenced((now - c).total_seconds() for c in created)


@asynccontextmanager
async def _own_transaction(engine: AsyncEngine) -> AsyncIterator[Reader]:
    """A short transaction spanning all tenants (the sequencer moves any tenant's entries),
    on a pooled connection whose RLS context says so (:func:`kanvaro.reads.open_reader`)."""
    async with open_reader(engine, tenant_id=None, all_tenants=True) as db, db.transaction():
        yield db


async def sequence_pending(engine: AsyncEngine, chain_id: str) -> int:
    """Sequence everything pending for the chain, a batch per short transaction."""
    total = 0
    while True:
        async with _own_transaction(engine) as conn:
            created = await sequence_in(conn, chain_id)
        _observe(created)
        total += len(created)
        if len(created) < BATCH:
            return total


async def sweep(engine: AsyncEngine) -> int:
    """Every chain's pending entries (the periodic job; nothing stays pending after a crash)."""
    async with _own_transaction(engine) as conn:
        chains = await pending_chains(conn)
    return sum([await sequence_pending(engine, chain_id) for chain_id in chains])


async def settle(session: AsyncSession, chain_id: str | None = None) -> None:
    """Sequence what is pending for one chain (None: every chain the session can see) before a
    read that must be complete: verification, export, checkpoints, proofs, the log listing.

    On PostgreSQL it runs in short transactions of its own, so the caller's transaction (READ
    COMMITTED) sees the result and holds no chain lock. On SQLite the caller's transaction
    already holds the database write lock (a second one would wait for it): it runs inside it.
    """
    here = SessionReader(session)
    chains = [chain_id] if chain_id is not None else await pending_chains(here)
    if session.bind.dialect.name != "sqlite":
        for chain in chains:
            await sequence_pending(session.bind, chain)
        return
    created: list[datetime] = []
    for chain in chains:
        while len(batch := await sequence_in(here, chain)) == BATCH:
            created += batch
        created += batch

    async def report() -> None:
        _observe(created)

    if created:
        on_commit(session, report)
