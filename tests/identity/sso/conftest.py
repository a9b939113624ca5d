"""Fixtures of the SSO tests: the real OIDC provider on loopback, and helpers that create a
provider in a tenant and sign in through it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kanvaro.identity.sso import oidc
from kanvaro.identity.sso.requests import BROWSER_COOKIE
from tests.conftest import TenantFixture
from tests.identity.sso.dns_zone import _dns_server, dns_zone  # noqa: F401 - fixtures
from tests.identity.sso.idp import Idp, path_of, running, through_idp
from tests.identity.sso.saml_fixtures import (  # noqa: F401 - the SAML tests' fixtures
    _saml_peer_reset,
    saml_app,
    saml_client,
    saml_peer,
)


@pytest.fixture(scope="session")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    with running(tmp_path_factory.mktemp("idp") / "oidc-provider.log") as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_idp_documents() -> None:
    oidc.forget_caches()


def unique_domain() -> str:
    return f"sso-{uuid.uuid4().hex[:8]}.example"


@dataclass
class OidcSetup:
    tenant: TenantFixture
    provider: dict[str, Any]
    client: dict[str, Any]
    domain: str

    @property
    def id(self) -> str:
        return self.provider["id"]


async def make_provider(
    tenant: TenantFixture, oidc_idp: Idp, *, domain: str | None = None, **config: Any
) -> OidcSetup:
    """An OIDC provider in the tenant, registered at the IdP (its redirect URI names the
    provider's id, so the client is registered after creation and set with a PATCH)."""
    domain = domain or unique_domain()
    http = tenant.client
    body = {
        "providerType": "oidc",
        "name": f"IdP {uuid.uuid4().hex[:6]}",
        "enabled": True,
        "config": {"issuer": oidc_idp.issuer, "clientId": "pending", "domains": [domain], **config},
    }
    r = await http.post("/api/v1/sso/providers", json=body, headers=tenant.admin.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    registered = await oidc_idp.register(created["callbackUrl"])
    r = await http.patch(
        f"/api/v1/sso/providers/{created['id']}",
        json={
            "version": created["version"],
            "config": {
                **body["config"],
                "clientId": registered["client_id"],
                "clientSecret": registered["client_secret"],
            },
        },
        headers=tenant.admin.headers,
    )
    assert r.status_code == 200, r.text
    return OidcSetup(tenant, r.json(), registered, domain)


def binding_cookie(response: httpx.Response) -> str:
    for value in response.headers.get_list("set-cookie"):
        found = re.match(rf"{re.escape(BROWSER_COOKIE)}=([^;]+)", value)
        if found:
            return found.group(1)
    raise AssertionError("no binding cookie")


def session_cookies(response: httpx.Response) -> dict[str, str]:
    out = {}
    for value in response.headers.get_list("set-cookie"):
        name, _, rest = value.partition("=")
        out[name] = rest.split(";", 1)[0]
    return out


async def start_login(
    http: httpx.AsyncClient, provider_id: str, return_to: str = "/after"
) -> tuple[str, str]:
    """(the IdP's authorization URL, the browser's binding secret)."""
    r = await http.get(f"/api/v1/sso/{provider_id}/login", params={"returnTo": return_to})
    assert r.status_code == 303, r.text
    return r.headers["location"], binding_cookie(r)


async def sso_sign_in(
    setup: OidcSetup,
    oidc_idp: Idp,
    account: str,
    *,
    return_to: str = "/after",
    mutate: Any = None,
    **claims: Any,
) -> httpx.Response:
    """The whole browser journey without a browser: our login, the IdP (it signs in the
    named account), our callback. ``mutate`` may change the authorization URL or the
    callback URL on the way (attacks)."""
    http = setup.tenant.client
    auth_url, secret = await start_login(http, setup.id, return_to)
    await oidc_idp.next_account(account, **claims)
    if mutate is not None:
        auth_url = mutate("auth", auth_url)
    callback_prefix = setup.provider["callbackUrl"]
    async with httpx.AsyncClient() as browser:
        back = await through_idp(browser, auth_url, callback_prefix)
    if mutate is not None:
        back = mutate("callback", back)
    return await http.get(path_of(back), headers={"Cookie": f"{BROWSER_COOKIE}={secret}"})
