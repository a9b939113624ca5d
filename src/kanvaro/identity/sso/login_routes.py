"""The public side of SSO: start a sign-in (``/api/v1/sso/{providerId}/login``, or at the
tenant's address ``/t/{slug}/sso/{providerId}/login``), the OIDC/OAuth2 callback, home-realm
discovery by an email domain verified by DNS, and OIDC back-channel logout.

SAML providers start at their own ``.../saml/login`` (``saml_routes``); the generic login
sends the browser there.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.db import switch_tenant
from kanvaro.deps import audit_context, public_db, services_of
from kanvaro.errors import NotFound
from kanvaro.identity.auth_routes import TenantSlug, sign_in_request
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.sso import browser, domains, logout, oidc, providers, requests, sign_in
from kanvaro.identity.sso.models import (
    DOMAIN_VERIFIED,
    OAUTH2,
    OIDC,
    SAML,
    SsoDomain,
    SsoProvider,
)
from kanvaro.identity.sso.schemas import DiscoverIn, DiscoverOut
from kanvaro.tenancy.models import Tenant

router = APIRouter(prefix="/api/v1/sso", tags=["sso"])
tenant_router = APIRouter(prefix="/t/{slug}/sso", tags=["sso"])
PublicDb = Annotated[AsyncSession, public_db()]
ReturnTo = Annotated[str | None, Query(alias="returnTo", max_length=1024)]
NO_PROVIDER = "No such identity provider."


async def _provider(db: AsyncSession, provider_id: uuid.UUID, slug: str | None) -> SsoProvider:
    """An enabled provider of an active tenant (and of the tenant ``slug`` names); 404 alike
    for every other case."""
    row = (
        await db.execute(
            select(SsoProvider, Tenant)
            .join(Tenant, Tenant.id == SsoProvider.tenant_id)
            .where(SsoProvider.id == provider_id)
        )
    ).first()
    if row is None:
        raise NotFound(NO_PROVIDER)
    provider, tenant = row
    if not provider.enabled or tenant.status != "active":
        raise NotFound(NO_PROVIDER)
    if slug is not None and tenant.slug != slug.lower():
        raise NotFound(NO_PROVIDER)
    return provider


def _callback_url(request: Request, provider: SsoProvider) -> str:
    """The one redirect URI the admin registers at the IdP (``callbackUrl``), wherever the
    sign-in started: two would be one more thing to get wrong at the IdP."""
    base = services_of(request).settings.public_url.rstrip("/")
    return f"{base}/api/v1/sso/{provider.id}/callback"


async def _login(
    request: Request,
    db: AsyncSession,
    provider_id: uuid.UUID,
    slug: str | None,
    return_to: str | None,
) -> Response:
    services = services_of(request)
    provider = await _provider(db, provider_id, slug)
    target = browser.local_path(return_to)
    if provider.provider_type == SAML:
        return RedirectResponse(
            f"/api/v1/sso/{provider.id}/saml/login?returnTo={quote(target, safe='')}",
            status_code=303,
        )
    cfg = providers.typed_config(provider)
    started = await oidc.begin(
        provider,
        cfg,
        services.settings,
        redirect_uri=_callback_url(request, provider),
        return_to=target,
    )
    secret = requests.browser_secret(request.cookies)
    await switch_tenant(db, provider.tenant_id)
    await requests.start(
        db, services, provider, request_id=started.state, data=started.data, secret=secret
    )
    response = RedirectResponse(started.url, status_code=303)
    response.headers.append("set-cookie", requests.browser_cookie(secret))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _callback(
    request: Request, db: AsyncSession, provider_id: uuid.UUID, slug: str | None
) -> Response:
    services = services_of(request)
    provider = await _provider(db, provider_id, slug)
    if provider.provider_type not in (OIDC, OAUTH2):
        raise NotFound(NO_PROVIDER)
    query = request.query_params
    await switch_tenant(db, provider.tenant_id)
    # The state is spent whatever the answer: an error answer or a bad code ends this try.
    data = await requests.consume(
        db,
        services,
        provider,
        request_id=query.get("state"),
        secret=request.cookies.get(requests.BROWSER_COOKIE),
    )
    if query.get("error"):
        raise oidc.idp_error(query.get("error"))
    code = query.get("code")
    if not code or len(code) > 4096:
        raise oidc.idp_error("invalid_request")
    cfg = providers.typed_config(provider)
    identity = await oidc.finish(
        provider,
        cfg,
        services.settings,
        code=code,
        data=data,
        now=int(services.clock.now().timestamp()),
    )
    outcome = await sign_in.complete(
        services,
        db,
        provider,
        identity,
        context=audit_context(request),
        client=sign_in_request(request, None),
    )
    return browser.finish(request, outcome, data.get("returnTo"))


@router.get("/{provider_id}/login", status_code=303)
async def sso_login(
    provider_id: uuid.UUID, request: Request, db: PublicDb, return_to: ReturnTo = None
) -> Response:
    """Start signing in with the provider: 303 to the IdP. ``returnTo``: a local path to
    land on afterwards."""
    return await _login(request, db, provider_id, None, return_to)


@router.get("/{provider_id}/callback", status_code=303)
async def sso_callback(provider_id: uuid.UUID, request: Request, db: PublicDb) -> Response:
    """The IdP's answer (OIDC / OAuth2 redirect URI): cookies and a 303 to the return path,
    or to the sign-in page's second step."""
    return await _callback(request, db, provider_id, None)


@tenant_router.get("/{provider_id}/login", status_code=303)
async def tenant_sso_login(
    slug: TenantSlug,
    provider_id: uuid.UUID,
    request: Request,
    db: PublicDb,
    return_to: ReturnTo = None,
) -> Response:
    """As ``/api/v1/sso/{providerId}/login``, at the tenant's own address."""
    return await _login(request, db, provider_id, slug, return_to)


@tenant_router.get("/{provider_id}/callback", status_code=303)
async def tenant_sso_callback(
    slug: TenantSlug, provider_id: uuid.UUID, request: Request, db: PublicDb
) -> Response:
    return await _callback(request, db, provider_id, slug)


@router.post("/discover", response_model=DiscoverOut, response_model_by_alias=True)
async def discover(body: DiscoverIn, request: Request, db: PublicDb) -> dict[str, Any]:
    """Home-realm discovery: the provider that serves the address's domain, when a tenant
    (the one named, or else the only one) has verified that domain by DNS. The answer depends
    on the domain alone, never on whether the address has an account."""
    try:
        domain = domains.ascii_domain(normalize_email(body.email).rsplit("@", 1)[1])
    except (InvalidEmail, domains.InvalidDomain):
        return {"sso": False}
    # At most one tenant holds a domain verified (a unique index); the count still decides,
    # so that discovery fails closed should that ever not hold.
    query = (
        select(SsoDomain.tenant_id, Tenant.slug)
        .join(Tenant, Tenant.id == SsoDomain.tenant_id)
        .where(
            SsoDomain.domain == domain,
            SsoDomain.status == DOMAIN_VERIFIED,
            Tenant.status == "active",
        )
    )
    if body.tenant:
        query = query.where(Tenant.slug == body.tenant.strip().lower())
    tenants = (await db.execute(query.limit(2))).all()
    if len(tenants) != 1:
        return {"sso": False}
    found = tenants[0]
    rows = await db.execute(
        select(SsoProvider)
        .where(SsoProvider.tenant_id == found.tenant_id, SsoProvider.enabled.is_(True))
        .order_by(SsoProvider.name)
    )
    for provider in rows.scalars():
        if domain in {domains.comparable(d) for d in provider.config.get("domains") or []}:
            base = services_of(request).settings.public_url.rstrip("/")
            return {
                "sso": True,
                "providerId": provider.id,
                "name": provider.name,
                "loginUrl": f"{base}/t/{found.slug}/sso/{provider.id}/login",
            }
    return {"sso": False}


async def _logout_token(request: Request) -> str | None:
    """The form's ``logout_token`` (the spec's name, not ours to camelCase: read by hand, so
    no snake_case field enters the OpenAPI document)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = await request.body()
    if len(body) > 20_000:
        return None
    values = [v for k, v in parse_qsl(body.decode("latin-1")) if k == "logout_token"]
    return values[0] if len(values) == 1 else None


@router.post("/{provider_id}/backchannel-logout")
async def backchannel_logout(provider_id: uuid.UUID, request: Request, db: PublicDb) -> Response:
    """OIDC Back-Channel Logout: the IdP's signed logout token (form field ``logout_token``)
    ends the matching sessions. 200 when accepted (also when nothing was open), 400 with the
    reason otherwise."""
    services = services_of(request)
    provider = await _provider(db, provider_id, None)
    logout_token = await _logout_token(request)
    try:
        await logout.handle(services, db, provider, logout_token, context=audit_context(request))
    except sign_in.SsoRefused as exc:
        # §2.8: a refused logout token is answered 400 (problem+json), never 403.
        return JSONResponse(
            {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": exc.detail},
            status_code=400,
            media_type="application/problem+json",
            headers={"Cache-Control": "no-store"},
        )
    return Response(status_code=200, headers={"Cache-Control": "no-store"})
