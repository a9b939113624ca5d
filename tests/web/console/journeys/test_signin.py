"""Signing in and one's own account in the console, in headless Chromium against ``kanvaro
serve`` (public URL = the browser's origin, so WebAuthn's origin check holds; the DevTools
virtual authenticator stands in for a passkey).

The admin invites a person through the API; the person opens the invitation link from the
mail, chooses a password, signs in, enrolls an authenticator app (the key read from the page,
the code from pyotp) and a passkey, makes a new set of backup codes and downloads them, signs
out, and signs in again with the TOTP step, with the passkey as second step, and with the
passkey alone. A session ended from the sessions page in one browser context ends in the
other: its next page load lands on sign-in. Every page is watched: no CSP violation, no
script error. Screenshots go to docs/screenshots/signin-*.png and account-*.png.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import urlsplit

import pyotp
import pytest

from kanvaro.identity.sessions.policy import NEVER
from kanvaro.notify.email import NullMailer
from tests import serving
from tests.browser import CHROMIUM_ARGS, ServedApp, Watch, chromium_or_skip
from tests.conftest import PASSWORD, TenantFixture, unique_email
from tests.identity.sessions.conftest import set_policy
from tests.web.console.signin.support import mail_text, token_in

BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion
SHOTS = Path(__file__).resolve().parents[4] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
NEW_PASSWORD = "Correct-Horse-Battery-9!"
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
    chromium_or_skip()
    port = serving.free_port()
    folder = tmp_path_factory.mktemp("signin-journey")
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
        server = serving.Serve([], env, folder / "serve.log")
    try:
        server.wait_ready()
        yield ServedApp(f"http://localhost:{port}", server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    executable = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        yield launched
        await launched.close()


async def open_tab(chromium: Any, watch: Watch, **options: Any) -> tuple[Any, Any]:
    context = await chromium.new_context(viewport=DESKTOP, accept_downloads=True, **options)
    context.set_default_timeout(BOUND_MS)
    tab = await context.new_page()
    watch.attach(tab)
    tab.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))  # data-confirm
    return context, tab


async def shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def password_step(tab: Any, served: ServedApp, slug: str, email: str, password: str) -> None:
    await tab.goto(f"{served.origin}/t/{slug}/sign-in")
    await tab.fill("#email", email)
    await tab.fill("#password", password)
    await tab.click("#password-sign-in button[type=submit]")


async def sign_out(tab: Any, served: ServedApp, slug: str) -> None:
    await tab.click("form.sign-out button")
    await tab.wait_for_url(f"{served.origin}/t/{slug}/sign-in?notice=signed-out")


async def test_an_invited_person_enrolls_totp_and_a_passkey_and_signs_in_with_each(
    chromium: Any, served: ServedApp, tenant: TenantFixture, services: Any, monkeypatch: Any
):
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    mailer = NullMailer()
    monkeypatch.setattr(services, "mailer", mailer)
    email = unique_email("invited")
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": email, "firstName": "Ines", "lastName": "Invited", "role": "team_member"},
    )
    assert r.status_code == 201, r.text
    token = token_in(mail_text(mailer, email)[0])

    watch = Watch()
    context, tab = await open_tab(chromium, watch)
    base = f"{served.origin}/t/{tenant.slug}"
    cdp = await context.new_cdp_session(tab)
    await cdp.send("WebAuthn.enable")
    await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})

    # The invitation's page: the token is read from the fragment and leaves the address bar.
    await tab.goto(f"{served.origin}/invitation#token={token}")
    assert urlsplit(tab.url).fragment == ""
    await tab.fill("#password", NEW_PASSWORD)
    await tab.fill("#repeat", NEW_PASSWORD)
    await tab.click("#invitation-form button[type=submit]")
    await tab.wait_for_url(f"{base}/sign-in?notice=invitation-accepted")
    await tab.wait_for_selector("[data-passkey-sign-in]:not([hidden])")
    await shot(tab, "signin-page")

    await password_step(tab, served, tenant.slug, email, NEW_PASSWORD)
    await tab.wait_for_url(f"{base}/")

    # An authenticator app: the QR code (an SVG under img-src data:) and the key as text.
    await tab.goto(f"{base}/account/security")
    await tab.click("#totp-form button[type=submit]")
    await tab.wait_for_selector("#totp-qr")
    src = await tab.get_attribute("#totp-qr", "src")
    assert src and src.startswith("data:image/svg+xml;base64,")
    await tab.wait_for_function(
        "() => { const i = document.getElementById('totp-qr'); return i.complete && i.naturalWidth > 0; }"
    )
    secret = await tab.input_value("#totp-secret")
    first_codes = await tab.locator("#backup-codes li").all_inner_texts()
    assert len(first_codes) == 10
    await shot(tab, "account-totp-enrollment")
    totp = pyotp.TOTP(secret)
    await tab.fill("#totp-code", totp.now())
    await tab.click("#totp-confirm button[type=submit]")
    await tab.wait_for_url(f"{base}/account/security?notice=totp-enrolled")
    assert secret not in await tab.content()

    # A passkey, registered by the page's script.
    await tab.fill("#passkey-name", "Virtual key")
    await tab.click("#passkey-register")
    await tab.wait_for_url(f"{base}/account/security?notice=passkey-added")
    assert "Virtual key" in await tab.text_content("#methods")

    # A new set of backup codes, shown once, downloaded.
    await tab.click("#backup-form button[type=submit]")
    await tab.wait_for_selector("#backup-codes")
    codes = await tab.locator("#backup-codes li").all_inner_texts()
    assert len(codes) == 10 and not set(codes) & set(first_codes)
    await shot(tab, "account-backup-codes")
    async with tab.expect_download() as caught:
        await tab.click("#backup-download")
    download = await caught.value
    text = await asyncio.to_thread(Path(await download.path()).read_text, "utf-8")
    assert download.suggested_filename == "kanvaro-backup-codes.txt"
    assert all(c in text for c in codes)
    await tab.goto(f"{base}/account/security")
    shown = await tab.content()
    assert not any(c in shown for c in codes)

    # Signed out; back in with the authenticator app's code.
    await sign_out(tab, served, tenant.slug)
    await password_step(tab, served, tenant.slug, email, NEW_PASSWORD)
    await tab.wait_for_url(f"{base}/sign-in/mfa**")
    await tab.wait_for_selector("#mfa-code-form")
    await shot(tab, "signin-mfa-step")
    await tab.fill("#code", totp.at(time.time() + 30))  # enrollment spent the current step
    await tab.click("#mfa-code-form button[type=submit]")
    await tab.wait_for_url(f"{base}/")

    # Again, with the passkey as the second step.
    await sign_out(tab, served, tenant.slug)
    await password_step(tab, served, tenant.slug, email, NEW_PASSWORD)
    await tab.wait_for_url(f"{base}/sign-in/mfa**")
    await tab.click('nav.mfa-methods a:text-is("Security key or passkey")')
    await tab.click("#webauthn-verify")
    await tab.wait_for_url(f"{base}/")

    # And with the passkey alone, from the sign-in page.
    await sign_out(tab, served, tenant.slug)
    await tab.click("#passkey-sign-in")
    await tab.wait_for_url(f"{base}/")
    await tab.goto(f"{base}/account/sessions")
    await tab.wait_for_selector("#sessions .badge")
    await shot(tab, "account-sessions")
    await tab.goto(f"{base}/account")
    await shot(tab, "account-profile")
    async with tab.expect_download() as caught:  # the GDPR export, with the cookie session
        await tab.click("#export-link")
    export = await caught.value
    assert export.suggested_filename.startswith("personal-data-")
    assert export.suggested_filename.endswith(".zip")
    watch.assert_clean()
    await context.close()

    # The sign-in page at phone width.
    phone_watch = Watch()
    phone, small = await open_tab(chromium, phone_watch)
    await small.set_viewport_size(PHONE)
    await small.goto(f"{base}/sign-in")
    await shot(small, "signin-page-phone")
    phone_watch.assert_clean()
    await phone.close()


async def test_a_session_ended_in_one_browser_ends_it_in_the_other(
    chromium: Any, served: ServedApp, tenant: TenantFixture
):
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    member = await tenant.member("team_member")
    base = f"{served.origin}/t/{tenant.slug}"
    watch = Watch()
    first_context, first = await open_tab(chromium, watch)
    second_context, second = await open_tab(chromium, watch)
    for tab in (first, second):
        await password_step(tab, served, tenant.slug, member.email, PASSWORD)
        await tab.wait_for_url(f"{base}/")
    await second.goto(f"{base}/account")
    await first.goto(f"{base}/account/sessions")
    # The rows other than this browser's: the API session of the fixture and the second tab's.
    others = first.locator("#sessions tbody tr:not(.current) form button")
    while await others.count():
        await others.first.click()
        await first.wait_for_url(f"{base}/account/sessions?notice=session-revoked")
    await second.reload()
    await second.wait_for_url(f"{base}/sign-in**")
    assert "/sign-in" in urlsplit(second.url).path
    await first.goto(f"{base}/account")  # the first browser stays signed in
    assert urlsplit(first.url).path == f"/t/{tenant.slug}/account"
    watch.assert_clean()
    await first_context.close()
    await second_context.close()
