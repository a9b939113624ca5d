"""Browser sessions: tokens in ``__Host-`` cookies, CSRF on unsafe requests, same policy.

httpx over ``http://`` keeps no Secure cookie, so the tests read ``Set-Cookie`` themselves and
send ``Cookie:`` explicitly: what the browser would store and send is then what is asserted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from kanvaro.identity.sessions import cookies
from tests.conftest import PASSWORD

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
PROJECTS = "/api/v1/projects"

ACCESS, REFRESH_C, DEVICE, CSRF = (
    cookies.ACCESS_COOKIE,
    cookies.REFRESH_COOKIE,
    cookies.DEVICE_COOKIE,
    cookies.CSRF_COOKIE,
)


@dataclass
class SetCookie:
    value: str
    attributes: dict[str, str]  # lower-case names; flags map to ""


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    found: dict[str, SetCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        attributes = {}
        for part in rest:
            key, _, val = part.partition("=")
            attributes[key.lower()] = val
        found[name] = SetCookie(value, attributes)
    return found


@dataclass
class Browser:
    """What a browser holds for our host: its cookies, sent back as one Cookie header."""

    client: httpx.AsyncClient
    jar: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def keep(self, response: httpx.Response) -> None:
        for name, cookie in set_cookies(response).items():
            if cookie.attributes.get("max-age") == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = cookie.value

    def headers(self, *, csrf: str | None = None, **extra: str) -> dict[str, str]:
        out = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())}
        if csrf is not None:
            out["X-CSRF-Token"] = csrf
        out.update(extra)
        return out

    async def sign_in(self, email: str, slug: str, password: str = PASSWORD) -> httpx.Response:
        body = {"email": email, "password": password, "tenant": slug, "transport": "cookie"}
        r = await self.client.post(LOGIN, json=body, headers=self.headers())
        assert r.status_code == 200, r.text
        self.keep(r)
        self.csrf = r.json()["csrfToken"]
        return r

    async def get(self, path: str, **extra: str) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(**extra))

    async def post(self, path: str, *, csrf: str | None = None, **kw: object) -> httpx.Response:
        """``csrf``: None sends the session's own token, "" sends none, else that value."""
        headers = self.headers(csrf=self.csrf if csrf is None else csrf or None)
        headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
        return await self.client.post(path, headers=headers, **kw)  # type: ignore[arg-type]


async def signed_in_browser(tenant, email: str | None = None) -> Browser:
    browser = Browser(tenant.client)
    await browser.sign_in(email or tenant.admin.email, tenant.slug)
    return browser


async def project_names(tenant) -> list[str]:
    r = await tenant.client.get(PROJECTS, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return [p["name"] for p in r.json()["items"]]


async def test_cookie_sign_in_sets_host_cookies_with_exact_attributes(tenant):
    r = await Browser(tenant.client).sign_in(tenant.admin.email, tenant.slug)
    set = set_cookies(r)
    assert set.keys() == {ACCESS, REFRESH_C, CSRF, DEVICE}
    expected = {ACCESS: ("Lax", True), REFRESH_C: ("Strict", True), CSRF: ("Lax", False)}
    expected[DEVICE] = ("Lax", True)
    for name, (same_site, http_only) in expected.items():
        cookie = set[name]
        assert name.startswith("__Host-")
        assert cookie.value
        assert "secure" in cookie.attributes, name
        assert cookie.attributes["path"] == "/", name
        assert "domain" not in cookie.attributes, name
        assert cookie.attributes["samesite"] == same_site, name
        assert ("httponly" in cookie.attributes) is http_only, name
    assert set[ACCESS].attributes["max-age"] == str(r.json()["expiresIn"])
    assert int(set[DEVICE].attributes["max-age"]) >= 365 * 24 * 3600  # outlives sessions


async def test_a_cookie_mode_body_carries_no_token(tenant):
    r = await Browser(tenant.client).sign_in(tenant.admin.email, tenant.slug)
    body = r.json()
    assert body.keys() == {"requiresMFA", "tokenType", "expiresIn", "csrfToken"}
    assert body["tokenType"] == "cookie"
    set = set_cookies(r)
    assert body["csrfToken"] == set[CSRF].value
    for secret in (set[ACCESS].value, set[REFRESH_C].value, set[DEVICE].value):
        assert secret not in r.text


async def test_the_tenant_address_signs_in_by_cookie_too(tenant):
    r = await tenant.client.post(
        f"/t/{tenant.slug}/auth/login",
        json={"email": tenant.admin.email, "password": PASSWORD, "transport": "cookie"},
    )
    assert r.status_code == 200, r.text
    assert {ACCESS, REFRESH_C, CSRF} <= set_cookies(r).keys()
    assert "accessToken" not in r.json()


async def test_an_unknown_transport_is_refused_naming_the_field(tenant):
    r = await tenant.client.post(
        LOGIN,
        json={
            "email": tenant.admin.email,
            "password": PASSWORD,
            "tenant": tenant.slug,
            "transport": "carrier-pigeon",
        },
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["transport"]


async def test_a_cookie_session_reads_without_a_csrf_token(tenant):
    browser = await signed_in_browser(tenant)
    r = await browser.get(ME)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == tenant.admin.email


async def test_an_unsafe_request_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    tenant,
):
    browser = await signed_in_browser(tenant)
    other = await signed_in_browser(tenant)  # a second session of the same user
    assert other.csrf != browser.csrf
    attempts = {
        "missing": "",
        "wrong": "0" * len(browser.csrf),
        "another session's": other.csrf,
    }
    for why, token in attempts.items():
        r = await browser.post(PROJECTS, csrf=token, json={"name": f"Forged {why}"})
        assert r.status_code == 403, why
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["type"].endswith("/csrf")
        assert problem["errors"][0]["field"] == "X-CSRF-Token"
    assert not [n for n in await project_names(tenant) if n.startswith("Forged")]
    ok = await browser.post(PROJECTS, json={"name": "Legit"})
    assert ok.status_code == 201, ok.text
    assert "Legit" in await project_names(tenant)


async def test_a_cross_site_request_is_refused_even_with_the_token(tenant, settings):
    browser = await signed_in_browser(tenant)
    refused = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ]
    for headers in refused:
        r = await browser.post(PROJECTS, headers=headers, json={"name": "Cross-site"})
        assert r.status_code == 403, headers
        assert r.json()["type"].endswith("/csrf")
    assert "Cross-site" not in await project_names(tenant)
    public = settings.public_url.rstrip("/")
    for headers in (
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Origin": public},
    ):
        r = await browser.post(PROJECTS, headers=headers, json={"name": f"From {headers}"})
        assert r.status_code == 201, (headers, r.text)


async def test_a_cross_site_page_cannot_sign_a_browser_in(tenant):
    r = await tenant.client.post(
        LOGIN,
        headers={"Origin": "https://evil.example"},
        json={
            "email": tenant.admin.email,
            "password": PASSWORD,
            "tenant": tenant.slug,
            "transport": "cookie",
        },
    )
    assert r.status_code == 403
    assert not r.headers.get_list("set-cookie")


async def test_refresh_by_cookie_rotates_the_tokens_and_keeps_the_session(tenant):
    # No grace window, so that a replay below is one at once (tabs racing are another test's).
    r = await tenant.client.patch(
        "/api/v1/tenant/settings/session-policy",
        headers=tenant.admin.headers,
        json={"refreshGraceSeconds": 0},
    )
    assert r.status_code == 200, r.text
    browser = await signed_in_browser(tenant)
    session_id = (await browser.get(ME)).json()["sessionId"]
    before = dict(browser.jar)

    r = await browser.post(REFRESH)
    assert r.status_code == 200, r.text
    assert r.json().keys() == {"requiresMFA", "tokenType", "expiresIn", "csrfToken"}
    set = set_cookies(r)
    assert set[ACCESS].value != before[ACCESS]
    assert set[REFRESH_C].value != before[REFRESH_C]
    assert set[CSRF].value == before[CSRF] == r.json()["csrfToken"]  # bound to the session
    assert set[REFRESH_C].attributes["samesite"] == "Strict"
    browser.keep(r)
    me = await browser.get(ME)
    assert me.status_code == 200 and me.json()["sessionId"] == session_id

    # The spent refresh cookie replayed (a stolen copy): the family ends.
    stale = Browser(tenant.client, {REFRESH_C: before[REFRESH_C]}, browser.csrf)
    assert (await stale.post(REFRESH)).status_code == 401
    assert (await browser.get(ME)).status_code == 401


async def test_refresh_by_cookie_needs_the_csrf_token_and_then_spends_nothing(tenant):
    browser = await signed_in_browser(tenant)
    for token in ("", "f" * 64):
        r = await browser.post(REFRESH, csrf=token)
        assert r.status_code == 403 and r.json()["type"].endswith("/csrf")
        assert not r.headers.get_list("set-cookie")
    cross = await browser.post(REFRESH, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    # The refresh token is still unspent: the refusal came before the rotation.
    ok = await browser.post(REFRESH)
    assert ok.status_code == 200, ok.text


async def test_refresh_without_a_body_token_or_cookie_names_the_field(tenant):
    for kwargs in ({}, {"json": {}}):
        r = await tenant.client.post(REFRESH, **kwargs)
        assert r.status_code == 401, r.text
        assert r.json()["errors"][0]["field"] == "refreshToken"


async def test_logout_clears_the_session_cookies_and_ends_the_session(tenant):
    browser = await signed_in_browser(tenant)
    old = dict(browser.jar)
    assert (await browser.post(LOGOUT, csrf="")).status_code == 403  # logout is unsafe too
    r = await browser.post(LOGOUT)
    assert r.status_code == 204, r.text
    cleared = set_cookies(r)
    assert cleared.keys() == {ACCESS, REFRESH_C, CSRF}  # the device cookie names the device
    for name, cookie in cleared.items():
        assert cookie.value == "" and cookie.attributes["max-age"] == "0", name
        assert "secure" in cookie.attributes and cookie.attributes["path"] == "/"
    browser.keep(r)
    assert browser.jar.keys() == {DEVICE}
    kept = Browser(tenant.client, old, browser.csrf)  # cookies a browser failed to drop
    assert (await kept.get(ME)).status_code == 401
    assert (await kept.post(REFRESH)).status_code == 401


async def test_the_device_cookie_is_presented_at_the_next_sign_in(tenant):
    browser = await signed_in_browser(tenant)
    device = browser.jar[DEVICE]
    r = await browser.sign_in(tenant.admin.email, tenant.slug)
    # The device was recognised: no new secret is handed out.
    assert DEVICE not in set_cookies(r)
    assert browser.jar[DEVICE] == device


async def test_bearer_clients_are_unaffected(tenant):
    c = tenant.client
    r = await c.post(
        LOGIN, json={"email": tenant.admin.email, "password": PASSWORD, "tenant": tenant.slug}
    )
    assert r.status_code == 200
    assert not r.headers.get_list("set-cookie")
    assert r.json()["tokenType"] == "Bearer" and r.json()["accessToken"]
    bearer = {"Authorization": f"Bearer {r.json()['accessToken']}"}
    # No CSRF token for a bearer request: a browser never sends the header on its own.
    created = await c.post(PROJECTS, headers=bearer, json={"name": "By bearer"})
    assert created.status_code == 201, created.text
    refreshed = await c.post(REFRESH, json={"refreshToken": r.json()["refreshToken"]})
    assert refreshed.status_code == 200 and "accessToken" in refreshed.json()
    assert not refreshed.headers.get_list("set-cookie")
    assert not (await c.post(LOGOUT, headers=bearer)).headers.get_list("set-cookie")


async def test_a_bearer_header_never_falls_back_to_the_cookie(tenant):
    browser = await signed_in_browser(tenant)
    cookie_session = (await browser.get(ME)).json()["sessionId"]
    bad = await browser.get(ME, Authorization="Bearer not-a-token")
    assert bad.status_code == 401
    token = tenant.admin.tokens["accessToken"]
    both = await browser.get(ME, Authorization=f"Bearer {token}")
    assert both.status_code == 200
    assert both.json()["sessionId"] != cookie_session  # the header's session, not the cookie's


async def test_a_cookie_session_obeys_revocation(tenant):
    m = await tenant.member("team_member")
    browser = await signed_in_browser(tenant, m.email)
    assert (await browser.get(ME)).status_code == 200
    # A password change from another session ends every other one, the browser's included.
    new = "An0ther!Strong-Secret"
    r = await tenant.client.post(
        "/api/v1/auth/password",
        headers=m.headers,
        json={"currentPassword": m.password, "newPassword": new},
    )
    assert r.status_code == 204, r.text
    assert (await browser.get(ME)).status_code == 401
    assert (await browser.post(REFRESH)).status_code == 401


async def test_a_cookie_session_obeys_the_tenant_policy(tenant):
    """Single device only: a new sign-in elsewhere ends the cookie session like any other."""
    m = await tenant.member("team_member")
    browser = await signed_in_browser(tenant, m.email)
    r = await tenant.client.patch(
        "/api/v1/tenant/settings/session-policy",
        headers=tenant.admin.headers,
        json={"singleDeviceOnly": True},
    )
    assert r.status_code == 200, r.text
    await tenant.login(m.email, m.password)  # a bearer client signs in
    assert (await browser.get(ME)).status_code == 401


def test_csrf_tokens_are_bound_to_their_session(services):
    keyring = services.keyring
    one, two = uuid.uuid4(), uuid.uuid4()
    token = cookies.csrf_token(keyring, one)
    assert token == cookies.csrf_token(keyring, one)  # derived, so it survives a refresh
    assert token != cookies.csrf_token(keyring, two)
    assert cookies.csrf_matches(keyring, one, token)
    assert not cookies.csrf_matches(keyring, two, token)
    assert not cookies.csrf_matches(keyring, one, None)
    assert not cookies.csrf_matches(keyring, one, "")
    assert not cookies.csrf_matches(keyring, one, token[:-1])


def test_own_origins_are_the_public_address_and_the_requested_host():
    origins = cookies.own_origins("https://Kanvaro.Example/app/", "http", "localhost:8000")
    assert origins == {"https://kanvaro.example", "http://localhost:8000"}
    cookies.refuse_cross_site({"origin": "https://kanvaro.example"}, origins)
    cookies.refuse_cross_site({}, origins)  # no Origin: the CSRF token still decides
    for headers in (
        {"origin": "https://kanvaro.example.evil.test"},
        {"origin": "http://kanvaro.example"},
        {"sec-fetch-site": "cross-site", "origin": "https://kanvaro.example"},
    ):
        with pytest.raises(cookies.CsrfRefused):
            cookies.refuse_cross_site(headers, origins)


def test_a_malformed_device_cookie_is_ignored():
    assert cookies.device_secret({DEVICE: "a" * 43}) == "a" * 43
    for bad in ("", "short", "has space in it......", "x" * 129, "é" * 20):
        assert cookies.device_secret({DEVICE: bad}) is None
