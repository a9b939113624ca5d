"""The sign-in and account pages in a real browser: headless Chromium against ``kanvaro serve``
on ``http://localhost:PORT`` (a secure context, so the ``__Host-`` cookies of the browser
session are kept), on the suite's database, so the suite's tenant fixture is its tenant.

A user signs in, enrolls TOTP through the page (the secret read from the page, the code made
with pyotp), sees his backup codes once and downloads them, signs out, and signs in again
through the MFA step. Every page is watched for CSP violations and script errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from kanvaro.identity.sessions.policy import NEVER
from kanvaro.middleware.security_headers import CSP
from tests.browser import CHROMIUM_ARGS, ServedApp, Watch, chromium_or_skip, served_app
from tests.conftest import PASSWORD
from tests.identity.sessions.conftest import set_policy

ME = "/api/v1/auth/me"
MFA_POLICY = "/api/v1/tenant/settings/mfa-policy"
TOTP_STEP = 30  # seconds (RFC 6238's default, the one the server uses)
BOUND_MS = 30_000  # bounds a wait for the page; never a timed assertion

# The status of a same-origin request made by the page's own script.
STATUS_OF = "async (url) => (await fetch(url, {credentials: 'same-origin'})).status"


def needs_totp() -> None:
    """TOTP enrollment needs the ``totp`` factor (scope M1); without it the pages cannot be
    exercised beyond the password step."""
    from kanvaro.identity.mfa import factors

    if "totp" not in factors.names():
        pytest.skip("the totp factor (kanvaro.identity.mfa.totp) is not built")


# The browser asks for a favicon on its own; the app has none.


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    chromium_or_skip()  # before the server starts: nothing to start for a skipped module
    with served_app(settings, tmp_path_factory.mktemp("mfa-pages")) as running:
        yield running


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
def watch() -> Watch:
    return Watch()


@pytest.fixture
async def page(browser, served, tenant, watch) -> AsyncIterator[Any]:
    """A tab in a browser profile of its own (its own cookie jar), watched."""
    # A new device and network each time; the risk rules have their own tests.
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    context = await browser.new_context(accept_downloads=True)
    context.set_default_timeout(BOUND_MS)
    tab = await context.new_page()
    watch.attach(tab)
    yield tab
    await context.close()


async def fill_password_step(page: Any, tenant: Any, email: str | None = None) -> None:
    await page.fill("#email", email or tenant.admin.email)
    await page.fill("#password", PASSWORD)
    await page.fill("#tenant", tenant.slug)
    await page.click("#sign-in")


async def sign_in_without_mfa(page: Any, served: ServedApp, tenant: Any) -> None:
    await page.goto(served.origin + "/sign-in")
    await fill_password_step(page, tenant)
    await page.wait_for_url("**/account/mfa")
    await page.wait_for_selector(f"#who:text-is('{tenant.admin.email}')")


async def enroll_totp_on_page(page: Any) -> tuple[pyotp.TOTP, list[str]]:
    """Set up an authenticator app on the account page; its TOTP and the backup codes shown."""
    await page.click("#totp-setup")
    await page.wait_for_selector("#totp-confirm", state="visible")
    secret = (await page.text_content("#totp-secret") or "").strip()
    qr = await page.get_attribute("#totp-qr", "src")
    assert qr is not None and qr.startswith("data:image/png;base64,")
    # The image really decoded under the CSP (img-src data:), not a broken placeholder.
    await page.wait_for_function(
        "() => { const img = document.getElementById('totp-qr');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    totp = pyotp.TOTP(secret)
    await page.fill("#totp-code", totp.now())
    await page.click("#totp-verify")
    await page.wait_for_selector("#backup-codes", state="visible")
    await page.wait_for_selector("#method-rows tr[data-method=totp]")
    assert await page.text_content("#totp-secret") == ""  # the key is gone from the page
    return totp, await page.locator("#backup-list li").all_inner_texts()


def next_step_code(totp: pyotp.TOTP) -> str:
    """A code the server accepts now but that no earlier use spent: enrollment used the
    current step and a step is accepted once; the policy's window (1) accepts the next."""
    return totp.at(time.time() + TOTP_STEP)


async def downloaded_text(page: Any) -> tuple[str, str]:
    async with page.expect_download() as caught:
        await page.click("#backup-download")
    download = await caught.value
    path = Path(await download.path())
    return download.suggested_filename, await asyncio.to_thread(path.read_text, "utf-8")


async def test_the_pages_are_served_under_the_strict_csp(page, served, watch):
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    for path in ("/sign-in", "/account/mfa"):
        response = await page.request.get(served.origin + path)
        assert response.status == 200
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["content-type"].startswith("text/html")
    for asset, media_type in (
        ("sign-in.js", "text/javascript"),
        ("account-mfa.js", "text/javascript"),
        ("kanvaro-api.js", "text/javascript"),
        ("kanvaro-pages.css", "text/css"),
    ):
        response = await page.request.get(f"{served.origin}/static/{asset}")
        assert response.status == 200, asset
        assert response.headers["content-type"].startswith(media_type), asset
        assert response.headers["x-content-type-options"] == "nosniff"
    # The page itself loads its module scripts and style sheet under that CSP.
    response = await page.goto(served.origin + "/sign-in")
    assert response.headers["content-security-policy"] == CSP
    await page.wait_for_selector("#password-step", state="visible")  # its script ran
    watch.assert_clean()


async def test_the_account_page_sends_a_visitor_without_a_session_to_sign_in(page, served, watch):
    await page.goto(served.origin + "/account/mfa")
    await page.wait_for_url("**/sign-in?next=%2Faccount%2Fmfa")
    await page.wait_for_selector("#password-step", state="visible")
    watch.assert_clean(refused=frozenset({ME}))  # the page asked who is signed in


async def test_sign_in_without_mfa_follows_only_a_same_origin_next(page, served, tenant, watch):
    await page.goto(served.origin + "/sign-in?next=//evil.example/steal")
    await fill_password_step(page, tenant)
    await page.wait_for_url(served.origin + "/account/mfa")
    assert await page.evaluate(STATUS_OF, ME) == 200
    await page.wait_for_selector("#no-methods", state="visible")  # nothing set up yet
    watch.assert_clean()


@pytest.mark.parametrize(
    ("candidate", "followed"),
    [
        ("/projects?view=board#top", "/projects?view=board#top"),
        ("//evil.example/x", "/account/mfa"),
        ("/\\evil.example/x", "/account/mfa"),
        ("https://evil.example/x", "/account/mfa"),
        ("javascript:alert(1)", "/account/mfa"),
        ("", "/account/mfa"),
    ],
)
async def test_only_a_same_origin_path_is_followed_after_sign_in(
    page, served, candidate, followed, watch
):
    await page.goto(served.origin + "/sign-in")
    chosen = await page.evaluate(
        "async (c) => (await import('/static/kanvaro-api.js')).safeNextPath(c, '/account/mfa')",
        candidate,
    )
    assert chosen == followed
    watch.assert_clean()


async def test_a_wrong_password_stays_on_the_page_and_says_so(page, served, tenant, watch):
    await page.goto(served.origin + "/sign-in")
    await page.fill("#email", tenant.admin.email)
    await page.fill("#password", "not the password at all")
    await page.fill("#tenant", tenant.slug)
    await page.click("#sign-in")
    await page.wait_for_selector("#message:not(:empty):not(:text-is('Signing in…'))")
    assert page.url == served.origin + "/sign-in"
    assert await page.evaluate(STATUS_OF, ME) == 401
    watch.assert_clean(refused=frozenset({"/api/v1/auth/login", ME}))


async def test_enroll_totp_see_the_backup_codes_once_and_sign_in_with_a_code(
    page, served, tenant, watch
):
    needs_totp()
    await sign_in_without_mfa(page, served, tenant)
    totp, codes = await enroll_totp_on_page(page)

    assert len(codes) == 10 and len(set(codes)) == 10  # the policy's default count
    name, text = await downloaded_text(page)
    assert name == "kanvaro-backup-codes.txt"
    assert all(code in text for code in codes)
    assert "Backup codes left: 10." in (await page.text_content("#backup-left") or "")

    # Shown once: a reload (or coming back) does not bring them back.
    await page.reload()
    await page.wait_for_selector("#method-rows tr[data-method=totp]")
    assert await page.is_hidden("#backup-codes")
    content = await page.content()
    assert not any(code in content for code in codes)

    await page.click("#sign-out")
    await page.wait_for_url("**/sign-in")
    assert await page.evaluate(STATUS_OF, ME) == 401

    await fill_password_step(page, tenant)
    await page.wait_for_selector("#mfa-step", state="visible")
    assert await page.is_checked("#method-totp")
    assert await page.is_visible("#use-backup")  # backup codes are offered as the fallback
    assert await page.input_value("#password") == ""  # not kept once it was used
    await page.fill("#code", next_step_code(totp))
    await page.click("#verify")
    await page.wait_for_url("**/account/mfa")
    await page.wait_for_selector(f"#who:text-is('{tenant.admin.email}')")
    assert await page.evaluate(STATUS_OF, ME) == 200
    watch.assert_clean(refused=frozenset({ME}))  # asked while signed out


async def test_a_wrong_code_keeps_the_mfa_step_and_a_backup_code_signs_in(
    page, served, tenant, watch
):
    needs_totp()
    await sign_in_without_mfa(page, served, tenant)
    _, codes = await enroll_totp_on_page(page)
    await page.click("#backup-done")
    assert await page.is_hidden("#backup-codes")
    await page.click("#sign-out")
    await page.wait_for_url("**/sign-in")

    await fill_password_step(page, tenant)
    await page.wait_for_selector("#mfa-step", state="visible")
    await page.click("#use-backup")
    assert await page.is_checked("#method-backup_code")
    await page.fill("#code", "0000-0000")
    await page.click("#verify")
    await page.wait_for_selector("#message:not(:empty):not(:text-is('Checking…'))")
    assert await page.is_visible("#mfa-step")
    assert await page.evaluate(STATUS_OF, ME) == 401

    await page.fill("#code", codes[0])
    await page.click("#verify")
    await page.wait_for_url("**/account/mfa")
    await page.wait_for_selector("#backup-left:text('Backup codes left: 9.')")
    watch.assert_clean(refused=frozenset({"/api/v1/auth/mfa/verify", ME}))


async def test_regenerating_shows_new_codes_once(page, served, tenant, watch):
    needs_totp()
    await sign_in_without_mfa(page, served, tenant)
    _, first = await enroll_totp_on_page(page)
    await page.click("#backup-done")

    await page.click("#regenerate")
    await page.click("#regenerate-yes")
    await page.wait_for_selector("#backup-codes", state="visible")
    second = await page.locator("#backup-list li").all_inner_texts()
    assert len(second) == 10 and not set(second) & set(first)
    _, text = await downloaded_text(page)
    assert all(code in text for code in second) and not any(code in text for code in first)
    watch.assert_clean()


async def test_a_user_the_policy_requires_mfa_of_enrolls_from_the_account_page(
    page, served, tenant, watch
):
    """An enrollment-only session (the policy requires a factor he lacks) reaches the account
    page, is told why, and enrolls; his next sign-in has the MFA step."""
    needs_totp()
    member = await tenant.member("team_member")
    r = await tenant.client.patch(
        MFA_POLICY, headers=tenant.admin.headers, json={"enforceForRoles": ["team_member"]}
    )
    assert r.status_code == 200, r.text

    await page.goto(served.origin + "/sign-in")
    await fill_password_step(page, tenant, member.email)
    await page.wait_for_url("**/account/mfa")
    await page.wait_for_selector("#required-note", state="visible")
    assert await page.evaluate(STATUS_OF, "/api/v1/projects") == 403  # enrollment only
    totp, codes = await enroll_totp_on_page(page)
    assert codes
    assert await page.is_hidden("#required-note")

    await page.click("#sign-out")
    await page.wait_for_url("**/sign-in")
    await fill_password_step(page, tenant, member.email)
    await page.wait_for_selector("#mfa-step", state="visible")
    await page.fill("#code", next_step_code(totp))
    await page.click("#verify")
    await page.wait_for_url("**/account/mfa")
    assert await page.evaluate(STATUS_OF, "/api/v1/projects") == 200  # a full session now
    watch.assert_clean(refused=frozenset({"/api/v1/projects"}))


async def test_the_watch_sees_a_csp_violation(page, served, watch):
    """The CSP checks above can fail: an inline script the page would run is refused and
    reported."""
    await page.goto(served.origin + "/sign-in")
    await page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = true'; document.body.append(s); }"
    )
    assert await page.evaluate("() => window.ran === undefined")
    for _ in range(50):
        if watch.csp_violations:
            break
        await page.wait_for_timeout(100)
    assert watch.csp_violations
