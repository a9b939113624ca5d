"""Entries are written pending in the change's transaction and sequenced after commit: the
commit never waits for the chain lock, one chain stays one line with several sequencers, a
lost kick is swept up, and reads that must be complete sequence first."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from kanvaro.audit import merkle, observe, sequencer, worker
from kanvaro.audit import service as audit
from kanvaro.audit.chain import expected_record_hash
from kanvaro.audit.hashing import timestamp
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditChainHead, AuditLog, AuditPending
from kanvaro.audit.service import AuditContext
from kanvaro.audit.tree import StoredTree
from kanvaro.audit.verify import verify_chain
from kanvaro.db import Database, set_tenant, utcnow

CONTEXT = AuditContext(uuid.uuid4(), "198.51.100.7", "pytest")


async def _record(session, tenant_id, n=0, **fields):
    return await audit.record(
        session,
        action="test:entry:create",
        category="system",
        tenant_id=tenant_id,
        context=CONTEXT,
        resource_type="thing",
        resource_id=n,
        changes={"n": n, **fields},
    )


async def _count(db, model, tenant_id):
    async with db.session(all_tenants=True) as session:
        return await session.scalar(
            select(func.count()).select_from(model).where(model.chain_id == str(tenant_id))
        )


async def _sequences(db, tenant_id):
    async with db.session(all_tenants=True) as session:
        rows = await session.execute(
            select(AuditLog.sequence_number, AuditLog.resource_id)
            .where(AuditLog.chain_id == str(tenant_id))
            .order_by(AuditLog.sequence_number)
        )
        return rows.all()


async def _commit_without_kick(db, tenant_id, n=0):
    """A committed entry whose after-commit callbacks never run (the process died)."""
    async with AsyncSession(db.engine) as session:
        set_tenant(session, tenant_id)
        entry = await _record(session, tenant_id, n)
        await session.commit()
    return entry


async def test_the_entry_is_pending_in_the_changes_transaction(throwaway):
    tenant_id = uuid.uuid4()
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        entry = await _record(session, tenant_id)
        pending = await session.scalar(select(AuditPending).where(AuditPending.id == entry.id))
        assert pending is not None and pending.changes == {"n": 0}
        assert await session.get(AuditLog, entry.id) is None  # no sequence number yet
    # Committed without a background sequencer: sequenced right after the commit, same id.
    moved = await _sequences(throwaway.db, tenant_id)
    assert moved == [(1, "0")] and await _count(throwaway.db, AuditPending, tenant_id) == 0
    async with throwaway.db.session(all_tenants=True) as session:
        assert (await session.get(AuditLog, entry.id)).sequence_number == 1


async def test_the_commit_does_not_wait_for_the_chain_lock(throwaway):
    if throwaway.dialect != "postgresql":
        pytest.skip("SQLite has one database-wide write lock: no chain lock to show")
    tenant_id = await throwaway.chain(1)
    background = worker.register(throwaway.db.engine)
    try:
        async with throwaway.db.engine.connect() as holder:
            # Another transaction holds the chain head, as a slow writer did before the fix.
            await holder.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await holder.execute(
                text("SELECT 1 FROM audit_chain_heads WHERE chain_id = :c FOR UPDATE"),
                {"c": str(tenant_id)},
            )

            async def write() -> None:
                async with throwaway.db.session(tenant_id=tenant_id) as session:
                    await _record(session, tenant_id, 1)

            await asyncio.wait_for(write(), 10)  # the old append blocked here until rollback
            assert await _count(throwaway.db, AuditPending, tenant_id) == 1
            assert await _count(throwaway.db, AuditLog, tenant_id) == 1
            await holder.rollback()
        await background.drain()
    finally:
        await background.close()
    assert [s for s, _ in await _sequences(throwaway.db, tenant_id)] == [1, 2]


async def test_one_transactions_entries_keep_their_order(throwaway):
    tenant_id = uuid.uuid4()
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        for n in range(5):
            await _record(session, tenant_id, n)
    assert await _sequences(throwaway.db, tenant_id) == [(i + 1, str(i)) for i in range(5)]


async def test_two_sequencers_and_many_writers_keep_one_line(throwaway):
    """Two engines stand for two processes, each with its own background sequencer."""
    tenant_id = await throwaway.chain(1)
    other = Database(throwaway.url)
    workers = [worker.register(throwaway.db.engine), worker.register(other.engine)]
    databases = [throwaway.db, other]

    async def writer(k: int) -> None:
        for n in range(4):
            async with databases[k % 2].session(tenant_id=tenant_id) as session:
                await _record(session, tenant_id, k * 10 + n)

    try:
        await asyncio.gather(*(writer(k) for k in range(12)))
        for background in workers:
            await background.drain()
    finally:
        for background in workers:
            await background.close()
        await other.dispose()
    sequences = await _sequences(throwaway.db, tenant_id)
    assert [s for s, _ in sequences] == list(range(1, 50))
    assert {r for _, r in sequences[1:]} == {str(k * 10 + n) for k in range(12) for n in range(4)}
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        assert (await verify_chain(session, str(tenant_id), TrustedKeys([]))).ok
        leaves = [
            bytes.fromhex(h)
            for h in (
                await session.execute(
                    select(AuditLog.record_hash)
                    .where(AuditLog.chain_id == str(tenant_id))
                    .order_by(AuditLog.sequence_number)
                )
            ).scalars()
        ]
        assert await StoredTree(session, str(tenant_id)).root(49) == merkle.root(leaves)


async def test_the_sweep_sequences_entries_whose_kick_was_lost(throwaway, services):
    assert "audit.sequencer" in services.jobs.jobs  # registered with the periodic jobs
    tenant_id = uuid.uuid4()
    for n in range(3):
        await _commit_without_kick(throwaway.db, tenant_id, n)
    assert await _count(throwaway.db, AuditPending, tenant_id) == 3
    assert await _count(throwaway.db, AuditLog, tenant_id) == 0
    assert await sequencer.sweep(throwaway.db.engine) >= 3
    assert [s for s, _ in await _sequences(throwaway.db, tenant_id)] == [1, 2, 3]


async def test_verification_sequences_what_is_pending_first(throwaway):
    tenant_id = await throwaway.chain(2)
    await _commit_without_kick(throwaway.db, tenant_id, 7)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        report = await verify_chain(session, str(tenant_id), TrustedKeys([]))
    assert report.ok and report.entries == 3


async def test_observers_see_each_commit_and_each_sequencing_delay(throwaway):
    appended: list[str] = []
    delays: list[float] = []
    observe.appended.append(appended.append)
    observe.sequenced.append(delays.append)
    tenant_id = uuid.uuid4()
    try:
        with pytest.raises(RuntimeError):
            async with throwaway.db.session(tenant_id=tenant_id) as session:
                await _record(session, tenant_id)
                raise RuntimeError("rolled back: not an append")
        assert appended == [] and delays == []
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            await _record(session, tenant_id, 1)
            await _record(session, tenant_id, 2)
    finally:
        observe.appended.remove(appended.append)
        observe.sequenced.remove(delays.append)
    assert appended == ["system", "system"]
    assert len(delays) == 2 and all(isinstance(d, float) and d >= 0 for d in delays)


async def test_a_pending_entry_edited_before_sequencing(throwaway, monkeypatch):
    """The one new window: a pending row can be changed or deleted by someone with database
    access. Content changed without its digest is caught as `altered`; a consistent edit or a
    deletion is not visible in the database, so the security event (SIEM) carries the entry's
    id and content digest to reconcile against."""
    tenant_id = await throwaway.chain(1)

    async def not_yet(engine, chain_id):  # the sequencer has not come round yet
        return 0

    monkeypatch.setattr(worker.sequencer, "sequence_pending", not_yet)
    with capture_logs() as logs:
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            edited = await _record(session, tenant_id, 1)
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            deleted = await _record(session, tenant_id, 2)
    monkeypatch.undo()
    events = {e["entry_id"]: e for e in logs if e.get("event") == "data_access"}
    assert events[str(deleted.id)]["content_digest"] == deleted.content_digest
    assert str(edited.id) in events
    ident = lambda u: str(u) if throwaway.dialect == "postgresql" else u.hex  # noqa: E731
    async with throwaway.db.engine.begin() as conn:
        if throwaway.dialect == "postgresql":
            await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
        await conn.execute(
            text("UPDATE audit_pending SET ip_address = '10.6.6.6' WHERE id = :id"),
            {"id": ident(edited.id)},
        )
        await conn.execute(
            text("DELETE FROM audit_pending WHERE id = :id"), {"id": ident(deleted.id)}
        )
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        report = await verify_chain(session, str(tenant_id), TrustedKeys([]))
    assert (report.broken.sequence, report.broken.kind) == (2, "altered")
    assert report.entries == 1


async def test_the_sequencer_catches_up_after_an_older_version_appended(throwaway):
    """During a rolling upgrade an application older than migration 0008 appends directly
    (entry, head) without the stored tree; the next sequencing adds what it missed."""
    tenant_id = await throwaway.chain(20)
    chain = str(tenant_id)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        head = await session.get(AuditChainHead, chain)
        doc = {
            "sequenceNumber": 21,
            "id": str(uuid.uuid4()),
            "chainId": chain,
            "tenantId": chain,
            "actorId": None,
            "action": "old:entry:create",
            "resourceType": None,
            "resourceId": None,
            "category": "system",
            "createdAt": timestamp(utcnow()),
            "contentDigest": None,
            "changes": {},
            "ipAddress": None,
            "userAgent": None,
            "previousHash": head.head_hash,
        }
        record_hash = expected_record_hash(doc)
        session.add(
            AuditLog(
                id=uuid.UUID(doc["id"]),
                chain_id=chain,
                tenant_id=tenant_id,
                sequence_number=21,
                action=doc["action"],
                changes={},
                category="system",
                created_at=utcnow().replace(microsecond=0),
                previous_hash=head.head_hash,
                record_hash=record_hash,
            )
        )
        head.sequence_number, head.head_hash = 21, record_hash  # frontier left behind
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await _record(session, tenant_id, 22)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        head = await session.get(AuditChainHead, chain, populate_existing=True)
        assert head.sequence_number == head.frontier_size == 22
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
        path, root = await StoredTree(session, chain).inclusion(20, 22)
        assert root == merkle.root(leaves) and path == merkle.inclusion_proof(leaves, 20)


async def _rounds_for_five_commits(throwaway, monkeypatch, window_seconds):
    """Five entries committed one after another while a background sequencer with this
    window runs: how many sequencing transactions served them."""
    tenant_id = await throwaway.chain(1)
    rounds = []
    real = sequencer.sequence_pending

    async def counted(engine, chain_id):
        rounds.append(chain_id)
        return await real(engine, chain_id)

    monkeypatch.setattr(sequencer, "sequence_pending", counted)
    background = worker.register(throwaway.db.engine, window_seconds=window_seconds)
    try:
        for n in range(5):
            async with throwaway.db.session(tenant_id=tenant_id) as session:
                await _record(session, tenant_id, n)
        await background.drain()
    finally:
        await background.close()
    assert [s for s, _ in await _sequences(throwaway.db, tenant_id)] == list(range(1, 7))
    return sum(1 for chain in rounds if chain == str(tenant_id))


async def test_the_window_lets_one_sequencing_transaction_serve_several_commits(
    throwaway, monkeypatch
):
    if throwaway.dialect != "postgresql":
        pytest.skip("SQLite's committer waits for the sequencing: no window there")
    # Without a window a commit (a few database round trips) often finds the previous entry's
    # round already done and starts one of its own.
    assert await _rounds_for_five_commits(throwaway, monkeypatch, 0.0) >= 2
    # With one, commits arriving within it join the round that is waiting.
    assert await _rounds_for_five_commits(throwaway, monkeypatch, 1.0) == 1


async def test_sqlite_sequences_without_a_window(throwaway):
    background = worker.register(throwaway.db.engine, window_seconds=1.0)
    try:
        expected = 1.0 if throwaway.dialect == "postgresql" else 0.0
        assert background.window == expected
    finally:
        await background.close()
