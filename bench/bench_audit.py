"""Audit log costs, measured in one run: appends/s, verification records/s, canonical JSON.

Run: ``.venv/bin/python bench/bench_audit.py`` (well under a minute). Writes
``bench/results/audit.json``. Uses a throwaway SQLite database (the embedded default), one
transaction per append as in a request, and the same code paths as the server.
"""

from __future__ import annotations

import asyncio
import json
import platform
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import rfc8785

from kanvaro.audit import merkle
from kanvaro.audit import service as audit
from kanvaro.audit.chain import to_document
from kanvaro.audit.hashing import canonical_json
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import AuditContext
from kanvaro.audit.verify import ChainWalker, verify_chain
from kanvaro.db import Database
from kanvaro.migrate import upgrade

APPENDS = 1500
RESULTS = Path(__file__).parent / "results" / "audit.json"


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


async def _database_numbers(tmp: Path) -> dict:
    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    tenant_id = uuid.uuid4()
    context = AuditContext(uuid.uuid4(), "203.0.113.7", "bench")
    start = time.perf_counter()
    for i in range(APPENDS):
        async with db.session(tenant_id=tenant_id) as session:
            await audit.record(
                session,
                action="api:project:update",
                category="business_operations",
                tenant_id=tenant_id,
                context=context,
                resource_type="project",
                resource_id=i,
                changes={"before": {"name": f"P{i}"}, "after": {"name": f"P{i}!"}},
            )
    append_seconds = time.perf_counter() - start

    start = time.perf_counter()
    async with db.session(tenant_id=tenant_id) as session:
        report = await verify_chain(session, str(tenant_id))
    verify_seconds = time.perf_counter() - start
    assert report.ok and report.entries == APPENDS

    from sqlalchemy import select

    async with db.session(tenant_id=tenant_id) as session:
        rows = (
            await session.execute(
                select(AuditLog)
                .where(AuditLog.chain_id == str(tenant_id))
                .order_by(AuditLog.sequence_number)
            )
        ).scalars()
        docs = [to_document(r) for r in rows]
    await db.dispose()

    start = time.perf_counter()
    walker = ChainWalker(str(tenant_id))
    for doc in docs:
        assert walker.step(doc) is None
    walk_seconds = time.perf_counter() - start

    leaves = [bytes.fromhex(d["recordHash"]) for d in docs]
    start = time.perf_counter()
    merkle.root(leaves)
    root_seconds = time.perf_counter() - start
    return {
        "appends": APPENDS,
        "appends_per_second_sqlite_one_tx_each": round(APPENDS / append_seconds, 1),
        "verify_records_per_second_sqlite": round(APPENDS / verify_seconds, 1),
        "verify_records_per_second_in_memory": round(APPENDS / walk_seconds, 1),
        "merkle_root_leaves_per_second": round(APPENDS / root_seconds, 1),
    }


def main() -> None:
    record = _sample_record()
    assert canonical_json(record) == rfc8785.dumps(record)
    fast = _per_call(canonical_json, record)
    orjson_only = _per_call(lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS), record)
    reference = _per_call(rfc8785.dumps, record)
    with tempfile.TemporaryDirectory() as tmp:
        numbers = asyncio.run(_database_numbers(Path(tmp)))
    results = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "record_bytes": len(canonical_json(record)),
        "canonical_json_us": {
            "kanvaro_canonical_json": round(fast * 1e6, 2),
            "orjson_sorted": round(orjson_only * 1e6, 2),
            "rfc8785": round(reference * 1e6, 2),
        },
        "rfc8785_over_canonical_json_ratio": round(reference / fast, 1),
        **numbers,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
