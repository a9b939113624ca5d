"""``POST /api/v1/admin/keys/rotations`` (issue 15: the keys page can start a rotation): a
tenant admin rotates his organization's data keys and no other tenant's, the values are
re-encrypted in the background, the tenant's chain records who asked, one rotation at a time (another
tenant's request does not restart the scan under way), nothing to rotate is a clear 409, a member without ``settings:update`` is refused, and
the super admin's request covers the whole instance."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from kanvaro import background
from kanvaro.audit.models import AuditLog
from kanvaro.crypto.models import EncryptionKey
from kanvaro.crypto.rotation import reencrypt
from tests.audit.conftest import super_admin  # noqa: F401 - the instance's super admin
from tests.crypto.conftest import add_user, stored_phone

ROTATE = "/api/v1/admin/keys/rotations"
PROBLEM = "application/problem+json"


async def _keys(services, tenant_id: str) -> dict[uuid.UUID, str]:
    async with services.db.session(all_tenants=True) as session:
        rows = await session.execute(
            select(EncryptionKey.id, EncryptionKey.state).where(
                EncryptionKey.tenant_id == uuid.UUID(tenant_id)
            )
        )
        return dict(rows.all())


def _hold(monkeypatch) -> list:
    """Keep the background re-encryption from starting: the keys stay ``retiring``."""
    held: list = []

    def spawn(work, *, name):
        work.close()
        held.append(name)

    monkeypatch.setattr(background, "spawn", spawn)
    return held


async def test_a_tenant_admin_rotates_his_keys_and_no_one_elses(
    services, client, tenant, other_tenant
):
    own_user = await add_user(services, tenant.id, "+14155550111")
    other_user = await add_user(services, other_tenant.id, "+14155550222")
    own_before, other_before = (
        await stored_phone(services, own_user),
        await stored_phone(services, other_user),
    )
    old_own, old_other = await _keys(services, tenant.id), await _keys(services, other_tenant.id)

    r = await client.post(ROTATE, headers=tenant.admin.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["scope"] == "tenant" and body["retiringKeys"] == len(
        [k for k, state in old_own.items() if state == "active"]
    )
    assert r.headers["location"] == "/api/v1/admin/keys/status"
    await background.drain()

    now_own = await _keys(services, tenant.id)
    assert {now_own[k] for k in old_own if old_own[k] == "active"} == {"retired"}
    assert any(state == "active" and k not in old_own for k, state in now_own.items())
    assert (await stored_phone(services, own_user))[0] != own_before[0]  # re-encrypted
    # The other tenant: the same keys in the same states, the same stored bytes.
    assert await _keys(services, other_tenant.id) == old_other
    assert await stored_phone(services, other_user) == other_before

    await services.audit.drain()
    async with services.db.session(all_tenants=True) as session:
        entries = (
            await session.execute(
                select(AuditLog.chain_id, AuditLog.action, AuditLog.actor_id, AuditLog.changes)
                .where(AuditLog.resource_id == body["rotationId"])
                .order_by(AuditLog.created_at)
            )
        ).all()
    (asked,) = [e for e in entries if e.action == "api:key_rotation:create"]
    assert asked.chain_id == tenant.id and str(asked.actor_id) == tenant.admin.id
    # The tenant's chain holds no figure of other tenants (the run's row count).
    assert asked.changes == {"reason": "tenant", "retiringKeys": body["retiringKeys"]}


async def test_one_rotation_at_a_time(
    services,
    client,
    tenant,
    other_tenant,
    monkeypatch,
    super_admin,  # noqa: F811
):
    await add_user(services, tenant.id, "+14155550333")
    held = _hold(monkeypatch)
    first = await client.post(ROTATE, headers=tenant.admin.headers)
    assert first.status_code == 202 and len(held) == 1
    again = await client.post(ROTATE, headers=tenant.admin.headers)
    assert again.status_code == 409 and again.headers["content-type"].startswith(PROBLEM)
    assert "under way" in again.json()["detail"]
    # The instance's keys include this tenant's retiring ones: the super admin waits too.
    instance = await client.post(ROTATE, headers=super_admin.headers)
    assert instance.status_code == 409 and "under way" in instance.json()["detail"]
    # Another tenant waits as well (tests/attack/test_key_rotation_requests.py: it must not
    # restart the scan under way).
    await add_user(services, other_tenant.id, "+14155550334")
    theirs = await client.post(ROTATE, headers=other_tenant.admin.headers)
    assert theirs.status_code == 409 and "under way" in theirs.json()["detail"]
    assert "retiring" not in (await _keys(services, other_tenant.id)).values()
    assert len(held) == 1
    await reencrypt(services.db, services.keyring)  # what keys.maintenance would carry on
    assert "retiring" not in (await _keys(services, tenant.id)).values()
    monkeypatch.undo()
    after = await client.post(ROTATE, headers=tenant.admin.headers)
    assert after.status_code == 202, after.text
    await background.drain()


async def test_nothing_to_rotate_and_no_permission_are_refused(services, client, tenant):
    assert not await _keys(services, tenant.id)  # a new tenant has no data key yet
    r = await client.post(ROTATE, headers=tenant.admin.headers)
    assert r.status_code == 409 and "no active data keys" in r.json()["detail"]
    member = await tenant.member("team_member")
    await add_user(services, tenant.id, "+14155550444")
    r = await client.post(ROTATE, headers=member.headers)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    assert "active" in (await _keys(services, tenant.id)).values()
    assert "retiring" not in (await _keys(services, tenant.id)).values()
