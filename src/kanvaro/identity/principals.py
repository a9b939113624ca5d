"""Who is calling: the principal behind a verified access token, and a short-lived cache of it.

An access token names a session (``sid``) and a user (``sub``); whether that session is
still open, the account enabled, the tenant active and which permissions the role grants is
read from the database, never from the token. Reading it on every request was the single
most expensive statement of an authenticated read, so the answer is kept in process for a
short, bounded time (``KANVARO_PRINCIPAL_CACHE_SECONDS``, default 0.5 s, 0 turns it off):

* in the process that makes a change (logout, revocation, password change, disabling an
  account, suspending a tenant, editing a role) the cache is emptied when the change commits,
  so that process refuses the old session on its very next request;
* every other process and instance stops accepting it within the cache lifetime. This is the
  bound the multi-instance test checks (a revoked session refused everywhere within 1 s).

The session's timeouts are checked by the caller on every request, hit or miss
(``identity.sessions.enforce``): they move with the tenant's policy and the clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, event, select
from sqlalchemy.orm import Session

from kanvaro.acting import Principal
from kanvaro.errors import Unauthorized
from kanvaro.identity.models import User, UserSession
from kanvaro.reads import Query, Reader
from kanvaro.security.permissions import (
    PROJECT_SCOPED_ROLES,
    ROLE_PERMISSIONS,
    BuiltinRole,
    builtin_permissions,
)
from kanvaro.tenancy.models import Role, Tenant

Clock = Callable[[], float]

# The session, its user, the user's role and tenant, in one statement. Not tenant-filtered by
# design: the caller opens the reader in the tenant the (signed) token names, and the user id
# must match too, so RLS and the id pair bind it.
PRINCIPAL_QUERY = Query(
    select(
        UserSession.id.label("session_id"),
        UserSession.is_active.label("session_active"),
        UserSession.revoked_reason,
        UserSession.created_at.label("session_started_at"),
        UserSession.last_activity_at,
        UserSession.authenticated_at,
        UserSession.auth_methods,
        User.id.label("user_id"),
        User.tenant_id,
        User.email,
        User.is_active.label("user_active"),
        User.is_super_admin,
        Role.name.label("role_name"),
        Role.is_system.label("role_is_system"),
        Role.project_scoped.label("role_project_scoped"),
        Role.permissions.label("role_permissions"),
        Tenant.status.label("tenant_status"),
    )
    .select_from(UserSession)
    .join(User, User.id == UserSession.user_id)
    .outerjoin(Role, and_(Role.id == User.role_id))
    .outerjoin(Tenant, Tenant.id == User.tenant_id)
    .where(UserSession.id == bindparam("session_id"), User.id == bindparam("user_id"))
)


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    fresh_until: float  # the cache's


class PrincipalCache:
    """Principals by session id, each kept at most ``ttl`` seconds (LRU-bounded)."""

    def __init__(self, ttl: float, *, size: int = 10_000, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self.loading: dict[tuple[uuid.UUID, uuid.UUID], asyncio.Future[Principal]] = {}
        self.generation = 0  # bumped by clear(): a load that began before it is not kept
        _LIVE_CACHES.add(self)

    def get(self, session_id: uuid.UUID) -> Principal | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        if entry.fresh_until <= self.clock():
            self._entries.pop(session_id, None)
            return None
        return entry.principal

    def put(self, principal: Principal, *, generation: int) -> None:
        if self.ttl <= 0 or generation != self.generation:
            return
        self._entries[principal.session_id] = _Entry(principal, self.clock() + self.ttl)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.loading.clear()  # a request from now on starts its own load
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)


_LIVE_CACHES: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()


async def resolve(
    reader_of: Callable[[], Any],
    cache: PrincipalCache,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
) -> Principal:
    """The principal of a verified token's ``sid``/``sub``; Unauthorized when the session is
    over, the account disabled or the tenant suspended. ``reader_of`` opens a
    :class:`~kanvaro.reads.Reader` in the token's tenant (called only on a cache miss).

    The session's timeouts (idle, absolute) depend on the tenant's policy and are checked by
    the caller on every request, cached or not (``identity.sessions.enforce``)."""
    principal = cache.get(session_id)
    if principal is not None:
        if principal.user_id != user_id:
            raise Unauthorized("Session not found.")
        return principal
    # One load per session at a time: when an entry expires under load, the requests that
    # arrive meanwhile wait for that load instead of each running the same query.
    key = (session_id, user_id)
    loading = cache.loading.get(key)
    if loading is None:
        loading = asyncio.ensure_future(
            _load_into(cache, cache.generation, reader_of, session_id, user_id)
        )
        cache.loading[key] = loading
        loading.add_done_callback(
            lambda done: cache.loading.pop(key, None) if cache.loading.get(key) is done else None
        )
    return await asyncio.shield(loading)


async def _load_into(
    cache: PrincipalCache,
    generation: int,
    reader_of: Callable[[], Any],
    session_id: uuid.UUID,
    user_id: uuid.UUID,
) -> Principal:
    async with reader_of() as reader:
        principal = await load(reader, session_id=session_id, user_id=user_id)
    cache.put(principal, generation=generation)
    return principal


# Why a session ended, as its next request is told (``revoked_reason`` -> detail).
ENDED_BECAUSE = {
    "single_device": "Session ended: you signed in on another device.",
    "idle": "Session ended after a period of inactivity.",
    "expired": "Session ended: it reached its maximum length.",
    "refresh_token_reuse": "Session ended: its refresh token was used twice.",
    "device_removed": "Session ended: its device was removed.",
    "revoked": "Session ended: it was signed out from the session list.",
    "logout_everywhere": "Session ended: signed out everywhere.",
    "revoke_link": "Session ended from the link in a sign-in alert.",
    "password_change": "Session ended: the password was changed.",
    "deactivated": "Session ended: the account was deactivated.",
    "user_deleted": "Session ended: the account was removed.",
}


async def load(reader: Reader, *, session_id: uuid.UUID, user_id: uuid.UUID) -> Principal:
    row = await reader.row(PRINCIPAL_QUERY, session_id=session_id, user_id=user_id)
    if row is None:
        raise Unauthorized("Session not found.")
    if not row["session_active"]:
        raise Unauthorized(ENDED_BECAUSE.get(row["revoked_reason"] or "", "Session ended."))
    if not row["user_active"] or (
        row["tenant_status"] is not None and row["tenant_status"] != "active"
    ):
        raise Unauthorized("Account disabled.")
    name, permissions, scoped = _grants(row)
    principal = Principal(
        user_id=_uuid(row["user_id"]),
        tenant_id=_uuid(row["tenant_id"]) if row["tenant_id"] is not None else None,
        session_id=_uuid(row["session_id"]),
        email=row["email"],
        role=name,
        permissions=permissions,
        project_scoped=scoped,
        is_super_admin=bool(row["is_super_admin"]),
        auth_methods=tuple(_json(row["auth_methods"]) or ()),
        session_started_at=_aware(row["session_started_at"]),
        authenticated_at=_aware(row["authenticated_at"] or row["session_started_at"]),
        last_activity_at=_aware(row["last_activity_at"]),
    )
    return principal


def _grants(row: Any) -> tuple[str, frozenset[str], bool]:
    if row["is_super_admin"]:
        return (
            BuiltinRole.SUPER_ADMIN.value,
            frozenset(str(p) for p in ROLE_PERMISSIONS[BuiltinRole.SUPER_ADMIN]),
            False,
        )
    name = row["role_name"]
    if name is None:  # a member without a role holds nothing
        return "none", frozenset(), True
    if row["role_is_system"]:
        builtin = builtin_permissions(name)
        granted = builtin if builtin is not None else _json(row["role_permissions"]) or ()
        scoped = BuiltinRole(name) in PROJECT_SCOPED_ROLES
    else:
        granted = _json(row["role_permissions"]) or ()
        scoped = bool(row["role_project_scoped"])
    return name, frozenset(str(p) for p in granted), scoped


def _json(value: Any) -> Any:
    # The raw PostgreSQL path hands JSON columns over as text; SQLite's Core path decodes them.
    if isinstance(value, str):
        import orjson

        return orjson.loads(value)
    return value


def _uuid(value: Any) -> uuid.UUID:
    # asyncpg's UUID type is a look-alike; the principal holds the standard one.
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# -- forgetting on change ------------------------------------------------------------------
#
# Any ORM write to a session, a user, a role or a tenant empties every principal cache of the
# process once it commits. Coarse on purpose: these writes are rare next to reads, and a
# precise invalidation that misses one path would keep a revoked session alive.

_IDENTITY_TABLES = frozenset(
    t.__table__.name
    for t in (UserSession, User, Role, Tenant)  # type: ignore[attr-defined]
)


def _clear_all() -> None:
    for cache in list(_LIVE_CACHES):
        cache.clear()


def _mark(session: Session) -> None:
    session.info["kanvaro_identity_changed"] = True


@event.listens_for(Session, "after_commit")
def _identity_change_committed(session: Session) -> None:
    if session.info.pop("kanvaro_identity_changed", False):
        _clear_all()


@event.listens_for(Session, "after_flush")
def _identity_rows_flushed(session: Session, flush_context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(type(obj), "__tablename__", None)
        if table in _IDENTITY_TABLES:
            _mark(session)
            return


@event.listens_for(Session, "do_orm_execute")
def _identity_rows_bulk_changed(state: Any) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    for mapper in state.all_mappers:
        if mapper.local_table.name in _IDENTITY_TABLES:
            _mark(state.session)
            return


@event.listens_for(Session, "after_transaction_end")
def _forget_mark(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("kanvaro_identity_changed", None)
