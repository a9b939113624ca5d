"""A tenant's session policy (seed 004 ``SessionConfig`` / ``session_policies``) and a short-
lived cache of it.

The policy is read on every authenticated request (idle and absolute timeouts, step-up), on
every refresh and at sign-in, and changes rarely; each process keeps it for at most
``ttl`` seconds (the principal cache's lifetime), and empties the cache when a change
commits in that process. A change therefore applies to existing sessions everywhere within
that lifetime: the timeouts are computed from the session's own times and the policy now in
force, never frozen into the session row.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Uuid, bindparam, event, select
from sqlalchemy.orm import Session

from kanvaro.identity.sessions.models import SessionPolicyRow
from kanvaro.reads import Query, Reader
from kanvaro.security.permissions import Permission

# camelCase name -> (attribute, lowest, highest); booleans and the permission list apart.
_BOUNDS: dict[str, tuple[str, int, int]] = {
    "idleTimeoutMinutes": ("idle_timeout_minutes", 1, 24 * 60),
    "absoluteTimeoutHours": ("absolute_timeout_hours", 1, 30 * 24),
    "reauthMaxAgeMinutes": ("reauth_max_age_minutes", 1, 24 * 60),
    "refreshGraceSeconds": ("refresh_grace_seconds", 0, 60),
    "deviceTrustDays": ("device_trust_days", 1, 365),
    "riskNotifyAt": ("risk_notify_at", 0, 101),
    "riskMfaAt": ("risk_mfa_at", 0, 101),
    "riskDenyAt": ("risk_deny_at", 0, 101),
}
_FLAGS = {
    "refreshTokenRotation": "refresh_token_rotation",
    "singleDeviceOnly": "single_device_only",
}
_PERMISSIONS = frozenset(p.value for p in Permission)
NEVER = 101  # a risk threshold no score reaches (scores are 0..100)


class PolicyError(ValueError):
    """A policy change that cannot be: ``field`` is the camelCase name at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout_minutes: int = 30
    absolute_timeout_hours: int = 8
    refresh_token_rotation: bool = True
    single_device_only: bool = False
    require_reauth_permissions: tuple[str, ...] = ()
    reauth_max_age_minutes: int = 15
    refresh_grace_seconds: int = 10
    device_trust_days: int = 30
    risk_notify_at: int = 30  # a sign-in scoring this much mails the user
    risk_mfa_at: int = 60  # ... needs a second factor
    risk_deny_at: int = NEVER  # ... is refused

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=self.idle_timeout_minutes)

    @property
    def absolute_timeout(self) -> timedelta:
        return timedelta(hours=self.absolute_timeout_hours)

    @property
    def reauth_max_age(self) -> timedelta:
        return timedelta(minutes=self.reauth_max_age_minutes)

    def needs_recent_auth(self, permission: str) -> bool:
        return permission in self.require_reauth_permissions

    # -- the API's shape ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, attr) for name, (attr, _, _) in _BOUNDS.items()}
        out |= {name: getattr(self, attr) for name, attr in _FLAGS.items()}
        out["requireReauthPermissions"] = list(self.require_reauth_permissions)
        return out

    def changed(self, changes: Mapping[str, Any]) -> SessionPolicy:
        """This policy with ``changes`` (camelCase fields, already type-checked) applied;
        :class:`PolicyError` names the first field that is out of range or inconsistent."""
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name in _BOUNDS:
                attr, low, high = _BOUNDS[name]
                if not low <= value <= high:
                    raise PolicyError(name, f"must be between {low} and {high}")
                values[attr] = value
            elif name in _FLAGS:
                values[_FLAGS[name]] = bool(value)
            elif name == "requireReauthPermissions":
                unknown = sorted(set(value) - _PERMISSIONS)
                if unknown:
                    raise PolicyError(name, f"unknown permission {unknown[0]!r}")
                values["require_reauth_permissions"] = tuple(sorted(set(value)))
            else:
                raise PolicyError(name, "is not a session policy field")
        policy = replace(self, **values)
        if policy.idle_timeout > policy.absolute_timeout:
            raise PolicyError("idleTimeoutMinutes", "must not exceed the absolute timeout")
        if policy.risk_notify_at > policy.risk_deny_at or policy.risk_mfa_at > policy.risk_deny_at:
            raise PolicyError("riskDenyAt", "must not be below riskNotifyAt or riskMfaAt")
        return policy

    # -- the table -------------------------------------------------------------------------

    @classmethod
    def of_row(cls, row: Any) -> SessionPolicy:
        # A table row (ORM object) or a result row (SQLAlchemy mapping, asyncpg record).
        get = (lambda k: getattr(row, k)) if isinstance(row, SessionPolicyRow) else row.__getitem__
        values = {f.name: get(f.name) for f in fields(cls)}
        permissions = values["require_reauth_permissions"]
        if isinstance(permissions, str):  # the raw PostgreSQL path hands JSON over as text
            import orjson

            permissions = orjson.loads(permissions)
        values["require_reauth_permissions"] = tuple(permissions or ())
        return cls(**values)

    def row_values(self) -> dict[str, Any]:
        values = asdict(self)
        values["require_reauth_permissions"] = list(self.require_reauth_permissions)
        return values


DEFAULT = SessionPolicy()

_table = SessionPolicyRow.__table__
POLICY_QUERY = Query(
    select(*(_table.c[f.name] for f in fields(SessionPolicy))).where(
        _table.c.tenant_id == bindparam("tenant_id", type_=Uuid())
    )
)

Clock = Callable[[], float]
P = TypeVar("P")


async def load(reader: Reader, tenant_id: uuid.UUID | None) -> SessionPolicy:
    """The policy in force for a tenant (the defaults without a row; the instance's super
    admins, who have no tenant, always have the defaults)."""
    if tenant_id is None:
        return DEFAULT
    row = await reader.row(POLICY_QUERY, tenant_id=tenant_id)
    return DEFAULT if row is None else SessionPolicy.of_row(row)


class PolicyCache(Generic[P]):
    """Policies by tenant, each kept at most ``ttl`` seconds; one load per tenant at a time.

    Generic over the policy kind: ``load(reader, tenant_id)`` reads one, ``default`` is what a
    tenant-less caller (the super admin) gets, and a committed ORM change to any of ``rows``
    empties every cache of the process."""

    def __init__(
        self,
        ttl: float,
        *,
        load: Callable[[Any, uuid.UUID], Awaitable[P]] = load,  # type: ignore[assignment]
        default: P = DEFAULT,  # type: ignore[assignment]
        rows: tuple[type, ...] = (SessionPolicyRow,),
        size: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._load_one = load
        self.default = default
        self._entries: dict[uuid.UUID | None, tuple[P, float]] = {}
        self._loading: dict[uuid.UUID | None, asyncio.Future[P]] = {}
        self.generation = 0
        _LIVE.add(self)
        _WATCHED.update(rows)

    def peek(self, tenant_id: uuid.UUID | None) -> P | None:
        """The cached policy, or None (then ``get`` loads it): the hot path's no-await hit."""
        if tenant_id is None:
            return self.default
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[1] > self.clock():
            return entry[0]
        return None

    async def get(self, tenant_id: uuid.UUID | None, reader_of: Callable[[], Any]) -> P:
        cached = self.peek(tenant_id)
        if cached is not None:
            return cached
        loading = self._loading.get(tenant_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(tenant_id, reader_of, self.generation))
            self._loading[tenant_id] = loading
            loading.add_done_callback(
                lambda done: (
                    self._loading.pop(tenant_id, None)
                    if self._loading.get(tenant_id) is done
                    else None
                )
            )
        return await asyncio.shield(loading)

    async def _load(self, tenant_id: uuid.UUID, reader_of: Callable[[], Any], generation: int) -> P:
        async with reader_of() as reader:
            policy = await self._load_one(reader, tenant_id)
        if self.ttl > 0 and generation == self.generation:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[tenant_id] = (policy, self.clock() + self.ttl)
        return policy

    def clear(self) -> None:
        self._entries.clear()
        self._loading.clear()
        self.generation += 1


_LIVE: weakref.WeakSet[PolicyCache[Any]] = weakref.WeakSet()
_WATCHED: set[type] = set()


@event.listens_for(Session, "after_flush")
def _policy_rows_flushed(session: Session, flush_context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if type(obj) in _WATCHED:
            session.info["kanvaro_policy_changed"] = True
            return


@event.listens_for(Session, "after_commit")
def _policy_change_committed(session: Session) -> None:
    if session.info.pop("kanvaro_policy_changed", False):
        for cache in list(_LIVE):
            cache.clear()


@event.listens_for(Session, "after_rollback")
def _policy_change_rolled_back(session: Session) -> None:
    session.info.pop("kanvaro_policy_changed", None)
