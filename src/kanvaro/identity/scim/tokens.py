"""SCIM bearer tokens: create (shown once), list, rotate (a new secret, the old one stops at
once), revoke; and the lookup that turns a presented token into its tenant.

Minting a token hands an identity provider the power to create people and, through the
group-to-role mapping, to give them any mapped role up to ``admin``. So only a caller who
could assign the built-in ``admin`` role himself may mint, rotate or map (no escalation
through a token), on top of the route's ``user:manage``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update

from kanvaro.acting import Acting
from kanvaro.db import utcnow
from kanvaro.errors import Conflict, NotFound
from kanvaro.identity.scim.models import ScimToken
from kanvaro.reads import Query, Reader
from kanvaro.tenancy.models import Role, Tenant
from kanvaro.tenancy.role_service import ADMIN, deny, missing_to_assign

# A prefix makes a leaked token recognisable to secret scanners and to people.
PREFIX = "kvscim_"
_LAST_USED_EVERY = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_secret() -> tuple[str, str, str]:
    """(token, its SHA-256, the hint shown in lists)."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, _digest(token), token[len(PREFIX) : len(PREFIX) + 6]


async def ensure_may_mint(ctx: Acting) -> None:
    principal = ctx.me()
    admin = (
        await ctx.db.execute(select(Role).where(Role.is_system.is_(True), Role.name == ADMIN))
    ).scalar_one_or_none()
    missing = missing_to_assign(principal, admin) if admin is not None else "role:admin"
    if missing is not None:
        raise await deny(
            ctx,
            missing,
            "A SCIM token can provision any mapped role: only someone who may assign the "
            "admin role may manage SCIM tokens and mappings.",
        )


async def create_token(ctx: Acting, name: str) -> tuple[ScimToken, str]:
    await ensure_may_mint(ctx)
    token, digest, hint = _new_secret()
    row = ScimToken(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        name=name,
        token_hash=digest,
        hint=hint,
        created_by=ctx.actor_id,
    )
    ctx.db.add(row)
    await ctx.db.flush()
    await ctx.record(
        "api:scim_token:create",
        category="permissions",
        resource_type="scim_token",
        resource_id=row.id,
        changes={"name": name, "hint": hint},
    )
    return row, token


async def list_tokens(ctx: Acting) -> list[ScimToken]:
    rows = await ctx.db.execute(select(ScimToken).order_by(ScimToken.created_at, ScimToken.id))
    return list(rows.scalars())


async def _token(ctx: Acting, token_id: uuid.UUID) -> ScimToken:
    row = await ctx.db.get(ScimToken, token_id)
    if row is None:
        raise NotFound("No such SCIM token.")
    return row


async def rotate_token(ctx: Acting, token_id: uuid.UUID) -> tuple[ScimToken, str]:
    await ensure_may_mint(ctx)
    row = await _token(ctx, token_id)
    if row.revoked_at is not None:
        raise Conflict("This SCIM token is revoked; create a new one.")
    token, digest, hint = _new_secret()
    row.token_hash, row.hint, row.rotated_at = digest, hint, utcnow()
    await ctx.db.flush()
    await ctx.record(
        "api:scim_token:rotate",
        category="permissions",
        resource_type="scim_token",
        resource_id=row.id,
        changes={"name": row.name, "hint": hint},
    )
    return row, token


async def revoke_token(ctx: Acting, token_id: uuid.UUID) -> None:
    row = await _token(ctx, token_id)
    if row.revoked_at is not None:
        return  # revoking twice changes nothing and says so with the same 204
    row.revoked_at = utcnow()
    await ctx.db.flush()
    await ctx.record(
        "api:scim_token:revoke",
        category="permissions",
        resource_type="scim_token",
        resource_id=row.id,
        changes={"name": row.name, "hint": row.hint},
    )


TOKEN_QUERY = Query(
    select(ScimToken.id, ScimToken.tenant_id, ScimToken.last_used_at)
    .join(Tenant, Tenant.id == ScimToken.tenant_id)
    .where(
        ScimToken.token_hash == bindparam("token_hash"),
        ScimToken.revoked_at.is_(None),
        # A parameter, not a literal: a Query binds only named parameters.
        Tenant.status == bindparam("status"),
    )
)


@dataclass(frozen=True)
class ScimCaller:
    """The tenant a valid token provisions, and which token it was (for the audit)."""

    token_id: uuid.UUID
    tenant_id: uuid.UUID
    last_used_at: datetime | None

    def __repr__(self) -> str:
        return f"ScimCaller(token_id={self.token_id}, tenant_id={self.tenant_id})"


async def authenticate(reader: Reader, token: str) -> ScimCaller | None:
    """The caller a presented token names, or None (unknown, revoked, tenant suspended).

    Looked up by its hash across tenants (the token is what names the tenant), in the lean
    reader's read-only transaction."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = await reader.row(TOKEN_QUERY, token_hash=_digest(token), status="active")
    if row is None:
        return None
    return ScimCaller(uuid.UUID(str(row["id"])), uuid.UUID(str(row["tenant_id"])),
                      row["last_used_at"])  # fmt: skip


async def note_use(ctx: Acting, caller: ScimCaller) -> None:
    """Record when a token was last used, at most once a minute (a write per SCIM request
    would serialize an IdP's bursts on SQLite for a display value)."""
    now = utcnow()
    if caller.last_used_at is not None and now - caller.last_used_at < _LAST_USED_EVERY:
        return
    await ctx.db.execute(
        update(ScimToken)
        .where(ScimToken.id == caller.token_id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
