"""Appending entries: same transaction as the change, one chain per tenant plus the instance
chain, hashes over the documented fields, secrets never stored."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Text, cast, func, select

from kanvaro.audit import service as audit
from kanvaro.audit.chain import content_state, expected_record_hash, to_document
from kanvaro.audit.hashing import GENESIS_HASH
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import INSTANCE_CHAIN, AuditLog
from kanvaro.audit.service import AuditContext
from kanvaro.audit.verify import verify_chain


async def _entries(db, chain_id):
    async with db.session(all_tenants=True) as session:
        rows = await session.execute(
            select(AuditLog).where(AuditLog.chain_id == chain_id).order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars())


async def test_entries_link_and_hash_over_every_field(throwaway):
    tenant_id = await throwaway.chain(3)
    rows = await _entries(throwaway.db, str(tenant_id))
    assert [r.sequence_number for r in rows] == [1, 2, 3]
    assert rows[0].previous_hash == GENESIS_HASH
    assert rows[1].previous_hash == rows[0].record_hash
    for row in rows:
        doc = to_document(row)
        assert expected_record_hash(doc) == row.record_hash
        assert content_state(doc) == "ok"
        assert row.ip_address == "198.51.100.4" and row.user_agent == "pytest"
        assert row.category == "system" and row.resource_type == "thing"
        # every hashed field matters
        for name, other in (
            ("actorId", str(uuid.uuid4())),
            ("action", "test:entry:delete"),
            ("createdAt", "2000-01-01T00:00:00.000000Z"),
            ("resourceId", "x"),
        ):
            assert expected_record_hash({**doc, name: other}) != row.record_hash
        assert content_state({**doc, "changes": {"n": -1}}) == "altered"
        assert content_state({**doc, "ipAddress": "10.9.9.9"}) == "altered"


async def test_a_rolled_back_change_leaves_no_entry(throwaway):
    tenant_id = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with throwaway.db.session(tenant_id=tenant_id) as session:
            await audit.record(
                session, action="test:thing:create", category="system", tenant_id=tenant_id
            )
            raise RuntimeError("the change failed")
    assert await _entries(throwaway.db, str(tenant_id)) == []
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await audit.record(
            session, action="test:thing:create", category="system", tenant_id=tenant_id
        )
    rows = await _entries(throwaway.db, str(tenant_id))
    assert [r.sequence_number for r in rows] == [1]  # the rolled-back append reused nothing


async def test_tenant_chains_are_separate_and_the_instance_chain_exists(throwaway):
    a, b = await throwaway.chain(2), await throwaway.chain(1)
    assert [r.sequence_number for r in await _entries(throwaway.db, str(a))] == [1, 2]
    assert [r.sequence_number for r in await _entries(throwaway.db, str(b))] == [1]
    async with throwaway.db.session(all_tenants=True) as session:
        entry = await audit.record(
            session, action="system:thing:create", category="system", tenant_id=None
        )
    assert entry.chain_id == INSTANCE_CHAIN
    async with throwaway.db.session(all_tenants=True) as session:
        assert (await verify_chain(session, INSTANCE_CHAIN, TrustedKeys([]))).ok


async def test_categories_and_tags_are_checked(throwaway):
    async with throwaway.db.session(all_tenants=True) as session:
        with pytest.raises(ValueError, match="category"):
            await audit.record(session, action="a:b:c", category="misc", tenant_id=None)
        with pytest.raises(ValueError, match="tagged"):
            await audit.record(session, action="create", category="system", tenant_id=None)


async def test_authentication_is_a_category(throwaway):
    async with throwaway.db.session(all_tenants=True) as session:
        entry = await audit.record(
            session, action="auth:login:failure", category="authentication", tenant_id=None
        )
    assert entry.category == "authentication"


async def test_secret_keys_never_reach_the_table(throwaway):
    canary = f"canary-{uuid.uuid4().hex}"
    tenant_id = uuid.uuid4()
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        await audit.record(
            session,
            action="test:user:update",
            category="user_activity",
            tenant_id=tenant_id,
            context=AuditContext(None, "203.0.113.1", "ua"),
            changes={
                "password": canary,
                "nested": {"api_key": canary, "refreshToken": canary, "mfaSecret": canary},
                "list": [{"client_secret": canary}],
                "name": "kept",
            },
        )
    async with throwaway.db.session(all_tenants=True) as session:
        hits = await session.execute(
            select(func.count())
            .select_from(AuditLog)
            .where(cast(AuditLog.changes, Text).like(f"%{canary}%"))
        )
        assert hits.scalar_one() == 0
    (row,) = await _entries(throwaway.db, str(tenant_id))
    assert row.changes["name"] == "kept" and canary not in repr(row.changes)


async def test_project_changes_are_audited_in_the_request(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Audited"})).json()["id"]
    # a refused change (stale version) leaves no entry
    r = await c.patch(f"/api/v1/projects/{pid}", headers=h, json={"name": "X", "version": 9})
    assert r.status_code == 412
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(all_tenants=True) as session:
        actions = (
            (
                await session.execute(
                    select(AuditLog.action).where(
                        AuditLog.resource_id == pid, AuditLog.chain_id == tenant.id
                    )
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["api:project:create"]


async def test_the_security_event_of_an_entry_is_emitted_only_after_commit(services):
    """SIEM forwarding copies ``data_access`` events: none for a rolled-back entry."""
    from structlog.testing import capture_logs

    tenant_id = uuid.uuid4()
    with capture_logs() as logs:
        with pytest.raises(RuntimeError):
            async with services.db.session(tenant_id=tenant_id) as session:
                await audit.record(
                    session, action="test:rollback:create", category="system", tenant_id=tenant_id
                )
                raise RuntimeError("the change fails after its audit entry was written")
        assert not [e for e in logs if e.get("action") == "test:rollback:create"]
        async with services.db.session(tenant_id=tenant_id) as session:
            await audit.record(
                session, action="test:commit:create", category="system", tenant_id=tenant_id
            )
            assert not [e for e in logs if e.get("action") == "test:commit:create"]
    assert [e["event"] for e in logs if e.get("action") == "test:commit:create"] == ["data_access"]
