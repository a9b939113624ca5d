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
    own_origins,
    public,
    public_db,
    request_ip,
    services_of,
)
from kanvaro.errors import NotFound, Unauthorized, Unprocessable
from kanvaro.http_helpers import json_response
from kanvaro.identity import account, auth, device_cookie
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.schemas import (
    AcceptInvitationIn,
    CookieSessionOut,
    LoginIn,
    LogoutIn,
    LookupAcceptedOut,
    MeOut,
    MfaStepOut,
    PasswordChangeIn,
    ReauthIn,
    ReauthOut,
    RefreshIn,
    SsoProviderLink,
    TenantLookupIn,
    TenantSignInOut,
    TokensOut,
)
from kanvaro.identity.sessions import cookies
from kanvaro.identity.sessions.reauth import reauthenticate
from kanvaro.identity.sessions.signin import SignInRequest
from kanvaro.identity.sso.providers import enabled_providers
from kanvaro.identity.tenant_lookup import lookup_tenants
from kanvaro.schemas import JsonOut
from kanvaro.tenancy.models import Tenant

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# Per-tenant sign-in addresses: /t/{slug}/auth/login (and SSO's callbacks later).
tenant_router = APIRouter(prefix="/t/{slug}", tags=["auth"])
TenantSlug = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9-]+$")]

PublicDb = Annotated[AsyncSession, public_db()]
Authenticated = Annotated[Ctx, own_account()]


DEVICE_HEADER = "x-device-token"


def sign_in_request(request: Request, device_token: str | None) -> SignInRequest:
    """The client's side of a sign-in: its address, User-Agent and device secret (from the
    body's ``deviceToken``, the ``X-Device-Token`` header or a browser's device cookie) with
    the device proofs it carries."""
    device = device_cookie.parse(
        device_token or request.headers.get(DEVICE_HEADER) or cookies.device_secret(request.cookies)
    )
    return SignInRequest(
        ip_address=request_ip(request),
        user_agent=request.headers.get("user-agent"),
        device_secret=device.secret if device else None,
        device_proofs=device.proofs if device else (),
    )


# A browser session's sign-in and refresh answer with cookies and this body; API clients get
# their tokens in the body.
SessionOut = TokensOut | CookieSessionOut | MfaStepOut
TOKENS_OUT = JsonOut(TokensOut)


def as_cookies(request: Request, response: Response, pair: auth.TokenPair) -> dict:
    """Put a browser session's tokens into its cookies; the body keeps none of them."""
    services = services_of(request)
    csrf = cookies.csrf_token(services.keyring, pair.session_id)
    for value in cookies.session_cookies(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        csrf=csrf,
        access_ttl=pair.expires_in,
        refresh_ttl=services.tokens.refresh_ttl,
        new_device_secret=pair.device_token,
    ):
        response.headers.append("set-cookie", value)
    return cookies.cookie_body(expires_in=pair.expires_in, csrf=csrf)


async def _login(
    body: LoginIn, tenant: str | None, request: Request, response: Response, db: AsyncSession
) -> dict:
    if body.transport == cookies.COOKIE:
        # A cross-site page must not sign the victim's browser into another account.
        cookies.refuse_cross_site(request.headers, own_origins(request))
    pair = await auth.login(
        services_of(request),
        db,
        email=body.email,
        password=body.password,
        tenant=tenant,
        context=audit_context(request),
        client=sign_in_request(request, body.device_token),
    )
    if isinstance(pair, MfaStep):  # the tokens (or cookies) come with mfa/verify
        return pair.to_json()
    if body.transport == cookies.COOKIE:
        return as_cookies(request, response, pair)
    return pair.to_json()


@router.post("/login", response_model=SessionOut, response_model_by_alias=True)
async def login(
    body: LoginIn, request: Request, response: Response, db: PublicDb
) -> dict[str, object]:
    """Sign in to the tenant named by ``tenant`` (its slug). It may be left out on an instance
    with a single tenant, and by the instance's super admin. ``"transport": "cookie"`` (a
    browser) answers with cookies instead of tokens."""
    return await _login(body, body.tenant, request, response, db)


@tenant_router.post("/auth/login", response_model=SessionOut, response_model_by_alias=True)
async def tenant_login(
    slug: TenantSlug, body: LoginIn, request: Request, response: Response, db: PublicDb
) -> dict[str, object]:
    """Sign in at the tenant's own address; a ``tenant`` in the body must name the same one."""
    if body.tenant is not None and body.tenant.strip().lower() != slug.lower():
        raise Unprocessable(
            "The tenant in the body differs from the one in the address.",
            errors=[{"field": "tenant", "in": "body", "message": "differs from the path"}],
        )
    return await _login(body, slug, request, response, db)


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
    providers = await enabled_providers(db, tenant.id)
    return TenantSignInOut(
        slug=tenant.slug,
        name=tenant.name,
        methods=["password", *(["sso"] if providers else [])],
        login_url=f"{base}/t/{tenant.slug}/auth/login",
        providers=[
            SsoProviderLink(
                id=p.id,
                name=p.name,
                provider_type=p.provider_type,
                login_url=f"{base}/t/{tenant.slug}/sso/{p.id}/login",
            )
            for p in providers
        ],
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


@router.post(
    "/refresh", response_model=SessionOut, response_model_by_alias=True, dependencies=[public()]
)
async def refresh(
    request: Request, response: Response, body: RefreshIn | None = None
) -> Response | dict[str, object]:
    """The next pair for ``refreshToken``; a browser session sends no body token and its
    refresh cookie is used (with ``X-CSRF-Token``), answered with fresh cookies."""
    services = services_of(request)
    token = body.refresh_token if body is not None else None
    cookie = request.cookies.get(cookies.REFRESH_COOKIE) if token is None else None
    if cookie:
        await cookies.check_refresh_cookie(
            services, cookie, headers=request.headers, origins=own_origins(request)
        )
        token = cookie
    if token is None:  # no credential at all: 401, as for any route without one
        raise Unauthorized(
            "A refresh token is needed: in the body, or the browser session's cookie.",
            errors=[{"field": "refreshToken", "in": "body", "message": "required"}],
        )
    # No request session: a rotation on PostgreSQL is one statement, and auth.refresh opens a
    # session for the paths that need one.
    pair = await auth.refresh(services, None, refresh_token=token, context=audit_context(request))
    if cookie:
        return as_cookies(request, response, pair)
    # Serialized once through TokensOut (one of SessionOut's shapes), not validated again
    # against the whole union by FastAPI: a refresh is a hot path of its own (issue 9).
    return json_response(TOKENS_OUT.json(pair.to_json()))


@router.post("/logout", status_code=204)
async def logout(ctx: Authenticated, request: Request, body: LogoutIn | None = None) -> Response:
    await account.logout(ctx)
    ended = Response(status_code=204)
    if cookies.has_session_cookie(request.cookies):  # a browser session: forget its cookies
        for value in cookies.cleared_cookies():
            ended.headers.append("set-cookie", value)
    return ended


@router.post("/reauth", response_model=ReauthOut, response_model_by_alias=True)
async def reauth(body: ReauthIn, ctx: Authenticated) -> ReauthOut:
    """Confirm the password again in this session: permissions the tenant's session policy
    lists as sensitive need this within ``reauthMaxAgeMinutes`` (problem type
    ``reauth-required`` otherwise). Throttled like sign-in."""
    return ReauthOut(authenticated_at=await reauthenticate(ctx, password=body.password))


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
