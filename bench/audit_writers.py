"""Concurrent writers for bench_audit: each transaction inserts one row and, depending on the
mode, its audit entry, the way a request does (``Database.session`` with a tenant, so the
RLS context is set at BEGIN as in a request).

* ``no_audit``: the row only (the baseline);
* ``sequenced``: the row and ``audit.record()``, sequenced after commit by the background
  sequencer a server process runs;
* ``head_lock``: the row and an entry appended the way ``record()`` did before migration 0008
  (the chain head locked with ``SELECT ... FOR UPDATE`` inside the writer's transaction, held
  until its commit), on a chain of its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from kanvaro.audit import observe, worker
from kanvaro.audit import service as audit
from kanvaro.audit.chain import expected_record_hash
from kanvaro.audit.hashing import GENESIS_HASH, content_digest, new_salt, timestamp
from kanvaro.audit.models import AuditChainHead, AuditLog
from kanvaro.db import Database, utcnow

MODES = ("no_audit", "sequenced", "head_lock")
_ROWS = (
    "CREATE TABLE IF NOT EXISTS bench_audit_rows "
    "(id VARCHAR(36) PRIMARY KEY, tenant_id VARCHAR(36) NOT NULL, n INTEGER NOT NULL)"
)
_INSERT = text("INSERT INTO bench_audit_rows (id, tenant_id, n) VALUES (:id, :t, :n)")


async def _head_locked_record(session: Any, tenant_id: uuid.UUID, n: int) -> None:
    """The append of the design before the sequencer (kept here only as the comparison)."""
    chain = str(tenant_id)
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(AuditChainHead.__table__)
        .values(chain_id=chain, tenant_id=tenant_id, sequence_number=0, head_hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["chain_id"])
    )
    seq, previous = (
        await session.execute(
            select(AuditChainHead.sequence_number, AuditChainHead.head_hash)
            .where(AuditChainHead.chain_id == chain)
            .with_for_update()
        )
    ).one()
    salt, created, changes = new_salt(), utcnow(), {"n": n}
    digest = content_digest(salt, changes=changes, ip_address=None, user_agent=None)
    entry_id = uuid.uuid4()
    record_hash = expected_record_hash(
        {"sequenceNumber": seq + 1, "id": str(entry_id), "chainId": chain, "tenantId": chain,
         "actorId": None, "action": "bench:row:create", "resourceType": "row",
         "resourceId": str(n), "category": "system", "createdAt": timestamp(created),
         "contentDigest": digest, "previousHash": previous}
    )  # fmt: skip
    await session.execute(
        AuditLog.__table__.insert().values(
            id=entry_id, chain_id=chain, tenant_id=tenant_id, sequence_number=seq + 1,
            action="bench:row:create", resource_type="row", resource_id=str(n),
            changes=changes, category="system", created_at=created, previous_hash=previous,
            record_hash=record_hash, content_salt=salt, content_digest=digest,
        )
    )  # fmt: skip
    await session.execute(
        AuditChainHead.__table__.update()
        .where(AuditChainHead.chain_id == chain)
        .values(sequence_number=seq + 1, head_hash=record_hash)
    )


async def _load(db: Database, mode: str, writers: int, seconds: float) -> dict[str, Any]:
    tenant_id = uuid.uuid4()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def writer() -> None:
        while time.perf_counter() < deadline:
            n, start = next(counter), time.perf_counter()
            async with db.session(tenant_id=tenant_id) as session:
                await session.execute(
                    _INSERT, {"id": str(uuid.uuid4()), "t": str(tenant_id), "n": n}
                )
                if mode == "sequenced":
                    await audit.record(
                        session, action="bench:row:create", category="system",
                        tenant_id=tenant_id, resource_type="row", resource_id=n,
                        changes={"n": n},
                    )  # fmt: skip
                elif mode == "head_lock":
                    await _head_locked_record(session, tenant_id, n)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "transactions_per_s": round(len(ordered) / elapsed, 1),
        "latency_ms_p50": round(ordered[len(ordered) // 2] * 1e3, 2),
        "latency_ms_p99": round(ordered[int(len(ordered) * 0.99)] * 1e3, 2),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def append_loads(db: Database, writer_counts: tuple[int, ...], seconds: float) -> dict:
    """Every mode at every writer count; the sequencing delay of the sequenced mode."""
    async with db.engine.begin() as conn:
        await conn.execute(text(_ROWS))
    background = worker.register(db.engine)  # as in a server process
    delays: list[float] = []
    results: dict[str, Any] = {}
    try:
        for writers in writer_counts:
            row: dict[str, Any] = {}
            for mode in MODES:
                delays.clear()
                if mode == "sequenced":
                    observe.sequenced.append(delays.append)
                try:
                    row[mode] = await _load(db, mode, writers, seconds)
                    await background.drain()
                finally:
                    if mode == "sequenced":
                        observe.sequenced.remove(delays.append)
                if mode == "sequenced" and delays:
                    row[mode]["sequencing_delay_ms_p50"] = round(_percentile(delays, 0.5) * 1e3, 2)
                    row[mode]["sequencing_delay_ms_p99"] = round(_percentile(delays, 0.99) * 1e3, 2)
                    row[mode]["sequencing_delay_ms_max"] = round(max(delays) * 1e3, 2)
            base = row["no_audit"]["transactions_per_s"]
            for mode in ("sequenced", "head_lock"):
                row[mode]["throughput_vs_no_audit"] = round(
                    row[mode]["transactions_per_s"] / base, 3
                )
            results[f"writers_{writers}"] = row
    finally:
        await background.close()
    return results
