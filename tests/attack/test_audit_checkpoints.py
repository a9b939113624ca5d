"""Issue 7 point 2: online verification and checkpoint issuance trust only signed notes.

The attacker has database access (not the master key): he rewrites an entry, recomputes the
chain, the head and the unsigned ``audit_checkpoints.root_hash`` column, or goes further and
signs a checkpoint with a key of his own (even planting its public half in the key table).
Before the fix the server compared with the column, reported "intact" and signed the forged
history on top.
"""

from __future__ import annotations

import io
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update

from kanvaro.audit import checkpoints, merkle
from kanvaro.audit import service as audit
from kanvaro.audit.chain import expected_record_hash, to_document
from kanvaro.audit.export import write_export
from kanvaro.audit.keys import load_signer, load_trusted, rotate_signer
from kanvaro.audit.models import AuditChainHead, AuditCheckpoint, AuditLog, AuditSigningKey
from kanvaro.audit.note import Checkpoint, Verifier, open_checkpoint, sign_checkpoint
from kanvaro.audit.offline import verify_export
from kanvaro.audit.verify import verify_chain
from kanvaro.migrations import guards
from tests.audit.conftest import throwaway  # noqa: F401 - the tamperable database fixture

MASTER = b"a" * 43
NAME = "attack.test/kanvaro-audit"


async def _tamper_checkpoints(throwaway, statement):  # noqa: F811
    """An UPDATE on the append-only checkpoints, its guards out of the way (as the owner)."""
    async with throwaway.db.engine.connect() as conn:
        if throwaway.dialect == "postgresql":
            await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await conn.exec_driver_sql("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER")
        else:
            await conn.run_sync(guards._drop_append_only, "audit_checkpoints")
        await conn.execute(statement)
        if throwaway.dialect == "postgresql":
            await conn.exec_driver_sql("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER")
        else:
            await conn.run_sync(guards._append_only, "audit_checkpoints")
        await conn.commit()


async def _keys(db):
    async with db.session(all_tenants=True) as session:
        return await load_signer(session, MASTER, name=NAME), await load_trusted(session, MASTER)


async def _signed_chain(throwaway, entries):  # noqa: F811
    tenant_id = await throwaway.chain(entries)
    signer, trusted = await _keys(throwaway.db)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        row, created = await checkpoints.issue(session, signer, trusted, str(tenant_id), tenant_id)
    assert created and row.tree_size == entries
    return tenant_id


async def _rewrite_entry_two(throwaway, tenant_id):  # noqa: F811
    """Edit entry 2 and recompute every later hash, the head and the checkpoint column."""
    chain = str(tenant_id)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        rows = (
            await session.execute(
                select(AuditLog)
                .where(AuditLog.chain_id == chain)
                .order_by(AuditLog.sequence_number)
            )
        ).scalars()
        docs = [to_document(r) for r in rows]
    docs[1]["action"] = "test:entry:forged"
    statements, previous = [], docs[0]["recordHash"]
    for doc in docs[1:]:
        doc["previousHash"] = previous
        doc["recordHash"] = previous = expected_record_hash(doc)
        ident = doc["id"] if throwaway.dialect == "postgresql" else doc["id"].replace("-", "")
        statements.append(
            "UPDATE audit_logs SET action = '{action}', previous_hash = '{previousHash}', "
            "record_hash = '{recordHash}' WHERE id = '{ident}'".format(**doc, ident=ident)
        )
    await throwaway.tamper(*statements)
    forged_root = merkle.root([bytes.fromhex(d["recordHash"]) for d in docs])
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        head = await session.get(AuditChainHead, chain)
        head.head_hash = previous
    await _tamper_checkpoints(
        throwaway,
        update(AuditCheckpoint)
        .where(AuditCheckpoint.chain_id == chain)
        .values(root_hash=forged_root.hex()),
    )
    return forged_root


async def _verify(throwaway, tenant_id):  # noqa: F811
    _, trusted = await _keys(throwaway.db)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        return await verify_chain(session, str(tenant_id), trusted)


async def _issue_after_one_more(throwaway, tenant_id):  # noqa: F811
    signer, trusted = await _keys(throwaway.db)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await audit.record(
            session, action="test:entry:create", category="system", tenant_id=tenant_id
        )
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await checkpoints.issue(session, signer, trusted, str(tenant_id), tenant_id)


async def test_a_rewrite_with_a_recomputed_root_column_is_reported_and_not_signed(throwaway):  # noqa: F811
    tenant_id = await _signed_chain(throwaway, 4)
    await _rewrite_entry_two(throwaway, tenant_id)
    report = await _verify(throwaway, tenant_id)
    assert not report.ok
    assert report.broken.kind == "altered" and "signed checkpoint" in report.broken.message
    with pytest.raises(checkpoints.ChainBroken):
        await _issue_after_one_more(throwaway, tenant_id)


async def test_a_checkpoint_signed_by_the_attackers_key_is_a_forged_checkpoint(throwaway):  # noqa: F811
    tenant_id = await _signed_chain(throwaway, 4)
    forged_root = await _rewrite_entry_two(throwaway, tenant_id)
    # His own key under the instance's key name, its public half planted in the key table.
    own = Ed25519PrivateKey.generate()
    public = own.public_key().public_bytes_raw()
    planted = Verifier.from_public(NAME, public)
    note = sign_checkpoint(Checkpoint(f"{NAME}/{tenant_id}", 4, forged_root), NAME, own)
    async with throwaway.db.session(all_tenants=True) as session:
        session.add(
            AuditSigningKey(
                key_id=planted.key_id.hex(),
                name=NAME,
                public_key=public,
                private_key_encrypted=b"\0" * 60,
                is_active=False,
            )
        )
    await _tamper_checkpoints(
        throwaway,
        update(AuditCheckpoint)
        .where(AuditCheckpoint.chain_id == str(tenant_id))
        .values(signed_note=note, key_id=planted.key_id.hex()),
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (4, "forged_checkpoint")
    assert report.to_dict()["breakKind"] == "forged_checkpoint"
    with pytest.raises(checkpoints.ChainBroken):
        await _issue_after_one_more(throwaway, tenant_id)
    async with throwaway.db.session(all_tenants=True) as session:
        await session.execute(
            AuditSigningKey.__table__.delete().where(AuditSigningKey.key_id == planted.key_id.hex())
        )


async def test_an_unsigned_checkpoint_is_a_forged_checkpoint(throwaway):  # noqa: F811
    tenant_id = await _signed_chain(throwaway, 3)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        row = (
            await session.execute(
                select(AuditCheckpoint).where(AuditCheckpoint.chain_id == str(tenant_id))
            )
        ).scalar_one()
    await _tamper_checkpoints(
        throwaway,
        update(AuditCheckpoint)
        .where(AuditCheckpoint.id == row.id)
        .values(signed_note=row.signed_note.partition("\n\n")[0] + "\n\n"),
    )
    report = await _verify(throwaway, tenant_id)
    assert (report.broken.sequence, report.broken.kind) == (3, "forged_checkpoint")


async def test_old_checkpoints_keep_verifying_after_a_key_rotation(throwaway):  # noqa: F811
    tenant_id = await _signed_chain(throwaway, 3)
    old_signer, _ = await _keys(throwaway.db)
    async with throwaway.db.session(all_tenants=True) as session:
        new_signer, cosigned = await rotate_signer(session, MASTER, name=NAME)
    assert cosigned >= 1 and new_signer.verifier != old_signer.verifier
    signer, trusted = await _keys(throwaway.db)
    assert signer.verifier == new_signer.verifier and len(trusted.verifiers) == 2
    report = await _verify(throwaway, tenant_id)
    assert report.ok and report.checkpoints_checked == 1 and report.signed_size == 3
    # An auditor who pins only the new key verifies the old checkpoint (co-signed) too, and
    # whoever pinned the old key still verifies it.
    out = io.BytesIO()
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await audit.record(
            session, action="test:entry:create", category="system", tenant_id=tenant_id
        )
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await write_export(session, signer, trusted, str(tenant_id), tenant_id, out)
    summary = verify_export(out.getvalue().splitlines(), new_signer.verifier)
    assert summary.entries == 4 and summary.checkpoints == 2
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        old = await session.execute(
            select(AuditCheckpoint.signed_note).where(
                AuditCheckpoint.chain_id == str(tenant_id), AuditCheckpoint.tree_size == 3
            )
        )
        note = old.scalar_one()
    assert open_checkpoint(note, old_signer.verifier).tree_size == 3
    assert uuid.UUID(str(tenant_id))
