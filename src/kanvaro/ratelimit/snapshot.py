"""What every request is decided on: IP lists, rules and active blocks, loaded from the
database at most once a second per process (in the background while the previous snapshot
keeps answering), and at once after a change commits in this process. A change made through
the admin API on one instance so applies on every instance within about a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import or_, select

from kanvaro.ratelimit.models import IpAccessRule, RateLimitRule, RateLimitViolation
from kanvaro.ratelimit.rules import Rule, build_rule
from kanvaro.security.ratelimit.networks import NetworkSet, parse_network

log = structlog.get_logger("kanvaro.ratelimit")

REFRESH_SECONDS = 1.0


@dataclass(slots=True)
class Snapshot:
    deny: NetworkSet = field(default_factory=NetworkSet)
    allow: NetworkSet = field(default_factory=NetworkSet)
    exempt: NetworkSet = field(default_factory=NetworkSet)
    tenant_deny: dict[uuid.UUID, NetworkSet] = field(default_factory=dict)
    tenant_allow: dict[uuid.UUID, NetworkSet] = field(default_factory=dict)
    # Instance rules decided on the network alone, in the middleware.
    network_rules: tuple[Rule, ...] = ()
    # Rules decided once the caller is known: the instance's per-user or per-role ones
    # (key None) and each tenant's.
    principal_rules: dict[uuid.UUID | None, tuple[Rule, ...]] = field(default_factory=dict)
    blocked_ips: dict[str, float] = field(default_factory=dict)
    blocked_users: dict[uuid.UUID, float] = field(default_factory=dict)
    loaded_at: float = 0.0


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class SnapshotSource:
    """Loads snapshots; ``current()`` never waits once the first one is loaded."""

    def __init__(
        self,
        reader_of: Callable[[], object],
        *,
        deny: NetworkSet,
        exempt: NetworkSet,
        configured: tuple[Rule, ...],
        fail_closed_for: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader_of = reader_of
        self._deny = deny
        self._exempt = exempt
        self.configured = configured
        self._fail_closed_for = fail_closed_for
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._first: asyncio.Future[Snapshot] | None = None

    async def load(self) -> Snapshot:
        now = self._clock()
        moment = datetime.fromtimestamp(now, UTC)
        async with self._reader_of() as session:  # type: ignore[attr-defined]
            lists = (
                await session.scalars(
                    select(IpAccessRule).where(
                        or_(IpAccessRule.expires_at.is_(None), IpAccessRule.expires_at > moment)
                    )
                )
            ).all()
            rows = (
                await session.scalars(select(RateLimitRule).where(RateLimitRule.enabled.is_(True)))
            ).all()
            blocks = (
                await session.scalars(
                    select(RateLimitViolation).where(
                        RateLimitViolation.blocked_until > moment,
                        RateLimitViolation.lifted_at.is_(None),
                    )
                )
            ).all()
        return self._assemble(now, lists, rows, blocks)

    def _assemble(self, now: float, lists: Any, rows: Any, blocks: Any) -> Snapshot:
        snapshot = Snapshot(loaded_at=now)
        networks: dict[tuple[uuid.UUID | None, str], list[object]] = {}
        for entry in lists:
            try:
                net = parse_network(entry.network)
            except ValueError:  # stored through the API, so validated: skip rather than fail
                continue
            networks.setdefault((entry.tenant_id, entry.action), []).append(net)
        snapshot.deny = NetworkSet([*self._deny.networks, *networks.get((None, "deny"), [])])  # type: ignore[list-item]
        snapshot.allow = NetworkSet(networks.get((None, "allow"), []))  # type: ignore[arg-type]
        snapshot.exempt = NetworkSet([*self._exempt.networks, *networks.get((None, "exempt"), [])])  # type: ignore[list-item]
        for (tenant_id, action), nets in networks.items():
            if tenant_id is None:
                continue
            target = snapshot.tenant_deny if action == "deny" else snapshot.tenant_allow
            if action in ("deny", "allow"):
                target[tenant_id] = NetworkSet(nets)  # type: ignore[arg-type]
        rules = list(self.configured)
        for row in rows:
            try:
                rules.append(
                    build_rule(
                        rule_id=str(row.id),
                        tenant_id=row.tenant_id,
                        endpoint_pattern=row.endpoint_pattern,
                        method=row.method,
                        requests_per_minute=row.requests_per_minute,
                        burst_allowance=row.burst_allowance,
                        per_user=row.per_user,
                        role=row.role,
                        fail_closed=self._fail_closed_for(row.endpoint_pattern),
                    )
                )
            except ValueError:
                continue
        snapshot.network_rules = tuple(r for r in rules if not r.needs_principal)
        by_scope: dict[uuid.UUID | None, list[Rule]] = {}
        for rule in rules:
            if rule.needs_principal:
                by_scope.setdefault(rule.tenant_id, []).append(rule)
        snapshot.principal_rules = {k: tuple(v) for k, v in by_scope.items()}
        for block in blocks:
            until = _epoch(block.blocked_until)  # type: ignore[arg-type]
            if block.user_id is not None:
                snapshot.blocked_users[block.user_id] = max(
                    until, snapshot.blocked_users.get(block.user_id, 0.0)
                )
            elif block.ip_address:
                snapshot.blocked_ips[block.ip_address] = max(
                    until, snapshot.blocked_ips.get(block.ip_address, 0.0)
                )
        self._snapshot = snapshot
        return snapshot

    def _fallback(self) -> Snapshot:
        """What configuration alone says (its deny and exempt lists, its rules): used while
        the database cannot be read and no snapshot was ever loaded, retried every second.
        The request then meets the database's own outage answer (503), not a 500 here."""
        return self._assemble(self._clock(), [], [], [])

    def current(self) -> Snapshot | None:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.loaded_at >= REFRESH_SECONDS:
            self._refresh_in_background()
        return snapshot

    async def get(self) -> Snapshot:
        snapshot = self.current()
        if snapshot is not None:
            return snapshot
        # One load for all the requests that find no snapshot (after a change, at start).
        if self._first is None or self._first.done():
            self._first = asyncio.ensure_future(self.load())
        try:
            return await asyncio.shield(self._first)
        except Exception as exc:
            log.error("rate_limit_snapshot_failed", error=type(exc).__name__)
            self._snapshot = self._fallback()
            return self._snapshot

    def invalidate(self) -> None:
        """A change committed here: the next request waits for a fresh snapshot."""
        self._snapshot = None

    def _refresh_in_background(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # keep answering from the last snapshot; say so
            log.error("rate_limit_snapshot_failed", error=type(exc).__name__)
            if self._snapshot is not None:
                self._snapshot.loaded_at = self._clock()  # retry in a second, not per request

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refreshing
