"""Guess throttling for sign-in, MFA codes, password re-entry and the other anonymous auth
endpoints (``limits``: memory, or Redis shared by every instance).

A throttle that refuses the right password after N failures lets anyone lock anyone out, so
failures are counted per (account, client), never per account alone:

* the client is a device that signed in to this account before (it presents the account's
  device proof, ``identity/device_cookie.py``), else its IP address (an IPv6 one by its /64);
* each (account, client) has a few free attempts; after them, each further attempt must wait
  an exponentially growing delay (answered 429 with ``Retry-After``; the server never sleeps);
* every untrusted client of an account together has a ceiling: past it, they share one slot
  per ``slow_seconds`` (slower, never refused for good), and the owner is told by mail;
* a known device keeps its own allowance: nothing other clients do uses it up.

Every attempt is counted *before* the secret is checked, with atomic hits, so a burst of
parallel guesses gets exactly the free ones and no more. A success clears its own
(account, client) count only. The store holds keyed or hashed names, never an address.

When the store fails, ``fail_mode`` decides: ``closed`` answers 503 ``rate-limit-unavailable``
(a sign-in with no limit would be an unlimited guessing oracle), ``open`` lets attempts through.
Either way the failure is logged, at most once a minute per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from kanvaro.errors import ServiceUnavailable

log = structlog.get_logger("kanvaro.security")

DAY = 24 * 3600
# What a store failure is answered with (closed mode): long enough not to invite a retry storm.
UNAVAILABLE_RETRY_SECONDS = 30
_LOG_EVERY_SECONDS = 60.0


def make_storage(redis_url: str | None) -> Storage:
    if redis_url:
        scheme, rest = redis_url.split("://", 1)
        # wrap_exceptions: every store failure arrives as one StorageError, whatever the driver.
        return storage_from_string(
            f"async+{scheme}://{rest}", implementation="redispy", wrap_exceptions=True
        )
    return MemoryStorage()


class RateLimitUnavailable(ServiceUnavailable):
    """The counter store failed and authentication fails closed."""

    type_suffix = "rate-limit-unavailable"


def client_of_ip(ip: str | None) -> str:
    """The throttle's name for a client address: an IPv6 client by its /64 (one subscriber
    gets a whole /64, so single addresses would give him 2**64 fresh allowances)."""
    if not ip:
        return "ip:unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "ip:" + hashlib.sha256(ip.encode()).hexdigest()[:32]
    if isinstance(address, ipaddress.IPv6Address):
        return "ip:" + str(ipaddress.IPv6Network((address, 64), strict=False))
    return f"ip:{address}"


@dataclass(frozen=True)
class Client:
    """Who is guessing: ``key`` names the device (a keyed proof) or the address; ``known``
    says that it is a device this account signed in from before."""

    key: str
    known: bool = False

    @classmethod
    def of_ip(cls, ip: str | None) -> Client:
        return cls(client_of_ip(ip))


@dataclass(frozen=True)
class ThrottleVerdict:
    allowed: bool
    retry_after: int = 0
    # This attempt pushed the account's untrusted clients past its ceiling for the first time
    # in the notice period: the owner is to be told.
    notify_owner: bool = False


ALLOWED = ThrottleVerdict(True)
# How many attempts past the free ones a client made today (a counter: the limit is never hit).
_EXTRA = RateLimitItemPerSecond(10**9, DAY)


@dataclass(frozen=True)
class GuessPolicy:
    free: int  # attempts per (account, client) before the delays begin
    window_seconds: int  # how long free attempts are remembered
    base_delay: int = 1  # the first delay; each further one doubles
    max_delay: int = 15 * 60
    account_ceiling: int = 0  # attempts per account by untrusted clients per window (0 = none)
    slow_seconds: int = 30  # past the ceiling: one untrusted attempt per this, account-wide
    notice_seconds: int = DAY  # the owner is mailed at most once per this

    def delay(self, extra: int) -> int:
        """The wait before the ``extra``-th attempt past the free ones (1-based)."""
        return min(self.max_delay, self.base_delay * 2 ** min(extra - 1, 30))


class _StoreDown(Exception):
    pass


class LoginThrottle:
    def __init__(
        self,
        storage: Storage,
        *,
        per_account: int,
        per_ip: int,
        window_seconds: int,
        account_ceiling: int = 0,
        max_delay: int = 15 * 60,
        slow_seconds: int = 30,
        notice_seconds: int = DAY,
        fail_mode: str = "closed",
        refresh_per_minute: int = 300,
        reset_per_address_per_hour: int = 3,
        reset_per_client_per_hour: int = 20,
    ) -> None:
        self._moving = MovingWindowRateLimiter(storage)
        self._fixed = FixedWindowRateLimiter(storage)
        self._window = window_seconds
        self.login = GuessPolicy(
            free=per_account,
            window_seconds=window_seconds,
            max_delay=max_delay,
            account_ceiling=account_ceiling,
            slow_seconds=slow_seconds,
            notice_seconds=notice_seconds,
        )
        # MFA codes and the re-entry of a password: the same free attempts and delays, per
        # (user, client); only a right password leads here, so no account-wide ceiling.
        self.mfa = GuessPolicy(free=per_account, window_seconds=window_seconds, max_delay=max_delay)
        self._per_account_item = RateLimitItemPerSecond(per_account, window_seconds)
        self._ip = RateLimitItemPerSecond(per_ip, window_seconds)
        self._refresh = RateLimitItemPerSecond(refresh_per_minute, 60)
        self._reset_address = RateLimitItemPerSecond(reset_per_address_per_hour, 3600)
        self._reset_client = RateLimitItemPerSecond(reset_per_client_per_hour, 3600)
        self.fail_mode = fail_mode
        self._last_logged = 0.0

    # -- the store, and what its failure means ------------------------------------------

    async def _guard(self, coro):  # type: ignore[no-untyped-def]
        try:
            return await coro
        except (StorageError, ConnectionError, OSError, TimeoutError) as exc:
            self._log_down(exc)
            raise _StoreDown from None

    def _log_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_logged >= _LOG_EVERY_SECONDS:  # one line a minute, not per request
            self._last_logged = now
            log.error(
                "throttle_store_unavailable",
                fail_mode=self.fail_mode,
                error_type=type(exc).__name__,
            )

    def _when_down(self) -> ThrottleVerdict:
        if self.fail_mode == "open":
            return ALLOWED
        raise RateLimitUnavailable(
            "Sign-in is unavailable for a moment. Try again shortly.",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
        )

    async def _hit(self, item: RateLimitItem, *key: str) -> bool:
        return bool(await self._guard(self._moving.hit(item, *key)))

    async def _reset_in(self, item: RateLimitItem, *key: str) -> int:
        stats = await self._guard(self._moving.get_window_stats(item, *key))
        return max(1, int(stats.reset_time - time.time()) + 1)

    async def _take(self, item: RateLimitItem, *key: str) -> ThrottleVerdict:
        # hit() checks and records in one step, so attempts sent in parallel cannot all pass
        # a read-only check before any of them is counted.
        if await self._hit(item, *key):
            return ALLOWED
        return ThrottleVerdict(False, await self._reset_in(item, *key))

    # -- progressive delays per (account, client) ----------------------------------------

    async def _guess(
        self, policy: GuessPolicy, scope: str, account: str, client: Client
    ) -> ThrottleVerdict:
        verdict = await self._per_client(policy, (scope, account, client.key))
        if verdict.allowed and not client.known and policy.account_ceiling:
            return await self._account_wide(policy, scope, account)
        return verdict

    async def _per_client(self, policy: GuessPolicy, pair: tuple[str, ...]) -> ThrottleVerdict:
        """The free attempts of (account, client), then one attempt per doubling delay."""
        free = RateLimitItemPerSecond(policy.free, policy.window_seconds)
        if await self._hit(free, "free", *pair):
            stats = await self._guard(self._moving.get_window_stats(free, "free", *pair))
            if stats.remaining == 0:
                # The last free one: the gate of the first delay closes now, before the check,
                # so the rest of a parallel burst already meets it.
                await self._hit(self._gate(policy, 1), "gate", "1", *pair)
            return ALLOWED
        stats = await self._guard(self._fixed.get_window_stats(_EXTRA, "extra", *pair))
        extra = _EXTRA.amount - stats.remaining + 1  # this attempt's number past the free
        gate = self._gate(policy, extra)
        if not await self._hit(gate, "gate", str(extra), *pair):
            return ThrottleVerdict(False, await self._reset_in(gate, "gate", str(extra), *pair))
        await self._guard(self._fixed.hit(_EXTRA, "extra", *pair))
        # The next attempt's gate closes with this one: it waits the next, doubled delay.
        await self._hit(self._gate(policy, extra + 1), "gate", str(extra + 1), *pair)
        return ALLOWED

    @staticmethod
    def _gate(policy: GuessPolicy, extra: int) -> RateLimitItem:
        return RateLimitItemPerSecond(1, policy.delay(extra))

    async def _account_wide(self, policy: GuessPolicy, scope: str, account: str) -> ThrottleVerdict:
        """All untrusted clients of an account together: under the ceiling, nothing more; past
        it they share one attempt per ``slow_seconds`` (slowed, never closed), and the owner is
        to be told (once per notice period)."""
        ceiling = RateLimitItemPerSecond(policy.account_ceiling, policy.window_seconds)
        if await self._hit(ceiling, "untrusted", scope, account):
            return ALLOWED
        notice = RateLimitItemPerSecond(1, policy.notice_seconds)
        notify = await self._hit(notice, "notice", scope, account)
        slot = RateLimitItemPerSecond(1, policy.slow_seconds)
        if await self._hit(slot, "slow", scope, account):
            return ThrottleVerdict(True, notify_owner=notify)
        retry = await self._reset_in(slot, "slow", scope, account)
        return ThrottleVerdict(False, retry, notify_owner=notify)

    async def _clear(self, policy: GuessPolicy, scope: str, account: str, client: Client) -> None:
        pair = (scope, account, client.key)
        await self._guard(
            self._moving.clear(
                RateLimitItemPerSecond(policy.free, policy.window_seconds), "free", *pair
            )
        )
        await self._guard(self._fixed.clear(_EXTRA, "extra", *pair))

    # -- the attempts --------------------------------------------------------------------

    async def attempt(self, account: str, client: Client | str | None) -> ThrottleVerdict:
        """Count a sign-in attempt *before* the password is checked.

        A client that is no known device of this account is also held to the per-address
        limit across accounts (spraying one password over many accounts)."""
        client = _as_client(client)
        try:
            if not client.known:
                verdict = await self._take(self._ip, "login-ip", client.key)
                if not verdict.allowed:
                    return verdict
            return await self._guess(self.login, "login", _hashed(account), client)
        except _StoreDown:
            return self._when_down()

    async def succeeded(self, account: str, client: Client | str | None = None) -> None:
        """A right password clears its own (account, client) count, nobody else's."""
        with contextlib.suppress(_StoreDown):  # the success stands; the count ages out
            await self._clear(self.login, "login", _hashed(account), _as_client(client))

    async def attempt_reauth(self, user_id: str) -> ThrottleVerdict:
        """A signed-in user re-enters his password (password change, reauth): counted per
        user, with the same delays (only his own session can reach it)."""
        try:
            return await self._guess(self.mfa, "reauth", user_id, Client("session"))
        except _StoreDown:
            return self._when_down()

    async def reauth_succeeded(self, user_id: str) -> None:
        with contextlib.suppress(_StoreDown):  # the success stands; the count ages out
            await self._clear(self.mfa, "reauth", user_id, Client("session"))

    async def attempt_mfa(
        self, user_id: str, client: Client | str | None = None
    ) -> ThrottleVerdict:
        """Count a second-factor code per (user, client), across all his challenges: a fresh
        challenge per password sign-in must not reset the count of guesses at his codes."""
        try:
            return await self._guess(self.mfa, "mfa", user_id, _as_client(client))
        except _StoreDown:
            return self._when_down()

    async def mfa_succeeded(self, user_id: str, client: Client | str | None = None) -> None:
        with contextlib.suppress(_StoreDown):  # the success stands; the count ages out
            await self._clear(self.mfa, "mfa", user_id, _as_client(client))

    async def attempt_passkey_start(self, ip: str | None) -> ThrottleVerdict:
        """Count a passwordless sign-in start per client address: each stores a challenge,
        so an anonymous flood is held to the per-address sign-in limit."""
        if not ip:
            return ALLOWED
        return await self.per_client("passkey-ip", self._ip, ip)

    async def attempt_lookup(self, email: str, ip: str | None) -> ThrottleVerdict:
        """Count a "which tenants am I in?" request: it sends mail, so each address and each
        client is held to the per-account limit (a mail bomb needs many windows)."""
        try:
            verdict = await self._take(self._per_account_item, "lookup-address", _hashed(email))
            if verdict.allowed and ip:
                verdict = await self._take(self._per_account_item, "lookup-ip", client_of_ip(ip))
            return verdict
        except _StoreDown:
            return self._when_down()

    async def refused_refresh(self, ip: str | None) -> ThrottleVerdict:
        """Count a refused refresh per client address (a forged, unknown or spent token: the
        guesses at a credential); a refresh that succeeds is never counted. While the store is
        away the refusal stands uncounted: forging a signed token is no guess a count slows."""
        try:
            return await self._take(self._refresh, "refresh-ip", client_of_ip(ip))
        except _StoreDown:
            return ALLOWED

    async def attempt_reset_request(self, email: str, ip: str | None) -> ThrottleVerdict:
        """A password-reset request mails the address: each client and each address is held
        to a few per hour (a flood of reset mails is the harm, not a guess)."""
        verdict = await self.per_client("reset-ip", self._reset_client, ip)
        if verdict.allowed:
            verdict = await self.per_key("reset-address", self._reset_address, email)
        return verdict

    async def attempt_reset_confirm(self, ip: str | None) -> ThrottleVerdict:
        """A reset link's token presented: counted per client before it is looked up."""
        return await self.per_client("reset-confirm-ip", self._reset_client, ip)

    async def per_client(self, scope: str, item: RateLimitItem, ip: str | None) -> ThrottleVerdict:
        """A plain limit per client address (IPv6 by /64) for ``scope``: refresh, reset."""
        try:
            return await self._take(item, scope, client_of_ip(ip))
        except _StoreDown:
            return self._when_down()

    async def per_key(self, scope: str, item: RateLimitItem, key: str) -> ThrottleVerdict:
        """A plain limit per ``key`` (stored hashed: it may be an address)."""
        try:
            return await self._take(item, scope, _hashed(key))
        except _StoreDown:
            return self._when_down()


def _as_client(client: Client | str | None) -> Client:
    """A client, an address (str), or None: a signed-in user's own session (enrollment),
    counted per user alone."""
    if isinstance(client, Client):
        return client
    return Client("session") if client is None else Client.of_ip(client)


def _hashed(name: str) -> str:
    # Account names may be addresses: the store only ever sees their SHA-256.
    return hashlib.sha256(name.strip().lower().encode()).hexdigest()
