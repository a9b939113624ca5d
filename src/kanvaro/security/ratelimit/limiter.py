"""Counters behind short local leases: the per-request decision stays a dictionary lookup.

The counting is ``limits``' (a sliding window counter: two counters per key, so memory does
not grow with the limit and the store's work is atomic, memory or Redis). What this module
adds is the lease: when a process needs a token for a key it takes a small batch from the
store at once (about 1 % of the limit, at most 50, one when the limit is under 100) and spends
it locally for at most a second. One Redis round trip then serves many requests, and the
limit stays exact where it matters: small limits (sign-in, an endpoint rule of 10 a minute)
take one token at a time. Tokens leased and not used by a process count as spent, so several
instances can only make a limit slightly stricter, never looser.

When the store fails (Redis down or slow), a limit that ``fail_closed`` refuses (the caller
answers 503), the others let the request through; either way it is logged, at most once a
second, and the store is not asked again for a second (a dead Redis must not add a timeout
to every request).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

log = structlog.get_logger("kanvaro.ratelimit")

LEASE_SECONDS = 1.0
RETRY_STORE_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: ``name`` namespaces its counters (``user-minute``, ``rule:<id>``...) and
    names it in logs and violations; ``fail_closed`` says what a store failure means."""

    name: str
    item: RateLimitItem
    fail_closed: bool = False

    @property
    def window_seconds(self) -> int:
        return int(self.item.get_expiry())


@dataclass(slots=True)  # not frozen: one is made per counter per request, and that is cheaper
class Decision:
    allowed: bool
    limit: Limit
    remaining: int
    reset_at: float  # epoch seconds at which the window will have room again
    unavailable: bool = False  # the store failed and the limit fails closed

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.reset_at - now))


@dataclass(slots=True)
class _Lease:
    left: int
    remaining: int
    reset_at: float
    expires: float
    refused: bool = False  # a refusal is remembered too: a flood costs no store calls


def lease_size(amount: int) -> int:
    return 1 if amount < 100 else min(50, amount // 100)


class Limiter:
    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._clock = clock
        self._leases: dict[tuple[str, int, str], _Lease] = {}
        # One refill per slot at a time: concurrent requests that find the lease spent wait
        # for the refill in flight instead of each asking the store (and each overwriting
        # the lease it took, so that the tokens of all but the last counted as spent).
        self._refills: dict[tuple[str, int, str], asyncio.Event] = {}
        self._pruned_at = 0.0
        self._store_down_until = 0.0
        self._logged_at = 0.0

    async def take(self, limit: Limit, key: str) -> Decision:
        """One token of ``limit`` for ``key``: from this process's lease when it has one."""
        amount = limit.item.amount
        slot = (limit.name, amount, key)
        while True:
            now = self._clock()
            lease = self._leases.get(slot)
            if lease is not None and lease.expires > now:
                if lease.refused:
                    return Decision(False, limit, 0, lease.reset_at)
                if lease.left > 0:
                    lease.left -= 1
                    return Decision(True, limit, lease.remaining + lease.left, lease.reset_at)
            if now < self._store_down_until:
                return self._unavailable(limit, now, None)
            pending = self._refills.get(slot)
            if pending is None:
                break
            # Another request is refilling this lease: decide on what it brings (a lease, a
            # refusal, or the store marked down), whatever becomes of that request.
            await pending.wait()
        done = self._refills[slot] = asyncio.Event()
        try:
            return await self._refill(limit, key, slot, now)
        finally:
            if self._refills.get(slot) is done:
                del self._refills[slot]
            done.set()

    async def _refill(
        self, limit: Limit, key: str, slot: tuple[str, int, str], now: float
    ) -> Decision:
        """A new lease from the store, with its first token taken for the caller."""
        amount = limit.item.amount
        batch = lease_size(amount)
        try:
            allowed = await self._strategy.hit(limit.item, limit.name, key, cost=batch)
            if not allowed and batch > 1:
                batch = 1
                allowed = await self._strategy.hit(limit.item, limit.name, key)
            stats = await self._strategy.get_window_stats(limit.item, limit.name, key)
        except (StorageError, OSError) as exc:
            self._store_down_until = now + RETRY_STORE_AFTER
            return self._unavailable(limit, now, exc)
        reset_at = max(float(stats.reset_time), now + 1)
        expires = min(now + LEASE_SECONDS, reset_at)
        self._prune(now)
        if not allowed:
            self._leases[slot] = _Lease(0, 0, reset_at, expires, refused=True)
            return Decision(False, limit, 0, reset_at)
        self._leases[slot] = _Lease(batch - 1, stats.remaining, reset_at, expires)
        return Decision(True, limit, stats.remaining + batch - 1, reset_at)

    async def clear(self, limit: Limit, key: str) -> None:
        """Forget a key's count (a lifted block starts afresh)."""
        self._leases.pop((limit.name, limit.item.amount, key), None)
        try:
            await self._strategy.clear(limit.item, limit.name, key)
        except (StorageError, OSError) as exc:
            self._log_failure(self._clock(), exc, "clear")

    def forget_leases(self) -> None:
        self._leases.clear()

    def _unavailable(self, limit: Limit, now: float, exc: BaseException | None) -> Decision:
        if exc is not None:
            self._log_failure(now, exc, "refuse" if limit.fail_closed else "allow")
        if limit.fail_closed:
            return Decision(False, limit, 0, now + RETRY_STORE_AFTER, unavailable=True)
        return Decision(True, limit, limit.item.amount, now + limit.window_seconds)

    def _log_failure(self, now: float, exc: BaseException, outcome: str) -> None:
        if now - self._logged_at >= 1.0:
            self._logged_at = now
            # The exception's class only: a Redis error's text may carry its URL.
            log.error("rate_limit_store_failed", error=type(exc).__name__, outcome=outcome)

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < LEASE_SECONDS or len(self._leases) < 1024:
            return
        self._pruned_at = now
        for slot in [s for s, lease in self._leases.items() if lease.expires <= now]:
            del self._leases[slot]
