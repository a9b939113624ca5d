"""Verification finds the first broken sequence number and names the kind of break, for
tampering done directly in the database with the append-only triggers bypassed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from kanvaro.audit import checkpoints
from kanvaro.audit.chain import expected_record_hash, to_document
from kanvaro.audit.keys import load_signer, load_trusted
from kanvaro.audit.models import AuditChainHead, AuditLog
from kanvaro.audit.verify import ChainWalker, NeedsLocate, verify_chain
from tests.audit.conftest import run_cli

WHERE = "chain_id = :chain AND sequence_number"
MASTER = b"m" * 43


async def _verify(throwaway, tenant_id):
    async with throwaway.db.session(all_tenants=True) as session:
        trusted = await load_trusted(session, MASTER)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        return await verify_chain(session, str(tenant_id), trusted)


async def test_an_intact_chain_verifies(throwaway):
    tenant_id = await throwaway.chain(5)
    report = await _verify(throwaway, tenant_id)
    assert report.ok and report.entries == 5 and report.broken is None
    assert report.to_dict()["firstBrokenSequence"] is None


async def test_an_altered_header_field(throwaway):
    tenant_id = await throwaway.chain(6)
    await throwaway.tamper(
        f"UPDATE audit_logs SET action = 'test:entry:delete' WHERE {WHERE} = 3",
        chain=str(tenant_id),
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (3, "altered")


async def test_altered_content(throwaway):
    tenant_id = await throwaway.chain(6)
    await throwaway.tamper(
        f"UPDATE audit_logs SET ip_address = '10.6.6.6' WHERE {WHERE} = 4", chain=str(tenant_id)
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (4, "altered")
    assert "content" in report.broken.message


async def test_a_deleted_record(throwaway):
    tenant_id = await throwaway.chain(6)
    await throwaway.tamper(f"DELETE FROM audit_logs WHERE {WHERE} = 3", chain=str(tenant_id))
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (3, "missing")


async def test_a_deleted_record_with_the_rest_renumbered(throwaway):
    tenant_id = await throwaway.chain(6)
    await throwaway.tamper(
        f"DELETE FROM audit_logs WHERE {WHERE} = 3",
        *(
            f"UPDATE audit_logs SET sequence_number = {n - 1} WHERE {WHERE} = {n}"
            for n in range(4, 7)
        ),
        chain=str(tenant_id),
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (3, "missing")


async def test_a_deleted_last_record_is_caught_by_the_chain_head(throwaway):
    tenant_id = await throwaway.chain(4)
    await throwaway.tamper(f"DELETE FROM audit_logs WHERE {WHERE} = 4", chain=str(tenant_id))
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (4, "missing")


async def test_reordered_records(throwaway):
    tenant_id = await throwaway.chain(6)
    await throwaway.tamper(
        f"UPDATE audit_logs SET sequence_number = -1 WHERE {WHERE} = 3",
        f"UPDATE audit_logs SET sequence_number = 3 WHERE {WHERE} = 4",
        f"UPDATE audit_logs SET sequence_number = 4 WHERE {WHERE} = -1",
        chain=str(tenant_id),
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (3, "reordered")


async def test_a_fork(throwaway):
    """A second entry computed against an old head (entry 2): two claim the same predecessor."""
    tenant_id = await throwaway.chain(5)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        second = (
            await session.execute(
                select(AuditLog).where(
                    AuditLog.chain_id == str(tenant_id), AuditLog.sequence_number == 3
                )
            )
        ).scalar_one()
        doc = to_document(second)
        forged = AuditLog(
            **{c.key: getattr(second, c.key) for c in AuditLog.__table__.columns if c.key != "id"},
            id=uuid.uuid4(),
        )
        forged.sequence_number = 6
        forged.record_hash = expected_record_hash(
            {**doc, "id": str(forged.id), "sequenceNumber": 6}
        )
        session.add(forged)
        head = await session.get(AuditChainHead, str(tenant_id))
        head.sequence_number, head.head_hash = 6, forged.record_hash
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (6, "fork")
    assert "entry 2" in report.broken.message


async def test_a_consistently_rewritten_chain_is_caught_by_its_checkpoint(throwaway):
    """Recomputing every hash after an edit fools the chain, not the signed Merkle root."""
    tenant_id = await throwaway.chain(4)
    async with throwaway.db.session(all_tenants=True) as session:
        signer = await load_signer(session, MASTER, name="test/kanvaro-audit")
        trusted = await load_trusted(session, MASTER)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        assert (await checkpoints.issue(session, signer, trusted, str(tenant_id), tenant_id))[1]
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        rows = (
            (
                await session.execute(
                    select(AuditLog)
                    .where(AuditLog.chain_id == str(tenant_id))
                    .order_by(AuditLog.sequence_number)
                )
            )
            .scalars()
            .all()
        )
        docs = [to_document(r) for r in rows]
    docs[1]["action"] = "test:entry:forged"
    statements, previous = [], docs[0]["recordHash"]
    for doc in docs[1:]:
        doc["previousHash"] = previous
        doc["recordHash"] = previous = expected_record_hash(doc)
        # the stored form of the id: SQLite keeps UUIDs as 32 hex digits
        ident = doc["id"] if throwaway.dialect == "postgresql" else doc["id"].replace("-", "")
        statements.append(
            "UPDATE audit_logs SET action = '{action}', previous_hash = '{previousHash}', "
            "record_hash = '{recordHash}' WHERE id = '{ident}'".format(**doc, ident=ident)
        )
    await throwaway.tamper(*statements)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        head = await session.get(AuditChainHead, str(tenant_id))
        head.head_hash = previous
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (1, "altered")
    assert "checkpoint" in report.broken.message
    # and a new checkpoint refuses to sign the rewritten past
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await _append(session, tenant_id)
    with pytest.raises(checkpoints.ChainBroken):
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            await checkpoints.issue(session, signer, trusted, str(tenant_id), tenant_id)


async def _append(session, tenant_id):
    from kanvaro.audit import service as audit

    await audit.record(session, action="test:entry:create", category="system", tenant_id=tenant_id)


def test_duplicate_sequence_numbers_are_a_fork():
    walker = ChainWalker("c")
    first = {"sequenceNumber": 1, "previousHash": "0" * 64}
    doc = {**first, "id": "x", "chainId": "c", "contentDigest": None}
    doc["recordHash"] = expected_record_hash(doc)
    assert walker.step(doc) is None
    broken = walker.step({**doc, "id": "y"})
    assert (broken.sequence, broken.kind) == (1, "fork")
    with pytest.raises(NeedsLocate):
        ChainWalker("c").step({**doc, "previousHash": "1" * 64})


async def test_the_cli_reports_the_break(throwaway, services):
    tenant_id = await throwaway.chain(3)
    await throwaway.tamper(
        f"UPDATE audit_logs SET action = 'x:y:z' WHERE {WHERE} = 2", chain=str(tenant_id)
    )
    code, out, err = await run_cli(
        "audit",
        "verify",
        "--tenant",
        str(tenant_id),
        data_dir=services.settings.data_dir,
        database_url=throwaway.url,
    )
    assert code == 1, err
    assert f"chain {tenant_id}: BROKEN at entry 2 (altered)" in out, err
