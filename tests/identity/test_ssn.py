"""``/api/v1/users/{userId}/ssn`` (issue 16 point 4): the seed's ``users.ssn`` as an optional
encrypted field, seen by the person and by ``user:manage`` after step-up only."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from kanvaro.services import Services
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import clock  # noqa: F401 - fixture

pytestmark = pytest.mark.asyncio
SSN = "123-45-6789"


def url(user_id: str) -> str:
    return f"/api/v1/users/{user_id}/ssn"


async def test_own_ssn_is_encrypted_and_never_listed(tenant, services: Services) -> None:
    me = await tenant.member("team_member")
    c = tenant.client
    r = await c.get(url(me.id), headers=me.headers)
    assert r.status_code == 200 and r.json() == {"ssn": None}
    r = await c.put(url(me.id), headers=me.headers, json={"ssn": SSN})
    assert r.status_code == 204, r.text
    r = await c.get(url(me.id), headers=me.headers)
    assert r.json() == {"ssn": SSN} and r.headers["cache-control"] == "no-store"
    async with services.db.session(all_tenants=True) as session:
        stored = (
            await session.execute(
                text("SELECT ssn FROM users WHERE ssn IS NOT NULL AND ssn_bidx IS NOT NULL")
            )
        ).scalars()
        assert all(v.startswith("kv1:") and SSN not in v for v in stored)
    for path in (f"/api/v1/users/{me.id}", "/api/v1/users", "/api/v1/auth/me"):
        r = await c.get(path, headers=tenant.admin.headers)
        assert SSN not in r.text and "ssn" not in r.text.lower()
    entries = await audit_entries(services, tenant.id, "api:user:ssn-update")
    assert entries and SSN not in str(entries[-1].changes)


async def test_others_need_user_manage_and_a_recent_sign_in(tenant, services, clock) -> None:  # noqa: F811
    person = await tenant.member("team_member")
    colleague = await tenant.member("project_manager")
    c = tenant.client
    await c.put(url(person.id), headers=person.headers, json={"ssn": SSN})
    # Without user:manage: as if nobody were there.
    for call in (c.get(url(person.id), headers=colleague.headers),
                 c.put(url(person.id), headers=colleague.headers, json={"ssn": "1111"})):  # fmt: skip
        r = await call
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    # An admin who signed in just now reads it; the read is audited.
    r = await c.get(url(person.id), headers=tenant.admin.headers)
    assert r.status_code == 200 and r.json() == {"ssn": SSN}
    entries = await audit_entries(services, tenant.id, "api:user:ssn-read")
    assert entries and str(entries[-1].resource_id) == person.id
    # Later, the admin must confirm his sign-in first; the person still reads his own.
    clock.advance(minutes=16)  # the default reauthMaxAgeMinutes is 15
    r = await c.get(url(person.id), headers=tenant.admin.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required"), r.text
    assert SSN not in r.text
    r = await c.put(url(person.id), headers=tenant.admin.headers, json={"ssn": None})
    assert r.status_code == 401
    r = await c.get(url(person.id), headers=person.headers)
    assert r.status_code == 200 and r.json() == {"ssn": SSN}


async def test_bad_ssn_is_named_and_another_tenant_sees_nothing(tenant, other_tenant) -> None:
    c = tenant.client
    r = await c.put(url(tenant.admin.id), headers=tenant.admin.headers, json={"ssn": "<x>"})
    assert r.status_code == 422 and "ssn" in r.text
    r = await c.get(url(tenant.admin.id), headers=other_tenant.admin.headers)
    assert r.status_code == 404
    r = await c.get(url(str(uuid.uuid4())), headers=tenant.admin.headers)
    assert r.status_code == 404
