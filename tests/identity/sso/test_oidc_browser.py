"""One OIDC journey in a real browser: headless Chromium on the tenant's sign-in page of
``kanvaro serve`` (``http://localhost:PORT``), its provider button, the real IdP (npm
oidc-provider on 127.0.0.1, another site), back through the callback into a cookie session.
The page is watched for CSP violations and script errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import patch

import httpx
import pytest

from kanvaro.identity.sessions.policy import NEVER
from tests import serving
from tests.browser import CHROMIUM_ARGS, ServedApp, chromium_or_skip
from tests.conftest import TenantFixture
from tests.identity.sessions.conftest import set_policy
from tests.identity.sso.conftest import unique_domain
from tests.identity.sso.idp import Idp

BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    chromium_or_skip()
    port = serving.free_port()
    env = serving.clean_env(
        KANVARO_ENV="development",
        KANVARO_DATA_DIR=str(settings.data_dir),
        KANVARO_DATABASE_URL=settings.resolved_database_url,
        KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
        KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS="0",
        KANVARO_PUBLIC_URL=f"http://localhost:{port}",
    )
    env["KANVARO_LOG_JSON"] = "true"
    if settings.redis_url:
        env["KANVARO_REDIS_URL"] = settings.redis_url
    with patch.object(serving, "free_port", return_value=port):
        server = serving.Serve([], env, tmp_path_factory.mktemp("sso-browser") / "serve.log")
    try:
        server.wait_ready()
        yield ServedApp(f"http://localhost:{port}", server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        yield launched
        await launched.close()


async def _provider(served: ServedApp, tenant: TenantFixture, oidc_idp: Idp, domain: str) -> str:
    """Created through the served app, so its callback URL is the browser's origin."""
    async with httpx.AsyncClient(base_url=served.origin, headers=tenant.admin.headers) as api:
        config = {"issuer": oidc_idp.issuer, "clientId": "pending", "domains": [domain]}
        r = await api.post(
            "/api/v1/sso/providers",
            json={"providerType": "oidc", "name": "Company IdP", "config": config},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        client = await oidc_idp.register(created["callbackUrl"])
        r = await api.patch(
            f"/api/v1/sso/providers/{created['id']}",
            json={
                "version": created["version"],
                "config": {
                    **config,
                    "clientId": client["client_id"],
                    "clientSecret": client["client_secret"],
                },
            },
        )
        assert r.status_code == 200, r.text
        return created["id"]


async def test_sign_in_with_the_tenants_provider(browser, served, tenant, oidc_idp) -> None:
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)  # risk has its own tests
    domain = unique_domain()
    provider_id = await _provider(served, tenant, oidc_idp, domain)
    email = f"nia-{uuid.uuid4().hex[:6]}@{domain}"
    await oidc_idp.next_account(
        f"nia-{uuid.uuid4().hex[:6]}",
        email=email,
        email_verified=True,
        given_name="Nia",
        family_name="Browser",
    )
    context = await browser.new_context()
    context.set_default_timeout(BOUND_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    try:
        await page.goto(f"{served.origin}/sign-in?tenant={tenant.slug}&next=/account/mfa")
        button = page.locator(f".sso-provider[data-provider-id='{provider_id}']")
        assert await button.inner_text() == "Company IdP"
        await button.click()
        await page.wait_for_url(f"{served.origin}/account/mfa")
        me = await page.evaluate(
            "async () => (await fetch('/api/v1/auth/me', {credentials: 'same-origin'})).json()"
        )
        assert me["email"] == email and me["role"] == "viewer"
        cookies = {c["name"] for c in await context.cookies(served.origin)}
        assert "__Host-kanvaro_access" in cookies
        assert "__Host-kanvaro_sso" not in cookies  # the binding secret is spent and gone
    finally:
        await context.close()
    assert [p for p in problems if "Content Security Policy" in p or "pageerror" in p] == []
