"""Sign-in throttling per (account, client) and per client IP (memory, or Redis when
configured): free attempts, then delays; never a lock (tests/attack/test_lockout.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from kanvaro.app import create_app
from kanvaro.services import Services
from tests.conftest import PASSWORD, make_settings, new_tenant, unique_email

pytestmark = pytest.mark.asyncio

LOGIN = "/api/v1/auth/login"


def fresh_ip() -> str:
    # Counters may live in a shared Redis: every test run uses addresses of its own.
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@asynccontextmanager
async def instance(data_dir, database_url, **limits) -> AsyncIterator[tuple[Services, object]]:
    settings = make_settings(data_dir, database_url, **limits)
    services = Services.build(settings)
    await services.startup()
    try:
        yield services, create_app(settings, services=services)
    finally:
        await services.shutdown()


def client_from(app, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_past_the_free_attempts_a_client_waits_even_with_the_right_password(
    data_dir, database_url
):
    async with (
        instance(data_dir, database_url, login_max_failures_per_account=3) as (services, app),
        client_from(app, fresh_ip()) as c,
    ):
        tenant = await new_tenant(services, c)
        m = await tenant.member("viewer")
        for _ in range(3):
            r = await c.post(
                LOGIN, json={"email": m.email, "password": "Wrong!Pass1", "tenant": tenant.slug}
            )
            assert r.status_code == 401
        locked = await c.post(
            LOGIN, json={"email": m.email, "password": PASSWORD, "tenant": tenant.slug}
        )
        assert locked.status_code == 429
        assert locked.headers["content-type"].startswith("application/problem+json")
        retry = int(locked.headers["retry-after"])
        assert 1 <= retry <= 2  # the first delay: a second, never the whole window
        # The delay is per (account, client), not per address: another person signs in here.
        assert (
            await c.post(
                LOGIN,
                json={"email": tenant.admin.email, "password": PASSWORD, "tenant": tenant.slug},
            )
        ).status_code == 200
        # The email's case does not open a second counter.
        upper = await c.post(
            LOGIN, json={"email": m.email.upper(), "password": PASSWORD, "tenant": tenant.slug}
        )
        assert upper.status_code == 429
        # Waited out, the right password signs in: a delay, not a lock.
        await asyncio.sleep(int(upper.headers["retry-after"]))
        ok = await c.post(
            LOGIN, json={"email": m.email, "password": PASSWORD, "tenant": tenant.slug}
        )
        assert ok.status_code == 200, ok.text


async def test_success_clears_the_account_counter(data_dir, database_url):
    async with (
        instance(data_dir, database_url, login_max_failures_per_account=3) as (services, app),
        client_from(app, fresh_ip()) as c,
    ):
        tenant = await new_tenant(services, c)
        m = await tenant.member("viewer")
        for _round in range(3):
            for _ in range(2):
                r = await c.post(
                    LOGIN, json={"email": m.email, "password": "Wrong!Pass1", "tenant": tenant.slug}
                )
                assert r.status_code == 401
            ok = await c.post(
                LOGIN, json={"email": m.email, "password": PASSWORD, "tenant": tenant.slug}
            )
            assert ok.status_code == 200, _round


async def test_one_address_is_limited_across_accounts(data_dir, database_url):
    async with instance(
        data_dir, database_url, login_max_failures_per_ip=4, login_max_failures_per_account=100
    ) as (services, app):
        attacker_ip = fresh_ip()
        async with client_from(app, fresh_ip()) as setup:
            tenant = await new_tenant(services, setup)
            victim = await tenant.member("viewer")
        async with client_from(app, attacker_ip) as attacker:
            for _ in range(4):  # spraying: a different account each time
                r = await attacker.post(
                    LOGIN,
                    json={"email": unique_email(), "password": PASSWORD},
                )
                assert r.status_code == 401
            blocked = await attacker.post(
                LOGIN, json={"email": victim.email, "password": PASSWORD, "tenant": tenant.slug}
            )
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        async with client_from(app, fresh_ip()) as elsewhere:
            r = await elsewhere.post(
                LOGIN, json={"email": victim.email, "password": PASSWORD, "tenant": tenant.slug}
            )
            assert r.status_code == 200


async def test_forged_forwarded_for_does_not_escape_the_ip_limit(data_dir, database_url):
    async with (
        instance(
            data_dir, database_url, login_max_failures_per_ip=2, login_max_failures_per_account=100
        ) as (_, app),
        client_from(app, fresh_ip()) as c,
    ):
        for i in range(2):
            r = await c.post(
                LOGIN,
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
                json={"email": unique_email(), "password": PASSWORD},
            )
            assert r.status_code == 401
        r = await c.post(
            LOGIN,
            headers={"X-Forwarded-For": "198.51.100.99"},
            json={"email": unique_email(), "password": PASSWORD},
        )
        assert r.status_code == 429


async def test_parallel_attempts_cannot_slip_past_the_account_limit(data_dir, database_url):
    """Each attempt is counted before the hash is checked: a burst gets exactly N guesses."""

    async with (
        instance(data_dir, database_url, login_max_failures_per_account=3) as (services, app),
        client_from(app, fresh_ip()) as c,
    ):
        tenant = await new_tenant(services, c)
        m = await tenant.member("viewer")
        burst = await asyncio.gather(
            *(
                c.post(LOGIN, json={"email": m.email, "password": f"Wrong!Pass{i}"})
                for i in range(12)
            )
        )
        codes = sorted(r.status_code for r in burst)
        assert codes == [401] * 3 + [429] * 9
