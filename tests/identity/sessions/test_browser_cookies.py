"""A real browser keeps the cookie session, sends it to the app's own pages only, and the
app refuses what another site makes the browser send.

``test_cookies.py`` proves the server's side over httpx, which keeps no ``Secure`` cookie over
``http://``. Here Chromium itself stores the ``__Host-`` cookies (or would refuse them if an
attribute were wrong), hides the HttpOnly ones from the page's script, sends them with the
page's own requests, and leaves them out of a cross-site form or fetch. The app runs for real
(``kanvaro serve``) on the suite's database, so the suite's tenant fixture is its tenant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from kanvaro.identity.sessions import cookies
from kanvaro.identity.sessions.policy import NEVER
from tests.browser import (
    CHROMIUM_ARGS,
    Answer,
    OtherSite,
    ServedApp,
    chromium_or_skip,
    served_app,
)
from tests.conftest import PASSWORD
from tests.identity.sessions.conftest import set_policy

ACCESS, REFRESH, DEVICE, CSRF = (
    cookies.ACCESS_COOKIE,
    cookies.REFRESH_COOKIE,
    cookies.DEVICE_COOKIE,
    cookies.CSRF_COOKIE,
)
# What docs/security-model.md "Browser sessions" promises: (SameSite, HttpOnly).
DOCUMENTED = {
    ACCESS: ("Lax", True),
    REFRESH: ("Strict", True),
    DEVICE: ("Lax", True),
    CSRF: ("Lax", False),
}
PROJECTS = "/api/v1/projects"
ME = "/api/v1/auth/me"

# The page's own script: a request to the app, with the CSRF token read from its cookie as a
# real front end does, or none. Errors (a refused cross-site fetch)
# come back as their name, since a page sees no more than that.
FETCH = """async ({url, method, body, csrfFromCookie, credentials, contentType}) => {
  const headers = {};
  if (body !== null) headers['Content-Type'] = contentType;
  if (csrfFromCookie) {
    const prefix = '__Host-kanvaro_csrf=';
    const found = document.cookie.split('; ').find((c) => c.startsWith(prefix));
    if (found) headers['X-CSRF-Token'] = found.slice(prefix.length);
  }
  try {
    const r = await fetch(url, {method, headers, credentials, body: body ?? undefined});
    return {status: r.status, contentType: r.headers.get('content-type'), text: await r.text()};
  } catch (e) {
    return {error: e.name};
  }
}"""


@dataclass
class Reply:
    status: int | None
    content_type: str | None
    text: str
    error: str | None

    def json(self) -> Any:
        return json.loads(self.text)


class Tab:
    """A browser tab; its ``fetch`` runs in the page, as the page's own script."""

    def __init__(self, page: Any) -> None:
        self.page = page

    async def fetch(
        self,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        csrf: bool = False,
        credentials: str = "same-origin",
        content_type: str = "application/json",
    ) -> Reply:
        raw = body if body is None or isinstance(body, str) else json.dumps(body)
        out = await self.page.evaluate(
            FETCH,
            {
                "url": path,
                "method": method,
                "body": raw,
                "csrfFromCookie": csrf,
                "credentials": credentials,
                "contentType": content_type,
            },
        )
        return Reply(
            out.get("status"), out.get("contentType"), out.get("text", ""), out.get("error")
        )

    async def sign_in(self, tenant: Any) -> Reply:
        r = await self.fetch(
            "/api/v1/auth/login",
            method="POST",
            body={
                "email": tenant.admin.email,
                "password": PASSWORD,
                "tenant": tenant.slug,
                "transport": "cookie",
            },
        )
        assert r.status == 200, r.text
        return r

    async def visible_cookies(self) -> str:
        return await self.page.evaluate("document.cookie")


async def stored(context: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in await context.cookies()}


async def project_names(tenant: Any) -> list[str]:
    r = await tenant.client.get(PROJECTS, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return [p["name"] for p in r.json()["items"]]


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory) -> Iterator[ServedApp]:
    """The app as deployed (not the suite's in-process ``app``, which the tenant fixtures use)."""
    chromium_or_skip()  # before the server starts: nothing to start for a skipped module
    with served_app(settings, tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="module")
def other_site() -> Iterator[OtherSite]:
    with OtherSite() as site:
        yield site


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
async def context(browser) -> AsyncIterator[Any]:
    """A browser profile of the test's own: its own cookie jar."""
    ctx = await browser.new_context()
    yield ctx
    await ctx.close()


@pytest.fixture
async def tab(context, served, tenant) -> Tab:
    # The browser signs in from a new device and network; the risk rules have their own tests.
    await set_policy(tenant, riskNotifyAt=NEVER, riskMfaAt=NEVER)
    page = await context.new_page()
    await page.goto(served.origin + "/healthz")  # any page of the app's origin
    return Tab(page)


async def test_the_browser_keeps_the_cookies_with_their_documented_attributes(tab, context, tenant):
    r = await tab.sign_in(tenant)
    body = r.json()
    assert body["tokenType"] == "cookie"
    assert "accessToken" not in body and "refreshToken" not in body

    jar = await stored(context)
    assert jar.keys() == DOCUMENTED.keys()  # a browser drops a __Host- cookie it finds wrong
    for name, (same_site, http_only) in DOCUMENTED.items():
        cookie = jar[name]
        assert cookie["value"], name
        assert cookie["secure"] is True, name
        assert cookie["httpOnly"] is http_only, name
        assert cookie["sameSite"] == same_site, name
        assert cookie["path"] == "/", name
        assert cookie["domain"] == "localhost", name  # host-only: no Domain attribute
        assert cookie["expires"] > 0, name  # kept past the tab, until Max-Age
    assert jar[CSRF]["value"] == body["csrfToken"]
    # The page's script sees the CSRF cookie and nothing else.
    assert await tab.visible_cookies() == f"{CSRF}={body['csrfToken']}"


async def test_the_browser_sends_the_session_cookie_to_the_apps_own_origin(tab, tenant):
    assert (await tab.fetch(ME)).status == 401  # not signed in yet
    await tab.sign_in(tenant)
    me = await tab.fetch(ME)
    assert me.status == 200, me.text
    assert me.json()["email"] == tenant.admin.email


async def test_an_unsafe_request_needs_the_csrf_header_read_from_the_cookie(tab, tenant):
    await tab.sign_in(tenant)
    refused = await tab.fetch(PROJECTS, method="POST", body={"name": "Without the header"})
    assert refused.status == 403, refused.text
    assert refused.content_type.startswith("application/problem+json")
    assert refused.json()["type"].endswith("/csrf")

    created = await tab.fetch(PROJECTS, method="POST", body={"name": "With it"}, csrf=True)
    assert created.status == 201, created.text
    assert await project_names(tenant) == ["With it"]


async def test_a_refresh_by_cookie_rotates_the_cookies_the_browser_keeps(tab, context, tenant):
    await tab.sign_in(tenant)
    before = await stored(context)
    r = await tab.fetch("/api/v1/auth/refresh", method="POST", csrf=True)
    assert r.status == 200, r.text
    after = await stored(context)
    assert after[ACCESS]["value"] != before[ACCESS]["value"]
    assert after[REFRESH]["value"] != before[REFRESH]["value"]  # the Strict cookie was sent
    assert after[CSRF]["value"] == before[CSRF]["value"]  # bound to the session
    assert (await tab.fetch(ME)).status == 200


def auto_submitting_form(action: str, fields: dict[str, str], enctype: str) -> str:
    """The classic cross-site request forgery: a page that posts a form as it loads."""
    inputs = "".join(
        f"<input type=hidden name='{name}' value='{value}'>" for name, value in fields.items()
    )
    return (
        f"<form method=post action='{action}' enctype='{enctype}'>{inputs}</form>"
        "<script>document.forms[0].submit()</script>"
    )


@dataclass
class Caught:
    """A request another page made the browser send: its headers as sent, and the answer."""

    headers: dict[str, str]
    status: int
    body: str

    def sent_session_cookie(self) -> bool:
        return ACCESS in self.headers.get("cookie", "")


async def posted_by_page(context: Any, url: str, target: str) -> Caught:
    """Open ``url`` in a new tab and catch the POST it makes the browser send to ``target``."""
    page = await context.new_page()
    async with page.expect_request(lambda r: r.url == target and r.method == "POST") as caught:
        await page.goto(url)
    request = await caught.value
    response = await request.response()
    assert response is not None
    found = Caught(await request.all_headers(), response.status, await response.text())
    await page.close()
    return found


async def without_same_site(context: Any, origin: str) -> None:
    """Store the session's cookies again with ``SameSite=None``: a browser that ignored the
    attribute (older ones did) would send them with another site's requests."""
    jar = await stored(context)
    await context.add_cookies(
        [
            {
                "name": name,
                "value": jar[name]["value"],
                "domain": urlsplit(origin).hostname,  # without a dot: host-only
                "path": "/",
                "secure": True,
                "httpOnly": jar[name]["httpOnly"],
                "sameSite": "None",
                "expires": jar[name]["expires"],
            }
            for name in (ACCESS, REFRESH, CSRF)
        ]
    )
    assert all(
        c["sameSite"] == "None" for c in (await stored(context)).values() if c["name"] != DEVICE
    )


async def test_a_cross_site_form_gets_no_cookie_and_creates_nothing(
    tab, context, tenant, other_site, served
):
    await tab.sign_in(tenant)
    target = served.origin + PROJECTS
    # A text/plain form whose body reads as JSON: {"name": "Forged", "x": "="}.
    form = auto_submitting_form(target, {'{"name": "Forged", "x": "': '"}'}, "text/plain")
    url = other_site.put("/form", form)

    caught = await posted_by_page(context, url, target)
    assert caught.headers["sec-fetch-site"] == "cross-site"
    assert caught.headers["origin"] == other_site.origin
    assert not caught.sent_session_cookie()  # SameSite kept the cookie home
    assert caught.status == 401, caught.body

    # Had the browser sent the cookie, the app refuses the request all the same.
    await without_same_site(context, served.origin)
    caught = await posted_by_page(context, url, target)
    assert caught.sent_session_cookie()
    assert caught.status == 403, caught.body
    assert json.loads(caught.body)["type"].endswith("/csrf")
    assert await project_names(tenant) == []


async def test_a_cross_site_form_cannot_sign_the_browser_out(
    tab, context, tenant, other_site, served
):
    """Logout takes no body, so a plain form would end the session if the cookie went with
    it and nothing else were checked."""
    await tab.sign_in(tenant)
    target = served.origin + "/api/v1/auth/logout"
    form = auto_submitting_form(target, {}, "application/x-www-form-urlencoded")
    url = other_site.put("/logout", form)
    caught = await posted_by_page(context, url, target)
    assert not caught.sent_session_cookie()
    assert caught.status == 401, caught.body

    await without_same_site(context, served.origin)
    caught = await posted_by_page(context, url, target)
    assert caught.sent_session_cookie()
    assert caught.status == 403, caught.body
    assert (await tab.fetch(ME)).status == 200  # still signed in
    assert (await stored(context)).keys() == DOCUMENTED.keys()


async def test_a_cross_site_fetch_with_credentials_is_refused(
    tab, context, tenant, other_site, served
):
    await tab.sign_in(tenant)
    page = await context.new_page()
    await page.goto(other_site.put("/blank", "<p>another site</p>"))
    evil = Tab(page)
    assert await evil.visible_cookies() == ""  # the CSRF cookie is not its to read

    mark = served.log_mark()
    for content_type in (
        "text/plain",  # a "simple" request: sent without a preflight
        "application/json",  # needs a preflight first
    ):
        r = await evil.fetch(
            served.origin + PROJECTS,
            method="POST",
            body={"name": f"Forged by fetch ({content_type})"},
            credentials="include",
            content_type=content_type,
        )
        assert r.error == "TypeError", (content_type, r)  # all the page learns
    read = await evil.fetch(served.origin + ME, credentials="include")
    assert read.error == "TypeError", read  # the signed-in user is not its to read

    # The app's access log says what reached it: no session came along (401); the preflight
    # found no CORS (405), so the JSON request was never sent.
    assert served.answers(after=mark, count=3) == [
        Answer("POST", PROJECTS, 401, None),
        Answer("OPTIONS", PROJECTS, 405, None),
        Answer("GET", ME, 401, None),
    ]
    assert await project_names(tenant) == []
    assert (await tab.fetch(ME)).status == 200  # the tab's own session is untouched


async def test_logout_clears_the_cookies_in_the_browser(tab, context, tenant):
    await tab.sign_in(tenant)
    assert (await tab.fetch("/api/v1/auth/logout", method="POST")).status == 403  # no header
    r = await tab.fetch("/api/v1/auth/logout", method="POST", csrf=True)
    assert r.status == 204, r.text
    # The device cookie stays: it names the browser, not the session.
    assert (await stored(context)).keys() == {DEVICE}
    assert await tab.visible_cookies() == ""
    assert (await tab.fetch(ME)).status == 401
