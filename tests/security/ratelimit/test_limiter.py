"""The limiter: exact for small limits, leased for large ones, and what a store failure does."""

from __future__ import annotations

import socket

import pytest
from limits import RateLimitItemPerMinute

from kanvaro.security.ratelimit.limiter import Limit, Limiter, lease_size
from kanvaro.security.ratelimit.store import open_storage
from tests.conftest import REDIS_URL


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["memory", "redis"])
def storage(request):
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("needs Redis (KANVARO_TEST_REDIS_URL)")
        return open_storage(REDIS_URL)
    return open_storage(None)


async def test_a_small_limit_is_exact(storage):
    limiter = Limiter(storage)
    limit = Limit(f"t-small-{id(storage)}", RateLimitItemPerMinute(5))
    results = [(await limiter.take(limit, "k")).allowed for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    refused = await limiter.take(limit, "k")
    assert refused.remaining == 0 and refused.retry_after(0) >= 1


async def test_a_large_limit_is_leased_and_never_looser(storage):
    """Two limiters (two processes) on one store: together they never pass more than the
    limit, and each asks the store once per lease, not once per request."""
    a, b = Limiter(storage), Limiter(storage)
    limit = Limit(f"t-large-{id(storage)}", RateLimitItemPerMinute(1000))
    assert lease_size(1000) == 10
    allowed = 0
    for i in range(1200):
        decision = await (a if i % 2 else b).take(limit, "shared")
        allowed += decision.allowed
    assert allowed <= 1000
    assert allowed >= 1000 - 2 * lease_size(1000)  # at most one unspent lease per process


async def test_remaining_counts_down_through_a_lease():
    limiter = Limiter(open_storage(None))
    limit = Limit("t-remaining", RateLimitItemPerMinute(500))
    seen = [(await limiter.take(limit, "k")).remaining for _ in range(6)]
    assert seen == sorted(seen, reverse=True) and seen[0] - seen[-1] == 5


async def test_a_dead_store_refuses_closed_limits_and_passes_open_ones():
    limiter = Limiter(open_storage(f"redis://127.0.0.1:{_closed_port()}/0"))
    closed = Limit("t-closed", RateLimitItemPerMinute(5), fail_closed=True)
    open_ = Limit("t-open", RateLimitItemPerMinute(5), fail_closed=False)
    refused = await limiter.take(closed, "k")
    assert not refused.allowed and refused.unavailable
    passed = await limiter.take(open_, "k")
    assert passed.allowed and not passed.unavailable
