"""The checkpoint key (sealed under the master key) and periodic checkpoints."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from kanvaro.audit import checkpoints
from kanvaro.audit.keys import WRAP_PURPOSE, load_signer, load_trusted
from kanvaro.audit.models import AuditCheckpoint, AuditLog, AuditSigningKey
from kanvaro.audit.note import open_checkpoint
from kanvaro.jobs import ManualClock
from kanvaro.security.aead import DecryptionError, derive_key, open_sealed
from kanvaro.services import Services
from tests.conftest import make_settings


@pytest.mark.parametrize("wrong", [b"another-master-secret-entirely-0123456789abc"])
async def test_the_checkpoint_key_needs_the_master_key(throwaway, wrong):
    master = b"a-master-secret-for-this-test-only-0123456789"
    async with throwaway.db.session(all_tenants=True) as session:
        signer = await load_signer(session, master, name="test/kanvaro-audit")
        row = (await session.execute(select(AuditSigningKey))).scalars().one()
    raw = signer.private_key.private_bytes_raw()
    assert raw not in row.private_key_encrypted
    assert row.public_key == signer.private_key.public_key().public_bytes_raw()
    assert row.key_id == signer.verifier.key_id.hex()
    wrap = derive_key(master, WRAP_PURPOSE)
    assert open_sealed(wrap, row.private_key_encrypted, row.key_id.encode()) == raw
    with pytest.raises(DecryptionError):
        async with throwaway.db.session(all_tenants=True) as session:
            await load_signer(session, wrong, name="test/kanvaro-audit")
    async with throwaway.db.session(all_tenants=True) as session:  # stable across restarts
        assert (await load_signer(session, master, name="x")).verifier == signer.verifier


async def test_checkpoints_are_issued_periodically(data_dir, database_url, tenant):
    """The periodic job signs a moved chain through the audited action (``job:`` entry), and
    does not sign again for its own entry alone."""
    clock = ManualClock()
    settings = make_settings(data_dir, database_url, audit_checkpoint_interval_seconds=60)
    services = Services.build(settings, clock=clock)
    await services.startup()
    tenant_id = uuid.UUID(tenant.id)
    try:
        async with services.db.session(tenant_id=tenant_id) as session:
            size = await checkpoints.head_size(session, tenant.id)
        assert size > 0
        clock.advance(60)
        assert "audit.checkpoints" in await services.jobs.run_due()
        await services.audit.drain()  # the job's entry is sequenced after its commit
        async with services.db.session(tenant_id=tenant_id) as session:
            found = await checkpoints.latest(session, tenant.id)
            entry = (
                await session.execute(
                    select(AuditLog).where(
                        AuditLog.chain_id == tenant.id,
                        AuditLog.sequence_number == found.tree_size + 1,
                    )
                )
            ).scalar_one()
        assert found.tree_size >= size
        assert entry.action == "job:audit_checkpoint:create"
        assert entry.changes == {"chainId": tenant.id, "treeSize": found.tree_size}
        checkpoint = open_checkpoint(found.signed_note, services.audit.signer.verifier)
        assert checkpoint.origin == services.audit.signer.origin(tenant.id)
        clock.advance(60)
        await services.jobs.run_due()
        async with services.db.session(tenant_id=tenant_id) as session:
            assert (await checkpoints.latest(session, tenant.id)).id == found.id
    finally:
        await services.shutdown()
    assert services.audit is None


async def test_no_periodic_job_when_the_interval_is_zero(data_dir, database_url):
    settings = make_settings(data_dir, database_url, audit_checkpoint_interval_seconds=0)
    services = Services.build(settings)
    await services.startup()
    try:
        # Switched off: the registry holds no checkpoint job (the other jobs are still there).
        assert "audit.checkpoints" not in services.jobs.jobs
        assert "keys.maintenance" in services.jobs.jobs
    finally:
        await services.shutdown()


async def test_a_checkpoint_is_idempotent_per_tree_size(tenant, services):
    tenant_id = uuid.UUID(tenant.id)
    signer = services.audit.signer
    async with services.db.session(tenant_id=tenant_id) as session:
        trusted = await load_trusted(session, services.master_key)
        one, created = await checkpoints.issue(session, signer, trusted, tenant.id, tenant_id)
        two, again = await checkpoints.issue(session, signer, trusted, tenant.id, tenant_id)
        assert created and not again
        rows = (
            (
                await session.execute(
                    select(AuditCheckpoint).where(AuditCheckpoint.chain_id == tenant.id)
                )
            )
            .scalars()
            .all()
        )
    assert one.id == two.id and len(rows) == 1 and one.tenant_id == tenant_id
