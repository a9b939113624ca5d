"""The console's foundation: sign-in by plain form, pages behind the session cookie, the form
CSRF token, errors as pages, the silent refresh, and the tenant of a page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from kanvaro.identity.sessions import cookies
from kanvaro.middleware.security_headers import CSP
from tests.conftest import PASSWORD, TenantFixture
from tests.web.console.conftest import csrf_field, sign_in, submit


async def test_front_door_is_a_sign_in_form(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    r = await browser.get("/")
    # Two tenants (at least) on this instance, so people name theirs.
    assert r.status_code == 200
    assert "<form" in r.text and 'name="organization"' in r.text
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    named = await browser.get("/", params={"organization": tenant.slug})
    assert named.status_code == 303
    assert named.headers["location"] == f"/t/{tenant.slug}/sign-in"
    odd = await browser.get("/", params={"organization": "../../evil"})
    assert odd.status_code == 200  # not a slug: the form again, no redirect anywhere


async def test_a_page_without_a_session_sends_to_sign_in(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    r = await browser.get(f"/t/{tenant.slug}/")
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert target.path == f"/t/{tenant.slug}/sign-in"
    assert parse_qs(target.query)["next"] == [f"/t/{tenant.slug}/"]
    page = await browser.get(r.headers["location"])
    assert page.status_code == 200 and 'name="password"' in page.text
    assert f'value="/t/{tenant.slug}/"' in page.text  # the way back


async def test_wrong_password_is_the_same_page_with_one_message(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    r = await browser.post(
        f"/t/{tenant.slug}/sign-in",
        data={"email": tenant.admin.email, "password": "not-" + PASSWORD},
    )
    assert r.status_code == 401
    assert "The email or password is not right." in r.text
    unknown = await browser.post(
        f"/t/{tenant.slug}/sign-in", data={"email": "nobody@kanvaro.example", "password": "x"}
    )
    assert unknown.status_code == 401 and "The email or password is not right." in unknown.text
    assert PASSWORD not in r.text and "not-" + PASSWORD not in r.text
    assert not browser.cookies.get(cookies.ACCESS_COOKIE)


async def test_sign_in_lands_on_the_tenant_home(browser: httpx.AsyncClient, tenant: TenantFixture):
    project = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": "Console launch"}
    )
    assert project.status_code == 201, project.text
    r = await sign_in(browser, tenant, tenant.admin.email)
    assert r.headers["location"] == f"/t/{tenant.slug}/"
    home = await browser.get(r.headers["location"])
    assert home.status_code == 200
    assert "Console launch" in home.text and tenant.admin.email in home.text


async def test_next_is_limited_to_this_site(browser: httpx.AsyncClient, tenant: TenantFixture):
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/ok\r\nX: y"):
        r = await browser.post(
            f"/t/{tenant.slug}/sign-in",
            data={"email": tenant.admin.email, "password": PASSWORD, "next": evil},
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/t/{tenant.slug}/", evil
    kept = await browser.post(
        f"/t/{tenant.slug}/sign-in",
        data={
            "email": tenant.admin.email,
            "password": PASSWORD,
            "next": f"/t/{tenant.slug}/account",
        },
    )
    assert kept.headers["location"] == f"/t/{tenant.slug}/account"


async def test_a_form_without_its_token_is_refused(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    bare = await browser.post(f"/t/{tenant.slug}/sign-out", data={})
    assert bare.status_code == 403
    assert "text/html" in bare.headers["content-type"]
    forged = await browser.post(f"/t/{tenant.slug}/sign-out", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert (await browser.get(f"/t/{tenant.slug}/")).status_code == 200  # still signed in


async def test_a_form_from_another_site_is_refused_even_with_the_token(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    page = await browser.get(f"/t/{tenant.slug}/")
    r = await browser.post(
        f"/t/{tenant.slug}/sign-out",
        data={"csrf_token": csrf_field(page)},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    cross = await browser.post(
        f"/t/{tenant.slug}/sign-in",
        data={"email": tenant.admin.email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403  # no sign-in CSRF into an attacker's account either


async def test_sign_out_ends_the_session(browser: httpx.AsyncClient, tenant: TenantFixture):
    await sign_in(browser, tenant, tenant.admin.email)
    stolen = browser.cookies.get(cookies.ACCESS_COOKIE)
    r = await submit(browser, f"/t/{tenant.slug}/", f"/t/{tenant.slug}/sign-out")
    assert r.status_code == 303
    assert r.headers["location"] == f"/t/{tenant.slug}/sign-in?notice=signed-out"
    assert not browser.cookies.get(cookies.ACCESS_COOKIE)
    after = await browser.get(r.headers["location"])
    assert "You are signed out." in after.text
    # The old cookie is worth nothing now: the session itself ended on the server.
    replay = await browser.get("/api/v1/auth/me", cookies={cookies.ACCESS_COOKIE: stolen})
    assert replay.status_code == 401


async def test_an_expired_access_cookie_is_renewed_on_the_way(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    old_refresh = browser.cookies.get(cookies.REFRESH_COOKIE)
    browser.cookies.delete(cookies.ACCESS_COOKIE)  # what the browser does when Max-Age ends
    r = await browser.get(f"/t/{tenant.slug}/")
    assert r.status_code == 303
    assert urlsplit(r.headers["location"]).path == f"/t/{tenant.slug}/session/refresh"
    renewed = await browser.get(r.headers["location"])
    assert renewed.status_code == 303 and renewed.headers["location"] == f"/t/{tenant.slug}/"
    assert browser.cookies.get(cookies.ACCESS_COOKIE)
    assert browser.cookies.get(cookies.REFRESH_COOKIE) != old_refresh  # rotated
    assert (await browser.get(f"/t/{tenant.slug}/")).status_code == 200


async def test_the_silent_refresh_refuses_a_cross_site_navigation(
    browser: httpx.AsyncClient, tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    old_refresh = browser.cookies.get(cookies.REFRESH_COOKIE)
    r = await browser.get(
        f"/t/{tenant.slug}/session/refresh", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 303
    assert urlsplit(r.headers["location"]).path == f"/t/{tenant.slug}/sign-in"
    assert browser.cookies.get(cookies.REFRESH_COOKIE) == old_refresh  # nothing spent


async def test_another_tenants_pages_are_not_found(
    browser: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
):
    await sign_in(browser, tenant, tenant.admin.email)
    r = await browser.get(f"/t/{other_tenant.slug}/")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert other_tenant.admin.email not in r.text


async def test_api_errors_stay_problem_json(browser: httpx.AsyncClient, tenant: TenantFixture):
    r = await browser.get("/api/v1/projects")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_an_unknown_tenant_sign_in_page_is_not_found(browser: httpx.AsyncClient):
    r = await browser.get("/t/no-such-tenant-here/sign-in")
    assert r.status_code == 404 and "No such organization" in r.text
