"""The MFA step page: a form per method, the session after it, wrong codes, spent steps."""

from __future__ import annotations

import re

import pyotp
import pytest

from kanvaro.identity.sessions import cookies
from kanvaro.web.console.session_pages import MFA_COOKIE
from tests.web.console.conftest import csrf_field, sign_in
from tests.web.console.signin.support import StepClock, enroll_totp

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock(services, monkeypatch) -> StepClock:
    step = StepClock()
    monkeypatch.setattr(services, "clock", step)
    return step


async def _password_step(browser, tenant, email: str, next_path: str = ""):
    data = {"email": email, "password": "Str0ng!Kanvaro-Pass"}
    if next_path:
        data["next"] = next_path
    r = await browser.post(f"/t/{tenant.slug}/sign-in", data=data)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"/t/{tenant.slug}/sign-in/mfa?next=")
    assert browser.cookies.get(MFA_COOKIE) and not browser.cookies.get(cookies.ACCESS_COOKIE)
    return r


async def test_the_step_page_lists_the_methods_and_a_code_signs_in(browser, tenant, clock):
    member = await tenant.member("team_member")
    setup = await enroll_totp(tenant, member, clock)
    step = await _password_step(browser, tenant, member.email, f"/t/{tenant.slug}/account")
    page = await browser.get(step.headers["location"])
    assert page.status_code == 200
    assert "Authenticator app" in page.text and "Backup code" in page.text
    assert 'name="method" value="totp"' in page.text
    assert str(browser.cookies.get(MFA_COOKIE)) not in page.text  # the challenge stays a cookie
    r = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa",
        data={
            "method": "totp",
            "code": clock.code(setup["secret"]),
            "next": f"/t/{tenant.slug}/account",
        },
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/t/{tenant.slug}/account"
    assert browser.cookies.get(cookies.ACCESS_COOKIE)
    assert not browser.cookies.get(MFA_COOKIE)  # cleared
    me = await browser.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == member.email


async def test_a_backup_code_signs_in(browser, tenant, clock):
    member = await tenant.member("team_member")
    setup = await enroll_totp(tenant, member, clock)
    await _password_step(browser, tenant, member.email)
    r = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa",
        data={"method": "backup_code", "code": setup["backupCodes"][0]},
    )
    assert r.status_code == 303 and browser.cookies.get(cookies.ACCESS_COOKIE)


async def test_a_wrong_code_shows_the_step_again_with_a_message(browser, tenant, clock):
    member = await tenant.member("team_member")
    await enroll_totp(tenant, member, clock)
    await _password_step(browser, tenant, member.email)
    r = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa", data={"method": "totp", "code": "000000"}
    )
    assert r.status_code == 401
    assert "The code is wrong or has expired." in r.text and 'id="mfa-code-form"' in r.text
    assert not browser.cookies.get(cookies.ACCESS_COOKIE)
    short = await browser.post(f"/t/{tenant.slug}/sign-in/mfa", data={"method": "totp", "code": ""})
    assert short.status_code == 422 and "Enter the code." in short.text
    odd = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa", data={"method": "carrier-pigeon", "code": "123456"}
    )
    assert odd.status_code == 422


async def test_an_expired_or_missing_step_goes_back_to_sign_in(browser, tenant, clock):
    member = await tenant.member("team_member")
    setup = await enroll_totp(tenant, member, clock)
    none = await browser.get(f"/t/{tenant.slug}/sign-in/mfa")
    assert none.status_code == 303 and none.headers["location"].endswith(
        "/sign-in?notice=mfa-expired"
    )
    await _password_step(browser, tenant, member.email)
    clock.advance(minutes=6)
    page = await browser.get(f"/t/{tenant.slug}/sign-in/mfa")
    assert page.status_code == 303 and "notice=mfa-expired" in page.headers["location"]
    r = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa",
        data={"method": "totp", "code": clock.code(setup["secret"])},
    )
    assert r.status_code == 303 and "notice=mfa-expired" in r.headers["location"]
    notice = await browser.get(r.headers["location"])
    assert "The sign-in step has expired" in notice.text


async def test_a_step_of_one_tenant_is_not_answered_at_another(
    browser, tenant, other_tenant, clock
):
    member = await tenant.member("team_member")
    await enroll_totp(tenant, member, clock)
    await _password_step(browser, tenant, member.email)
    r = await browser.get(f"/t/{other_tenant.slug}/sign-in/mfa")
    assert r.status_code == 303 and "notice=mfa-expired" in r.headers["location"]


async def test_email_codes_are_sent_by_a_button_and_sign_in(
    browser, tenant, clock, services, monkeypatch
):
    from tests.web.console.signin.support import mail_text, mailbox

    mailer = mailbox(services, monkeypatch)
    member = await tenant.member("team_member")
    await enroll_totp(tenant, member, clock)  # a first factor; email codes too
    r = await tenant.client.post(
        "/api/v1/auth/mfa/setup", headers=member.headers, json={"method": "email"}
    )
    if r.status_code != 200:
        pytest.skip(f"email codes are not enabled by the default policy: {r.status_code}")
    import re

    code = re.search(r"\b(\d{6,8})\b", mail_text(mailer, member.email)[-1]).group(1)
    ok = await tenant.client.post(
        "/api/v1/auth/mfa/verify-setup",
        headers=member.headers,
        json={"method": "email", "code": code},
    )
    assert ok.status_code == 200, ok.text
    await _password_step(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/sign-in/mfa?method=email")
    assert "Send me a code" in page.text
    sent = await browser.post(f"/t/{tenant.slug}/sign-in/mfa/send", data={"method": "email"})
    assert sent.status_code == 303 and "notice=code-sent" in sent.headers["location"]
    code = re.search(r"\b(\d{6,8})\b", mail_text(mailer, member.email)[-1]).group(1)
    done = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa", data={"method": "email", "code": code}
    )
    assert done.status_code == 303 and browser.cookies.get(cookies.ACCESS_COOKIE)


async def test_the_webauthn_routes_answer_json_and_keep_the_challenge_in_the_cookie(
    browser, tenant, clock
):
    member = await tenant.member("team_member")
    await enroll_totp(tenant, member, clock)
    await _password_step(browser, tenant, member.email)
    r = await browser.post(f"/t/{tenant.slug}/sign-in/mfa/webauthn/options", json={})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    bad = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa/webauthn/verify", json={"credential": {}}
    )
    assert bad.status_code in (401, 422) and "json" in bad.headers["content-type"]
    browser.cookies.delete(MFA_COOKIE)
    gone = await browser.post(f"/t/{tenant.slug}/sign-in/mfa/webauthn/options", json={})
    assert gone.status_code == 401


async def test_a_policy_that_requires_mfa_sends_a_user_without_one_to_enrollment(browser, tenant):
    member = await tenant.member("team_member")
    r = await tenant.client.patch(
        "/api/v1/tenant/settings/mfa-policy",
        headers=tenant.admin.headers,
        json={"enforceForRoles": ["team_member"]},
    )
    assert r.status_code == 200, r.text
    await sign_in(browser, tenant, member.email)
    home = await browser.get(f"/t/{tenant.slug}/")
    assert home.status_code == 303
    assert (
        home.headers["location"]
        == f"/t/{tenant.slug}/account/security?notice=mfa-enrollment-required"
    )
    page = await browser.get(home.headers["location"])
    assert page.status_code == 200 and "only page you can use" in page.text
    assert "Set up an authenticator app" in page.text
    security = f"/t/{tenant.slug}/account/security"
    setup = await browser.post(f"{security}/totp", data={"csrf_token": csrf_field(page)})
    assert setup.status_code == 200, setup.text
    secret = re.search(r'id="totp-secret"[^>]*value="([A-Z2-7]+)"', setup.text).group(1)
    method_id = re.search(r'name="methodId" value="([^"]+)"', setup.text).group(1)
    done = await browser.post(
        f"{security}/totp/confirm",
        data={
            "csrf_token": csrf_field(setup),
            "methodId": method_id,
            "code": pyotp.TOTP(secret).now(),
        },
    )
    assert done.status_code == 303, done.text
    after = await browser.get(done.headers["location"])
    assert 'id="enrolled-sign-in-again"' in after.text and secret not in after.text
    # The next sign-in asks for the new factor.
    browser.cookies.clear()
    await _password_step(browser, tenant, member.email)
