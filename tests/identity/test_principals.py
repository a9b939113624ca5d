"""The principal behind a token and its short-lived cache: bounded in time and size, emptied
by any committed change to sessions, users, roles or tenants in this process."""

from __future__ import annotations

import uuid

import pytest

from kanvaro.acting import Principal
from kanvaro.errors import Unauthorized
from kanvaro.identity import principals
from kanvaro.identity.principals import PrincipalCache
from kanvaro.services import Services
from tests.conftest import TenantFixture


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _principal(**kw: object) -> Principal:
    values: dict = {
        "user_id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "session_id": uuid.uuid4(),
        "email": "a@kanvaro.example",
        "role": "admin",
        "permissions": frozenset({"task:read"}),
        "project_scoped": False,
    }
    values.update(kw)
    return Principal(**values)


def test_entries_live_at_most_the_ttl() -> None:
    clock = Clock()
    cache = PrincipalCache(0.5, clock=clock)
    p = _principal()
    cache.put(p, generation=0)
    assert cache.get(p.session_id) is not None
    clock.now += 0.49
    assert cache.get(p.session_id) is not None
    clock.now += 0.02
    assert cache.get(p.session_id) is None


def test_size_is_bounded_and_zero_ttl_keeps_nothing() -> None:
    cache = PrincipalCache(10, size=3, clock=Clock())
    for _ in range(5):
        cache.put(_principal(), generation=0)
    assert len(cache) == 3
    off = PrincipalCache(0)
    off.put(_principal(), generation=0)
    assert len(off) == 0


def _no_reader():  # type: ignore[no-untyped-def]
    raise AssertionError("a cache hit must not read the database")


async def test_a_hit_still_checks_the_user() -> None:
    """(The session's timeouts are checked on every request by identity.sessions.enforce.)"""
    cache = PrincipalCache(10, clock=Clock())
    fresh = _principal()
    cache.put(fresh, generation=0)
    assert (
        await principals.resolve(
            _no_reader, cache, session_id=fresh.session_id, user_id=fresh.user_id
        )
        is fresh
    )
    with pytest.raises(Unauthorized):  # a token naming another user with this session id
        await principals.resolve(
            _no_reader, cache, session_id=fresh.session_id, user_id=uuid.uuid4()
        )


async def test_logout_is_seen_on_the_very_next_request(
    services: Services, tenant: TenantFixture
) -> None:
    client, headers = tenant.client, tenant.admin.headers
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    assert len(services.principals) >= 1  # the principal is cached now
    r = await client.post("/api/v1/auth/logout", headers=headers)
    assert r.status_code == 204
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 401


async def test_disabling_an_account_ends_its_cached_principal(
    services: Services, tenant: TenantFixture
) -> None:
    member = await tenant.member("team_member")
    client = tenant.client
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).status_code == 200
    r = await client.delete(f"/api/v1/users/{member.id}", headers=tenant.admin.headers)
    assert r.status_code in (200, 204), r.text
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).status_code == 401


async def test_a_role_change_applies_at_once(services: Services, tenant: TenantFixture) -> None:
    member = await tenant.member("viewer")
    client = tenant.client
    r = await client.post(
        "/api/v1/projects", headers=member.headers, json={"name": "Not allowed yet"}
    )
    assert r.status_code == 403
    r = await client.patch(
        f"/api/v1/users/{member.id}",
        headers={**tenant.admin.headers, "If-Match": '"v1"'},
        json={"role": "admin"},
    )
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/projects", headers=member.headers, json={"name": "Now"})
    assert r.status_code == 201, r.text


async def test_concurrent_misses_share_one_load_and_a_clear_drops_it() -> None:
    import asyncio
    from contextlib import asynccontextmanager

    cache = PrincipalCache(10, clock=Clock())
    p = _principal()
    loads = 0
    gate = asyncio.Event()

    @asynccontextmanager
    async def reader_of():  # type: ignore[no-untyped-def]
        nonlocal loads
        loads += 1
        await gate.wait()
        yield None

    async def fake_load(reader, *, session_id, user_id):  # type: ignore[no-untyped-def]
        return p

    original = principals.load
    principals.load = fake_load  # type: ignore[assignment]
    try:
        waiting = [
            asyncio.ensure_future(
                principals.resolve(reader_of, cache, session_id=p.session_id, user_id=p.user_id)
            )
            for _ in range(5)
        ]
        await asyncio.sleep(0)
        cache.clear()  # e.g. a logout committed while the load was running
        gate.set()
        assert all(r is p for r in await asyncio.gather(*waiting))
        assert loads == 1
        assert cache.get(p.session_id) is None  # the stale load was not kept
    finally:
        principals.load = original  # type: ignore[assignment]
