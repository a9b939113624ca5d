"""The audit viewer: entries with filters and pages, an entry's detail, the verification
badge (what the API's verify endpoint answers) and the latest signed checkpoint."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit


def audit_path(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/audit"


async def api_logs(tenant: TenantFixture, **params: str) -> list[dict]:
    r = await tenant.client.get(
        "/api/v1/audit/logs", params={"limit": 500, **params}, headers=tenant.admin.headers
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_the_log_lists_entries_and_the_chain_verifies(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    r = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "Logged role", "permissions": ["task:read"]},
    )
    assert r.status_code == 201
    await sign_in_as(browser, tenant, "admin")
    page = await browser.get(audit_path(tenant))
    assert page.status_code == 200
    assert "api:role:create" in page.text and tenant.admin.email in page.text
    assert 'id="chain-badge">Chain verifies' in page.text
    verify = await tenant.client.get("/api/v1/audit/verify", headers=tenant.admin.headers)
    assert verify.json()["ok"] is True
    assert "No checkpoint has been signed yet." in page.text or "checkpoint-size" in page.text


async def test_filters_narrow_the_list(browser: httpx.AsyncClient, tenant: TenantFixture):
    await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": "Filtered role", "permissions": ["task:read"]},
    )
    await sign_in_as(browser, tenant, "admin")
    only = await browser.get(audit_path(tenant), params={"action": "api:role:create"})
    assert "api:role:create" in only.text and "auth:login:success" not in only.text
    cat = await browser.get(audit_path(tenant), params={"category": "authentication"})
    assert "auth:login:success" in cat.text and "api:role:create" not in cat.text
    by_actor = await browser.get(audit_path(tenant), params={"actorId": tenant.admin.id})
    assert "api:role:create" in by_actor.text
    later = await browser.get(audit_path(tenant), params={"from": "2999-01-01T00:00"})
    assert "No entries match." in later.text


async def test_bad_filters_are_named_never_a_500(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    r = await browser.get(
        audit_path(tenant), params={"category": "nope", "from": "yesterday", "actorId": "x"}
    )
    assert r.status_code == 422
    for name in ("f-category-error", "f-from-error", "f-actor-error"):
        assert f'id="{name}"' in r.text, name
    odd = await browser.get(audit_path(tenant), params={"before": "99999999999999999999999"})
    assert odd.status_code == 200


async def test_an_entry_and_paging(browser: httpx.AsyncClient, tenant: TenantFixture):
    for n in range(3):
        await tenant.client.post(
            "/api/v1/roles",
            headers=tenant.admin.headers,
            json={"name": f"Paged {n}", "permissions": ["task:read"]},
        )
    (entry, *_) = await api_logs(tenant, action="api:role:create")
    await sign_in_as(browser, tenant, "admin")
    detail = await browser.get(f"{audit_path(tenant)}/entries/{entry['id']}")
    assert detail.status_code == 200
    assert entry["recordHash"] in detail.text and "Paged 0" in detail.text
    first = await browser.get(audit_path(tenant), params={"action": "api:role:create"})
    assert "Older entries" not in first.text  # 3 entries: one page


async def test_another_tenants_entry_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    (theirs, *_) = await api_logs(other_tenant)
    await sign_in_as(browser, tenant, "admin")
    r = await browser.get(f"{audit_path(tenant)}/entries/{theirs['id']}")
    assert r.status_code == 404
    assert (await browser.get(audit_path(other_tenant))).status_code == 404
    page = await browser.get(audit_path(tenant))
    assert other_tenant.admin.email not in page.text


async def test_signing_a_checkpoint_shows_it(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    r = await submit(browser, audit_path(tenant), f"{audit_path(tenant)}/checkpoint")
    if r.status_code == 503:  # the audit signer is not running in this process
        return
    assert r.status_code == 303, r.text
    latest = await tenant.client.get(
        "/api/v1/audit/checkpoints/latest", headers=tenant.admin.headers
    )
    assert latest.status_code == 200
    page = await browser.get(audit_path(tenant))
    assert f'id="checkpoint-size">{latest.json()["treeSize"]}<' in page.text
    assert latest.json()["keyId"] in page.text


async def test_a_team_member_may_not_read_the_log(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "team_member")
    assert (await browser.get(audit_path(tenant))).status_code == 403
