"""My account: profile, password, security (TOTP with QR, backup codes once, removal), sessions
and devices, the data export."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.conftest import PASSWORD
from tests.web.console.conftest import csrf_field, sign_in, submit
from tests.web.console.signin.support import StepClock, assert_no_secret, enroll_totp

pytestmark = pytest.mark.asyncio
NEW = "N3w!Console-Passphrase-7"


@pytest.fixture
def clock(services, monkeypatch) -> StepClock:
    step = StepClock()
    monkeypatch.setattr(services, "clock", step)
    return step


async def test_the_account_page_shows_the_profile_and_the_export(browser, tenant):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/account")
    assert page.status_code == 200
    assert member.email in page.text and "Test Person" in page.text and "team member" in page.text
    assert f'href="/api/v1/users/{member.id}/export?format=zip" download' in page.text
    assert 'id="profile-form"' not in page.text  # a member's name is kept by the admins
    export = await browser.get(f"/api/v1/users/{member.id}/export?format=zip")
    assert export.status_code == 200 and export.headers["content-type"] == "application/zip"


async def test_an_admin_renames_himself_and_a_member_may_not(browser, tenant):
    await sign_in(browser, tenant, tenant.admin.email)
    r = await submit(browser, f"/t/{tenant.slug}/account", f"/t/{tenant.slug}/account/profile",
                     {"firstName": "Ada", "lastName": "Lovelace"})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].endswith("notice=profile-saved")
    me = await tenant.client.get("/api/v1/auth/me", headers=tenant.admin.headers)
    assert (me.json()["firstName"], me.json()["lastName"]) == ("Ada", "Lovelace")
    bad = await submit(browser, f"/t/{tenant.slug}/account", f"/t/{tenant.slug}/account/profile",
                       {"firstName": "", "lastName": "Lovelace"})  # fmt: skip
    assert bad.status_code == 422 and "firstName" in bad.text
    member = await tenant.member("team_member")
    browser.cookies.clear()
    await sign_in(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/account")
    refused = await browser.post(
        f"/t/{tenant.slug}/account/profile",
        data={"csrf_token": csrf_field(page), "firstName": "Mal", "lastName": "Lory"},
    )
    assert refused.status_code == 403 and 'role="alert"' in refused.text


async def test_the_password_form_changes_the_password(browser, tenant):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    page = f"/t/{tenant.slug}/account"
    action = f"/t/{tenant.slug}/account/password"
    wrong = await submit(browser, page, action,
                         {"currentPassword": "nope-nope", "newPassword": NEW, "repeat": NEW})  # fmt: skip
    assert wrong.status_code == 400 and "The current password is wrong." in wrong.text
    differ = await submit(browser, page, action,
                          {"currentPassword": PASSWORD, "newPassword": NEW, "repeat": "x"})  # fmt: skip
    assert differ.status_code == 422 and "differ" in differ.text
    weak = await submit(browser, page, action,
                        {"currentPassword": PASSWORD, "newPassword": "abc", "repeat": "abc"})  # fmt: skip
    assert weak.status_code in (400, 422) and "newPassword" in weak.text
    ok = await submit(browser, page, action,
                      {"currentPassword": PASSWORD, "newPassword": NEW, "repeat": NEW})  # fmt: skip
    assert ok.status_code == 303 and ok.headers["location"].endswith("notice=password-changed")
    r = await tenant.client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": NEW, "tenant": tenant.slug}
    )
    assert r.status_code == 200


async def test_totp_enrollment_shows_the_qr_once_and_the_secret_never_again(browser, tenant, clock):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    security = f"/t/{tenant.slug}/account/security"
    page = await browser.get(security)
    assert page.status_code == 200 and "No second factor is set up yet." in page.text
    setup = await submit(browser, security, f"{security}/totp", {"name": "My phone"})
    assert setup.status_code == 200, setup.text
    assert 'src="data:image/svg+xml;base64,' in setup.text
    secret = re.search(r'id="totp-secret"[^>]*value="([A-Z2-7]+)"', setup.text).group(1)
    codes = re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4})</li>", setup.text)
    assert len(codes) >= 5
    method_id = re.search(r'name="methodId" value="([^"]+)"', setup.text).group(1)
    token = csrf_field(setup)
    wrong = await browser.post(f"{security}/totp/confirm",
                               data={"csrf_token": token, "methodId": method_id, "code": "000000"})  # fmt: skip
    assert wrong.status_code == 422 and "wrong" in wrong.text and secret not in wrong.text
    ok = await browser.post(
        f"{security}/totp/confirm",
        data={"csrf_token": token, "methodId": method_id, "code": pyotp.TOTP(secret).at(clock.at)},
    )
    assert ok.status_code == 303 and ok.headers["location"].endswith("notice=totp-enrolled")
    overview = await tenant.client.get(f"/api/v1/users/{member.id}/mfa", headers=member.headers)
    assert [m["method"] for m in overview.json()["methods"] if m["verified"]] == [
        "totp",
        "backup_code",
    ]
    for path in (security, f"/t/{tenant.slug}/account", f"/t/{tenant.slug}/account/sessions"):
        again = await browser.get(path)
        assert again.status_code == 200
        assert_no_secret(again, secret, *codes)
    assert "My phone" in (await browser.get(security)).text


async def test_backup_codes_are_shown_once_with_a_download(browser, tenant, clock):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    await enroll_totp(tenant, member, clock)
    security = f"/t/{tenant.slug}/account/security"
    r = await submit(browser, security, f"{security}/backup-codes")
    assert r.status_code == 200, r.text
    codes = re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4})</li>", r.text)
    assert len(codes) == 10
    assert 'download="kanvaro-backup-codes.txt"' in r.text and 'href="data:text/plain' in r.text
    assert_no_secret(await browser.get(security), *codes)
    left = await tenant.client.get(f"/api/v1/users/{member.id}/mfa", headers=member.headers)
    assert left.json()["backupCodesRemaining"] == 10


async def test_removing_a_method_asks_for_the_password_when_the_sign_in_is_old(
    browser, tenant, clock
):
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    await enroll_totp(tenant, member, clock)
    overview = await tenant.client.get(f"/api/v1/users/{member.id}/mfa", headers=member.headers)
    totp_id = next(m["id"] for m in overview.json()["methods"] if m["method"] == "totp")
    security = f"/t/{tenant.slug}/account/security"
    clock.advance(minutes=20)  # past the reauth age (15), within the idle timeout (30)
    old = await submit(browser, security, f"{security}/mfa/{totp_id}/remove")
    assert old.status_code == 403 and 'id="reauth-form"' in old.text
    wrong = await submit(browser, security, f"{security}/reauth", {"password": "wrong-one"})
    assert wrong.status_code == 400 and 'id="reauth-form"' in wrong.text
    ok = await submit(browser, security, f"{security}/reauth", {"password": PASSWORD})
    assert ok.status_code == 303 and ok.headers["location"].endswith("notice=reauthed")
    gone = await submit(browser, security, f"{security}/mfa/{totp_id}/remove")
    assert gone.status_code == 303 and gone.headers["location"].endswith("notice=method-removed")
    after = await tenant.client.get(f"/api/v1/users/{member.id}/mfa", headers=member.headers)
    assert not [m for m in after.json()["methods"] if m["method"] == "totp"]
    unknown = await submit(browser, security, f"{security}/mfa/{totp_id}/remove")
    assert unknown.status_code == 404


async def test_sessions_are_listed_and_revoked_and_log_out_everywhere_ends_all(
    browser, tenant, app
):
    import httpx

    member = await tenant.member("team_member")  # one API session already
    await sign_in(browser, tenant, member.email)
    page = await browser.get(f"/t/{tenant.slug}/account/sessions")
    assert page.status_code == 200 and "this browser" in page.text
    ids = re.findall(r"/account/sessions/([0-9a-f-]{36})/revoke", page.text)
    assert len(ids) >= 2
    listed = await tenant.client.get(f"/api/v1/users/{member.id}/sessions", headers=member.headers)
    api_session = next(s["id"] for s in listed.json()["items"] if s["current"])
    assert api_session in ids
    r = await submit(browser, f"/t/{tenant.slug}/account/sessions",
                     f"/t/{tenant.slug}/account/sessions/{api_session}/revoke")  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].endswith("notice=session-revoked")
    ended = await tenant.client.get("/api/v1/auth/me", headers=member.headers)
    assert ended.status_code == 401
    other = await tenant.member("viewer")
    foreign = (
        await tenant.client.get(f"/api/v1/users/{other.id}/sessions", headers=other.headers)
    ).json()
    nope = await submit(browser, f"/t/{tenant.slug}/account/sessions",
                        f"/t/{tenant.slug}/account/sessions/{foreign['items'][0]['id']}/revoke")  # fmt: skip
    assert nope.status_code == 404
    assert (await tenant.client.get("/api/v1/auth/me", headers=other.headers)).status_code == 200
    devices = re.findall(r"/account/devices/([0-9a-f]{64})/forget", page.text)
    assert devices
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("203.0.113.9", 4713)
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver",
                                 headers={"Origin": "https://testserver"}) as second:  # fmt: skip
        await sign_in(second, tenant, member.email)
        everywhere = await submit(browser, f"/t/{tenant.slug}/account/sessions",
                                  f"/t/{tenant.slug}/account/sessions/revoke-all")  # fmt: skip
        assert everywhere.status_code == 303
        assert everywhere.headers["location"].endswith("/sign-in?notice=signed-out-everywhere")
        lands = await second.get(f"/t/{tenant.slug}/account")
        assert lands.status_code == 303
        if "/session/refresh" in lands.headers["location"]:  # the refresh cookie is spent too
            lands = await second.get(lands.headers["location"])
        assert lands.headers["location"].startswith(f"/t/{tenant.slug}/sign-in")


async def test_another_tenants_address_is_404_and_signed_out_goes_to_sign_in(
    browser, tenant, other_tenant
):
    member = await tenant.member("team_member")
    out = await browser.get(f"/t/{tenant.slug}/account/security")
    assert out.status_code == 303 and "/sign-in" in out.headers["location"]
    await sign_in(browser, tenant, member.email)
    for path in ("/account", "/account/security", "/account/sessions"):
        r = await browser.get(f"/t/{other_tenant.slug}{path}")
        assert r.status_code == 404, path


async def test_email_codes_are_enrolled_with_plain_forms(browser, tenant, services, monkeypatch):
    from tests.web.console.signin.support import mail_text, mailbox

    mailer = mailbox(services, monkeypatch)
    member = await tenant.member("team_member")
    await sign_in(browser, tenant, member.email)
    security = f"/t/{tenant.slug}/account/security"
    page = await browser.get(security)
    if 'id="code-email-form"' not in page.text:
        pytest.skip("the tenant's default policy allows no email codes")
    sent = await submit(
        browser, security, f"{security}/code", {"method": "email", "identifier": ""}
    )
    assert sent.status_code == 200, sent.text
    assert "We sent a code to" in sent.text
    code = re.search(r"\b(\d{6,8})\b", mail_text(mailer, member.email)[-1]).group(1)
    assert code not in sent.text
    method_id = re.search(r'name="methodId" value="([^"]+)"', sent.text).group(1)
    token = csrf_field(sent)
    wrong = await browser.post(
        f"{security}/code/confirm",
        data={
            "csrf_token": token,
            "method": "email",
            "methodId": method_id,
            "code": "00000000"[: len(code)],
        },
    )
    assert wrong.status_code in (400, 401, 422) and 'id="code-error"' in wrong.text
    ok = await browser.post(
        f"{security}/code/confirm",
        data={"csrf_token": token, "method": "email", "methodId": method_id, "code": code},
    )
    assert ok.status_code in (200, 303), ok.text
    codes = re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4})</li>", ok.text)
    overview = await tenant.client.get(f"/api/v1/users/{member.id}/mfa", headers=member.headers)
    assert "email" in [m["method"] for m in overview.json()["methods"] if m["verified"]]
    assert_no_secret(await browser.get(security), code, *(codes or ["-none-"]))
    bad = await submit(browser, security, f"{security}/code", {"method": "totp", "identifier": ""})
    assert bad.status_code == 422 and "Choose email or text message codes." in bad.text
