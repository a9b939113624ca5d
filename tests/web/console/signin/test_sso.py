"""The sign-in page's SSO buttons start the provider's flow, and it comes back to the console
page asked for, signed in (OIDC against the suite's test IdP)."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from kanvaro.identity.sessions import cookies
from tests.identity.sso.conftest import _fresh_idp_documents, make_provider, oidc_idp  # noqa: F401
from tests.identity.sso.idp import path_of, through_idp

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
