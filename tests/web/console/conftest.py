"""The console's tests: an HTTPS client (the ``__Host-`` cookies are Secure, so a cookie jar
keeps and sends them only over https) that signs in through the console's own form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kanvaro.identity.sessions import cookies
from tests.conftest import PASSWORD, TenantFixture

ORIGIN = "https://testserver"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client: https, its own cookie jar, the Origin header a browser sends
    with a form from our page."""
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("203.0.113.8", 4712)
    )
    async with httpx.AsyncClient(
        transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
    ) as c:
        yield c


async def sign_in(
    browser: httpx.AsyncClient, tenant: TenantFixture, email: str, password: str = PASSWORD
) -> httpx.Response:
    r = await browser.post(f"/t/{tenant.slug}/sign-in", data={"email": email, "password": password})
    assert r.status_code == 303, r.text
    assert browser.cookies.get(cookies.ACCESS_COOKIE), "no session cookie"
    return r


def csrf_field(page: httpx.Response) -> str:
    """The form token a page rendered into its forms."""
    found = _CSRF_FIELD.search(page.text)
    assert found, "the page has no form with a csrf_token field"
    return found.group(1)


async def submit(
    browser: httpx.AsyncClient, page_path: str, action: str, data: dict[str, str] | None = None
) -> httpx.Response:
    """Open a page, then send one of its forms the way a browser does (its token included)."""
    page = await browser.get(page_path)
    assert page.status_code == 200, page.text
    return await browser.post(action, data={"csrf_token": csrf_field(page), **(data or {})})
