"""The console's tests: an HTTPS client (the ``__Host-`` cookies are Secure, so a cookie jar
keeps and sends them only over https) that signs in through the console's own form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
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


class _FormReader(HTMLParser):
    """What a browser would send for the form posting to ``action``: its inputs' values,
    ticked boxes as "on", each list's chosen option, its text areas as typed."""

    def __init__(self, action: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action, self.inside, self.values = action, False, {}
        self._select: str | None = None
        self._first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action") == self.action and a.get("method", "get") == "post"
        if not self.inside or ("name" not in a and tag != "option"):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind == "checkbox":
                if "checked" in a:
                    self.values[a["name"]] = a.get("value") or "on"
            elif kind not in ("submit", "button"):
                self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select, self._first = a["name"], None
        elif tag == "option" and self._select is not None:
            if self._first is None:
                self._first = a.get("value", "")
                self.values.setdefault(self._select, self._first)
            if "selected" in a:
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data


def form_of(page: httpx.Response, action: str) -> dict[str, str]:
    reader = _FormReader(action)
    reader.feed(page.text)
    assert reader.values, f"the page has no form posting to {action}"
    return reader.values


async def fill_in(
    browser: httpx.AsyncClient, page_path: str, action: str, changes: dict[str, str | None]
) -> httpx.Response:
    """Open a page and send its form to ``action`` as a browser would, with the fields in
    ``changes`` typed over (None: the box unticked, the field left out)."""
    page = await browser.get(page_path)
    assert page.status_code == 200, page.text
    data = form_of(page, action) | changes
    return await browser.post(action, data={k: v for k, v in data.items() if v is not None})
