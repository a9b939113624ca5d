"""The rate-limits page: rules, IP lists, blocks and violations, changed through the API's
actions; refused input named on the page."""

from __future__ import annotations

import httpx

from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

API = "/api/v1/admin/rate-limits"


async def api(tenant: TenantFixture, what: str) -> list[dict]:
    r = await tenant.client.get(f"{API}/{what}", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_rules_are_added_switched_and_removed(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/rate-limits"
    r = await submit(
        browser,
        path,
        f"{path}/rules",
        {
            "endpointPattern": "/api/v1/projects*",
            "method": "POST",
            "requestsPerMinute": "30",
            "burstAllowance": "5",
        },
    )
    assert r.status_code == 303, r.text
    (rule,) = [x for x in await api(tenant, "rules") if x["source"] == "api"]
    assert rule["requestsPerMinute"] == 30 and rule["method"] == "POST"
    page = await browser.get(path)
    assert "/api/v1/projects*" in page.text
    r = await submit(browser, path, f"{path}/rules/{rule['id']}/enabled", {})
    assert r.status_code == 303
    (rule,) = [x for x in await api(tenant, "rules") if x["source"] == "api"]
    assert rule["enabled"] is False
    r = await submit(browser, path, f"{path}/rules/{rule['id']}/delete")
    assert r.status_code == 303
    assert not [x for x in await api(tenant, "rules") if x["source"] == "api"]
    bad = await submit(
        browser, path, f"{path}/rules", {"endpointPattern": "no-slash", "requestsPerMinute": "0"}
    )
    assert bad.status_code == 422
    assert 'id="rl-pattern-error"' in bad.text and 'id="rl-rate-error"' in bad.text


async def test_ip_lists_and_blocks(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/rate-limits"
    r = await submit(
        browser, path, f"{path}/ip-lists", {"network": "198.51.100.0/24", "action": "deny"}
    )
    assert r.status_code == 303, r.text
    (entry,) = await api(tenant, "ip-lists")
    assert entry["network"] == "198.51.100.0/24"
    bad = await submit(
        browser, path, f"{path}/ip-lists", {"network": "999.1.1.1", "action": "deny"}
    )
    assert bad.status_code == 422 and 'id="ip-net-error"' in bad.text
    r = await submit(browser, path, f"{path}/ip-lists/{entry['id']}/delete")
    assert r.status_code == 303 and await api(tenant, "ip-lists") == []
    member = await tenant.member("viewer")
    r = await submit(
        browser,
        path,
        f"{path}/blocks",
        {"userId": member.id, "minutes": "30", "reason": "scraping"},
    )
    assert r.status_code == 303, r.text
    (block,) = await api(tenant, "blocks")
    page = await browser.get(path)
    assert member.email in page.text and "scraping" in page.text
    r = await submit(browser, path, f"{path}/blocks/{block['id']}/lift")
    assert r.status_code == 303 and await api(tenant, "blocks") == []


async def test_rate_limits_need_settings_update_and_stay_in_the_tenant(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        f"{API}/ip-lists",
        headers=other_tenant.admin.headers,
        json={"network": "198.18.7.0/24", "action": "deny"},
    )
    assert theirs.status_code == 201, theirs.text
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/rate-limits"
    page = await browser.get(path)
    assert "198.18.7.0/24" not in page.text
    r = await submit(browser, path, f"{path}/ip-lists/{theirs.json()['id']}/delete")
    assert r.status_code == 404
    assert len(await api(other_tenant, "ip-lists")) == 1


async def test_a_team_member_may_not_see_rate_limits(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "team_member")
    assert (await browser.get(f"/t/{tenant.slug}/admin/rate-limits")).status_code == 403
