"""``/api/v1/auth``: login, refresh, logout, me, password change, invitations, JWKS."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import service as audit
from kanvaro.db import utcnow
from kanvaro.deps import Ctx, audit_context, own_account, public, public_db, services_of
from kanvaro.errors import BadRequest, TooManyRequests, Unauthorized
from kanvaro.identity import auth
from kanvaro.identity.models import Invitation, User
from kanvaro.identity.schemas import (
    AcceptInvitationIn,
    LoginIn,
    LogoutIn,
    MeOut,
    PasswordChangeIn,
    RefreshIn,
    TokensOut,
)
from kanvaro.identity.users import check_password
from kanvaro.tenancy.models import Tenant
from kanvaro.tenancy.service import password_policy

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

PublicDb = Annotated[AsyncSession, public_db()]
Authenticated = Annotated[Ctx, own_account()]


def _device_info(request: Request, device_id: str | None) -> dict[str, str]:
    info = {"userAgent": (request.headers.get("user-agent") or "")[:512]}
    if device_id:
        info["deviceId"] = device_id
    return info


@router.post("/login", response_model=TokensOut, response_model_by_alias=True)
async def login(body: LoginIn, request: Request, db: PublicDb) -> dict[str, object]:
    pair = await auth.login(
        services_of(request),
        db,
        email=body.email,
        password=body.password,
        context=audit_context(request),
        device_info=_device_info(request, body.device_id),
    )
    return pair.to_json()


@router.post("/refresh", response_model=TokensOut, response_model_by_alias=True)
async def refresh(body: RefreshIn, request: Request, db: PublicDb) -> dict[str, object]:
    pair = await auth.refresh(
        services_of(request), db, refresh_token=body.refresh_token, context=audit_context(request)
    )
    return pair.to_json()


@router.post("/logout", status_code=204)
async def logout(ctx: Authenticated, body: LogoutIn | None = None) -> Response:
    if not await auth.revoke_session(ctx.db, ctx.principal.session_id, reason="logout"):
        return Response(status_code=204)  # ended meanwhile by another request: nothing to log
    await audit.record(
        ctx.db,
        action="auth:session:logout",
        category="authentication",
        tenant_id=ctx.principal.tenant_id,
        context=ctx.audit,
        resource_type="session",
        resource_id=ctx.principal.session_id,
    )
    return Response(status_code=204)


async def _own_row(ctx: Ctx) -> User:
    """The caller's own user row (``own_account()`` keeps the super admin, who belongs to no
    tenant, in an instance-wide session, so his row is visible)."""
    user = await ctx.db.get(User, ctx.principal.user_id)
    assert user is not None  # the dependency has just loaded it
    return user


@router.get("/me", response_model=MeOut, response_model_by_alias=True)
async def me(ctx: Authenticated) -> MeOut:
    user = await _own_row(ctx)
    return MeOut(
        id=user.id,
        tenant_id=ctx.principal.tenant_id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        role=ctx.principal.role,
        permissions=sorted(ctx.principal.permissions),
        session_id=ctx.principal.session_id,
    )


async def _record_reauth_failure(ctx: Ctx) -> None:
    tenant_id, context, user_id = ctx.principal.tenant_id, ctx.audit, ctx.principal.user_id

    async def write(session: AsyncSession) -> None:
        await audit.record(
            session,
            action="auth:password:reauth_failure",
            category="authentication",
            tenant_id=tenant_id,
            context=context,
            resource_type="user",
            resource_id=user_id,
        )

    await ctx.services.db.after_transaction(write)


@router.post("/password", status_code=204)
async def change_password(body: PasswordChangeIn, ctx: Authenticated) -> Response:
    services = ctx.services
    user = await _own_row(ctx)
    # Re-entering the current password is a guess like a sign-in: counted before the check,
    # so a stolen access token cannot be used to find the password and take the account.
    verdict = await services.throttle.attempt_reauth(str(user.id))
    if not verdict.allowed:
        raise TooManyRequests(
            "Too many wrong passwords. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    valid, _ = await services.hasher.verify_async(body.current_password, user.password_hash)
    if not valid:
        await _record_reauth_failure(ctx)
        raise BadRequest(
            "The current password is wrong.",
            errors=[{"field": "currentPassword", "in": "body", "message": "wrong password"}],
        )
    await services.throttle.reauth_succeeded(str(user.id))
    tenant = await ctx.db.get(Tenant, user.tenant_id) if user.tenant_id else None
    check_password(
        password_policy(tenant),
        body.new_password,
        email=user.email,
        names=(user.first_name, user.last_name),
        field="newPassword",
    )
    user.password_hash = await services.hasher.hash_async(body.new_password)
    user.password_changed_at = utcnow()
    user.updated_by = user.id
    # Every other session of this user ends; the current one stays signed in.
    await auth.revoke_other_sessions(
        ctx.db, user.id, keep=ctx.principal.session_id, reason="password_change"
    )
    await audit.record(
        ctx.db,
        action="auth:password:change",
        category="authentication",
        tenant_id=user.tenant_id,
        context=ctx.audit,
        resource_type="user",
        resource_id=user.id,
    )
    return Response(status_code=204)


INVITATION_INVALID = "The invitation is invalid or has expired."


async def _open_invitation(
    db: AsyncSession, digest: str, *, lock: bool = False
) -> tuple[Invitation, User, Tenant]:
    stmt = (
        select(Invitation, User, Tenant)
        .join(User, User.id == Invitation.user_id)
        .join(Tenant, Tenant.id == Invitation.tenant_id)
        .where(Invitation.token_hash == digest)
    )
    row = (await db.execute(stmt.with_for_update() if lock else stmt)).first()
    if row is None:
        raise Unauthorized(INVITATION_INVALID)
    invitation, user, tenant = row
    if (
        invitation.accepted_at is not None
        or invitation.expires_at <= utcnow()
        or not user.is_active
        or tenant.status != "active"
    ):
        raise Unauthorized(INVITATION_INVALID)
    return invitation, user, tenant


@router.post("/invitations/accept", status_code=204)
async def accept_invitation(body: AcceptInvitationIn, request: Request, db: PublicDb) -> Response:
    services = services_of(request)
    digest = hashlib.sha256(body.token.encode()).hexdigest()
    # Checked and hashed outside the request's transaction (no lock held while hashing),
    # then re-checked under a row lock so that a token is accepted once only.
    async with services.db.session(all_tenants=True) as lookup:
        _, user, tenant = await _open_invitation(lookup, digest)
    check_password(
        password_policy(tenant),
        body.password,
        email=user.email,
        names=(user.first_name, user.last_name),
    )
    password_hash = await services.hasher.hash_async(body.password)
    invitation, user, _ = await _open_invitation(db, digest, lock=True)
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    invitation.accepted_at = utcnow()
    await audit.record(
        db,
        action="auth:invitation:accept",
        category="user_activity",
        tenant_id=user.tenant_id,
        context=audit_context(request, user.id),
        resource_type="user",
        resource_id=user.id,
    )
    return Response(status_code=204)


@router.get("/jwks.json", dependencies=[public()])
async def jwks(request: Request) -> Response:
    return JSONResponse(
        services_of(request).tokens.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
