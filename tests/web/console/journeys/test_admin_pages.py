"""The administration pages added after the first journey, in headless Chromium against
``kanvaro serve``, each with something on it: single sign-on (a provider, the policy, a
claimed domain), SCIM (a token), rate limits (a rule and a deny entry) and the compliance
registers (a processing activity, a legal hold, a breach). Every page is watched (no CSP
violation, no script error) and saved under docs/screenshots/admin-*.png; the provider list
and the breach register also at phone width, where they must not scroll sideways.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.browser import ServedApp, Watch
from tests.conftest import PASSWORD, TenantFixture
from tests.web.console.journeys.test_admin import (  # noqa: F401
    BOUND_MS,
    DESKTOP,
    PHONE,
    chromium,
    served,
    shot,
)


async def _seed(tenant: TenantFixture) -> str:
    """What the pages show, made through the API as an admin would; the provider's name."""
    h = tenant.admin.headers
    name = f"Corporate IdP {uuid.uuid4().hex[:4]}"
    made = [
        await tenant.client.post(
            "/api/v1/sso/providers",
            headers=h,
            json={
                "providerType": "oauth2",
                "name": name,
                "enabled": True,
                "config": {
                    "clientId": "kanvaro",
                    "authorizationURL": "https://idp.example/authorize",
                    "tokenURL": "https://idp.example/token",
                    "userInfoURL": "https://idp.example/userinfo",
                },
            },
        ),
        await tenant.client.post(
            "/api/v1/sso/domains", headers=h, json={"domain": f"{tenant.slug}.example"}
        ),
        await tenant.client.post("/api/v1/admin/scim/tokens", headers=h, json={"name": "HR"}),
        await tenant.client.post(
            "/api/v1/admin/rate-limits/rules",
            headers=h,
            json={"endpointPattern": "/api/v1/invoices*", "requestsPerMinute": 120},
        ),
        await tenant.client.post(
            "/api/v1/admin/rate-limits/ip-lists",
            headers=h,
            json={"network": "192.0.2.0/28", "action": "deny"},
        ),
        await tenant.client.post(
            "/api/v1/compliance/legal-holds",
            headers=h,
            json={"resourceType": "invoices", "reason": "Case 17: invoices of 2026"},
        ),
        await tenant.client.post(
            "/api/v1/compliance/breaches",
            headers=h,
            json={
                "detectedAt": "2026-03-01T08:00:00Z",
                "description": "A laptop with exported timesheets was lost on a train.",
                "severity": "high",
                "affectedSubjects": 12,
            },
        ),
    ]
    for r in made:
        assert r.status_code == 201, r.text
    return name


async def _no_sideways_scroll(tab: Any) -> None:
    wide = await tab.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert not wide, "the page scrolls sideways at phone width"


async def test_the_newer_admin_pages_render_clean(
    chromium: Any,  # noqa: F811
    served: ServedApp,  # noqa: F811
    tenant: TenantFixture,
):
    provider = await _seed(tenant)
    watch = Watch()
    context = await chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(BOUND_MS)
    tab = await context.new_page()
    watch.attach(tab)
    base = f"{served.origin}/t/{tenant.slug}"
    await tab.goto(f"{base}/sign-in")
    await tab.fill("#email", tenant.admin.email)
    await tab.fill("#password", PASSWORD)
    await tab.click("button[type=submit]")
    await tab.wait_for_url(f"{base}/")

    pages = [
        ("sso", "/admin/sso", "Single sign-on", provider),
        ("sso-policy", "/admin/sso/policy", "SSO policy", None),
        ("sso-domains", "/admin/sso/domains", "SSO domains", f"{tenant.slug}.example"),
        ("scim", "/admin/scim", "SCIM provisioning", "HR"),
        ("rate-limits", "/admin/rate-limits", "Rate limits", "192.0.2.0/28"),
        (
            "processing-activities",
            "/admin/compliance/processing-activities",
            "Processing activities",
            None,
        ),
        ("legal-holds", "/admin/compliance/legal-holds", "Legal holds", "Case 17"),
        ("breaches", "/admin/compliance/breaches", "Breaches", "laptop"),
    ]
    for name, path, heading, shown in pages:
        await tab.goto(f"{base}{path}")
        await tab.wait_for_selector(f"h1:text-is('{heading}')")
        if shown is not None:
            assert shown in await tab.text_content("main"), f"{path} does not show {shown!r}"
        await shot(tab, name)

    # The provider's own page, reached from the list.
    await tab.goto(f"{base}/admin/sso")
    await tab.click(f"a:text-is('{provider}')")
    await tab.wait_for_selector("h1 .badge:text-is('OAUTH2')")
    await shot(tab, "sso-provider")

    await tab.set_viewport_size(PHONE)
    for name, path in (
        ("sso-phone", "/admin/sso"),
        ("breaches-phone", "/admin/compliance/breaches"),
    ):
        await tab.goto(f"{base}{path}")
        await tab.wait_for_selector("h1")
        await _no_sideways_scroll(tab)
        await shot(tab, name)
    watch.assert_clean()
    await context.close()
