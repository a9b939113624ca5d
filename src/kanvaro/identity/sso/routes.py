"""``/api/v1/sso``: the tenant's identity providers, SSO policy and DNS-verified domains
(``settings:update``).

Create with seed 004's ``SSOConfig`` (``{providerType, name, enabled, config}``), list, read,
change (``PATCH`` with ``version`` or ``If-Match``), delete, and ``POST .../test`` which
reports what is wrong in words. Secrets are never shown: ``secretsSet`` names the secret
fields that hold a value. ``/domains``: claim an email domain (answered with the TXT record to
publish), list, check it now (``POST .../verify``), give it up.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from kanvaro.deps import Ctx, require
from kanvaro.http_helpers import set_etag
from kanvaro.identity.sso import checks, domains, policy, providers
from kanvaro.identity.sso.models import OAUTH2, OIDC, SsoDomain, SsoProvider
from kanvaro.identity.sso.schemas import (
    DomainIn,
    DomainOut,
    ProviderIn,
    ProviderOut,
    ProviderPatch,
    ProviderTestOut,
    SsoPolicyIn,
    SsoPolicyOut,
)
from kanvaro.security.permissions import Permission as P

router = APIRouter(prefix="/api/v1/sso", tags=["sso"])
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]


def urls(public_url: str, provider: SsoProvider) -> tuple[str, str | None]:
    """(where a sign-in starts, the OAuth redirect URI to register at the IdP)."""
    base = f"{public_url.rstrip('/')}/api/v1/sso/{provider.id}"
    callback = f"{base}/callback" if provider.provider_type in (OIDC, OAUTH2) else None
    return f"{base}/login", callback


def provider_out(ctx: Ctx, provider: SsoProvider) -> dict[str, Any]:
    login, callback = urls(ctx.services.settings.public_url, provider)
    return {
        "id": provider.id,
        "providerType": provider.provider_type,
        "name": provider.name,
        "enabled": provider.enabled,
        "config": provider.config,
        "secretsSet": sorted(k for k, v in providers.secret_values(provider).items() if v),
        "loginUrl": login,
        "callbackUrl": callback,
        "version": provider.version,
        "createdAt": provider.created_at,
        "updatedAt": provider.updated_at,
    }


@router.post(
    "/providers", status_code=201, response_model=ProviderOut, response_model_by_alias=True
)
async def create_provider(body: ProviderIn, ctx: Admin, response: Response) -> dict[str, Any]:
    provider = await providers.create(ctx, body)
    set_etag(response, provider.version)
    return provider_out(ctx, provider)


@router.get("/providers", response_model=list[ProviderOut], response_model_by_alias=True)
async def list_providers(ctx: Admin) -> list[dict[str, Any]]:
    return [provider_out(ctx, p) for p in await providers.list_all(ctx)]


@router.get("/providers/{provider_id}", response_model=ProviderOut, response_model_by_alias=True)
async def get_provider(provider_id: uuid.UUID, ctx: Admin, response: Response) -> dict[str, Any]:
    provider = await providers.get(ctx, provider_id)
    set_etag(response, provider.version)
    return provider_out(ctx, provider)


@router.patch("/providers/{provider_id}", response_model=ProviderOut, response_model_by_alias=True)
async def update_provider(
    provider_id: uuid.UUID,
    body: ProviderPatch,
    ctx: Admin,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Change name, enabled (``false`` disables it: no new sign-ins) or the whole config;
    secret fields left out keep their value."""
    provider = await providers.update(ctx, provider_id, body, if_match)
    set_etag(response, provider.version)
    return provider_out(ctx, provider)


@router.delete("/providers/{provider_id}", status_code=204)
async def delete_provider(provider_id: uuid.UUID, ctx: Admin) -> Response:
    """Remove the provider; the sessions it opened end."""
    await providers.delete(ctx, provider_id)
    return Response(status_code=204)


@router.post(
    "/providers/{provider_id}/test", response_model=ProviderTestOut, response_model_by_alias=True
)
async def test_provider(provider_id: uuid.UUID, ctx: Admin) -> dict[str, Any]:
    """What would keep a sign-in through this provider from working, in words."""
    return await checks.run(ctx, await providers.get(ctx, provider_id))


@router.get("/policy", response_model=SsoPolicyOut, response_model_by_alias=True)
async def get_policy(ctx: Admin) -> dict[str, Any]:
    return (await policy.current(ctx)).to_json()


@router.put("/policy", response_model=SsoPolicyOut, response_model_by_alias=True)
async def put_policy(body: SsoPolicyIn, ctx: Admin) -> dict[str, Any]:
    """Change the SSO policy: fields left out keep their value."""
    return (await policy.change(ctx, body)).to_json()


def domain_out(row: SsoDomain) -> dict[str, Any]:
    return {
        "id": row.id,
        "domain": row.domain,
        "status": row.status,
        "record": {
            "type": "TXT",
            "name": domains.challenge_name(row.domain),
            "value": domains.challenge_value(row.token),
        },
        "verifiedAt": row.verified_at,
        "lastCheckedAt": row.last_checked_at,
        "lastError": row.last_error,
        "createdAt": row.created_at,
    }


@router.post("/domains", status_code=201, response_model=DomainOut, response_model_by_alias=True)
async def add_domain(body: DomainIn, ctx: Admin) -> dict[str, Any]:
    """Claim an email domain for home-realm discovery: pending until the TXT record in
    ``record`` is published and ``POST /api/v1/sso/domains/{domainId}/verify`` finds it."""
    return domain_out(await domains.add(ctx, body.domain))


@router.get("/domains", response_model=list[DomainOut], response_model_by_alias=True)
async def list_domains(ctx: Admin) -> list[dict[str, Any]]:
    return [domain_out(row) for row in await domains.list_all(ctx)]


@router.get("/domains/{domain_id}", response_model=DomainOut, response_model_by_alias=True)
async def get_domain(domain_id: uuid.UUID, ctx: Admin) -> dict[str, Any]:
    return domain_out(await domains.get(ctx, domain_id))


@router.post("/domains/{domain_id}/verify", response_model=DomainOut, response_model_by_alias=True)
async def verify_domain(domain_id: uuid.UUID, ctx: Admin) -> dict[str, Any]:
    """Look the TXT record up now. Answers the domain: ``status`` says whether it is
    verified, ``lastError`` what the lookup found otherwise (no such name, no TXT record,
    another value, a timeout, verified by another organization)."""
    return domain_out(await domains.verify(ctx, domain_id))


@router.delete("/domains/{domain_id}", status_code=204)
async def delete_domain(domain_id: uuid.UUID, ctx: Admin) -> Response:
    """Give the domain up: discovery stops routing it to this tenant at once."""
    await domains.remove(ctx, domain_id)
    return Response(status_code=204)
