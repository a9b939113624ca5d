"""A SAML sign-in in a real browser: headless Chromium, ``kanvaro serve`` on
``http://localhost:PORT`` (its public URL, so the ACS and entity id the IdP sees are the ones
the browser reaches), and the pysaml2 IdP on ``http://127.0.0.1:PORT`` - another site, so its
auto-posting form is a cross-site POST to the ACS, as with a real IdP.

The browser starts at our login address, is sent to the IdP with a signed AuthnRequest, the
IdP's page posts the signed answer back, and the browser lands on the return path signed in
(its session cookies reach ``/api/v1/auth/me``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from kanvaro.identity.sessions.policy import NEVER
from tests import serving
from tests.browser import CHROMIUM_ARGS, chromium_or_skip
from tests.conftest import TenantFixture, new_tenant
from tests.identity.sessions.conftest import set_policy
from tests.identity.sso import saml_idp
from tests.identity.sso.saml_idp import IdP, User

BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion


@pytest.fixture(scope="module")
def served_origin(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kanvaro serve`` on the suite's database, its public URL set to where it listens."""
    chromium_or_skip()
    port = serving.free_port()
    origin = f"http://localhost:{port}"
    env = serving.clean_env(
        KANVARO_ENV="development",
        KANVARO_DATA_DIR=str(settings.data_dir),
        KANVARO_DATABASE_URL=settings.resolved_database_url,
        KANVARO_LOGIN_MAX_FAILURES_PER_IP="100000",
        KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS="0",
        KANVARO_PUBLIC_URL=origin,
    )
    if settings.redis_url:
        env["KANVARO_REDIS_URL"] = settings.redis_url
    folder: Path = tmp_path_factory.mktemp("saml-browser")
    with mock.patch.object(serving, "free_port", return_value=port):
        server = serving.Serve([], env, folder / "serve.log")
    try:
        server.wait_ready()
        yield origin
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


@pytest.fixture
async def saml_tenant(services: Any, saml_client: httpx.AsyncClient) -> TenantFixture:
    tenant = await new_tenant(services, saml_client)
    # A new device and network each time; the risk rules have their own tests.
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    return tenant


async def test_sign_in_through_the_idp_in_chromium(
    browser: Any,
    served_origin: str,
    saml_client: httpx.AsyncClient,
    saml_tenant: TenantFixture,
    saml_peer: IdP,
) -> None:
    r = await saml_client.post(
        "/api/v1/sso/providers",
        headers=saml_tenant.admin.headers,
        json={
            "providerType": "saml",
            "name": f"Browser IdP {uuid.uuid4().hex[:6]}",
            "config": {
                "idpMetadataXml": saml_peer.metadata_xml(),
                "attributeMapping": saml_idp.MAPPING,
                "domains": ["kanvaro.example"],
            },
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    # The IdP loads our metadata from the served instance (its public URL is in it).
    async with httpx.AsyncClient() as real:
        metadata = await real.get(f"{served_origin}/api/v1/sso/{pid}/saml/metadata")
    assert metadata.status_code == 200, metadata.text
    assert f"{served_origin}/api/v1/sso/{pid}/saml/acs" in metadata.text
    saml_peer.register_sp(metadata.text)
    email = f"chromium-{uuid.uuid4().hex[:8]}@kanvaro.example"
    saml_peer.knobs.user = User(email, "Chro", "Mium")

    context = await browser.new_context()
    context.set_default_timeout(BOUND_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    seen: list[str] = []
    page.on("request", lambda req: seen.append(f"{req.method} {req.url.split('?')[0]}"))
    try:
        await page.goto(f"{served_origin}/api/v1/sso/{pid}/saml/login?returnTo=/api/v1/auth/me")
        await page.wait_for_url(f"{served_origin}/api/v1/auth/me", timeout=BOUND_MS)
        body = json.loads(await page.inner_text("body"))
        assert body["email"] == email
        assert body["firstName"] == "Chro"
        # The way it went: to the IdP, back by a POST to our ACS, then the return path.
        assert f"GET {saml_peer.sso_url}" in seen, seen
        assert f"POST {served_origin}/api/v1/sso/{pid}/saml/acs" in seen, seen
        cookies = {c["name"]: c for c in await context.cookies(served_origin)}
        assert cookies["__Host-kanvaro_access"]["httpOnly"]
        assert errors == []
    finally:
        await context.close()
