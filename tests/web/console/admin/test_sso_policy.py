"""The SSO policy and SSO domains pages: the policy edited field by field through the API's
action (verified domains shown, never editable), refused values named next to their field;
domains claimed (the TXT record to publish on the page), checked now (a failure in words
that verifies nothing; a published record that verifies), and given up."""

from __future__ import annotations

import html
import re
import uuid

import httpx
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.identity.sso import dns_zone as zone_fixtures
from tests.identity.sso.dns_zone import Zone
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

_dns_server = zone_fixtures._dns_server
dns_zone = zone_fixtures.dns_zone

POLICY = "/api/v1/sso/policy"
DOMAINS = "/api/v1/sso/domains"


def unique_domain() -> str:
    return f"console-{uuid.uuid4().hex[:8]}.example"


async def api_policy(tenant: TenantFixture) -> dict:
    r = await tenant.client.get(POLICY, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def api_domains(tenant: TenantFixture) -> list[dict]:
    r = await tenant.client.get(DOMAINS, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def actions(services: Services, tenant: TenantFixture, prefix: str) -> list[str]:
    """The tenant's audit actions starting with ``prefix``, oldest first."""
    await services.audit.drain()
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        rows = await db.execute(
            select(AuditLog.action)
            .where(AuditLog.tenant_id == tenant_id, AuditLog.action.startswith(prefix))
            .order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars())


def policy_path(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/sso/policy"


def domains_path(tenant: TenantFixture) -> str:
    return f"/t/{tenant.slug}/admin/sso/domains"


# --- the policy ---------------------------------------------------------------------------------


async def test_the_policy_is_saved_field_by_field(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    other_admin = await tenant.member("admin")
    pm = await tenant.member("project_manager")
    await sign_in_as(browser, tenant, "admin")
    sso = await browser.get(f"/t/{tenant.slug}/admin/sso")
    assert f'href="{policy_path(tenant)}"' in sso.text
    assert f'href="{domains_path(tenant)}"' in sso.text
    page = await browser.get(policy_path(tenant))
    assert page.status_code == 200
    for name in ("allowedDomains", "linkExistingAccounts", "requireSso", "breakGlassUserIds"):
        assert f'name="{name}"' in page.text
    assert "verifiedDomains" not in page.text  # read-only: no field sends it
    # The admins are offered as break-glass admins; a project manager is not.
    assert f'value="{tenant.admin.id}"' in page.text and f'value="{other_admin.id}"' in page.text
    assert f'value="{pm.id}"' not in page.text

    r = await submit(
        browser,
        policy_path(tenant),
        policy_path(tenant),
        {
            "allowedDomains": "Acme.com\nexample.org",
            "linkExistingAccounts": "on",
            "requireSso": "on",
            "breakGlassUserIds": [tenant.admin.id, other_admin.id],
        },
    )
    assert r.status_code == 303, r.text
    saved = await api_policy(tenant)
    assert saved["allowedDomains"] == ["acme.com", "example.org"]
    assert saved["linkExistingAccounts"] is True and saved["requireSso"] is True
    assert sorted(saved["breakGlassUserIds"]) == sorted([tenant.admin.id, other_admin.id])
    shown = await browser.get(r.headers["location"])
    assert "SSO policy saved" in shown.text and "acme.com\nexample.org" in shown.text
    assert 'id="policy-requireSso" name="requireSso" type="checkbox" checked' in shown.text
    assert await actions(services, tenant, "api:sso_policy:") == ["api:sso_policy:update"]

    # Boxes left unticked mean "off"; an emptied list means none.
    r = await submit(
        browser,
        policy_path(tenant),
        policy_path(tenant),
        {"allowedDomains": "", "breakGlassUserIds": [other_admin.id]},
    )
    assert r.status_code == 303, r.text
    assert await api_policy(tenant) == {
        "allowedDomains": [],
        "verifiedDomains": [],
        "linkExistingAccounts": False,
        "requireSso": False,
        "breakGlassUserIds": [other_admin.id],
    }
    assert len(await actions(services, tenant, "api:sso_policy:")) == 2


async def test_refused_policy_input_is_named_and_nothing_changes(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    before = await api_policy(tenant)
    path = policy_path(tenant)
    # SSO required without a break-glass admin: the service's rule.
    r = await submit(browser, path, path, {"allowedDomains": "acme.com", "requireSso": "on"})
    assert r.status_code == 422, r.text
    assert 'id="policy-breakGlassUserIds-error"' in r.text
    assert "acme.com" in r.text  # what was typed is shown again
    # Not a domain: the API's schema.
    r = await submit(browser, path, path, {"allowedDomains": "not a domain"})
    assert r.status_code == 422 and 'id="policy-allowedDomains-error"' in r.text
    # Not an id, and an id of nobody in this tenant.
    r = await submit(browser, path, path, {"breakGlassUserIds": "nope"})
    assert r.status_code == 422 and 'id="policy-breakGlassUserIds-error"' in r.text
    r = await submit(browser, path, path, {"breakGlassUserIds": str(uuid.uuid4())})
    assert r.status_code == 422 and 'id="policy-breakGlassUserIds-error"' in r.text
    assert await api_policy(tenant) == before
    assert await actions(services, tenant, "api:sso_policy:") == []


async def test_verified_domains_are_shown_and_kept(
    browser: httpx.AsyncClient, tenant: TenantFixture, dns_zone: Zone
):
    await sign_in_as(browser, tenant, "admin")
    domain = unique_domain()
    r = await submit(browser, domains_path(tenant), domains_path(tenant), {"domain": domain})
    assert r.status_code == 303, r.text
    (claimed,) = await api_domains(tenant)
    dns_zone.publish(claimed["record"]["name"], claimed["record"]["value"])
    base = f"{domains_path(tenant)}/{claimed['id']}"
    checked = await submit(browser, domains_path(tenant), f"{base}/verify")
    assert checked.status_code == 200, checked.text
    assert (
        'id="sso-domain-check"' in checked.text and f"{domain}</strong> is verified" in checked.text
    )
    assert (await api_domains(tenant))[0]["status"] == "verified"

    page = await browser.get(policy_path(tenant))
    listed = re.search(r'<ul id="sso-verified-domains">(.*?)</ul>', page.text, re.S)
    assert listed and domain in listed.group(1)
    # Saving the form leaves them as they are (it never sends them).
    r = await submit(browser, policy_path(tenant), policy_path(tenant), {"allowedDomains": ""})
    assert r.status_code == 303, r.text
    assert (await api_policy(tenant))["verifiedDomains"] == [domain]


# --- the domains --------------------------------------------------------------------------------


async def test_a_domain_claimed_checked_and_given_up(
    browser: httpx.AsyncClient, tenant: TenantFixture, services: Services
):
    await sign_in_as(browser, tenant, "admin")
    path = domains_path(tenant)
    empty = await browser.get(path)
    assert empty.status_code == 200 and "No domain claimed yet." in empty.text
    domain = unique_domain()
    r = await submit(browser, path, path, {"domain": f"  {domain.upper()} "})
    assert r.status_code == 303, r.text
    (claimed,) = await api_domains(tenant)
    assert claimed["domain"] == domain and claimed["status"] == "pending"
    shown = await browser.get(r.headers["location"])
    added = re.search(
        r'<div class="notice" role="status" id="sso-domain-added">(.*?)</div>', shown.text, re.S
    )
    assert added, shown.text
    assert claimed["record"]["name"] in added.group(1)
    assert claimed["record"]["value"] in added.group(1)
    assert await actions(services, tenant, "api:sso_domain:") == ["api:sso_domain:create"]

    # The suite's resolver (127.0.0.1:9) answers nothing: the check fails, in words.
    base = f"{path}/{claimed['id']}"
    checked = await submit(browser, path, f"{base}/verify")
    assert checked.status_code == 200, checked.text
    box = re.search(
        r'<div class="error" role="status" id="sso-domain-check">(.*?)</div>', checked.text, re.S
    )
    assert box and f"{domain}</strong> is not verified" in box.group(1)
    (after,) = await api_domains(tenant)
    assert after["status"] == "pending" and after["verifiedAt"] is None
    assert after["lastError"] and html.escape(after["lastError"], quote=True) in box.group(1)
    assert (await api_policy(tenant))["verifiedDomains"] == []
    assert await actions(services, tenant, "api:sso_domain:") == [
        "api:sso_domain:create",
        "api:sso_domain:verify",
    ]

    r = await submit(browser, path, f"{base}/delete")
    assert r.status_code == 303, r.text
    assert await api_domains(tenant) == []
    gone = await browser.get(r.headers["location"])
    assert "Domain given up" in gone.text and domain not in gone.text
    assert (await actions(services, tenant, "api:sso_domain:"))[-1] == "api:sso_domain:delete"


async def test_refused_domains_are_named(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    path = domains_path(tenant)
    for bad in ("gmail", "192.0.2.1", "x_y.example", ""):
        r = await submit(browser, path, path, {"domain": bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert 'id="domain-domain-error"' in r.text, bad
    assert await api_domains(tenant) == []
    domain = unique_domain()
    assert (await submit(browser, path, path, {"domain": domain})).status_code == 303
    again = await submit(browser, path, path, {"domain": domain})
    assert again.status_code == 409 and 'id="domain-domain-error"' in again.text
    assert len(await api_domains(tenant)) == 1


async def test_another_tenants_domain_is_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        DOMAINS, headers=other_tenant.admin.headers, json={"domain": unique_domain()}
    )
    assert theirs.status_code == 201, theirs.text
    await sign_in_as(browser, tenant, "admin")
    r = await submit(
        browser, domains_path(tenant), f"{domains_path(tenant)}/{theirs.json()['id']}/delete"
    )
    assert r.status_code == 404
    r = await submit(
        browser, domains_path(tenant), f"{domains_path(tenant)}/{theirs.json()['id']}/verify"
    )
    assert r.status_code == 404
    (kept,) = (await other_tenant.client.get(DOMAINS, headers=other_tenant.admin.headers)).json()
    assert kept["lastCheckedAt"] is None


async def test_a_project_manager_may_not_see_them(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "project_manager")
    assert (await browser.get(policy_path(tenant))).status_code == 403
    assert (await browser.get(domains_path(tenant))).status_code == 403
