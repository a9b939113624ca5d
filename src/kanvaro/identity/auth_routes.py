"""``/api/v1/auth``: login, refresh, logout, me, password change, invitations, JWKS."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.deps import (
    Ctx,
    audit_context,
    own_account,
    public,
    public_db,
    request_ip,
    services_of,
)
from kanvaro.errors import NotFound, Unprocessable
from kanvaro.identity import account, auth
from kanvaro.identity.schemas import (
    AcceptInvitationIn,
    LoginIn,
    LogoutIn,
    LookupAcceptedOut,
    MeOut,
    PasswordChangeIn,
    RefreshIn,
    TenantLookupIn,
    TenantSignInOut,
    TokensOut,
)
from kanvaro.identity.tenant_lookup import lookup_tenants
from kanvaro.tenancy.models import Tenant

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# Per-tenant sign-in addresses: /t/{slug}/auth/login (and SSO's callbacks later).
tenant_router = APIRouter(prefix="/t/{slug}", tags=["auth"])
TenantSlug = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9-]+$")]

PublicDb = Annotated[AsyncSession, public_db()]
Authenticated = Annotated[Ctx, own_account()]


def _device_info(request: Request, device_id: str | None) -> dict[str, str]:
    info = {"userAgent": (request.headers.get("user-agent") or "")[:512]}
    if device_id:
        info["deviceId"] = device_id
    return info


async def _login(body: LoginIn, tenant: str | None, request: Request, db: AsyncSession) -> dict:
    pair = await auth.login(
        services_of(request),
        db,
        email=body.email,
        password=body.password,
        tenant=tenant,
        context=audit_context(request),
        device_info=_device_info(request, body.device_id),
    )
    return pair.to_json()


@router.post("/login", response_model=TokensOut, response_model_by_alias=True)
async def login(body: LoginIn, request: Request, db: PublicDb) -> dict[str, object]:
    """Sign in to the tenant named by ``tenant`` (its slug). It may be left out on an instance
    with a single tenant, and by the instance's super admin."""
    return await _login(body, body.tenant, request, db)


@tenant_router.post("/auth/login", response_model=TokensOut, response_model_by_alias=True)
async def tenant_login(
    slug: TenantSlug, body: LoginIn, request: Request, db: PublicDb
) -> dict[str, object]:
    """Sign in at the tenant's own address; a ``tenant`` in the body must name the same one."""
    if body.tenant is not None and body.tenant.strip().lower() != slug.lower():
        raise Unprocessable(
            "The tenant in the body differs from the one in the address.",
            errors=[{"field": "tenant", "in": "body", "message": "differs from the path"}],
        )
    return await _login(body, slug, request, db)


@tenant_router.get("/auth", response_model=TenantSignInOut, response_model_by_alias=True)
async def tenant_sign_in(slug: TenantSlug, request: Request, db: PublicDb) -> TenantSignInOut:
    """How to sign in to this tenant (for the browser, and for SSO to come). A suspended or
    unknown tenant is 404 alike."""
    tenant = (
        await db.execute(select(Tenant).where(Tenant.slug == slug.lower()))
    ).scalar_one_or_none()
    if tenant is None or tenant.status != "active":
        raise NotFound("No such tenant.")
    base = services_of(request).settings.public_url.rstrip("/")
    return TenantSignInOut(
        slug=tenant.slug,
        name=tenant.name,
        methods=["password"],
        login_url=f"{base}/t/{tenant.slug}/auth/login",
    )


@router.post("/tenants", status_code=202, response_model=LookupAcceptedOut)
async def which_tenants(body: TenantLookupIn, request: Request, db: PublicDb) -> LookupAcceptedOut:
    """ "Which tenants am I in?": the answer goes to the address by email, and this response
    is the same for every address, known or not."""
    services = services_of(request)
    await lookup_tenants(services, db, body.email, ip=request_ip(request))
    return LookupAcceptedOut(
        detail="If this address has accounts, a message listing their tenants is on its way."
    )


@router.post("/refresh", response_model=TokensOut, response_model_by_alias=True)
async def refresh(body: RefreshIn, request: Request, db: PublicDb) -> dict[str, object]:
    pair = await auth.refresh(
        services_of(request), db, refresh_token=body.refresh_token, context=audit_context(request)
    )
    return pair.to_json()


@router.post("/logout", status_code=204)
async def logout(ctx: Authenticated, body: LogoutIn | None = None) -> Response:
    await account.logout(ctx)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, response_model_by_alias=True)
async def me(ctx: Authenticated) -> MeOut:
    user = await account.own_row(ctx)
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


@router.post("/password", status_code=204)
async def change_password(body: PasswordChangeIn, ctx: Authenticated) -> Response:
    await account.change_password(
        ctx, current_password=body.current_password, new_password=body.new_password
    )
    return Response(status_code=204)


@router.post("/invitations/accept", status_code=204)
async def accept_invitation(body: AcceptInvitationIn, request: Request, db: PublicDb) -> Response:
    await account.accept_invitation(
        services_of(request),
        db,
        token=body.token,
        password=body.password,
        context=audit_context(request),
    )
    return Response(status_code=204)


@router.get("/jwks.json", dependencies=[public()])
async def jwks(request: Request) -> Response:
    return JSONResponse(
        services_of(request).tokens.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
