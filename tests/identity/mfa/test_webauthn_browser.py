"""WebAuthn in a real browser: headless Chromium with the DevTools virtual authenticator
(CTAP2, internal, resident keys, user verification) against ``kanvaro serve`` on
``http://localhost:PORT`` with its own pages and ``webauthn.js``.

One user registers an authenticator on ``/auth/webauthn/register``, signs in with his
password and the authenticator as second step on ``/sign-in``, then with the passkey alone.
An authenticator that stops verifying its user is refused under a UV-required policy, one of
a model the tenant does not list cannot be registered, and no credential material reaches
the server's log or the audit trail. Every page is watched for CSP violations.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import patch

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.identity.sessions.policy import NEVER
from tests import serving
from tests.browser import CHROMIUM_ARGS, ServedApp, chromium_or_skip
from tests.conftest import PASSWORD
from tests.identity.mfa.policy_support import set_mfa_policy
from tests.identity.sessions.conftest import set_policy

ME = "/api/v1/auth/me"
BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion
STATUS_OF = "async (url) => (await fetch(url, {credentials: 'same-origin'})).status"
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    """``kanvaro serve`` whose public URL is the very origin the browser uses: WebAuthn
    checks the origin in every answer against it (and the RP ID, ``localhost``)."""
    chromium_or_skip()
    port = serving.free_port()
    folder = tmp_path_factory.mktemp("webauthn")
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
    with patch.object(serving, "free_port", return_value=port):  # the port named above
        server = serving.Serve([], env, folder / "serve.log")
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


class Tab:
    """A page with a virtual authenticator attached, and what its console reported."""

    def __init__(self, page: Any, cdp: Any, authenticator_id: str) -> None:
        self.page, self.cdp, self.authenticator_id = page, cdp, authenticator_id
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    async def status(self, path: str) -> int:
        return await self.page.evaluate(STATUS_OF, path)

    async def credentials(self) -> list[dict[str, Any]]:
        found = await self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return found["credentials"]

    async def user_verified(self, value: bool) -> None:
        await self.cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": self.authenticator_id, "isUserVerified": value},
        )

    def csp_violations(self) -> list[str]:
        return [t for t in self.console if "Content Security Policy" in t or "pageerror" in t]


@pytest.fixture
async def tab(browser, served, tenant) -> AsyncIterator[Tab]:
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)  # risk has its own tests
    context = await browser.new_context()
    context.set_default_timeout(BOUND_MS)
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    yield Tab(page, cdp, added["authenticatorId"])
    await context.close()


async def password_step(tab: Tab, served: ServedApp, tenant: Any) -> None:
    page = tab.page
    await page.goto(served.origin + "/sign-in")
    await page.fill("#email", tenant.admin.email)
    await page.fill("#password", PASSWORD)
    await page.fill("#tenant", tenant.slug)
    await page.click("#sign-in")


async def sign_in_and_register(tab: Tab, served: ServedApp, tenant: Any, name: str) -> str:
    await password_step(tab, served, tenant)
    await tab.page.wait_for_url("**/account/mfa")
    await tab.page.goto(served.origin + "/auth/webauthn/register")
    await tab.page.fill("#webauthn-name", name)
    await tab.page.click("#webauthn-register")
    status = tab.page.locator("#webauthn-register-hook .webauthn-status")
    await (
        status.filter(has_text="Added")
        .or_(status.filter(has_text="refused"))
        .or_(status.filter(has_text="not allowed"))
        .wait_for()
    )
    return await status.inner_text()


async def signed_out(tab: Tab) -> None:
    await tab.page.context.clear_cookies()
    assert await tab.status(ME) == 401


async def test_register_then_second_factor_then_passkey(services, served, tab, tenant):
    said = await sign_in_and_register(tab, served, tenant, "Virtual key")
    assert said == "Added “Virtual key”.", said
    (stored,) = await tab.credentials()
    assert stored["isResidentCredential"] is True

    # Password, then the authenticator as the second step.
    await signed_out(tab)
    await password_step(tab, served, tenant)
    await tab.page.locator("#webauthn-verify").click()
    await tab.page.wait_for_url("**/account/mfa")
    assert await tab.status(ME) == 200

    # The passkey alone, no password.
    await signed_out(tab)
    await tab.page.goto(served.origin + "/sign-in")
    await tab.page.fill("#tenant", tenant.slug)
    await tab.page.click("#passkey-sign-in")
    await tab.page.wait_for_url("**/account/mfa")
    assert await tab.status(ME) == 200
    assert (await tab.credentials())[0]["signCount"] >= 2
    assert tab.csp_violations() == []

    # No credential material in the server's log or the audit trail.
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        rows = await db.execute(select(AuditLog).where(AuditLog.tenant_id == uuid.UUID(tenant.id)))
        entries = list(rows.scalars())
    methods = [e.changes.get("methods") for e in entries if e.action == "auth:login:success"]
    assert ["password", "webauthn"] in methods and ["webauthn"] in methods
    audit_text = json.dumps([e.changes for e in entries], default=str)
    log_text = served.server.output()
    raw = base64.b64decode(stored["credentialId"])
    for secret in (
        stored["credentialId"],
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        stored["privateKey"],
    ):
        assert secret not in audit_text
        assert secret not in log_text


async def test_no_user_verification_is_refused_when_the_policy_requires_it(served, tab, tenant):
    await set_mfa_policy(tenant, requireUserVerification=True)
    assert (await sign_in_and_register(tab, served, tenant, "Key")).startswith("Added")
    await tab.user_verified(False)

    await signed_out(tab)
    await password_step(tab, served, tenant)
    await tab.page.locator("#webauthn-verify").click()
    status = tab.page.locator("#webauthn-hook .webauthn-status")
    await status.filter(has_text="did not confirm").wait_for()
    assert await tab.status(ME) == 401

    await tab.page.goto(served.origin + "/sign-in")
    await tab.page.fill("#tenant", tenant.slug)
    await tab.page.click("#passkey-sign-in")
    await (
        tab.page.locator("#passkey-hook .webauthn-status")
        .filter(has_text="did not confirm")
        .wait_for()
    )
    assert await tab.status(ME) == 401

    await tab.user_verified(True)
    await tab.page.click("#passkey-sign-in")
    await tab.page.wait_for_url("**/account/mfa")
    assert await tab.status(ME) == 200


async def test_an_authenticator_model_not_listed_cannot_be_registered(served, tab, tenant):
    await set_mfa_policy(tenant, allowedAaguids=[str(uuid.uuid4())])
    said = await sign_in_and_register(tab, served, tenant, "Unlisted")
    assert "not allowed" in said or "refused" in said, said
    assert await tab.credentials() != []  # the browser made one; the server refused it
    await signed_out(tab)
    await password_step(tab, served, tenant)  # no second step: nothing was registered
    await tab.page.wait_for_url("**/account/mfa")
