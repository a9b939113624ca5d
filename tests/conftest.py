"""Test fixtures: a real database (SQLite, or PostgreSQL when KANVARO_TEST_PG_ADMIN_URL is set),
the real app in-process over ASGI, and a fresh tenant per test so each test owns its data.

On PostgreSQL the suite creates a throwaway database owned by a NOSUPERUSER NOBYPASSRLS role
and connects as that role, so row-level security binds the app exactly as in production.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from kanvaro.app import create_app
from kanvaro.bootstrap import bootstrap
from kanvaro.config import Settings
from kanvaro.migrate import upgrade
from kanvaro.services import Services

PG_ADMIN_URL = os.environ.get("KANVARO_TEST_PG_ADMIN_URL")
REDIS_URL = os.environ.get("KANVARO_TEST_REDIS_URL")
PASSWORD = "Str0ng!Kanvaro-Pass"


def pytest_report_header(config: Any) -> str:
    return f"kanvaro database: {'postgresql' if PG_ADMIN_URL else 'sqlite'}"


async def _create_pg_database() -> tuple[str, str]:
    """Create a database and an owner role without superuser or BYPASSRLS."""
    admin = make_url(PG_ADMIN_URL)
    name = f"kv_test_{secrets.token_hex(4)}"
    role = f"kv_app_{secrets.token_hex(4)}"
    role_password = secrets.token_urlsafe(16)
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{role_password}'"
        )
        await conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {role}")
    await engine.dispose()
    url = admin.set(database=name, username=role, password=role_password)
    return url.render_as_string(hide_password=False), name


async def _drop_pg_database(name: str) -> None:
    engine = create_async_engine(make_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_ADMIN_URL:
        url, name = asyncio.run(_create_pg_database())
        upgrade(url)
        yield url
        asyncio.run(_drop_pg_database(name))
    else:
        path = tmp_path_factory.mktemp("db") / "kanvaro.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "login_max_failures_per_ip": 10_000,  # the suite logs in from one address
        "refresh_per_client_per_minute": 100_000,  # ... and refreshes from it
        "password_reset_per_client_per_hour": 10_000,
        # ... and sends all its requests from that one address: counted, never refused.
        "rate_limit_per_ip_per_minute": 1_000_000,
        # The shared instance's loop is not driven while a test blocks on a subprocess: a
        # sweep caught mid-transaction then would hold SQLite's lock against that process.
        # Tests sequence through the kick or audit.drain(); the sweep has its own tests.
        "audit_sweep_seconds": 3600,
        # Network only loopback: no test asks the system's resolvers. A port nothing answers
        # on; the domain-verification tests start their own server (tests/identity/sso).
        "dns_nameservers": ["127.0.0.1"],
        "dns_port": 9,
        "dns_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values).prepare()


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str) -> Settings:
    return make_settings(data_dir, database_url)


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = Services.build(settings)
    await svc.startup()
    # The suite drives periodic jobs itself (``jobs.run_due``): a job the loop started on wall
    # time could sit mid-transaction while a test blocks on a subprocess, holding SQLite's
    # write lock against that process.
    await svc.jobs.stop()
    yield svc
    await svc.shutdown()


@pytest.fixture(autouse=True)
async def _audit_settled(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test that used the shared services, wait for the sequencing its writes kicked
    off. The session's event loop is not driven during a synchronous test, so a sequencer left
    mid-transaction would hold SQLite's write lock against the next test's own process."""
    yield
    if "services" in request.fixturenames:
        svc: Services = request.getfixturevalue("services")
        from kanvaro import background

        await background.drain()  # e.g. a report asked for is generated in the background
        if svc.audit is not None:
            await svc.audit.sequencer.wait()


@pytest.fixture(scope="session")
def app(settings: Settings, services: Services) -> Any:
    return create_app(settings, services=services)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("203.0.113.7", 4711)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@kanvaro.example"


@dataclass
class Member:
    id: str
    email: str
    password: str
    role: str
    headers: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)


@dataclass
class TenantFixture:
    """A fresh tenant with its admin signed in; helpers to add members and sign them in."""

    client: httpx.AsyncClient
    id: str
    slug: str
    admin: Member

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password, "tenant": self.slug}
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def member(self, role: str, *, password: str = PASSWORD) -> Member:
        email = unique_email(role)
        r = await self.client.post(
            "/api/v1/users",
            headers=self.admin.headers,
            json={
                "email": email,
                "firstName": "Test",
                "lastName": "Person",
                "role": role,
                "password": password,
            },
        )
        assert r.status_code == 201, r.text
        tokens = await self.login(email, password)
        return Member(
            r.json()["id"],
            email,
            password,
            role,
            {"Authorization": f"Bearer {tokens['accessToken']}"},
            tokens,
        )


async def new_tenant(services: Services, client: httpx.AsyncClient) -> TenantFixture:
    email = unique_email("admin")
    result = await bootstrap(
        services, tenant_name=f"Tenant {uuid.uuid4().hex[:8]}", email=email, password=PASSWORD
    )
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "tenant": result.tenant_slug},
    )
    assert r.status_code == 200, r.text
    tokens = r.json()
    admin = Member(
        result.user_id,
        email,
        PASSWORD,
        "admin",
        {"Authorization": f"Bearer {tokens['accessToken']}"},
        tokens,
    )
    assert result.tenant_id and result.tenant_slug
    return TenantFixture(client, result.tenant_id, result.tenant_slug, admin)


@pytest.fixture
async def tenant(services: Services, client: httpx.AsyncClient) -> TenantFixture:
    return await new_tenant(services, client)


@pytest.fixture
async def other_tenant(services: Services, client: httpx.AsyncClient) -> TenantFixture:
    return await new_tenant(services, client)
