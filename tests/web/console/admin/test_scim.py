"""The SCIM tokens page: a new token is shown once and works; rotating and revoking run the
API's actions; the token is on no later page. The group -> role mapping on the same page,
saved row by row through the API's action, a refused row named next to it."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

TOKEN = re.compile(r'<code class="admin-wrap" id="scim-token">([^<]+)</code>')


async def scim_users(tenant: TenantFixture, token: str) -> int:
    r = await tenant.client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


async def test_a_token_is_shown_once_rotated_and_revoked(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/scim"
    made = await submit(browser, path, f"{path}/tokens", {"name": "Okta"})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    token = TOKEN.search(made.text).group(1)
    assert await scim_users(tenant, token) == 200
    later = await browser.get(path)
    assert token not in later.text and "Okta" in later.text
    (row,) = (
        await tenant.client.get("/api/v1/admin/scim/tokens", headers=tenant.admin.headers)
    ).json()
    rotated = await submit(browser, path, f"{path}/tokens/{row['id']}/rotate")
    assert rotated.status_code == 201
    new = TOKEN.search(rotated.text).group(1)
    assert new != token and await scim_users(tenant, token) == 401
    assert await scim_users(tenant, new) == 200
    revoked = await submit(browser, path, f"{path}/tokens/{row['id']}/revoke")
    assert revoked.status_code == 303
    assert await scim_users(tenant, new) == 401
    page = await browser.get(path)
    assert new not in page.text and "revoked" in page.text


async def test_bad_names_and_other_tenants(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        "/api/v1/admin/scim/tokens", headers=other_tenant.admin.headers, json={"name": "Theirs"}
    )
    assert theirs.status_code == 201, theirs.text
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/scim"
    bad = await submit(browser, path, f"{path}/tokens", {"name": ""})
    assert bad.status_code == 422 and 'id="scim-name-error"' in bad.text
    r = await submit(browser, path, f"{path}/tokens/{theirs.json()['id']}/revoke")
    assert r.status_code == 404
    assert await scim_users(other_tenant, theirs.json()["token"]) == 200


async def test_scim_needs_user_manage(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "project_manager")
    assert (await browser.get(f"/t/{tenant.slug}/admin/scim")).status_code == 403


# --- the group -> role mapping ------------------------------------------------------------------

MAPPINGS = "/api/v1/admin/scim/role-mappings"


async def api_mappings(tenant: TenantFixture) -> list[dict]:
    r = await tenant.client.get(MAPPINGS, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()["mappings"]


async def mapping_actions(services: Services, tenant: TenantFixture) -> list[str]:
    await services.audit.drain()
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        rows = await db.execute(
            select(AuditLog.action).where(
                AuditLog.tenant_id == tenant_id,
                AuditLog.action == "api:scim_role_mapping:update",
            )
        )
        return list(rows.scalars())


async def test_the_role_mapping_is_edited_row_by_row(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/scim"
    page = await browser.get(path)
    assert page.status_code == 200 and 'id="scim-mappings"' in page.text
    assert '<option value="project_manager">' in page.text
    r = await submit(
        browser,
        path,
        f"{path}/role-mappings",
        {"group": ["Engineering", "", "Ops"], "role": ["project_manager", "", "team_member"]},
    )
    assert r.status_code == 303, r.text
    assert await api_mappings(tenant) == [
        {"group": "Engineering", "role": "project_manager"},
        {"group": "Ops", "role": "team_member"},
    ]
    shown = await browser.get(r.headers["location"])
    assert "Role mapping saved" in shown.text
    assert 'id="map-group-1" name="group" type="text" maxlength="255" value="Ops"' in shown.text
    assert '<option value="team_member" selected>' in shown.text
    assert await mapping_actions(services, tenant) == ["api:scim_role_mapping:update"]
    # A row emptied drops out; the order is the rows'.
    r = await submit(
        browser,
        path,
        f"{path}/role-mappings",
        {"group": ["", "Ops", "Admins"], "role": ["project_manager", "team_member", "admin"]},
    )
    assert r.status_code == 422  # a role without its group is refused, not dropped silently
    r = await submit(
        browser,
        path,
        f"{path}/role-mappings",
        {"group": ["Ops", "Admins", ""], "role": ["team_member", "admin", ""]},
    )
    assert r.status_code == 303, r.text
    assert await api_mappings(tenant) == [
        {"group": "Ops", "role": "team_member"},
        {"group": "Admins", "role": "admin"},
    ]
    assert len(await mapping_actions(services, tenant)) == 2


async def test_a_refused_mapping_is_named_next_to_its_row(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/scim"
    action = f"{path}/role-mappings"
    unknown = await submit(browser, path, action, {"group": ["Eng"], "role": ["wizard"]})
    assert unknown.status_code == 422 and 'id="map-role-0-error"' in unknown.text
    assert '<option value="wizard" selected>' in unknown.text  # what was sent, shown again
    twice = await submit(
        browser, path, action, {"group": ["Eng", "eng"], "role": ["viewer", "viewer"]}
    )
    assert twice.status_code == 422 and 'id="map-group-1-error"' in twice.text
    no_role = await submit(browser, path, action, {"group": ["Eng"], "role": [""]})
    assert no_role.status_code == 422 and 'id="map-role-0-error"' in no_role.text
    no_group = await submit(browser, path, action, {"group": [""], "role": ["viewer"]})
    assert no_group.status_code == 422 and 'id="map-group-0-error"' in no_group.text
    assert await api_mappings(tenant) == []
    assert await mapping_actions(services, tenant) == []
