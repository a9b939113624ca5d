"""The role matrix for the console: every console page and form that declares a permission,
against every built-in role lacking it, another tenant, and no session.

The API's matrix (tests/test_matrix.py) covers ``/api/v1``; console routes live under the
tenant's address and answer in HTML, so they get their own pass over the same declarations
(read from the route, never restated) and the same registry of objects:

(a) each built-in role of tenant A lacking the permission, signed in through the console:
    403 page (a form: 403 too, with a valid CSRF token, so the refusal is the permission's);
(b) tenant B's admin at tenant A's address: 404 page; at his own address with tenant A's
    object ids: 404 page (the object is not in his tenant);
(c) no session: a page sends to sign-in, a form is refused without changing anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from kanvaro.identity.sessions import cookies
from kanvaro.security.permissions import ROLE_PERMISSIONS, TENANT_ROLES, BuiltinRole
from kanvaro.web.console.routing import ConsoleRoute
from tests.conftest import PASSWORD, new_tenant
from tests.test_matrix import PARAM, REGISTRY, World, _collections
from tests.test_routes_declare_permissions import RouteInfo, app_routes
from tests.web.console.conftest import ORIGIN

CONSOLE = [
    r
    for r in app_routes()
    if isinstance(r.route, ConsoleRoute) and len(r.access) == 1 and r.kind != "public"
]
GUARDED = [r for r in CONSOLE if r.kind in ("require", "require_any")]


def _lacks(info: RouteInfo, role: str) -> bool:
    held = {str(p) for p in ROLE_PERMISSIONS[BuiltinRole(role)]}
    if info.kind == "require_any":
        return not set(info.permissions) & held
    return not set(info.permissions) <= held


ROLE_CASES = [
    (info, role.value) for info in GUARDED for role in TENANT_ROLES if _lacks(info, role.value)
]
# Path parameters that name no object of the registry (tests/test_matrix.py REGISTRY) but a
# fixed choice of the page (which policy, which report type): a sample value by its name.
CONSOLE_SAMPLES: dict[str, str] = {
    "which": "password",
}
# Console segments that name a registry kind under another word.
ALIASES = {"retention": "retention-policies"}


async def _audit_entry(world: World) -> str:
    """An entry of tenant A's audit chain (the log has no POST: the admin's sign-in wrote it)."""
    r = await world.client.get(
        "/api/v1/audit/logs", params={"limit": 1}, headers=world.a.admin.headers
    )
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["id"])


CONSOLE_OBJECTS = {"entries": _audit_entry}
WITH_OBJECTS = [
    r
    for r in CONSOLE
    if any(
        (ALIASES.get(seg, seg) in REGISTRY or seg in CONSOLE_OBJECTS)
        and name not in CONSOLE_SAMPLES
        for name, seg in _collections(r.path)
    )
]


class ConsoleWorld:
    def __init__(self, world: World, app: Any) -> None:
        self.world = world
        self.app = app
        self.browsers: dict[str, httpx.AsyncClient] = {}

    async def browser_for(self, who: str) -> httpx.AsyncClient:
        """A browser signed in through the console as a member holding ``who`` (a role of
        tenant A), or ``b-admin`` (tenant B's admin)."""
        if who not in self.browsers:
            tenant = self.world.b if who == "b-admin" else self.world.a
            email = tenant.admin.email if who == "b-admin" else (await tenant.member(who)).email
            transport = httpx.ASGITransport(
                app=self.app, raise_app_exceptions=False, client=("203.0.113.10", 4713)
            )
            client = httpx.AsyncClient(
                transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
            )
            r = await client.post(
                f"/t/{tenant.slug}/sign-in", data={"email": email, "password": PASSWORD}
            )
            assert r.status_code == 303, r.text
            self.browsers[who] = client
        return self.browsers[who]

    async def fill(self, info: RouteInfo, slug: str) -> str:
        path = info.path
        for name, segment in _collections(info.path):
            if segment == "t":
                value = slug
            elif name in CONSOLE_SAMPLES:
                value = CONSOLE_SAMPLES[name]
            elif segment in CONSOLE_OBJECTS:
                if segment not in self.world.ids:
                    self.world.ids[segment] = await CONSOLE_OBJECTS[segment](self.world)
                value = self.world.ids[segment]
            else:
                value = await self.world.id_of(ALIASES.get(segment, segment))
            path = re.sub(r"\{" + re.escape(name) + r"(?::[^}]*)?\}", value, path)
        return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(app: Any, services: Any) -> AsyncIterator[ConsoleWorld]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        a = await new_tenant(services, client)
        b = await new_tenant(services, client)
        cw = ConsoleWorld(World(client, a, b, services), app)
        yield cw
        for browser in cw.browsers.values():
            await browser.aclose()


async def _send(browser: httpx.AsyncClient, info: RouteInfo, path: str) -> httpx.Response:
    if "GET" in info.methods:
        return await browser.get(path)
    token = browser.cookies.get(cookies.CSRF_COOKIE) or ""
    return await browser.post(path, data={"csrf_token": token})


def _is_page(r: httpx.Response, status: int) -> bool:
    return r.status_code == status and r.headers["content-type"].startswith("text/html")


def test_the_console_matrix_sees_the_console():
    assert CONSOLE, "no console route found: the walker no longer sees them"
    assert all(r.path == "/" or r.path.startswith("/t/{slug}") for r in CONSOLE)


@pytest.mark.parametrize(
    ("info", "role"), ROLE_CASES, ids=[f"{i.label}-{r}" for i, r in ROLE_CASES]
)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_role_lacking_the_permission_gets_403(console: ConsoleWorld, info, role):
    browser = await console.browser_for(role)
    path = await console.fill(info, console.world.a.slug)
    r = await _send(browser, info, path)
    assert _is_page(r, 403), f"{info.label} as {role}: {r.status_code} {r.text[:300]}"


@pytest.mark.parametrize("info", WITH_OBJECTS, ids=lambda i: i.label)
@pytest.mark.asyncio(loop_scope="session")
async def test_another_tenant_gets_404(console: ConsoleWorld, info):
    browser = await console.browser_for("b-admin")
    at_a = await _send(browser, info, await console.fill(info, console.world.a.slug))
    assert _is_page(at_a, 404), f"{info.label} at A's address: {at_a.status_code}"
    at_b = await _send(browser, info, await console.fill(info, console.world.b.slug))
    if "GET" not in info.methods and at_b.status_code == 422:
        # A form checked before its object is looked up: the same answer as for an id that
        # exists nowhere, so nothing about tenant A's object shows.
        nowhere = PARAM.sub(lambda m: "x" if m.group(1) == "slug" else str(uuid.uuid4()), info.path)
        nowhere = nowhere.replace("/t/x/", f"/t/{console.world.b.slug}/", 1)
        assert (await _send(browser, info, nowhere)).status_code == 422, info.label
        return
    assert _is_page(at_b, 404), f"{info.label} with A's ids: {at_b.status_code} {at_b.text[:300]}"


@pytest.mark.parametrize("info", CONSOLE, ids=lambda i: i.label)
@pytest.mark.asyncio(loop_scope="session")
async def test_no_session_changes_nothing(console: ConsoleWorld, app: Any, info):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.11", 1))
    async with httpx.AsyncClient(
        transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
    ) as anonymous:
        path = await console.fill(info, console.world.a.slug)
        r = await _send(anonymous, info, path)
    assert r.status_code == 303, f"{info.label}: {r.status_code} {r.text[:200]}"
    assert "/sign-in" in r.headers["location"] or "/session/refresh" in r.headers["location"]
    assert PARAM.search(r.headers["location"]) is None
