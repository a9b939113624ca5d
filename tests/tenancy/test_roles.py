"""/api/v1/roles: built-in roles are listed and immutable; custom roles grant only what
their author holds; a role in use cannot be deleted."""

from __future__ import annotations

import pytest

from kanvaro.security.permissions import ROLE_PERMISSIONS, TENANT_ROLES
from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

ROLES = "/api/v1/roles"


def fields(r):
    return {e["field"] for e in r.json().get("errors") or []}


async def make_role(tenant, name="reviewer", permissions=("task:read", "project:read"), **extra):
    body = {"name": name, "permissions": list(permissions), **extra}
    r = await tenant.client.post(ROLES, headers=tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_builtin_roles_are_listed_with_their_permissions(tenant):
    r = await tenant.client.get(ROLES, headers=tenant.admin.headers)
    assert r.status_code == 200
    roles = {role["name"]: role for role in r.json()["items"]}
    assert set(roles) == {role.value for role in TENANT_ROLES}
    for role in TENANT_ROLES:
        got = roles[role.value]
        assert got["isSystem"] is True
        assert set(got["permissions"]) == {p.value for p in ROLE_PERMISSIONS[role]}
    one = await tenant.client.get(f"{ROLES}/{roles['viewer']['id']}", headers=tenant.admin.headers)
    assert one.status_code == 200 and one.json()["projectScoped"] is True
    assert one.headers["etag"] == f'"v{one.json()["version"]}"'


async def test_builtin_roles_cannot_be_changed_or_deleted(tenant):
    c, h = tenant.client, tenant.admin.headers
    roles = {r["name"]: r for r in (await c.get(ROLES, headers=h)).json()["items"]}
    viewer = roles["viewer"]
    r = await c.patch(
        f"{ROLES}/{viewer['id']}",
        headers=h,
        json={"version": viewer["version"], "description": "x"},
    )
    assert r.status_code == 409
    assert (await c.delete(f"{ROLES}/{viewer['id']}", headers=h)).status_code == 409
    clash = await c.post(ROLES, headers=h, json={"name": "Admin", "permissions": []})
    assert clash.status_code == 422 and fields(clash) == {"name"}


async def test_custom_role_lifecycle_is_audited(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    role = await make_role(
        tenant, "Finance Lead", ["budget:read", "invoice:read"], projectScoped=False
    )
    assert role["isSystem"] is False and role["projectScoped"] is False
    assert role["permissions"] == ["budget:read", "invoice:read"]
    listed = (await c.get(ROLES, headers=h, params={"isSystem": "false"})).json()["items"]
    assert [r["name"] for r in listed] == ["Finance Lead"]

    url = f"{ROLES}/{role['id']}"
    assert (await c.patch(url, headers=h, json={"description": "x"})).status_code == 428
    r = await c.patch(
        url, headers=h, json={"version": 1, "permissions": ["budget:read", "budget:update"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["permissions"] == ["budget:read", "budget:update"] and r.json()["version"] == 2
    stale = await c.patch(url, headers=h, json={"version": 1, "name": "Other"})
    assert stale.status_code == 412
    assert (await c.get(url, headers=h)).json()["name"] == "Finance Lead"

    assert (await c.delete(url, headers=h)).status_code == 204
    assert (await c.get(url, headers=h)).status_code == 404
    created = (await audit_entries(services, tenant.id, "api:role:create"))[-1]
    updated = (await audit_entries(services, tenant.id, "api:role:update"))[-1]
    deleted = (await audit_entries(services, tenant.id, "api:role:delete"))[-1]
    assert {created.category, updated.category, deleted.category} == {"permissions"}
    assert updated.changes == {
        "before": {"permissions": ["budget:read", "invoice:read"]},
        "after": {"permissions": ["budget:read", "budget:update"]},
    }
    assert deleted.resource_id == role["id"]


async def test_unknown_permissions_are_named(tenant):
    r = await tenant.client.post(
        ROLES, headers=tenant.admin.headers, json={"name": "odd", "permissions": ["task:fly"]}
    )
    assert r.status_code == 422 and fields(r) == {"permissions"}
    assert "task:fly" in r.text
    role = await make_role(tenant, "fine")
    bad = await tenant.client.patch(
        f"{ROLES}/{role['id']}",
        headers=tenant.admin.headers,
        json={"version": 1, "permissions": ["root"]},
    )
    assert bad.status_code == 422 and fields(bad) == {"permissions"}


async def test_nobody_grants_what_he_does_not_hold(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    # The seed's admin does not hold task:assign (only project managers do).
    r = await c.post(ROLES, headers=h, json={"name": "assigner", "permissions": ["task:assign"]})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    role = await make_role(tenant, "plain", ["task:read"])
    widen = await c.patch(
        f"{ROLES}/{role['id']}", headers=h, json={"version": 1, "permissions": ["task:assign"]}
    )
    assert widen.status_code == 403
    denied = await audit_entries(services, tenant.id, "api:permission:denied")
    assert [e.changes["permission"] for e in denied[-2:]] == ["task:assign", "task:assign"]
    assert (await c.get(f"{ROLES}/{role['id']}", headers=h)).json()["permissions"] == ["task:read"]


async def test_a_role_manager_cannot_touch_a_role_above_him(tenant):
    c, _h = tenant.client, tenant.admin.headers
    await make_role(
        tenant, "role-admin", ["role:read", "role:manage", "team:read"], projectScoped=False
    )
    big = await make_role(tenant, "big", ["budget:update", "invoice:create"])
    manager = await tenant.member("role-admin")
    mh = manager.headers
    assert (
        await c.post(ROLES, headers=mh, json={"name": "money", "permissions": ["budget:read"]})
    ).status_code == 403
    ok = await c.post(ROLES, headers=mh, json={"name": "readers", "permissions": ["team:read"]})
    assert ok.status_code == 201
    # Narrowing or renaming a role that grants what he lacks is refused too.
    r = await c.patch(f"{ROLES}/{big['id']}", headers=mh, json={"version": 1, "permissions": []})
    assert r.status_code == 403
    assert (await c.delete(f"{ROLES}/{big['id']}", headers=mh)).status_code == 403


async def test_role_in_use_cannot_be_deleted(tenant):
    c, h = tenant.client, tenant.admin.headers
    role = await make_role(tenant, "auditor", ["project:read", "task:read"])
    m = await tenant.member("auditor")
    r = await c.delete(f"{ROLES}/{role['id']}", headers=h)
    assert r.status_code == 409 and r.json()["assignedUsers"] == 1
    # Deactivated holders still hold it (they may come back).
    assert (await c.delete(f"/api/v1/users/{m.id}", headers=h)).status_code == 204
    assert (await c.delete(f"{ROLES}/{role['id']}", headers=h)).status_code == 409


async def test_custom_role_changes_apply_to_holders_at_once(tenant):
    c, h = tenant.client, tenant.admin.headers
    role = await make_role(
        tenant, "builder", ["project:read", "project:create"], projectScoped=False
    )
    m = await tenant.member("builder")
    me = (await c.get("/api/v1/auth/me", headers=m.headers)).json()
    assert set(me["permissions"]) == {"project:read", "project:create"}
    assert (
        await c.post("/api/v1/projects", headers=m.headers, json={"name": "A"})
    ).status_code == 201
    r = await c.patch(
        f"{ROLES}/{role['id']}", headers=h, json={"version": 1, "permissions": ["project:read"]}
    )
    assert r.status_code == 200
    assert (
        await c.post("/api/v1/projects", headers=m.headers, json={"name": "B"})
    ).status_code == 403


async def test_names_are_unique_per_tenant_only(tenant, other_tenant):
    await make_role(tenant, "ops")
    dup = await tenant.client.post(
        ROLES, headers=tenant.admin.headers, json={"name": "OPS", "permissions": []}
    )
    assert dup.status_code == 409 and fields(dup) == {"name"}
    await make_role(other_tenant, "ops")


async def test_reading_and_writing_need_their_permissions(tenant, other_tenant):
    c = tenant.client
    pm = await tenant.member("project_manager")  # role:read, no role:manage
    viewer = await tenant.member("viewer")  # neither
    assert (await c.get(ROLES, headers=pm.headers)).status_code == 200
    assert (
        await c.post(ROLES, headers=pm.headers, json={"name": "x", "permissions": []})
    ).status_code == 403
    assert (await c.get(ROLES, headers=viewer.headers)).status_code == 403
    role = await make_role(tenant, "mine")
    other = other_tenant.admin.headers
    assert (await c.get(f"{ROLES}/{role['id']}", headers=other)).status_code == 404
    assert (
        await c.patch(f"{ROLES}/{role['id']}", headers=other, json={"version": 1, "name": "yours"})
    ).status_code == 404
    assert (await c.delete(f"{ROLES}/{role['id']}", headers=other)).status_code == 404
    assert role["id"] not in {r["id"] for r in (await c.get(ROLES, headers=other)).json()["items"]}


async def test_a_project_scoped_role_manager_cannot_lift_project_scoping(tenant):
    """Seeing every project is a power too: a scoped holder of role:manage cannot grant it,
    neither in a new role, nor by unscoping an existing one (his own included)."""
    c = tenant.client
    own = await make_role(tenant, "scoped-admin", ["role:read", "role:manage", "team:read"])
    manager = await tenant.member("scoped-admin")
    mh = manager.headers
    r = await c.post(
        ROLES,
        headers=mh,
        json={"name": "wide", "permissions": ["team:read"], "projectScoped": False},
    )
    assert r.status_code == 403
    r = await c.patch(
        f"{ROLES}/{own['id']}", headers=mh, json={"version": 1, "projectScoped": False}
    )
    assert r.status_code == 403
    scoped = await c.post(ROLES, headers=mh, json={"name": "narrow", "permissions": ["team:read"]})
    assert scoped.status_code == 201
