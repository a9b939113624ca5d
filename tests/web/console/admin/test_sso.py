"""The SSO pages: providers listed, one created with its settings (a field each, read off the
API's schema) and secret (never shown again), changed, switched off and on, tested (the API's
words on the page), removed; each type's form; bad settings named by their field."""

from __future__ import annotations

import socket

import httpx

from tests.conftest import TenantFixture
from tests.identity.sso.saml_fixtures import saml_peer  # noqa: F401 - the pysaml2 IdP
from tests.web.console.admin.conftest import sign_in_as
from tests.web.console.conftest import fill_in, submit

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
    new_form = await browser.get(path)
    assert 'name="config.issuer"' in new_form.text and 'name="config.scopes"' in new_form.text
    config = {
        "config.issuer": issuer,
        "config.clientId": "kanvaro",
        "config.scopes": "openid\nemail\nprofile",
        "config.idTokenSigningAlgs": "RS256\nES256",
        "config.roleMapping": "engineering = team_member\n\nleads = project_manager",
        "config.domains": "Example.COM",
        "config.mfaMode": "kanvaro",
        "config.jitProvisioning": "on",
        "config.clockSkewSeconds": "30",
    }
    r = await fill_in(
        browser,
        path,
        f"{path}/providers",
        {"name": "Company IdP", "clientSecret": canary, **config},
    )
    assert r.status_code == 303, r.text
    (provider,) = await api_providers(tenant)
    assert provider["secretsSet"] == ["clientSecret"] and provider["enabled"] is True
    stored = provider["config"]
    assert stored["issuer"].rstrip("/") == issuer and stored["clientId"] == "kanvaro"
    assert stored["roleMapping"] == {"engineering": "team_member", "leads": "project_manager"}
    assert stored["domains"] == ["example.com"] and stored["mfaMode"] == "kanvaro"
    assert stored["idTokenSigningAlgs"] == ["RS256", "ES256"] and stored["clockSkewSeconds"] == 30
    assert stored["assumeEmailVerified"] is False  # an unticked box
    page = await browser.get(r.headers["location"])
    assert page.status_code == 200 and "Company IdP" in page.text
    assert "engineering = team_member" in page.text  # the stored settings, in their fields
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
    # The page's own form, only the name and one setting changed: nothing else moves.
    r = await fill_in(browser, base, base, {"name": "Company SSO", "config.mfaMode": "trust_idp"})
    assert r.status_code == 303, r.text
    (changed,) = await api_providers(tenant)
    assert changed["name"] == "Company SSO" and changed["secretsSet"] == ["clientSecret"]
    assert changed["config"] == stored | {"mfaMode": "trust_idp"}
    r = await submit(browser, base, f"{base}/enabled", {"version": str(changed["version"])})
    assert r.status_code == 303
    assert (await api_providers(tenant))[0]["enabled"] is False
    r = await submit(browser, base, f"{base}/delete")
    assert r.status_code == 303 and await api_providers(tenant) == []


async def test_bad_configuration_is_named(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/sso"
    base = {"name": "Broken", "config.clientId": "x"}
    for sent, field in (
        ({"config.issuer": "not a url"}, "config.issuer"),
        (
            {"config.issuer": "https://idp.example", "config.clockSkewSeconds": "soon"},
            "config.clockSkewSeconds",
        ),
        (
            {"config.issuer": "https://idp.example", "config.clockSkewSeconds": "900"},
            "config.clockSkewSeconds",
        ),
        (
            {"config.issuer": "https://idp.example", "config.roleMapping": "just words"},
            "config.roleMapping",
        ),
        (
            {"config.issuer": "https://idp.example", "config.domains": "not a domain"},
            "config.domains",
        ),
        ({"config.issuer": "https://idp.example", "config.scopes": "email"}, "config.scopes"),
        (
            {"config.issuer": "https://idp.example", "config.idTokenSigningAlgs": "HS256"},
            "config.idTokenSigningAlgs",
        ),
        (
            {"config.issuer": "https://idp.example", "config.roleMapping": "g = no_such_role"},
            "config.roleMapping",
        ),
    ):
        r = await fill_in(
            browser, path, f"{path}/providers", base | sent | {"clientSecret": "s3cret-typed"}
        )
        assert r.status_code == 422, (sent, r.status_code)
        assert f"<code>{field}" in r.text and "admin-field-error" in r.text, sent
        assert "s3cret-typed" not in r.text
        # What was typed comes back in its field.
        assert next(iter(sent.values())).split("\n")[0] in r.text
    missing = await fill_in(
        browser, path, f"{path}/providers", {"name": "Broken", "config.issuer": ""}
    )
    assert missing.status_code == 422 and "config.issuer" in missing.text
    unknown = await fill_in(
        browser, path, f"{path}/providers", {"providerType": "ldap", "name": "X"}
    )
    assert unknown.status_code == 422 and "providerType" in unknown.text
    assert await api_providers(tenant) == []


async def test_each_type_has_its_own_settings(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/sso"
    saml = await browser.get(path, params={"type": "saml"})
    assert saml.status_code == 200
    for name in (
        "config.entryPoint",
        "config.idpEntityId",
        "config.cert",
        "config.attributeMapping.email",
    ):
        assert f'name="{name}"' in saml.text, name
    assert 'name="clientSecret"' not in saml.text and 'name="config.clientId"' not in saml.text
    oauth2 = await browser.get(path, params={"type": "oauth2"})
    assert 'name="config.tokenURL"' in oauth2.text and 'name="config.subjectField"' in oauth2.text
    r = await fill_in(
        browser,
        f"{path}?type=oauth2",
        f"{path}/providers",
        {
            "enabled": None,  # unticked
            "name": "GitHub-like",
            "config.clientId": "kv",
            "config.authorizationURL": "https://idp.example/authorize",
            "config.tokenURL": "https://idp.example/token",
            "config.userInfoURL": "https://idp.example/user",
            "config.subjectField": "id",
            "config.emailField": "email",
            "config.tokenEndpointAuthMethod": "none",
        },
    )
    assert r.status_code == 303, r.text
    (made,) = await api_providers(tenant)
    assert made["providerType"] == "oauth2" and made["config"]["tokenEndpointAuthMethod"] == "none"
    assert made["config"]["emailVerifiedField"] is None  # left empty: its default
    assert made["enabled"] is False  # the box was not ticked


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


async def test_a_saml_provider_from_the_idps_metadata(
    browser: httpx.AsyncClient,
    tenant: TenantFixture,
    saml_peer,  # noqa: F811 - the pysaml2 IdP
):
    await sign_in_as(browser, tenant, "admin")
    path = f"/t/{tenant.slug}/admin/sso"
    r = await fill_in(
        browser,
        f"{path}?type=saml",
        f"{path}/providers",
        {"name": "Corporate SAML", "config.idpMetadataXml": saml_peer.metadata_xml()},
    )
    assert r.status_code == 303, r.text
    (made,) = await api_providers(tenant)
    config = made["config"]
    assert config["idpEntityId"] and config["entryPoint"].startswith("http://127.0.0.1:")
    assert config["cert"] and config["wantAssertionsSigned"] is True
    assert "idpMetadataXml" not in config  # read, never kept
    page = await browser.get(r.headers["location"])
    assert f'value="{config["entryPoint"]}"' in page.text
    broken = await fill_in(
        browser,
        f"{path}?type=saml",
        f"{path}/providers",
        {"name": "Bad SAML", "config.idpMetadataXml": "<not-metadata"},
    )
    assert broken.status_code == 422 and "config.idpMetadataXml" in broken.text
