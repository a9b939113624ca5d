"""Failed-login throttling per account and per client IP (``limits``: memory or Redis).

Every attempt is counted before the password is checked (so parallel attempts cannot slip
past the limit), in a moving window; a successful sign-in clears the account's count. Once an
account or IP has used up its attempts, every attempt is refused with 429 until the window
moves on, the right password included. The account key
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

    async def _take(self, item: RateLimitItemPerSecond, *key: str) -> ThrottleVerdict:
        # hit() checks and records in one step, so attempts sent in parallel cannot all pass
        # a read-only check before any of them is counted.
        if await self._limiter.hit(item, *key):
            return ThrottleVerdict(True)
        stats = await self._limiter.get_window_stats(item, *key)
        return ThrottleVerdict(False, max(1, int(stats.reset_time - time.time())))

    async def attempt(self, email: str, ip: str | None) -> ThrottleVerdict:
        """Count a sign-in attempt *before* the password is checked; refuse past the limits.

        Every attempt counts; a successful one clears the account's count afterwards
        (:meth:`succeeded`). The per-IP count is not cleared by a success: it bounds how fast
        one address can try passwords across many accounts.
        """
        verdict = await self._take(self._account, "login-account", self._account_key(email))
        if verdict.allowed and ip:
            verdict = await self._take(self._ip, "login-ip", ip)
        return verdict

    async def attempt_reauth(self, user_id: str) -> ThrottleVerdict:
        """Count a re-entry of the current password by a signed-in user (password change)."""
        return await self._take(self._account, "reauth-user", user_id)

    async def attempt_mfa(self, user_id: str) -> ThrottleVerdict:
        """Count a second-factor code for a user, across all his challenges: a fresh challenge
        per password sign-in must not reset the count of guesses at his codes."""
        return await self._take(self._account, "mfa-user", user_id)

    async def attempt_passkey_start(self, ip: str | None) -> ThrottleVerdict:
        """Count a passwordless sign-in start per client address: each stores a challenge,
        so an anonymous flood is held to the per-address sign-in limit."""
        if not ip:
            return ThrottleVerdict(True)
        return await self._take(self._ip, "passkey-ip", ip)

    async def mfa_succeeded(self, user_id: str) -> None:
        await self._limiter.clear(self._account, "mfa-user", user_id)

    async def attempt_lookup(self, email: str, ip: str | None) -> ThrottleVerdict:
        """Count a "which tenants am I in?" request: it sends mail, so each address and each
        client is held to the per-account limit (a mail bomb needs many windows)."""
        verdict = await self._take(self._account, "lookup-address", self._account_key(email))
        if verdict.allowed and ip:
            verdict = await self._take(self._account, "lookup-ip", ip)
        return verdict

    async def succeeded(self, email: str) -> None:
        await self._limiter.clear(self._account, "login-account", self._account_key(email))

    async def reauth_succeeded(self, user_id: str) -> None:
        await self._limiter.clear(self._account, "reauth-user", user_id)
