"""The tenant's password policy: read by members, changed with settings:update, enforced."""

from __future__ import annotations

import pytest

from tests.conftest import unique_email
from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

POLICY = "/api/v1/tenant/settings/password-policy"
SEED_DEFAULT = {
    "minLength": 8,
    "maxLength": 128,
    "requireUpper": True,
    "requireLower": True,
    "requireDigit": True,
    "requireSpecial": True,
    "checkBlocklist": True,
}


async def test_default_is_the_seeds_policy_and_members_may_read_it(tenant):
    viewer = await tenant.member("viewer")
    r = await tenant.client.get(POLICY, headers=viewer.headers)
    assert r.status_code == 200 and r.json() == SEED_DEFAULT


async def test_admin_tightens_the_policy_and_it_is_enforced(tenant, other_tenant, services):
    c, h = tenant.client, tenant.admin.headers
    r = await c.patch(POLICY, headers=h, json={"minLength": 14})
    assert r.status_code == 200 and r.json() == {**SEED_DEFAULT, "minLength": 14}
    assert (await c.get(POLICY, headers=h)).json()["minLength"] == 14
    body = {"email": unique_email(), "firstName": "Ann", "lastName": "Lee", "role": "viewer"}
    short = await c.post("/api/v1/users", headers=h, json={**body, "password": "Sh0rt!Enough"})
    assert short.status_code == 422
    assert short.json()["errors"] == [
        {
            "field": "password",
            "in": "body",
            "message": "must be at least 14 characters long",
            "type": "password_policy",
        }
    ]
    ok = await c.post("/api/v1/users", headers=h, json={**body, "password": "L0nger!Password-Here"})
    assert ok.status_code == 201
    # Other tenants keep their own policy.
    assert (await c.get(POLICY, headers=other_tenant.admin.headers)).json() == SEED_DEFAULT
    entry = (await audit_entries(services, tenant.id, "api:password_policy:update"))[-1]
    assert entry.changes == {"before": {"minLength": 8}, "after": {"minLength": 14}}


async def test_relaxing_a_rule_applies(tenant):
    c, h = tenant.client, tenant.admin.headers
    r = await c.patch(POLICY, headers=h, json={"requireSpecial": False, "checkBlocklist": False})
    assert r.status_code == 200
    body = {"email": unique_email(), "firstName": "Ann", "lastName": "Lee", "role": "viewer"}
    ok = await c.post("/api/v1/users", headers=h, json={**body, "password": "Plain1Password"})
    assert ok.status_code == 201, ok.text


async def test_unsafe_or_unknown_settings_are_refused(tenant):
    c, h = tenant.client, tenant.admin.headers
    for body, field in (
        ({"minLength": 6}, "minLength"),
        ({"minLength": 64, "maxLength": 32}, "minLength"),
        ({"minLenght": 12}, "minLenght"),
        ({}, "body"),
    ):
        r = await c.patch(POLICY, headers=h, json=body)
        assert r.status_code == 422, body
        assert field in {e["field"] for e in r.json()["errors"]}, body
    assert (await c.get(POLICY, headers=h)).json() == SEED_DEFAULT


async def test_changing_needs_settings_update(tenant):
    pm = await tenant.member("project_manager")
    r = await tenant.client.patch(POLICY, headers=pm.headers, json={"minLength": 20})
    assert r.status_code == 403
    assert (await tenant.client.get(POLICY, headers=pm.headers)).json() == SEED_DEFAULT


async def test_a_null_policy_field_is_refused_not_a_500(tenant):
    r = await tenant.client.patch(
        "/api/v1/tenant/settings/password-policy",
        headers=tenant.admin.headers,
        json={"requireDigit": None},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "requireDigit"
