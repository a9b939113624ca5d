"""Failed-login throttling per account and per client IP (``limits``: memory or Redis).

Only failures are counted, in a moving window, so a user who types the password right is
never slowed by an attacker who does not know it for long; once an account or IP has used up
its failures, every attempt is refused with 429 until the window moves on. The account key
is the SHA-256 of the normalized email, so the store never holds addresses in clear.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


def make_storage(redis_url: str | None) -> Storage:
    if redis_url:
        scheme, rest = redis_url.split("://", 1)
        return storage_from_string(f"async+{scheme}://{rest}", implementation="redispy")
    return MemoryStorage()


@dataclass(frozen=True)
class ThrottleVerdict:
    allowed: bool
    retry_after: int = 0


class LoginThrottle:
    def __init__(
        self, storage: Storage, *, per_account: int, per_ip: int, window_seconds: int
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._account = RateLimitItemPerSecond(per_account, window_seconds)
        self._ip = RateLimitItemPerSecond(per_ip, window_seconds)

    @staticmethod
    def _account_key(email: str) -> str:
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    async def check(self, email: str, ip: str | None) -> ThrottleVerdict:
        checks = [(self._account, ("login-account", self._account_key(email)))]
        if ip:
            checks.append((self._ip, ("login-ip", ip)))
        for item, key in checks:
            if not await self._limiter.test(item, *key):
                stats = await self._limiter.get_window_stats(item, *key)

                return ThrottleVerdict(False, max(1, int(stats.reset_time - time.time())))
        return ThrottleVerdict(True)

    async def failed(self, email: str, ip: str | None) -> None:
        await self._limiter.hit(self._account, "login-account", self._account_key(email))
        if ip:
            await self._limiter.hit(self._ip, "login-ip", ip)

    async def succeeded(self, email: str) -> None:
        await self._limiter.clear(self._account, "login-account", self._account_key(email))
