"""The per-request decision: IP lists, blocks, global / per-address / per-user limits and the
endpoint rules, in that order, and what happens when a client keeps going over.

Two checkpoints. ``check_network`` runs in the middleware before routing, on what the
connection alone tells: a denied network gets 403 before any other work, a blocked address
429, then the global limits, the per-address limit and the instance's network rules.
``check_principal`` runs once the access token is verified (before any database work): the
tenant's IP lists, a blocked user, the per-user limits and the rules that need the caller
(per user, per role, or the tenant's own). Counters sit in ``limits`` behind the limiter's
leases, so the usual request asks the store nothing.

Violations: the first refusal of a client (or user) in a minute writes a row; that many
minutes with refusals within an hour (``rate_limit_block_after_violations``) block it for
``rate_limit_block_minutes``, doubled for each further block within a day, at most a day.
Blocks are rows too, so every instance honours them (through the snapshot) and admins list and
lift them; each block is audited. Exempt networks are never blocked automatically.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from sqlalchemy import func, select

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.config import Settings
from kanvaro.errors import Forbidden, ProblemError, ServiceUnavailable, TooManyRequests
from kanvaro.ratelimit.models import RateLimitViolation
from kanvaro.ratelimit.rules import Rule, configured_rules
from kanvaro.ratelimit.snapshot import Snapshot, SnapshotSource
from kanvaro.security.ratelimit.limiter import Limit, Limiter
from kanvaro.security.ratelimit.networks import NetworkSet
from kanvaro.security.ratelimit.outcome import RateState, Refusal
from kanvaro.security.ratelimit.store import open_storage

log = structlog.get_logger("kanvaro.ratelimit")

MAX_BLOCK_MINUTES = 24 * 60
_GATE = Limit("violation-gate", RateLimitItemPerMinute(1))


# Sign-in and everything on its way (second factor, passkeys, password re-entry and reset,
# token refresh, "which tenants am I in?", SSO): whose limits fail closed by default when
# the store is down, since they are what stands between a guesser and an account.
_AUTH_PATH = re.compile(
    r"^(?:/api/v1|/t/[^/]+)/(?:auth/(?:login|refresh|reauth|tenants|mfa|webauthn|password-reset)"
    r"|sso)(?:/|$)"
)


def is_auth_path(path: str) -> bool:
    return _AUTH_PATH.match(path) is not None


def _pair(name: str, per_minute: int, per_hour: int, closed: bool) -> tuple[Limit, ...]:
    out = []
    if per_minute:
        out.append(Limit(f"{name}-minute", RateLimitItemPerMinute(per_minute), closed))
    if per_hour:
        out.append(Limit(f"{name}-hour", RateLimitItemPerHour(per_hour), closed))
    return tuple(out)


class RateLimitGuard:
    def __init__(
        self,
        settings: Settings,
        limiter: Limiter,
        *,
        reader_of: Callable[[], Any],
        session_of: Callable[[], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = settings.rate_limit_enabled
        self.limiter = limiter
        self.exempt_super_admin = settings.rate_limit_exempt_super_admin
        self.block_after = settings.rate_limit_block_after_violations
        self.block_minutes = settings.rate_limit_block_minutes
        self._session_of = session_of
        self._clock = clock
        auth_closed = settings.rate_limit_fail_mode_auth == "closed"
        api_closed = settings.rate_limit_fail_mode_api == "closed"
        self._fail_closed = {True: auth_closed, False: api_closed}
        s = settings
        self._global = {
            a: _pair("global", s.rate_limit_global_per_minute, s.rate_limit_global_per_hour, c)
            for a, c in self._fail_closed.items()
        }
        self._per_ip = {
            a: _pair("ip", s.rate_limit_per_ip_per_minute, 0, c)
            for a, c in self._fail_closed.items()
        }
        self._per_user = {
            a: _pair("user", s.rate_limit_per_user_per_minute, s.rate_limit_per_user_per_hour, c)
            for a, c in self._fail_closed.items()
        }
        self._count = (
            Limit("violation-count", RateLimitItemPerHour(self.block_after))
            if self.block_after
            else None
        )
        self.source = SnapshotSource(
            reader_of,
            deny=NetworkSet.parse(settings.ip_deny_list),
            exempt=NetworkSet.parse(settings.ip_exempt_list),
            configured=configured_rules(
                settings.rate_limit_rules, fail_closed_for=self.fail_closed_for
            ),
            fail_closed_for=self.fail_closed_for,
            clock=clock,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def fail_closed_for(self, path: str) -> bool:
        return self._fail_closed[is_auth_path(path)]

    async def start(self) -> None:
        # Loaded before the first request; a database that cannot be read yet (an outage,
        # pending migrations) must not stop the process from starting and saying so (readyz).
        await self.source.get()

    async def close(self) -> None:
        await self.source.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- checkpoint 1: the network ---------------------------------------------------------

    async def check_network(self, state: RateState, method: str, path: str) -> Refusal | None:
        snap = await self.source.get()
        address = state.address
        if address in snap.deny or (snap.allow and address not in snap.allow):
            return Refusal(403, "ip-denied", "Requests from this network are not allowed.")
        state.exempt = address in snap.exempt
        now = self._clock()
        if not state.exempt and state.key is not None:
            until = snap.blocked_ips.get(state.key)
            if until is not None and until > now:
                return _blocked(until, now)
        auth = is_auth_path(path)
        for limit in self._global[auth]:
            refusal = await self._take(state, limit, "global", path, None, None)
            if refusal is not None:
                return refusal
        if state.exempt or state.key is None:
            return None
        for limit in self._per_ip[auth]:
            refusal = await self._take(state, limit, state.key, path, None, None)
            if refusal is not None:
                return refusal
        for rule in snap.network_rules:
            if rule.matches(method, path):
                for limit in rule.limits:
                    refusal = await self._take(state, limit, state.key, path, None, None)
                    if refusal is not None:
                        return refusal
        return None

    # -- checkpoint 2: the caller ----------------------------------------------------------

    def check_tenant(self, state: RateState, tenant_id: uuid.UUID | None) -> Refusal | None:
        """The tenant's IP lists, as soon as the verified token names the tenant (before the
        caller is loaded). Needs no await: it reads the snapshot the network check loaded."""
        snap = self.source.current()
        if tenant_id is None or snap is None:
            return None
        address = state.address
        denied = snap.tenant_deny.get(tenant_id)
        allowed = snap.tenant_allow.get(tenant_id)
        if (denied and address in denied) or (allowed and address not in allowed):
            return Refusal(
                403, "ip-denied", "Your organisation does not allow access from this network."
            )
        return None

    async def check_principal(
        self,
        state: RateState,
        *,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID | None,
        role: str | None,
        super_admin: bool,
        method: str,
        path: str,
    ) -> Refusal | None:
        """The caller's own limits: a block on him, per-user limits, rules that need him."""
        if super_admin and self.exempt_super_admin:
            return None
        snap = await self.source.get()
        now = self._clock()
        until = snap.blocked_users.get(user_id)
        if until is not None and until > now:
            return _blocked(until, now)
        subject = str(user_id)
        for limit in self._per_user[is_auth_path(path)]:
            refusal = await self._take(state, limit, subject, path, user_id, tenant_id)
            if refusal is not None:
                return refusal
        for rule in _rules_for(snap, tenant_id):
            if not rule.matches(method, path, role):
                continue
            key = subject if rule.per_user else state.key
            if key is None or (not rule.per_user and state.exempt):
                continue
            for limit in rule.limits:
                who = user_id if rule.per_user else None
                refusal = await self._take(state, limit, key, path, who, tenant_id)
                if refusal is not None:
                    return refusal
        return None

    # -- counting, violations, blocks ------------------------------------------------------

    async def _take(
        self,
        state: RateState,
        limit: Limit,
        key: str,
        path: str,
        user_id: uuid.UUID | None,
        tenant_id: uuid.UUID | None,
    ) -> Refusal | None:
        decision = await self.limiter.take(limit, key)
        if decision.allowed:
            state.note(decision)
            return None
        now = self._clock()
        if decision.unavailable:
            return Refusal(
                503, "rate-limit-unavailable",
                "Rate limiting is unavailable, and this endpoint does not go on without it.",
                decision.retry_after(now),
            )  # fmt: skip
        if key != "global":
            await self._violated(state, limit, path, user_id, tenant_id)
        return Refusal(
            429, "rate-limited", "Too many requests. Slow down and retry later.",
            decision.retry_after(now), decision,
        )  # fmt: skip

    async def _violated(
        self,
        state: RateState,
        limit: Limit,
        path: str,
        user_id: uuid.UUID | None,
        tenant_id: uuid.UUID | None,
    ) -> None:
        subject = f"user:{user_id}" if user_id is not None else f"ip:{state.key}"
        gate = await self.limiter.take(_GATE, subject)
        if not gate.allowed:  # this subject's refusals this minute are already on record
            return
        block = False
        if self._count is not None and not (user_id is None and state.exempt):
            block = not (await self.limiter.take(self._count, subject)).allowed
        self._spawn(
            self._record(
                user_id=user_id,
                tenant_id=tenant_id,
                ip=state.key,
                endpoint=path[:255],
                limit_name=limit.name,
                block=block,
            )
        )

    async def _record(
        self,
        *,
        user_id: uuid.UUID | None,
        tenant_id: uuid.UUID | None,
        ip: str | None,
        endpoint: str,
        limit_name: str,
        block: bool,
    ) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC)
        async with self._session_of() as session:
            row = RateLimitViolation(
                tenant_id=tenant_id,
                user_id=user_id,
                ip_address=ip,
                endpoint=endpoint,
                limit_name=limit_name,
                created_at=now,
            )
            if block:
                prior = await self._blocks_since(session, user_id, ip, now - timedelta(days=1))
                minutes = min(MAX_BLOCK_MINUTES, self.block_minutes * 2**prior)
                row.blocked_until = now + timedelta(minutes=minutes)
                row.reason = f"{self.block_after} minutes over a limit within an hour"
                row.violation_count = self.block_after
            session.add(row)
            await session.flush()
            if block:
                await audit.record(
                    session,
                    action="system:rate_limit_block:imposed",
                    category="system",
                    tenant_id=tenant_id,
                    context=AuditContext(None, ip, None),
                    resource_type="rate_limit_block",
                    resource_id=row.id,
                    changes={
                        "userId": str(user_id) if user_id else None,
                        "ipAddress": None if user_id else ip,
                        "minutes": minutes,
                        "limit": limit_name,
                    },
                )
        if block:
            log.warning(
                "rate_limit_block", user_id=str(user_id) if user_id else None, ip=ip,
                minutes=minutes, limit=limit_name,
            )  # fmt: skip
            self.apply_block(user_id, ip, row.blocked_until)  # type: ignore[arg-type]

    @staticmethod
    async def _blocks_since(
        session: Any, user_id: uuid.UUID | None, ip: str | None, since: datetime
    ) -> int:
        who = (
            RateLimitViolation.user_id == user_id
            if user_id is not None
            else RateLimitViolation.ip_address == ip
        )
        query = select(func.count()).where(
            who,
            RateLimitViolation.blocked_until.is_not(None),
            RateLimitViolation.created_at >= since,
        )
        return int(await session.scalar(query) or 0)

    def apply_block(self, user_id: uuid.UUID | None, ip: str | None, until: datetime) -> None:
        """Make a committed block count in this process at once (others: next snapshot)."""
        snap = self.source.current()
        if snap is None:
            return
        moment = until if until.tzinfo else until.replace(tzinfo=UTC)
        if user_id is not None:
            snap.blocked_users[user_id] = moment.timestamp()
        elif ip:
            snap.blocked_ips[ip] = moment.timestamp()

    async def forget(self, user_id: uuid.UUID | None, ip: str | None) -> None:
        """A lifted block starts afresh: its violation count is cleared."""
        if self._count is not None:
            subject = f"user:{user_id}" if user_id is not None else f"ip:{ip}"
            await self.limiter.clear(self._count, subject)
        self.limiter.forget_leases()
        self.source.invalidate()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as exc:  # a lost violation row must not hurt the request
                log.error("rate_limit_record_failed", error=type(exc).__name__)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the violation writes in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _blocked(until: float, now: float) -> Refusal:
    return Refusal(
        429, "rate-limit-blocked",
        "This client is blocked for repeatedly exceeding rate limits. Retry later.",
        max(1, int(until - now + 0.999)),
    )  # fmt: skip


def _rules_for(snap: Snapshot, tenant_id: uuid.UUID | None) -> tuple[Rule, ...]:
    instance = snap.principal_rules.get(None, ())
    if tenant_id is None:
        return instance
    return instance + snap.principal_rules.get(tenant_id, ())


def refusal_error(refusal: Refusal) -> ProblemError:
    """The domain error a route raises for a refusal of the second checkpoint; the rate
    headers of a limit refusal are added by the middleware from the request's state."""
    kind = {403: Forbidden, 429: TooManyRequests, 503: ServiceUnavailable}[refusal.status]
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
    error = kind(refusal.detail, headers=headers)
    error.type_suffix = refusal.kind
    return error


def new_rate_limit_guard(settings: Settings, db: Any) -> RateLimitGuard:
    """The guard of one process: counters in Redis when configured (shared by every
    instance), else in memory; rules, lists and blocks from the database."""
    return RateLimitGuard(
        settings,
        Limiter(open_storage(settings.redis_url)),
        reader_of=lambda: db.session(all_tenants=True),
        session_of=lambda: db.session(all_tenants=True),
    )
