"""Forgotten password and the reset page; invitation acceptance."""

from __future__ import annotations

import pytest

from kanvaro.identity.password_reset import service as reset
from tests.conftest import unique_email
from tests.web.console.conftest import sign_in
from tests.web.console.signin.support import mail_text, mailbox, token_in

pytestmark = pytest.mark.asyncio
NEW = "N3w!Console-Passphrase-7"


async def test_forgot_answers_the_same_for_any_address_and_mails_an_account(
    browser, tenant, services, monkeypatch
):
    mailer = mailbox(services, monkeypatch)
    member = await tenant.member("viewer")
    page = await browser.get(f"/t/{tenant.slug}/password/forgot")
    assert page.status_code == 200 and 'name="email"' in page.text
    known = await browser.post(f"/t/{tenant.slug}/password/forgot", data={"email": member.email})
    unknown = await browser.post(
        f"/t/{tenant.slug}/password/forgot", data={"email": unique_email("nobody")}
    )
    odd = await browser.post(f"/t/{tenant.slug}/password/forgot", data={"email": "not an address"})
    assert known.status_code == unknown.status_code == odd.status_code == 303
    assert known.headers["location"] == unknown.headers["location"] == odd.headers["location"]
    done = await browser.get(known.headers["location"])
    assert "If an account exists for this address" in done.text
    await reset.drain()
    assert len(mail_text(mailer, member.email)) == 1 and len(mailer.sent) == 1
    empty = await browser.post(f"/t/{tenant.slug}/password/forgot", data={"email": ""})
    assert empty.status_code == 422 and "Enter your email address." in empty.text
    gone = await browser.get("/t/no-such-tenant-here/password/forgot")
    assert gone.status_code == 404


async def test_the_reset_page_sets_the_password_and_the_token_is_never_on_a_get(
    browser, tenant, services, monkeypatch
):
    mailer = mailbox(services, monkeypatch)
    member = await tenant.member("viewer")
    await browser.post(f"/t/{tenant.slug}/password/forgot", data={"email": member.email})
    await reset.drain()
    text = mail_text(mailer, member.email)[0]
    assert "/password-reset#token=" in text
    token = token_in(text)
    page = await browser.get("/password-reset")
    assert page.status_code == 200 and 'name="token"' in page.text and token not in page.text
    assert '<script type="module" src="/static/console/signin-token.js">' in page.text
    script = await browser.get("/static/console/signin-token.js")
    assert script.status_code == 200 and "location.hash" in script.text
    differ = await browser.post(
        "/password-reset", data={"token": token, "newPassword": NEW, "repeat": NEW + "x"}
    )
    assert differ.status_code == 422 and "differ" in differ.text
    weak = await browser.post(
        "/password-reset", data={"token": token, "newPassword": "short", "repeat": "short"}
    )
    assert weak.status_code in (400, 422) and "error" in weak.text
    r = await browser.post(
        "/password-reset", data={"token": token, "newPassword": NEW, "repeat": NEW}
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/t/{tenant.slug}/sign-in?notice=password-reset"
    again = await browser.post(
        "/password-reset", data={"token": token, "newPassword": NEW, "repeat": NEW}
    )
    assert again.status_code == 400 and "invalid, used or expired" in again.text
    assert token not in again.text  # a spent token is not given back
    await sign_in(browser, tenant, member.email, NEW)
    none = await browser.post(
        "/password-reset", data={"token": "", "newPassword": NEW, "repeat": NEW}
    )
    assert none.status_code == 400


async def test_an_invitation_is_accepted_on_its_page_and_the_person_signs_in(
    browser, tenant, services, monkeypatch
):
    mailer = mailbox(services, monkeypatch)
    email = unique_email("invited")
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": email, "firstName": "Ina", "lastName": "Vited", "role": "team_member"},
    )
    assert r.status_code == 201, r.text
    token = token_in(mail_text(mailer, email)[0])
    page = await browser.get("/invitation")
    assert (
        page.status_code == 200 and 'id="invitation-form"' in page.text and token not in page.text
    )
    differ = await browser.post(
        "/invitation", data={"token": token, "password": NEW, "repeat": "other"}
    )
    assert differ.status_code == 422
    weak = await browser.post(
        "/invitation", data={"token": token, "password": "abc", "repeat": "abc"}
    )
    assert weak.status_code in (400, 422) and 'class="error"' in weak.text
    ok = await browser.post("/invitation", data={"token": token, "password": NEW, "repeat": NEW})
    assert ok.status_code == 303, ok.text
    assert ok.headers["location"] == f"/t/{tenant.slug}/sign-in?notice=invitation-accepted"
    notice = await browser.get(ok.headers["location"])
    assert "Your account is active" in notice.text
    again = await browser.post("/invitation", data={"token": token, "password": NEW, "repeat": NEW})
    assert again.status_code == 401 and "invalid or has expired" in again.text
    await sign_in(browser, tenant, email, NEW)
    me = await browser.get("/api/v1/auth/me")
    assert me.json()["email"] == email


async def test_the_sign_in_page_offers_a_passkey_and_the_sso_buttons(browser, tenant):
    page = await browser.get(f"/t/{tenant.slug}/sign-in")
    assert page.status_code == 200
    assert (
        'src="/static/console/signin-passkey.js"' in page.text
        and "data-passkey-sign-in" in page.text
    )
    script = await browser.get("/static/console/signin-passkey.js")
    assert script.status_code == 200 and "/passkey/options" in script.text
    shared = await browser.get("/static/webauthn.js")
    assert "export { creationOptions" in shared.text
