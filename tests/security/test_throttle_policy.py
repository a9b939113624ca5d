"""The guess throttle's policy on its own (memory store): free attempts per (account, client),
delays that double, a known device's own allowance, the per-account ceiling that only slows,
IPv6 clients by /64, and parallel bursts."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kanvaro.security.throttle import Client, LoginThrottle, client_of_ip, make_storage

pytestmark = pytest.mark.asyncio


def throttle(**kw) -> LoginThrottle:
    kw.setdefault("per_account", 3)
    kw.setdefault("per_ip", 10_000)
    kw.setdefault("window_seconds", 600)
    return LoginThrottle(make_storage(None), **kw)


def account() -> str:
    return f"user:{uuid.uuid4()}"


async def test_free_attempts_then_delays_that_double_never_a_lock():
    t = throttle()
    who, attacker = account(), Client.of_ip("198.51.100.1")
    assert all([(await t.attempt(who, attacker)).allowed for _ in range(3)])
    waits = []
    for _ in range(3):
        refused = await t.attempt(who, attacker)
        assert not refused.allowed  # answered 429, with how long to wait
        waits.append(refused.retry_after)
        await asyncio.sleep(refused.retry_after)  # waited out: the next attempt is allowed
        assert (await t.attempt(who, attacker)).allowed
    # 1 s, 2 s, 4 s (whole seconds, rounded up; +1 for the window's edge).
    assert waits[0] <= 2 and waits[1] >= 2 and waits[2] >= 4 and waits[2] > waits[1] > waits[0]


async def test_a_success_clears_only_its_own_client():
    t = throttle()
    who = account()
    attacker, owner = Client.of_ip("198.51.100.2"), Client.of_ip("192.0.2.2")
    for _ in range(3):
        await t.attempt(who, attacker)
        await t.attempt(who, owner)
    await t.succeeded(who, owner)
    assert (await t.attempt(who, owner)).allowed
    assert not (await t.attempt(who, attacker)).allowed


async def test_a_known_device_keeps_its_allowance_while_others_hammer():
    t = throttle(account_ceiling=5, slow_seconds=60)
    who = account()
    for n in range(40):  # many addresses, each using its free attempts
        await t.attempt(who, Client.of_ip(f"203.0.113.{n}"))
    device = Client("device:0123456789abcdef0123456789abcdef", known=True)
    assert all([(await t.attempt(who, device)).allowed for _ in range(3)])


async def test_the_account_ceiling_slows_unknown_clients_and_asks_to_notify_once():
    t = throttle(account_ceiling=4, slow_seconds=30)
    who = account()
    verdicts = [await t.attempt(who, Client.of_ip(f"203.0.113.{n}")) for n in range(12)]
    allowed = [v for v in verdicts if v.allowed]
    # Four under the ceiling, the fifth passes the shared slot (and is the one reported), the
    # rest wait for the slot: slowed, with a Retry-After no longer than the slot.
    assert len(allowed) == 5
    assert [v.notify_owner for v in verdicts].count(True) == 1
    assert all(1 <= v.retry_after <= 31 for v in verdicts if not v.allowed)
    # A fresh address is slowed too: it is not the account's device.
    assert not (await t.attempt(who, Client.of_ip("192.0.2.99"))).allowed


async def test_one_ipv6_subscriber_is_one_client():
    assert client_of_ip("2001:db8:1:2::1") == client_of_ip("2001:db8:1:2:ffff::9")
    assert client_of_ip("2001:db8:1:2::1") != client_of_ip("2001:db8:1:3::1")
    assert client_of_ip("::ffff:198.51.100.4") != client_of_ip("198.51.100.5")
    t = throttle()
    who = account()
    for n in range(3):
        await t.attempt(who, f"2001:db8:aa:bb::{n + 1}")
    assert not (await t.attempt(who, "2001:db8:aa:bb::ffff")).allowed


async def test_a_parallel_burst_gets_the_free_attempts_and_no_more():
    t = throttle()
    who, attacker = account(), Client.of_ip("198.51.100.3")
    verdicts = await asyncio.gather(*(t.attempt(who, attacker) for _ in range(20)))
    assert sum(v.allowed for v in verdicts) == 3


async def test_mfa_codes_are_counted_per_user_and_client():
    t = throttle()
    user = str(uuid.uuid4())
    for _ in range(3):
        await t.attempt_mfa(user, "198.51.100.6")
    assert not (await t.attempt_mfa(user, "198.51.100.6")).allowed
    assert (await t.attempt_mfa(user, "192.0.2.6")).allowed


async def test_refresh_and_reset_have_their_own_limits_per_client():
    t = throttle(refresh_per_minute=2, reset_per_address_per_hour=1, reset_per_client_per_hour=3)
    ip = "198.51.100.7"
    assert [(await t.refused_refresh(ip)).allowed for _ in range(3)] == [True, True, False]
    assert (await t.refused_refresh("192.0.2.7")).allowed
    address = f"{uuid.uuid4().hex}@example.com"
    assert (await t.attempt_reset_request(address, ip)).allowed
    assert not (await t.attempt_reset_request(address.upper(), "192.0.2.8")).allowed
