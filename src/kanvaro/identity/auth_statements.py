"""The statements of sign-in and token refresh: SQLAlchemy Core, compiled once.

Refresh and sign-in spent most of their time in the ORM (identity map, flush, unit of work)
around a dozen round trips, not in PostgreSQL. Each statement here is a
:class:`~kanvaro.reads.Query`. In the request's transaction, PostgreSQL runs it as a prepared
statement on that transaction's driver connection (one round trip, no ORM bookkeeping), and
a refresh or the opening of a session is one statement: data-modifying CTEs chain the
``UPDATE``/``INSERT`` steps. SQLite, which has no such CTEs, runs the same steps one by one
through the session.

The guards that used to be a ``SELECT ... FOR UPDATE`` plus a check in Python are the
``WHERE`` of the ``UPDATE`` that takes the same row lock: a racing request waits for the lock,
then finds the row changed and matches nothing.

These statements change identity rows (a session's last activity, a new session, the time of
a sign-in, an upgraded hash) without the ORM on purpose: none of it is what the principal
cache holds (``identity.principals``), so they must not empty it. Revocations stay ORM
statements, which do.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    String,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.service import insert_pending_after
from kanvaro.identity.models import RefreshToken, User, UserSession
from kanvaro.reads import Query, Reader, transaction_driver
from kanvaro.tenancy.models import Tenant

Row = Mapping[str, Any]

_users = User.__table__
_tenants = Tenant.__table__
_sessions = UserSession.__table__
_tokens = RefreshToken.__table__
_ACTIVE = literal_column("'active'")  # a constant, not a parameter: Query binds names only
# Parameters the PostgreSQL driver path takes as JSON text (SQLAlchemy's JSON type encodes
# them on the SQLite path).
_JSON_PARAMS = ("device_info", "auth_methods", "risk_reasons", "location", "device_fingerprint")


def param(name: str, type_: Any = None) -> Any:
    """A bind parameter for a statement run by :func:`row`, which callers name plainly.
    Prefixed: SQLAlchemy reserves a table's column names for the binds of its INSERT and
    UPDATE (see _bind)."""
    return bindparam(f"p_{name}", type_=type_)


class Change(Query):
    """A statement that writes, also when it reads like a ``SELECT`` (a data-modifying CTE)."""


# -- sign-in: which account ------------------------------------------------------------------

_ACCOUNT_COLUMNS = (
    _users.c.id,
    _users.c.tenant_id,
    _users.c.password_hash,
    _users.c.is_active,
    _users.c.is_super_admin,
    _tenants.c.status.label("tenant_status"),
)

# The member of the tenant with this slug.
ACCOUNT_IN_TENANT = Query(
    select(*_ACCOUNT_COLUMNS)
    .select_from(_users.join(_tenants, _tenants.c.id == _users.c.tenant_id))
    .where(_tenants.c.slug == param("slug"), func.lower(_users.c.email) == param("email"))
)

# No tenant named: the instance's super admin of this address, else the member of the only
# tenant when the instance has exactly one. One statement instead of up to three.
_at_most_two = select(_tenants.c.id).limit(literal_column("2")).subquery()
_one_tenant = select(func.count()).select_from(_at_most_two).scalar_subquery() == literal_column(
    "1"
)
ACCOUNT_WITHOUT_TENANT = Query(
    select(*_ACCOUNT_COLUMNS)
    .select_from(_users.outerjoin(_tenants, _tenants.c.id == _users.c.tenant_id))
    .where(
        func.lower(_users.c.email) == param("email"),
        or_(_users.c.tenant_id.is_(None), _one_tenant),
    )
    .order_by(_users.c.tenant_id.is_not(None))  # the super admin first
    .limit(literal_column("1"))
)

# -- sign-in: the session --------------------------------------------------------------------

# Records the sign-in (and an upgraded hash) if the account may still sign in and its
# password is still the one just verified; takes the user's row lock. A statement on the
# table, not the ORM: signing in is not an edit, the row's version stays.
_record_sign_in = (
    update(_users)
    .where(
        _users.c.id == param("user_id"),
        # Null-safe: an account made by SSO (JIT) has no password, and signs in with none.
        _users.c.password_hash.is_not_distinct_from(param("verified_hash", String)),
        _users.c.is_active.is_(True),
        or_(
            and_(_users.c.tenant_id.is_(None), _users.c.is_super_admin.is_(True)),
            select(_tenants.c.id)
            .where(_tenants.c.id == _users.c.tenant_id, _tenants.c.status == _ACTIVE)
            .exists(),
        ),
    )
    .values(
        last_login_at=param("now"),
        updated_at=param("now"),
        password_hash=func.coalesce(param("new_hash", String), _users.c.password_hash),
    )
    .returning(_users.c.id, _users.c.tenant_id)
)
RECORD_SIGN_IN = Query(_record_sign_in)

_SESSION_COLUMNS = [
    "id",
    "tenant_id",
    "user_id",
    "device_id",
    "device_info",
    "ip_address",
    "auth_methods",
    "last_activity_at",
    "expires_at",
    "is_active",
    "created_at",
    "updated_at",
    "authenticated_at",
    "risk_score",
    "risk_reasons",
    "location",
    "network",
]


def _new_session(tenant_id: Any, user_id: Any) -> tuple[Any, ...]:
    return (
        param("session_id", _sessions.c.id.type),
        tenant_id,
        user_id,
        param("device_id", String),
        param("device_info", JSON),
        param("ip_address", String),
        param("auth_methods", JSON),
        param("now", _sessions.c.created_at.type),
        param("expires_at", _sessions.c.expires_at.type),
        true(),
        param("now", _sessions.c.created_at.type),
        param("now", _sessions.c.created_at.type),
        param("now", _sessions.c.created_at.type),
        param("risk_score", _sessions.c.risk_score.type),
        param("risk_reasons", JSON),
        param("location", JSON),
        param("network", String),
    )


OPEN_SESSION = Query(
    insert(_sessions).values(
        dict(zip(_SESSION_COLUMNS, _new_session(param("tenant_id"), param("user_id")), strict=True))
    )
)

_signed_in = _record_sign_in.cte("signed_in")
_opened = (
    insert(_sessions)
    .from_select(_SESSION_COLUMNS, select(*_new_session(_signed_in.c.tenant_id, _signed_in.c.id)))
    .returning(_sessions.c.tenant_id)
    .cte("opened")
)
# PostgreSQL: both steps in one statement; no row means the sign-in was refused.
SIGN_IN_AND_OPEN_SESSION = Change(select(_opened.c.tenant_id))

# -- refresh ---------------------------------------------------------------------------------

_TOKEN_COLUMNS = [
    "jti", "session_id", "tenant_id", "token_hash", "issued_at", "expires_at", "generation",
]  # fmt: skip


def _new_token(session_id: Any, tenant_id: Any, generation: Any) -> tuple[Any, ...]:
    return (
        param("new_jti", String),
        session_id,
        tenant_id,
        param("new_hash", String),
        param("issued_at", _tokens.c.issued_at.type),
        param("expires_at", _tokens.c.expires_at.type),
        generation,
    )


_issue = insert(_tokens).values(
    dict(
        zip(
            _TOKEN_COLUMNS,
            _new_token(param("session_id"), param("tenant_id"), literal_column("0")),
            strict=True,
        )
    )
)
ISSUE_REFRESH_TOKEN = Query(_issue)
ISSUE_NEXT_TOKEN = Query(
    insert(_tokens).values(
        dict(
            zip(
                _TOKEN_COLUMNS,
                _new_token(param("session_id"), param("tenant_id"), param("generation")),
                strict=True,
            )
        )
    )
)

# The session keeps the hashes of its newest tokens (seed 004), never the tokens.
_note_hashes = (
    update(_sessions)
    .where(_sessions.c.id == param("session_id"))
    .values(
        access_token_hash=param("access_hash"),
        refresh_token_hash=param("new_hash"),
        updated_at=param("now"),
    )
)
NOTE_TOKEN_HASHES = Query(_note_hashes)
_issued_first = _issue.returning(_tokens.c.session_id).cte("issued_first")
# PostgreSQL: the first token of a session and the session's hashes in one statement.
ISSUE_FIRST_TOKEN = Change(
    select(
        update(_sessions)
        .where(_sessions.c.id.in_(select(_issued_first.c.session_id)))
        .values(
            access_token_hash=param("access_hash"),
            refresh_token_hash=param("new_hash"),
            updated_at=param("now"),
        )
        .returning(_sessions.c.id)
        .cte("noted")
        .c.id
    )
)


# Spends a refresh token once: a second request with the same token waits for this row's
# lock, then finds it spent and matches nothing.
def _spend_in(session_matches: Any) -> Any:
    """Spends the presented refresh token if it is unspent and its session matches."""
    return (
        update(_tokens)
        .where(
            _tokens.c.jti == param("jti"),
            _tokens.c.token_hash == param("token_hash"),
            session_matches,
            _tokens.c.used_at.is_(None),
        )
        .values(used_at=param("now"))
        .returning(_tokens.c.session_id, _tokens.c.generation)
    )


_spend = _spend_in(_tokens.c.session_id == param("session_id"))
SPEND_REFRESH_TOKEN = Query(_spend)


def _touch(*spent: Any) -> Any:
    """Marks the session active now if it is still open (and its token was just ``spent``),
    within its policy's absolute and idle timeouts, its account enabled and its tenant
    active; notes the hashes of its new tokens; takes the session's row lock."""
    return (
        update(_sessions)
        .where(
            *spent,
            _sessions.c.id == param("session_id"),
            _sessions.c.user_id == param("user_id"),
            _sessions.c.is_active.is_(True),
            _sessions.c.created_at > param("started_after"),
            _sessions.c.last_activity_at > param("active_after"),
            select(_users.c.id)
            .select_from(_users.outerjoin(_tenants, _tenants.c.id == _users.c.tenant_id))
            .where(
                _users.c.id == param("user_id"),
                _users.c.is_active.is_(True),
                or_(_users.c.tenant_id.is_(None), _tenants.c.status == _ACTIVE),
            )
            .exists(),
        )
        .values(
            last_activity_at=param("now"),
            updated_at=param("now"),
            access_token_hash=param("access_hash"),
            refresh_token_hash=func.coalesce(
                param("new_hash", String), _sessions.c.refresh_token_hash
            ),
        )
        .returning(_sessions.c.id, _sessions.c.tenant_id)
    )


# PostgreSQL: a rotation as one statement, in which a refusal writes nothing. The session is
# the guard and its row lock is taken first: it is touched only while the token presented is
# the newest one it holds (``refresh_token_hash``, a column of the locked row, which
# PostgreSQL checks again on the row's newest version when a racing refresh got there first)
# and that token is unspent; the token is spent only in a session just touched, and the next
# token issued only for a token just spent. A session that has ended, timed out, belongs to
# another tenant or holds another token matches nothing; ``auth._not_spent`` then reads why.
# (SQLite runs the steps one by one in the request's transaction, which a refusal rolls back.)
_token_unspent = exists(
    select(_tokens.c.jti).where(
        _tokens.c.jti == param("jti"),
        _tokens.c.token_hash == param("token_hash"),
        _tokens.c.session_id == _sessions.c.id,
        _tokens.c.used_at.is_(None),
    )
)
# The guard that a racing refresh re-checks: only the locked row's own columns are checked
# again on its newest version (the token and account subqueries keep the statement's
# snapshot), so every path that spends a token must change ``refresh_token_hash`` under the
# session's row lock, as this one does. A session from before that column (NULL) takes the
# presented token's hash as its own; the winner of a race writes it, so the loser still fails.
_holds_presented_token = func.coalesce(
    _sessions.c.refresh_token_hash, param("token_hash", String)
) == param("token_hash", String)
# SQLite's step-by-step touch (after its spend) keeps the same guard.
TOUCH_SESSION = Query(_touch(_holds_presented_token))
_touched_first = _touch(
    _holds_presented_token,
    _sessions.c.tenant_id.is_not_distinct_from(param("tenant_id", _sessions.c.tenant_id.type)),
    _token_unspent,
).cte("touched")
_spent_after = _spend_in(_tokens.c.session_id.in_(select(_touched_first.c.id))).cte("spent")
_issued_after = (
    insert(_tokens)
    .from_select(
        _TOKEN_COLUMNS,
        select(
            *_new_token(
                _touched_first.c.id,
                _touched_first.c.tenant_id,
                _spent_after.c.generation + literal_column("1"),
            )
        ).select_from(_touched_first.join(_spent_after, true())),
    )
    .returning(_tokens.c.jti)
    .cte("issued")
)
_rotated = select(
    exists(select(_issued_after.c.jti)).label("issued"),
    select(_touched_first.c.tenant_id).scalar_subquery().label("tenant_id"),
)
# In a transaction the caller commits.
ROTATE_REFRESH_TOKEN = Change(_rotated)
# On its own (autocommit), with the refresh's audit entry: written only for a token issued.
ROTATE_AND_RECORD = Change(_rotated.add_cte(insert_pending_after(_issued_after)))

# Rotation switched off by the policy: the token stays valid; the session is touched if the
# token is live (unspent) and the session within its timeouts.
_live_token = _sessions.c.id.in_(
    select(_tokens.c.session_id).where(
        _tokens.c.jti == param("jti"),
        _tokens.c.token_hash == param("token_hash"),
        _tokens.c.used_at.is_(None),
    )
)
TOUCH_WITHOUT_ROTATION = Change(_touch(_live_token))

# Why a refresh token spent nothing: unknown, someone else's hash, or already spent; and its
# successor (what a concurrent refresh within the grace window gets again).
_successor = _tokens.alias("successor")
REFRESH_TOKEN_STATE = Query(
    select(
        _tokens.c.token_hash,
        _tokens.c.used_at,
        _sessions.c.id,
        _sessions.c.user_id,
        _sessions.c.tenant_id,
        _sessions.c.is_active.label("session_active"),
        _successor.c.token_hash.label("successor_hash"),
        _successor.c.used_at.label("successor_used_at"),
        _successor.c.issued_at.label("successor_issued_at"),
        _successor.c.expires_at.label("successor_expires_at"),
    )
    .select_from(
        _tokens.join(_sessions, _sessions.c.id == _tokens.c.session_id).outerjoin(
            _successor,
            and_(
                _successor.c.jti == param("successor_jti"),
                _successor.c.session_id == _tokens.c.session_id,
            ),
        )
    )
    .where(_tokens.c.jti == param("jti"))
)


# -- the two compound steps ------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """What a refresh did: spent the presented token, and issued the next one (the session
    was still open), in the tenant the session belongs to."""

    spent: bool
    issued: bool
    tenant_id: Any = None


async def rotate_refresh_token(
    session: AsyncSession,
    *,
    spend: dict[str, Any],
    touch: dict[str, Any],
    issue: dict[str, Any],
) -> Rotation:
    """Spend a refresh token, touch its session and store the next token (one generation
    on), in the caller's transaction. PostgreSQL: one statement in which a refusal writes
    nothing (``ROTATE_REFRESH_TOKEN``). SQLite: spend first, so a refusal after the spend must
    roll back with the caller's transaction."""
    if _dialect(session) == "postgresql":
        found = await row(session, ROTATE_REFRESH_TOKEN, **{**spend, **touch, **issue})
        assert found is not None  # the statement always answers one row
        # Nothing is spent unless the next token is issued (ROTATE_REFRESH_TOKEN).
        return Rotation(found["issued"], found["issued"], found["tenant_id"])
    spent = await row(session, SPEND_REFRESH_TOKEN, **spend)
    if spent is None:
        return Rotation(spent=False, issued=False)
    touched = await row(
        session,
        TOUCH_SESSION,
        **touch,
        token_hash=spend["token_hash"],
        new_hash=issue["new_hash"],
    )
    if touched is None:
        return Rotation(spent=True, issued=False)
    await row(
        session,
        ISSUE_NEXT_TOKEN,
        session_id=touch["session_id"],
        tenant_id=touched["tenant_id"],
        generation=spent["generation"] + 1,
        **issue,
    )
    return Rotation(spent=True, issued=True, tenant_id=touched["tenant_id"])


async def rotate_and_record(
    writer: Reader,
    *,
    spend: dict[str, Any],
    touch: dict[str, Any],
    issue: dict[str, Any],
    entry: dict[str, Any],
) -> bool:
    """PostgreSQL: :data:`ROTATE_AND_RECORD` on a statement writer (it commits on its own);
    whether the next token was issued (and the ``entry`` binds written with it)."""
    found = await writer.row(ROTATE_AND_RECORD, **_bind({**spend, **touch, **issue}), **entry)
    assert found is not None  # the statement always answers one row
    return bool(found["issued"])


async def issue_first_token(session: AsyncSession, **params: Any) -> None:
    """Store a session's first refresh token and note the hashes of its first pair."""
    if _dialect(session) == "postgresql":
        await row(session, ISSUE_FIRST_TOKEN, **params)
        return
    hashes = {k: params[k] for k in ("session_id", "access_hash", "new_hash", "now")}
    await row(session, ISSUE_REFRESH_TOKEN, **params)
    await row(session, NOTE_TOKEN_HASHES, **hashes)


async def sign_in_and_open_session(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    verified_hash: str | None,
    new_hash: str | None,
    new_session: dict[str, Any],
    now: datetime,
) -> Row | None:
    """Record the sign-in and open a session, or None when the account may no longer sign in
    (the row then holds the session's ``tenant_id``)."""
    sign_in = {"user_id": user_id, "verified_hash": verified_hash, "new_hash": new_hash}
    if _dialect(session) == "postgresql":
        return await row(session, SIGN_IN_AND_OPEN_SESSION, **sign_in, **new_session, now=now)
    granted = await row(session, RECORD_SIGN_IN, **sign_in, now=now)
    if granted is not None:
        await row(
            session, OPEN_SESSION, tenant_id=granted["tenant_id"], user_id=user_id, now=now,
            **new_session,
        )  # fmt: skip
    return granted


# -- running them ------------------------------------------------------------------------------


def as_uuid(value: Any) -> uuid.UUID:
    """The PostgreSQL driver returns its own UUID type; callers hold the standard one."""
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


def uuid_or_none(value: Any) -> uuid.UUID | None:
    return None if value is None else as_uuid(value)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


def _bind(params: dict[str, Any]) -> dict[str, Any]:
    return {f"p_{name}": value for name, value in params.items()}


async def read(reader: Reader, query: Query, **params: Any) -> Row | None:
    """The first row of a read-only ``query`` on a lean reader (no transaction)."""
    return await reader.row(query, **_bind(params))


async def row(session: AsyncSession, query: Query, **params: Any) -> Row | None:
    """The first row of ``query`` (or None) in the session's transaction, begun if need be."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        result = await session.execute(query.statement, _bind(params))
        return result.mappings().first() if result.returns_rows else None
    if isinstance(query, Change) or query.statement.is_dml:
        # The session's statement hook (``db._note_statement_write``) never sees the driver
        # path; without this mark ``db.end_read_only_prefix`` could commit these writes
        # half-way.
        session.sync_session.info["kanvaro_wrote"] = True
    driver = await transaction_driver(session)
    sql, names = query.for_dialect(connection.dialect)
    for name in _JSON_PARAMS:
        if params.get(name) is not None:
            params[name] = orjson.dumps(params[name]).decode()
    bound = _bind(params)
    return await driver.fetchrow(sql, *(bound[n] for n in names))
