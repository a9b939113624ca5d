"""Audit log costs, each as a ratio to a baseline measured in the same run.

* canonical JSON: the fast encoder against the RFC 8785 reference package;
* verification: the hot path against the reference path (entries/s, one core), from memory
  and end to end from the database, over a chain of ``--entries`` (default 1,000,000) built
  by bulk insert (bench/audit_chain.py) and verified intact first;
* proofs at that size: from the stored tree against rebuilding them from every leaf;
* appends with 1, 8 and 32 concurrent writers (PostgreSQL, ``--pg-url``), each its own
  transaction inserting a row plus its audit entry as a request would: against the same
  insert without an entry, and against the design before the sequencer (the chain head
  locked inside the writer's transaction); with the sequencing delay (p50/p99);
* appends with one writer on SQLite, the embedded default.

Run: ``.venv/bin/python bench/bench_audit.py [--pg-url URL] [--entries N] [--seconds S]``.
``--pg-url`` names an empty, migratable PostgreSQL database (the bench migrates it and adds a
table ``bench_audit_rows``); without it nothing is started and only SQLite is measured.
The process pins itself to one core. Writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import rfc8785
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.audit_chain import build
from bench.audit_writers import append_loads
from kanvaro.audit import checkpoints, hotpath, merkle
from kanvaro.audit.chain import to_document
from kanvaro.audit.hashing import canonical_json
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditLog
from kanvaro.audit.tree import StoredTree
from kanvaro.audit.verify import ChainWalker, verify_chain
from kanvaro.db import Database
from kanvaro.migrate import upgrade

RESULTS = Path(__file__).parent / "results" / "audit.json"
IN_MEMORY = 100_000  # entries held in memory for the CPU-only rates
REFERENCE = 10_000  # entries judged by the reference path (it is the slow baseline)
PROOFS = 200


def _sample_record() -> dict:
    """A typical ~550-byte entry document (a project update)."""
    return {
        "id": str(uuid.uuid4()),
        "chainId": str(uuid.uuid4()),
        "tenantId": str(uuid.uuid4()),
        "actorId": str(uuid.uuid4()),
        "action": "api:project:update",
        "resourceType": "project",
        "resourceId": str(uuid.uuid4()),
        "category": "business_operations",
        "createdAt": "2026-11-23T19:50:00.123456Z",
        "changes": {
            "before": {"name": "Apollo", "status": "planning", "budget_minor": 150000},
            "after": {"name": "Apollo II", "status": "active", "budget_minor": 175000},
        },
        "ipAddress": "203.0.113.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0",
        "previousHash": "ab" * 32,
        "sequenceNumber": 123456,
    }


def _per_call(fn, value, seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn(value)
        count += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / count


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean": round(statistics.fmean(ordered) * 1e3, 3),
        "p50": round(ordered[len(ordered) // 2] * 1e3, 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
    }


def _canonical_json() -> dict:
    record = _sample_record()
    assert canonical_json(record) == rfc8785.dumps(record)
    fast = _per_call(canonical_json, record)
    orjson_only = _per_call(lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS), record)
    reference = _per_call(rfc8785.dumps, record)
    return {
        "record_bytes": len(canonical_json(record)),
        "canonical_json_us": {
            "kanvaro_canonical_json": round(fast * 1e6, 2),
            "orjson_sorted": round(orjson_only * 1e6, 2),
            "rfc8785": round(reference * 1e6, 2),
        },
        "rfc8785_over_canonical_json_ratio": round(reference / fast, 1),
    }


async def _cpu_rates(db: Database, chain: str) -> dict:
    """Entries/s of the hot path and of the reference path on entries already in memory."""
    sqlite = db.dialect == "sqlite"
    async with db.session(all_tenants=True) as session:
        rows = await hotpath.read_page(session, chain, 0, IN_MEMORY)
        orm = (
            await session.execute(
                select(AuditLog)
                .where(AuditLog.chain_id == chain, AuditLog.sequence_number <= REFERENCE)
                .order_by(AuditLog.sequence_number)
            )
        ).scalars()
        docs = [to_document(row) for row in orm]
    best = 0.0
    for _ in range(3):  # the best of three: the machine is shared
        walker = ChainWalker(chain)
        start = time.perf_counter()
        index, broken = walker.take(rows, 0, sqlite=sqlite)
        best = max(best, len(rows) / (time.perf_counter() - start))
        assert index == len(rows) and broken is None
    walker = ChainWalker(chain)
    start = time.perf_counter()
    for doc in docs:
        assert walker.step(doc) is None
    reference = len(docs) / (time.perf_counter() - start)
    return {
        "hot_path_entries_per_s": round(best),
        "reference_path_entries_per_s": round(reference),
        "hot_over_reference": round(best / reference, 1),
    }


async def _read_rate(db: Database, chain: str, total: int) -> float:
    """Rows/s of reading the chain alone, as verification reads it (the database's share)."""
    async with db.session(all_tenants=True) as session:
        after, start = 0, time.perf_counter()
        while after < total:
            rows = await hotpath.read_page(session, chain, after, 10_000)
            if not rows:
                break
            after = rows[-1][0]
        return after / (time.perf_counter() - start)


async def _proofs(db: Database, tenant_id: uuid.UUID, size: int) -> dict:
    chain, rng = str(tenant_id), random.Random(9162)
    inclusion, consistency, bundles = [], [], []
    async with db.session(tenant_id=tenant_id) as session:
        tree = StoredTree(session, chain)
        root = await tree.root(size)
        for _ in range(PROOFS):
            index = rng.randrange(size)
            start = time.perf_counter()
            path, at_root = await tree.inclusion(index, size)
            inclusion.append(time.perf_counter() - start)
            assert at_root == root
            first = rng.randrange(1, size)
            start = time.perf_counter()
            proof, first_root, _ = await tree.consistency(first, size)
            consistency.append(time.perf_counter() - start)
            merkle.verify_consistency(first, size, first_root, root, proof)
            start = time.perf_counter()
            bundle = await checkpoints.inclusion_bundle(session, chain, index + 1, size)
            bundles.append(time.perf_counter() - start)
            leaf = bytes.fromhex(bundle["entry"]["recordHash"])
            merkle.verify_inclusion(leaf, index, size, path, root)
        # The baseline: what every proof request did before the stored tree (read every
        # record hash, rebuild from the list). Timed once: it is slow.
        start = time.perf_counter()
        leaves = [
            bytes.fromhex(h)
            for h in (
                await session.execute(
                    select(AuditLog.record_hash)
                    .where(AuditLog.chain_id == chain)
                    .order_by(AuditLog.sequence_number)
                )
            ).scalars()
        ]
        assert (
            merkle.inclusion_proof(leaves, size // 3) == (await tree.inclusion(size // 3, size))[0]
        )
        rebuild = time.perf_counter() - start
    return {
        "database": db.dialect,
        "tree_size": size,
        "inclusion_proof_ms": _ms(inclusion),
        "consistency_proof_ms": _ms(consistency),
        "inclusion_bundle_api_ms": _ms(bundles),
        "baseline_rebuild_from_all_leaves_ms": round(rebuild * 1e3, 1),
        "rebuild_over_stored_inclusion": round(rebuild / statistics.fmean(inclusion)),
    }


async def _chain_numbers(db: Database, entries: int) -> dict:
    start = time.perf_counter()
    tenant_id = await build(db.engine, entries)
    built = time.perf_counter() - start
    chain = str(tenant_id)
    async with db.session(tenant_id=tenant_id) as session:
        start = time.perf_counter()
        report = await verify_chain(session, chain, TrustedKeys([]))
        verify_seconds = time.perf_counter() - start
    assert report.ok and report.entries == entries, report.to_dict()
    read = await _read_rate(db, chain, entries)
    return {
        "entries": entries,
        "build_seconds": round(built, 1),
        "verify_end_to_end_entries_per_s": round(entries / verify_seconds),
        "read_only_rows_per_s": round(read),
        "in_memory": await _cpu_rates(db, chain),
        "proofs": await _proofs(db, tenant_id, entries),
    }


async def _measure(url: str, entries: int, seconds: float, writers: tuple[int, ...]) -> dict:
    await asyncio.to_thread(upgrade, url)
    # Enough connections for 32 writers, the background sequencer and the reads.
    db = Database(url, pool_size=40, max_overflow=10)
    try:
        numbers = {"verification": await _chain_numbers(db, entries)}
        numbers["appends"] = await append_loads(db, writers, seconds)
    finally:
        await db.dispose()
    return numbers


def _pin_to_one_core() -> int | None:
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-url", help="an empty, migratable PostgreSQL database")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--pg-entries", type=int, default=None, help="default: --entries")
    parser.add_argument("--seconds", type=float, default=5.0, help="per append load")
    args = parser.parse_args()
    core = _pin_to_one_core()
    results: dict = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pinned_to_core": core,
            "load_average_at_start": os.getloadavg()[0],
        },
        **_canonical_json(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = asyncio.run(
            _measure(f"sqlite+aiosqlite:///{tmp}/bench.db", args.entries, args.seconds, (1,))
        )
    if args.pg_url:
        results["postgresql"] = asyncio.run(
            _measure(args.pg_url, args.pg_entries or args.entries, args.seconds, (1, 8, 32))
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
