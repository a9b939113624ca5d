"""The SSO pages: providers listed, one created with its configuration and secret (never
shown again), changed, switched off and on, tested (the API's words on the page), removed."""

from __future__ import annotations

import json
import socket

import httpx

from tests.conftest import TenantFixture
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import submit

API = "/api/v1/sso/providers"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def api_providers(tenant: TenantFixture) -> list[dict]:
    r = await tenant.client.get(API, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_provider_from_creation_to_removal(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/sso"
    canary = "canary-secret-" + "q" * 20
    issuer = f"http://127.0.0.1:{closed_port()}"  # loopback, nothing listens: a clear failure
    config = {"issuer": issuer, "clientId": "kanvaro"}
    r = await submit(
        browser,
        path,
        f"{path}/providers",
        {
            "providerType": "oidc",
            "name": "Company IdP",
            "config": json.dumps(config),
            "clientSecret": canary,
            "enabled": "on",
        },
    )
    assert r.status_code == 303, r.text
    (provider,) = await api_providers(tenant)
    assert provider["secretsSet"] == ["clientSecret"] and provider["enabled"] is True
    page = await browser.get(r.headers["location"])
    assert page.status_code == 200 and "Company IdP" in page.text
    assert canary not in page.text and "stored (clientSecret)" in page.text
    listing = await browser.get(path)
    assert "Company IdP" in listing.text and canary not in listing.text
    base = f"{path}/providers/{provider['id']}"
    tested = await submit(browser, base, f"{base}/test")
    assert tested.status_code == 200 and 'id="sso-test-result"' in tested.text
    answer = await tenant.client.post(
        f"{base.replace(path, '/api/v1/sso')}/test", headers=tenant.admin.headers
    )
    for problem in answer.json()["problems"]:
        assert (
            problem.replace("'", "&#39;").replace('"', "&#34;") in tested.text
            or problem in tested.text
        )
    r = await submit(
        browser,
        base,
        base,
        {"name": "Company SSO", "config": json.dumps(config), "version": str(provider["version"])},
    )
    assert r.status_code == 303, r.text
    (changed,) = await api_providers(tenant)
    assert changed["name"] == "Company SSO" and changed["secretsSet"] == ["clientSecret"]
    r = await submit(browser, base, f"{base}/enabled", {"version": str(changed["version"])})
    assert r.status_code == 303
    assert (await api_providers(tenant))[0]["enabled"] is False
    r = await submit(browser, base, f"{base}/delete")
    assert r.status_code == 303 and await api_providers(tenant) == []


async def test_bad_configuration_is_named(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/sso"
    r = await submit(
        browser,
        path,
        f"{path}/providers",
        {
            "providerType": "oidc",
            "name": "Broken",
            "config": "{not json",
            "clientSecret": "s3cret-typed",
        },
    )
    assert r.status_code == 422 and 'id="sso-config-error"' in r.text
    assert "s3cret-typed" not in r.text
    r = await submit(
        browser,
        path,
        f"{path}/providers",
        {"providerType": "oidc", "name": "Broken", "config": json.dumps({"clientId": "x"})},
    )
    assert r.status_code == 422 and "issuer" in r.text
    assert await api_providers(tenant) == []


async def test_sso_pages_need_settings_update_and_stay_in_the_tenant(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    theirs = await other_tenant.client.post(
        API,
        headers=other_tenant.admin.headers,
        json={
            "providerType": "oidc",
            "name": "Theirs",
            "config": {"issuer": "https://idp.example", "clientId": "k"},
        },
    )
    assert theirs.status_code == 201, theirs.text
    await sign_in_as(browser, tenant, "admin")
    r = await browser.get(f"/t/{tenant.slug}/admin/sso/providers/{theirs.json()['id']}")
    assert r.status_code == 404


async def test_a_project_manager_may_not_see_sso(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "project_manager")
    assert (await browser.get(f"/t/{tenant.slug}/admin/sso")).status_code == 403
