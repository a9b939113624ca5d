"""The SCIM tokens page: a new token is shown once and works; rotating and revoking run the
API's actions; the token is on no later page."""

from __future__ import annotations

import re

import httpx

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
