"""An attacker who hammers wrong passwords for a victim, from many addresses, is slowed down
(429 with Retry-After) but cannot lock the victim out: the victim's known device (its device
cookie carries this account's proof) keeps signing in, the owner is mailed once, and a device
proof made for another account buys the attacker nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiosmtpd.controller import Controller

from kanvaro.app import create_app
from kanvaro.identity.sessions import cookies
from kanvaro.notify.smtp import SmtpMailer
from kanvaro.services import Services
from tests.conftest import PASSWORD, make_settings, new_tenant
from tests.identity.conftest import Inbox, free_port

pytestmark = pytest.mark.asyncio

LOGIN = "/api/v1/auth/login"
NOTICE = "Failed sign-ins to your account"


def fresh_net() -> str:
    # Counters may live in a shared Redis: every run uses addresses of its own.
    return f"10.{random.randrange(256)}.{random.randrange(256)}"


@asynccontextmanager
async def instance(data_dir, database_url) -> AsyncIterator[tuple[Services, object, Inbox]]:
    settings = make_settings(
        data_dir,
        database_url,
        login_max_failures_per_account=3,
        login_max_failures_per_ip=100,
        login_account_ceiling=8,
        login_slow_seconds=60,
    )
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    services = Services.build(settings)
    await services.startup()
    services.mailer = SmtpMailer("127.0.0.1", port, "kanvaro@localhost", security="none", timeout=5)
    try:
        yield services, create_app(settings, services=services), inbox
    finally:
        await services.shutdown()
        controller.stop()


def client_from(app, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def test_an_attacker_cannot_lock_the_owner_out_of_his_known_device(data_dir, database_url):
    net = fresh_net()
    async with instance(data_dir, database_url) as (services, app, inbox):
        async with client_from(app, f"{net}.1") as setup:
            tenant = await new_tenant(services, setup)
            victim = await tenant.member("viewer")
        home = client_from(app, f"{net}.2")
        body = {"email": victim.email, "password": victim.password, "tenant": tenant.slug}
        first = await home.post(LOGIN, json=body)
        assert first.status_code == 200, first.text
        device = first.json()["deviceToken"]  # the secret with this account's proof

        # The attacker: wrong passwords from 20 addresses, 4 each.
        statuses, waits = [], []
        for n in range(20):
            async with client_from(app, f"{net}.{100 + n}") as attacker:
                for _ in range(4):
                    r = await attacker.post(LOGIN, json={**body, "password": "Wrong!Guess-1"})
                    statuses.append(r.status_code)
                    if r.status_code == 429:
                        assert r.headers["content-type"].startswith("application/problem+json")
                        waits.append(int(r.headers["retry-after"]))
        # Slowed: past the account's ceiling only one guess per slot got to the password check.
        assert statuses.count(401) <= 8 + 2 and statuses.count(429) >= 60
        assert all(1 <= w <= 61 for w in waits)

        # The owner, from his known device, signs in at once, even from the attacker's address.
        for ip in (f"{net}.2", f"{net}.100"):
            async with client_from(app, ip) as c:
                r = await c.post(LOGIN, json={**body, "deviceToken": device})
                assert r.status_code == 200, (ip, r.text)
                assert r.json().get("deviceToken") is None  # it holds the proof already
        # ... and so does his browser, by its device cookie.
        c = client_from(app, f"{net}.3")
        c.cookies.set(cookies.DEVICE_COOKIE, device)
        assert (await c.post(LOGIN, json=body)).status_code == 200
        # His own typos on that device use his own allowance, not the attacker's.
        for _ in range(3):
            r = await home.post(LOGIN, json={**body, "password": "typo", "deviceToken": device})
            assert r.status_code == 401
        r = await home.post(LOGIN, json={**body, "deviceToken": device})
        assert r.status_code == 429  # now his own device waits its first delay ...
        await asyncio.sleep(int(r.headers["retry-after"]))
        assert (await home.post(LOGIN, json={**body, "deviceToken": device})).status_code == 200

        # A device the account never signed in from is slowed like the attacker, never locked.
        r = await client_from(app, f"{net}.4").post(LOGIN, json=body)
        assert r.status_code in (200, 429)
        if r.status_code == 429:
            assert 1 <= int(r.headers["retry-after"]) <= 61

        # The owner was told once, after the fact.
        for _ in range(50):
            mails = [m for m in inbox.messages if m["Subject"] == NOTICE]
            if mails:
                break
            await asyncio.sleep(0.05)
        assert len(mails) == 1 and victim.email in inbox.recipients[inbox.messages.index(mails[0])]
        assert "Wrong!Guess-1" not in mails[0].get_content()
        await home.aclose()
        await c.aclose()


async def test_a_proof_for_another_account_buys_nothing(data_dir, database_url):
    net = fresh_net()
    async with instance(data_dir, database_url) as (services, app, _):
        async with client_from(app, f"{net}.1") as setup:
            tenant = await new_tenant(services, setup)
            victim = await tenant.member("viewer")
            mine = await tenant.member("viewer")
        async with client_from(app, f"{net}.9") as attacker:
            own = await attacker.post(
                LOGIN, json={"email": mine.email, "password": PASSWORD, "tenant": tenant.slug}
            )
            token = own.json()["deviceToken"]
            guesses = [
                (
                    await attacker.post(
                        LOGIN,
                        json={
                            "email": victim.email,
                            "password": f"Wrong!{n}",
                            "tenant": tenant.slug,
                            "deviceToken": token,
                        },
                    )
                ).status_code
                for n in range(5)
            ]
            # Counted by his address like any stranger: three free guesses, then a wait.
            assert guesses == [401, 401, 401, 429, 429]
            # A forged proof is no proof either.
            secret = token.split(".")[0]
            forged = f"{secret}.{'0' * 32}"
            r = await attacker.post(
                LOGIN,
                json={
                    "email": victim.email,
                    "password": "Wrong!x",
                    "tenant": tenant.slug,
                    "deviceToken": forged,
                },
            )
            assert r.status_code == 429
