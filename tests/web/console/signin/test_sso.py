"""The sign-in page's SSO buttons start the provider's flow, and it comes back to the console
page asked for, signed in (OIDC against the suite's test IdP)."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import httpx
import pytest

from kanvaro.identity.sessions import cookies
from kanvaro.web.console.session_pages import MFA_COOKIE
from tests.identity.sso.conftest import _fresh_idp_documents, make_provider, oidc_idp  # noqa: F401
from tests.identity.sso.idp import path_of, through_idp
from tests.web.console.signin.support import StepClock, enroll_totp

pytestmark = pytest.mark.asyncio


async def test_an_sso_button_signs_in_and_lands_on_the_console_page(browser, tenant, oidc_idp):  # noqa: F811
    setup = await make_provider(tenant, oidc_idp)
    wanted = f"/t/{tenant.slug}/account"
    page = await browser.get(f"/t/{tenant.slug}/sign-in", params={"next": wanted})
    assert page.status_code == 200 and setup.provider["name"] in page.text
    href = html.unescape(re.search(r'href="(/t/[^"]+/sso/[^"]+/login\?[^"]+)"', page.text).group(1))
    assert href == f"/t/{tenant.slug}/sso/{setup.id}/login?returnTo=/t/{tenant.slug}/account"
    start = await browser.get(href)
    assert start.status_code == 303, start.text
    await oidc_idp.next_account("sso-person-1", email=f"sso@{setup.domain}", email_verified=True,
                                given_name="Sam", family_name="Sso")  # fmt: skip
    async with httpx.AsyncClient() as idp_browser:
        back = await through_idp(
            idp_browser, start.headers["location"], setup.provider["callbackUrl"]
        )
    done = await browser.get(path_of(back))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == wanted
    assert browser.cookies.get(cookies.ACCESS_COOKIE)
    landed = await browser.get(wanted)
    assert landed.status_code == 200 and f"sso@{setup.domain}" in landed.text


async def test_an_sso_user_with_his_own_mfa_finishes_on_the_console_step_page(
    browser,
    tenant,
    oidc_idp,  # noqa: F811
    services,
    monkeypatch,
):
    """SSO proves the first factor; a user who enrolled TOTP here is asked for it on the
    tenant console's own step page (challenge in the HttpOnly step cookie), not on the
    standalone /sign-in page, and lands where he asked to go."""
    clock = StepClock()
    monkeypatch.setattr(services, "clock", clock)
    setup = await make_provider(tenant, oidc_idp)
    wanted = f"/t/{tenant.slug}/account"
    start_href = f"/t/{tenant.slug}/sso/{setup.id}/login?returnTo={wanted}"
    person = {"email": f"sso-mfa@{setup.domain}", "email_verified": True,
              "given_name": "Mo", "family_name": "Fa"}  # fmt: skip

    async def through_provider() -> httpx.Response:
        start = await browser.get(start_href)
        assert start.status_code == 303, start.text
        await oidc_idp.next_account("sso-mfa-person", **person)
        async with httpx.AsyncClient() as idp_browser:
            back = await through_idp(
                idp_browser, start.headers["location"], setup.provider["callbackUrl"]
            )
        return await browser.get(path_of(back))

    first = await through_provider()  # the account is made on its first sign-in
    assert first.status_code == 303 and first.headers["location"] == wanted, first.text
    access = browser.cookies.get(cookies.ACCESS_COOKIE)
    totp = await enroll_totp(
        tenant, SimpleNamespace(headers={"Authorization": f"Bearer {access}"}), clock
    )
    browser.cookies.clear()

    done = await through_provider()
    assert done.status_code == 303, done.text
    assert (
        done.headers["location"]
        == f"/t/{tenant.slug}/sign-in/mfa?next=%2Ft%2F{tenant.slug}%2Faccount"
    )
    assert "#" not in done.headers["location"]  # no challenge in any address
    step_cookie = next(v for v in done.headers.get_list("set-cookie") if v.startswith(MFA_COOKIE))
    assert "HttpOnly" in step_cookie and "SameSite=Lax" in step_cookie
    assert not browser.cookies.get(cookies.ACCESS_COOKIE)  # not signed in yet
    page = await browser.get(done.headers["location"])
    assert page.status_code == 200 and 'name="method" value="totp"' in page.text
    signed_in = await browser.post(
        f"/t/{tenant.slug}/sign-in/mfa",
        data={"method": "totp", "code": clock.code(totp["secret"]), "next": wanted},
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == wanted
    me = await browser.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == person["email"]
