"""Build a long audit chain quickly for bench_audit: entries computed in memory with the
application's own definitions (``content_digest``, ``expected_record_hash``, the stored tree's
``Frontier``), then bulk-inserted in big batches, never a million ``record()`` calls.

The result is a chain the application cannot tell from one it sequenced itself: the benchmark
verifies it with ``verify_chain`` before timing anything else on it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kanvaro.audit.chain import expected_record_hash
from kanvaro.audit.hashing import GENESIS_HASH, canonical_json, content_digest, timestamp
from kanvaro.audit.tree import Frontier, Node, stored

CHUNK = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)
ACTORS = [uuid.uuid4() for _ in range(50)]
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"


class Entries:
    """The entries of one new chain, computed chunk by chunk; ``frontier`` and ``head_hash``
    describe the whole chain once iterated."""

    def __init__(self, tenant_id: uuid.UUID, total: int) -> None:
        self.chain = str(tenant_id)
        self.total = total
        self.frontier = Frontier()
        self.head_hash = GENESIS_HASH

    def chunks(self) -> Iterator[tuple[list[dict[str, Any]], list[Node]]]:
        """(entry rows, stored tree nodes) per CHUNK entries."""
        rows: list[dict[str, Any]] = []
        nodes: list[Node] = []
        for seq in range(1, self.total + 1):
            rows.append(self._entry(seq))
            nodes += stored(self.frontier.append(bytes.fromhex(self.head_hash)))
            if len(rows) == CHUNK or seq == self.total:
                yield rows, nodes
                rows, nodes = [], []

    def _entry(self, seq: int) -> dict[str, Any]:
        salt = secrets.token_hex(16)
        changes = {"before": {"name": f"P{seq}"}, "after": {"name": f"P{seq}!"}}
        ip = f"203.0.113.{seq % 250}"
        digest = content_digest(salt, changes=changes, ip_address=ip, user_agent=AGENT)
        row = {
            "id": uuid.uuid4(),
            "actor_id": ACTORS[seq % len(ACTORS)],
            "created_at": START + timedelta(microseconds=seq * 137),
            "resource_id": str(seq),
            "changes": canonical_json(changes).decode(),
            "ip_address": ip,
            "content_salt": salt,
            "content_digest": digest,
            "sequence_number": seq,
            "previous_hash": self.head_hash,
        }
        doc = {
            "sequenceNumber": seq,
            "id": str(row["id"]),
            "chainId": self.chain,
            "tenantId": self.chain,
            "actorId": str(row["actor_id"]),
            "action": "api:project:update",
            "resourceType": "project",
            "resourceId": row["resource_id"],
            "category": "business_operations",
            "createdAt": timestamp(row["created_at"]),
            "contentDigest": digest,
            "previousHash": self.head_hash,
        }
        self.head_hash = row["record_hash"] = expected_record_hash(doc)
        return row


_SQLITE_LOG = (
    "INSERT INTO audit_logs (id, chain_id, tenant_id, sequence_number, actor_id, action, "
    "resource_type, resource_id, changes, ip_address, user_agent, category, created_at, "
    "previous_hash, record_hash, content_salt, content_digest) VALUES (?, ?, ?, ?, ?, "
    "'api:project:update', 'project', ?, ?, ?, ?, 'business_operations', ?, ?, ?, ?, ?)"
)
_PG_LOG = (
    "INSERT INTO audit_logs (id, chain_id, tenant_id, sequence_number, actor_id, action, "
    "resource_type, resource_id, changes, ip_address, user_agent, category, created_at, "
    "previous_hash, record_hash, content_salt, content_digest) "
    "SELECT i, $1, $2, s, a, 'api:project:update', 'project', r, c::json, ip, $3, "
    "'business_operations', t, p, h, salt, d FROM unnest($4::uuid[], $5::bigint[], "
    "$6::uuid[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], "
    "$12::text[], $13::text[], $14::text[]) AS x(i, s, a, r, c, ip, t, p, h, salt, d)"
)


async def build(engine: AsyncEngine, total: int) -> uuid.UUID:
    """A new tenant chain of ``total`` entries, its stored tree and its head."""
    tenant_id = uuid.uuid4()
    entries = Entries(tenant_id, total)
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        tenant = tenant_id if postgres else tenant_id.hex
        # The first statement through SQLAlchemy opens the transaction (BEGIN IMMEDIATE on
        # SQLite); the bulk inserts go through the driver inside it.
        await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)" if postgres
                                else "SELECT 1"))  # fmt: skip
        driver = (await conn.get_raw_connection()).driver_connection
        for rows, nodes in entries.chunks():
            if postgres:
                columns = [[r[name] for r in rows] for name in _PG_COLUMNS]
                await driver.execute(_PG_LOG, entries.chain, tenant_id, AGENT, *columns)
            else:
                await driver.executemany(
                    _SQLITE_LOG,
                    [
                        (r["id"].hex, entries.chain, tenant, r["sequence_number"],
                         r["actor_id"].hex, r["resource_id"], r["changes"], r["ip_address"],
                         AGENT, r["created_at"].strftime("%Y-%m-%d %H:%M:%S.%f"),
                         r["previous_hash"], r["record_hash"], r["content_salt"],
                         r["content_digest"])
                        for r in rows
                    ],
                )  # fmt: skip
            if nodes:
                await conn.execute(
                    text(
                        "INSERT INTO audit_merkle_nodes (chain_id, level, node_index, "
                        "tenant_id, hash) VALUES (:c, :l, :i, :t, :h)"
                    ),
                    [{"c": entries.chain, "l": level, "i": index, "t": tenant, "h": value}
                     for level, index, value in nodes],
                )  # fmt: skip
        await conn.execute(
            text(
                "INSERT INTO audit_chain_heads (chain_id, tenant_id, sequence_number, "
                "head_hash, frontier, frontier_size) VALUES (:c, :t, :n, :h, :f, :n)"
            ),
            {"c": entries.chain, "t": tenant, "n": total, "h": entries.head_hash,
             "f": entries.frontier.dump()},
        )  # fmt: skip
        await conn.commit()
        # Planner statistics for the bulk-loaded rows (autovacuum would get there later; before
        # it does, PostgreSQL sorts a sequential scan instead of walking the index).
        for table in ("audit_logs", "audit_merkle_nodes"):
            await conn.execute(text(f"ANALYZE {table}"))
        await conn.commit()
    return tenant_id


_PG_COLUMNS = ("id", "sequence_number", "actor_id", "resource_id", "changes", "ip_address",
               "created_at", "previous_hash", "record_hash", "content_salt", "content_digest")  # fmt: skip
