"""Migrations 0002 and 0008 go down and up again on SQLite and PostgreSQL, keeping the audit
guards; 0008 upgrades a database that already has a chain."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import merkle, sequencer
from kanvaro.audit import service as audit
from kanvaro.audit.chain import expected_record_hash
from kanvaro.audit.hashing import GENESIS_HASH, content_digest, new_salt, timestamp
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditChainHead, AuditLog, AuditMerkleNode
from kanvaro.audit.tree import Frontier, StoredTree, stored
from kanvaro.audit.verify import verify_chain
from kanvaro.db import Database, UTCDateTime, set_tenant, utcnow
from kanvaro.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database


async def _columns(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("audit_logs")}
        )


async def test_0002_down_and_up(tmp_path):
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0002")
        assert {"content_salt", "content_digest"} <= await _columns(db)
        await asyncio.to_thread(command.downgrade, config, "0001")
        assert not {"content_salt", "content_digest"} & await _columns(db)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "audit_checkpoints" not in tables and "audit_signing_keys" not in tables
        await asyncio.to_thread(command.upgrade, config, "0002")
        assert {"content_salt", "content_digest"} <= await _columns(db)
        # the append-only triggers of audit_logs survived the column changes
        async with db.engine.connect() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await conn.execute(
                text(
                    "INSERT INTO audit_logs (id, chain_id, sequence_number, action, changes, "
                    "category, created_at, previous_hash, record_hash) VALUES ("
                    "'0f0e0d0c0b0a09080706050403020100', 'instance', 1, 'a:b:c', '{}', "
                    "'system', CURRENT_TIMESTAMP, :h, :h)"
                ),
                {"h": "0" * 64},
            )
            with pytest.raises(DBAPIError, match="append-only"):
                await conn.execute(text("DELETE FROM audit_logs"))
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)


# -- 0008: entries sequenced after commit, the stored Merkle tree --------------------------------

OLD_LOGS = sa.table(
    "audit_logs",
    *(sa.column(name, sa.Uuid) for name in ("id", "tenant_id", "actor_id")),
    *(
        sa.column(name, sa.String)
        for name in ("chain_id", "action", "category", "previous_hash", "record_hash")
    ),
    *(sa.column(name, sa.String) for name in ("ip_address", "user_agent", "content_salt")),
    sa.column("content_digest", sa.String),
    sa.column("sequence_number", sa.BigInteger),
    sa.column("changes", sa.JSON),  # json.dumps, as the application wrote it before 0008
    sa.column("created_at", UTCDateTime()),
)
OLD_HEADS = sa.table(
    "audit_chain_heads",
    sa.column("chain_id", sa.String),
    sa.column("tenant_id", sa.Uuid),
    sa.column("sequence_number", sa.BigInteger),
    sa.column("head_hash", sa.String),
)


async def _old_chain(db: Database, entries: int) -> tuple[uuid.UUID, list[bytes]]:
    """A chain written the way the application did before 0008 (entry and head together)."""
    tenant_id = uuid.uuid4()
    chain, previous, rows, leaves = str(tenant_id), GENESIS_HASH, [], []
    for n in range(1, entries + 1):
        salt, created = new_salt(), utcnow()
        changes = {"n": n, "name": f"entry {n}"}
        digest = content_digest(salt, changes=changes, ip_address="198.51.100.1", user_agent="ua")
        row = {
            "id": uuid.uuid4(),
            "chain_id": chain,
            "tenant_id": tenant_id,
            "actor_id": None,
            "action": "old:entry:create",
            "category": "system",
            "ip_address": "198.51.100.1",
            "user_agent": "ua",
            "content_salt": salt,
            "content_digest": digest,
            "sequence_number": n,
            "changes": changes,
            "created_at": created,
            "previous_hash": previous,
        }
        doc = {
            "sequenceNumber": n,
            "id": str(row["id"]),
            "chainId": chain,
            "tenantId": chain,
            "actorId": None,
            "action": row["action"],
            "resourceType": None,
            "resourceId": None,
            "category": "system",
            "createdAt": timestamp(created),
            "contentDigest": digest,
            "previousHash": previous,
        }
        previous = row["record_hash"] = expected_record_hash(doc)
        rows.append(row)
        leaves.append(bytes.fromhex(previous))
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
        await conn.execute(OLD_LOGS.insert(), rows)
        await conn.execute(
            OLD_HEADS.insert().values(
                chain_id=chain, tenant_id=tenant_id, sequence_number=entries, head_hash=previous
            )
        )
    return tenant_id, leaves


async def test_0008_upgrades_a_database_with_entries_and_goes_down_again(tmp_path):
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm8.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0007")
        tenant_id, leaves = await _old_chain(db, 37)
        chain = str(tenant_id)
        await asyncio.to_thread(command.upgrade, config, "heads")
        expected, nodes = Frontier(), []
        for leaf in leaves:
            nodes += stored(expected.append(leaf))
        async with db.session(tenant_id=tenant_id) as session:
            head = await session.get(AuditChainHead, chain)
            assert (head.frontier_size, head.frontier) == (37, expected.dump())
            found = (
                await session.execute(
                    select(AuditMerkleNode.level, AuditMerkleNode.index, AuditMerkleNode.hash)
                    .where(AuditMerkleNode.chain_id == chain)
                    .order_by(AuditMerkleNode.level, AuditMerkleNode.index)
                )
            ).all()
            assert [tuple(r) for r in found] == sorted(nodes)
            # the old entries (changes stored by json.dumps) verify, and the chain goes on
            await audit.record(
                session, action="new:entry:create", category="system", tenant_id=tenant_id
            )
        async with db.session(tenant_id=tenant_id) as session:
            report = await verify_chain(session, chain, TrustedKeys([]))
            assert report.ok and report.entries == 38
            new_leaf = (
                await session.execute(
                    select(AuditLog.record_hash).where(
                        AuditLog.chain_id == chain, AuditLog.sequence_number == 38
                    )
                )
            ).scalar_one()
            all_leaves = [*leaves, bytes.fromhex(new_leaf)]
            path, root = await StoredTree(session, chain).inclusion(3, 38)
            assert path == merkle.inclusion_proof(all_leaves, 3)
            assert root == merkle.root(all_leaves)
        # A committed entry still pending would be lost by going down: refused.
        async with AsyncSession(db.engine) as session:
            set_tenant(session, tenant_id)
            await audit.record(
                session, action="new:entry:create", category="system", tenant_id=tenant_id
            )
            await session.commit()  # its after-commit kick never runs
        with pytest.raises(RuntimeError, match="still pending"):
            await asyncio.to_thread(command.downgrade, config, "0007")
        await sequencer.sweep(db.engine)
        await asyncio.to_thread(command.downgrade, config, "0007")
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            heads = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("audit_chain_heads")}
            )
        assert not {"audit_pending", "audit_merkle_nodes"} & tables
        assert "frontier" not in heads
        await asyncio.to_thread(command.upgrade, config, "heads")
        async with db.session(tenant_id=tenant_id) as session:
            assert (await verify_chain(session, chain, TrustedKeys([]))).entries == 39
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)
