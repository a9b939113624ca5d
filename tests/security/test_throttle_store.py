"""The sign-in throttle on a real Redis that is stopped mid-run: sign-in then fails closed
(503 ``rate-limit-unavailable`` with Retry-After) by default, or goes on unthrottled when
``KANVARO_RATE_LIMIT_FAIL_MODE_AUTH=open``; logged either way, not once per request."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import structlog

from kanvaro.app import create_app
from kanvaro.services import Services
from tests.conftest import make_settings, new_tenant
from tests.identity.conftest import free_port

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own (it is stopped mid-test; the suite's must not be)."""
    port = free_port()
    pidfile = tmp_path / "redis.pid"
    subprocess.run(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(pidfile)],
        check=True, timeout=10,
    )  # fmt: skip
    yield f"redis://127.0.0.1:{port}/0"
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], timeout=10, check=False)


async def stop_redis(url: str) -> None:
    port = url.rsplit(":", 1)[1].split("/")[0]
    await asyncio.to_thread(
        subprocess.run, ["redis-cli", "-p", port, "shutdown", "nosave"], timeout=10, check=False
    )


@asynccontextmanager
async def instance(data_dir, database_url, redis_url, **kw) -> AsyncIterator[tuple]:
    # Only the sign-in throttle uses the store here: the general limiter is off, so what
    # answers is this throttle's own failure mode.
    settings = make_settings(
        data_dir, database_url, redis_url=redis_url, rate_limit_enabled=False, **kw
    )
    services = Services.build(settings)
    await services.startup()
    try:
        yield services, create_app(settings, services=services)
    finally:
        await services.shutdown()


def client_of(app) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.9.8.7", 1))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def test_sign_in_fails_closed_when_redis_stops(data_dir, database_url, redis_url):
    async with instance(data_dir, database_url, redis_url) as (services, app):  # noqa: SIM117 (the client needs the app)
        async with client_of(app) as c:
            tenant = await new_tenant(services, c)
            m = await tenant.member("viewer")
            body = {"email": m.email, "password": m.password, "tenant": tenant.slug}
            assert (await c.post(LOGIN, json=body)).status_code == 200
            await stop_redis(redis_url)
            with structlog.testing.capture_logs() as logs:
                answers = [await c.post(LOGIN, json=body) for _ in range(3)]
            for r in answers:
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["type"].endswith("rate-limit-unavailable")
                assert int(r.headers["retry-after"]) >= 1
                assert "accessToken" not in r.text
            down = [e for e in logs if e["event"] == "throttle_store_unavailable"]
            assert len(down) == 1 and down[0]["fail_mode"] == "closed"  # once, not per request


async def test_fail_open_lets_sign_in_through_when_redis_stops(data_dir, database_url, redis_url):
    async with (
        instance(data_dir, database_url, redis_url, rate_limit_fail_mode_auth="open") as (
            services,
            app,
        ),
        client_of(app) as c,
    ):
        tenant = await new_tenant(services, c)
        m = await tenant.member("viewer")
        body = {"email": m.email, "password": m.password, "tenant": tenant.slug}
        await stop_redis(redis_url)
        with structlog.testing.capture_logs() as logs:
            ok = await c.post(LOGIN, json=body)
            wrong = await c.post(LOGIN, json={**body, "password": "Wrong!Pass-1"})
        assert ok.status_code == 200, ok.text
        assert wrong.status_code == 401
        assert any(e["event"] == "throttle_store_unavailable" for e in logs)
