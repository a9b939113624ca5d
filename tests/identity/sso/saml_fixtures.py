"""Fixtures of the SAML tests: a real IdP (pysaml2, ``saml_idp``) on loopback, an app with the
SSO routes, and helpers that walk a browser's way through a sign-in."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TenantFixture
from tests.identity.sso import saml_idp
from tests.identity.sso.saml_idp import IdP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def saml_peer() -> Iterator[IdP]:
    server, httpd, folder = saml_idp.start(_free_port())
    yield server
    httpd.shutdown()
    httpd.server_close()
    folder.cleanup()


@pytest.fixture(autouse=True)
def _saml_peer_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "saml_peer" in request.fixturenames:
        request.getfixturevalue("saml_peer").reset()


def with_sso_routes(app: Any) -> Any:
    """The app, with the SSO routers mounted if ``create_app`` does not mount them yet."""
    from kanvaro.identity.sso import routes as sso_routes
    from kanvaro.identity.sso import saml_routes

    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/sso/providers" not in paths:
        app.include_router(sso_routes.router)
    if "/api/v1/sso/{provider_id}/saml/acs" not in paths:
        app.include_router(saml_routes.router)
    return app


@pytest.fixture(scope="session")
def saml_app(app: Any) -> Any:
    return with_sso_routes(app)


@pytest.fixture
async def saml_client(saml_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # https: the __Host- cookies are Secure, and httpx sends those over https only.
    transport = httpx.ASGITransport(
        app=saml_app, raise_app_exceptions=False, client=("203.0.113.9", 4711)
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def make_provider(
    client: httpx.AsyncClient, tenant: TenantFixture, saml_peer: IdP, **config: Any
) -> str:
    """A SAML provider of ``tenant`` configured from the IdP's metadata; the IdP learns ours."""
    body = {
        "providerType": "saml",
        "name": f"Test IdP {id(config)}-{len(config)}",
        "enabled": True,
        "config": {
            "idpMetadataXml": saml_peer.metadata_xml(),
            "attributeMapping": saml_idp.MAPPING,
            "domains": ["kanvaro.example"],
            **config,
        },
    }
    r = await client.post("/api/v1/sso/providers", headers=tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    provider_id = r.json()["id"]
    r = await client.get(f"/api/v1/sso/{provider_id}/saml/metadata")
    assert r.status_code == 200, r.text
    saml_peer.register_sp(r.text)
    return provider_id


@dataclass
class Started:
    idp_url: str
    request_id: str | None


async def start(client: httpx.AsyncClient, provider_id: str, return_to: str = "/app") -> str:
    """GET our login endpoint: the IdP URL the browser is sent to."""
    r = await client.get(f"/api/v1/sso/{provider_id}/saml/login", params={"returnTo": return_to})
    assert r.status_code == 303, r.text
    return r.headers["location"]


async def idp_answer(url: str) -> dict[str, str]:
    """What the IdP's auto-posting page would POST to our ACS."""
    async with httpx.AsyncClient() as real:
        page = await real.get(url)
    assert page.status_code == 200, page.text
    return saml_idp.read_form(page.text)


async def post_acs(
    client: httpx.AsyncClient, provider_id: str, form: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/api/v1/sso/{provider_id}/saml/acs", data=form)


async def sign_in(
    client: httpx.AsyncClient, provider_id: str, return_to: str = "/app"
) -> tuple[httpx.Response, dict[str, str]]:
    form = await idp_answer(await start(client, provider_id, return_to))
    return await post_acs(client, provider_id, form), form


def location_path(response: httpx.Response) -> str:
    parts = urlsplit(response.headers["location"])
    return parts.path + (f"?{parts.query}" if parts.query else "")
