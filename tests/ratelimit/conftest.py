"""An instance of its own per test, with the limits that test needs, on the suite's database
(and Redis when configured). Each test speaks from addresses of its own, so counters in a
shared Redis never mix between tests."""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kanvaro.app import create_app
from kanvaro.bootstrap import bootstrap
from kanvaro.services import Services
from tests.conftest import PASSWORD, make_settings, unique_email


def fresh_ipv4() -> str:
    return str(ipaddress.IPv4Address("198.18.0.0") + secrets.randbelow(2**17))


def fresh_ipv6_64() -> str:
    return f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"


@dataclass
class Instance:
    services: Services
    app: Any

    def client(self, ip: str | None = None, **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=self.app, raise_app_exceptions=False, client=(ip or fresh_ipv4(), 4711)
        )
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)

    async def tenant_admin(self, ip: str | None = None) -> tuple[str, str, dict[str, str]]:
        """A fresh tenant; returns (tenant id, slug, the admin's auth headers)."""
        email = unique_email("rl-admin")
        result = await bootstrap(
            self.services,
            tenant_name=f"Limits {uuid.uuid4().hex[:8]}",
            email=email,
            password=PASSWORD,
        )
        async with self.client(ip) as c:
            r = await c.post(
                "/api/v1/auth/login",
                json={"email": email, "password": PASSWORD, "tenant": result.tenant_slug},
            )
        assert r.status_code == 200, r.text
        token = r.json()["accessToken"]
        return result.tenant_id, result.tenant_slug, {"Authorization": f"Bearer {token}"}

    async def member(
        self, admin: dict[str, str], slug: str, role: str, ip: str | None = None
    ) -> tuple[str, dict[str, str]]:
        email = unique_email(role)
        async with self.client(ip) as c:
            r = await c.post(
                "/api/v1/users",
                headers=admin,
                json={"email": email, "firstName": "R", "lastName": "L", "role": role,
                      "password": PASSWORD},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            r2 = await c.post(
                "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "tenant": slug}
            )
        assert r2.status_code == 200, r2.text
        return r.json()["id"], {"Authorization": f"Bearer {r2.json()['accessToken']}"}


@pytest.fixture
def limited(data_dir, database_url) -> Callable[..., Any]:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Instance]:
        values = {"rate_limit_per_ip_per_minute": 1_000_000, **overrides}
        settings = make_settings(data_dir, database_url, **values)
        services = Services.build(settings)
        await services.startup()
        await services.jobs.stop()
        try:
            yield Instance(services, create_app(settings, services=services))
        finally:
            await services.rate_limits.settled()
            if services.audit is not None:
                await services.audit.sequencer.wait()
            await services.shutdown()

    return start
