"""``/t/{slug}/admin/sso``: the organization's identity providers (``settings:update``, as
``/api/v1/sso``): the list, a new provider (OIDC, SAML, OAuth2) with its configuration, a
provider's page to change it, switch it on or off, remove it, and "test connection", which
shows in words what ``POST /api/v1/sso/providers/{id}/test`` finds.

The configuration is edited as the API's JSON object (``config``); its secret (an OAuth
client secret) has a field of its own that is never filled in: the page shows only whether
one is stored (``secretsSet``), and leaving it empty keeps it. Domain verification is
another page's (the SSO domains API).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError, Unprocessable
from kanvaro.identity.sso import checks, providers
from kanvaro.identity.sso import routes as sso_routes
from kanvaro.identity.sso.schemas import ProviderIn, ProviderPatch
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin.common import (
    Problem,
    Slug,
    attempt,
    checked,
    integer,
    page,
    parse,
    problem_of,
    redirect,
)
from kanvaro.web.console.forms import fields
from kanvaro.web.console.routing import console_router
from kanvaro.web.console.templating import NOTICES
from kanvaro.web.console.tenant import page_tenant

router = console_router()
Admin = Annotated[Ctx, require(P.SETTINGS_UPDATE)]
TYPES = ("oidc", "saml", "oauth2")
EXAMPLES = {
    "oidc": {"issuer": "https://idp.example.com", "clientId": "kanvaro", "domains": []},
    "oauth2": {
        "clientId": "kanvaro",
        "authorizationURL": "https://idp.example.com/authorize",
        "tokenURL": "https://idp.example.com/token",
        "userInfoURL": "https://idp.example.com/userinfo",
    },
    "saml": {"idpMetadataUrl": "https://idp.example.com/metadata"},
}

NOTICES.update(
    {
        "sso-created": "Identity provider added.",
        "sso-saved": "Identity provider saved.",
        "sso-enabled": "Identity provider switched on.",
        "sso-disabled": "Identity provider switched off: no new sign-ins through it.",
        "sso-deleted": "Identity provider removed; the sessions it opened have ended.",
    }
)


def _config(text: str, secret: str) -> dict[str, Any]:
    """The JSON object of the form's ``config`` field, plus the secret when one was typed."""
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise Unprocessable(
            "The configuration is not valid JSON.",
            errors=[{"field": "config", "in": "body", "message": f"not JSON: {exc.msg}"}],
        ) from None
    if not isinstance(value, dict):
        raise Unprocessable(
            "The configuration must be a JSON object.",
            errors=[{"field": "config", "in": "body", "message": "not an object"}],
        )
    if secret:
        value["clientSecret"] = secret
    return value


async def _list_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await sso_routes.list_providers(ctx)
    return page(
        request,
        "admin/sso.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        providers=listed,
        types=TYPES,
        example=json.dumps(EXAMPLES["oidc"], indent=2),
        problem=problem,
        sent=sent or {},
    )


async def _provider_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    provider_id: uuid.UUID,
    *,
    problem: Problem | None = None,
    test: dict[str, Any] | None = None,
    config_text: str | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    out = sso_routes.provider_out(ctx, await providers.get(ctx, provider_id))
    return page(
        request,
        "admin/sso_provider.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        provider=out,
        config_text=config_text
        if config_text is not None
        else json.dumps(out["config"], indent=2, sort_keys=True),
        problem=problem,
        test=test,
    )


@router.get("/t/{slug}/admin/sso")
async def sso_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _list_page(request, ctx, slug)


@router.post("/t/{slug}/admin/sso/providers")
async def create_provider(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    text = fields(form, "providerType", "name", "config", "clientSecret")
    try:
        body = {
            "providerType": text["providerType"],
            "name": text["name"],
            "enabled": checked(form, "enabled"),
            "config": _config(text["config"], text["clientSecret"]),
        }
        row = await attempt(ctx, providers.create(ctx, parse(ProviderIn, body)))
    except ProblemError as exc:
        text.pop("clientSecret")  # never shown again, not even the one just typed
        return await _list_page(request, ctx, slug, problem=problem_of(exc), sent=text)
    return redirect(slug, f"/admin/sso/providers/{row.id}", "sso-created")


@router.get("/t/{slug}/admin/sso/providers/{provider_id}")
async def provider_page(
    slug: Slug, provider_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    return await _provider_page(request, ctx, slug, provider_id)


@router.post("/t/{slug}/admin/sso/providers/{provider_id}")
async def update_provider(
    slug: Slug, provider_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    text = fields(await request.form(), "name", "config", "clientSecret", "version")
    try:
        body = {
            "name": text["name"],
            "config": _config(text["config"], text["clientSecret"]),
            "version": integer(text["version"]),
        }
        await attempt(ctx, providers.update(ctx, provider_id, parse(ProviderPatch, body), None))
    except ProblemError as exc:
        return await _provider_page(
            request, ctx, slug, provider_id, problem=problem_of(exc), config_text=text["config"]
        )
    return redirect(slug, f"/admin/sso/providers/{provider_id}", "sso-saved")


@router.post("/t/{slug}/admin/sso/providers/{provider_id}/enabled")
async def switch_provider(
    slug: Slug, provider_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    on = checked(form, "enabled")
    body = {"enabled": on, "version": integer(str(form.get("version") or ""))}
    try:
        await attempt(ctx, providers.update(ctx, provider_id, parse(ProviderPatch, body), None))
    except ProblemError as exc:
        return await _provider_page(request, ctx, slug, provider_id, problem=problem_of(exc))
    return redirect(
        slug, f"/admin/sso/providers/{provider_id}", "sso-enabled" if on else "sso-disabled"
    )


@router.post("/t/{slug}/admin/sso/providers/{provider_id}/test")
async def test_provider(
    slug: Slug, provider_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    result = await checks.run(ctx, await providers.get(ctx, provider_id))
    return await _provider_page(request, ctx, slug, provider_id, test=result)


@router.post("/t/{slug}/admin/sso/providers/{provider_id}/delete")
async def delete_provider(
    slug: Slug, provider_id: uuid.UUID, ctx: Admin, request: Request
) -> Response:
    await page_tenant(ctx, slug)
    try:
        await attempt(ctx, providers.delete(ctx, provider_id))
    except ProblemError as exc:
        return await _provider_page(request, ctx, slug, provider_id, problem=problem_of(exc))
    return redirect(slug, "/admin/sso", "sso-deleted")
