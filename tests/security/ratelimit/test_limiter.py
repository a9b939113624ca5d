"""The limiter: exact for small limits, leased for large ones, and what a store failure does."""

from __future__ import annotations

import asyncio
import socket

import pytest
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

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


class _YieldingMemory(MemoryStorage):
    """The memory store answering after a turn of the event loop, as a network store does."""

    async def acquire_sliding_window_entry(self, *args, **kwargs):
        await asyncio.sleep(0)
        return await super().acquire_sliding_window_entry(*args, **kwargs)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_concurrent_requests_share_one_refill(kind):
    """Requests that find the lease spent while a refill is on its way wait for it: the store
    counts one lease per refill, not one per waiting request (which also made the limit
    stricter than configured under concurrency)."""
    if kind == "redis" and not REDIS_URL:
        pytest.skip("needs Redis (KANVARO_TEST_REDIS_URL)")
    storage = open_storage(REDIS_URL) if kind == "redis" else _YieldingMemory()
    limiter = Limiter(storage)
    limit = Limit(f"t-herd-{id(storage)}", RateLimitItemPerMinute(1000))
    decisions = await asyncio.gather(*(limiter.take(limit, "k") for _ in range(64)))
    assert all(d.allowed for d in decisions)
    stats = await SlidingWindowCounterRateLimiter(storage).get_window_stats(
        limit.item, limit.name, "k"
    )
    assert 1000 - stats.remaining <= 64 + lease_size(1000)


async def test_waiters_of_a_failed_refill_fail_closed():
    """The refill they waited for failed: a closed limit refuses every waiter too."""
    limiter = Limiter(open_storage(f"redis://127.0.0.1:{_closed_port()}/0"))
    limit = Limit("t-herd-closed", RateLimitItemPerMinute(1000), fail_closed=True)
    decisions = await asyncio.gather(*(limiter.take(limit, "k") for _ in range(8)))
    assert all(not d.allowed and d.unavailable for d in decisions)
