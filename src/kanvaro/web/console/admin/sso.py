"""``/t/{slug}/admin/sso``: the organization's identity providers (``settings:update``, as
``/api/v1/sso``): the list, a new provider (OIDC, SAML, OAuth2) with its configuration, a
provider's page to change it, switch it on or off, remove it, and "test connection", which
shows in words what ``POST /api/v1/sso/providers/{id}/test`` finds.

The configuration has a field for each setting of the provider's type, read off the API's
own schema (``config_form``); the new-provider form shows the fields of the type chosen with
``?type=``. Its secret (an OAuth client secret) has a field of its own that is never filled
in: the page shows only whether one is stored (``secretsSet``), and leaving it empty keeps
it. Domain verification is another page's (the SSO domains API).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from kanvaro.deps import Ctx, require
from kanvaro.errors import ProblemError
from kanvaro.identity.sso import checks, providers
from kanvaro.identity.sso import routes as sso_routes
from kanvaro.identity.sso.schemas import (
    ProviderConfigBase,
    ProviderIn,
    ProviderPatch,
    config_schemas,
)
from kanvaro.security.permissions import Permission as P
from kanvaro.web.console.admin import config_form
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
# What a new provider's form starts with: a placeholder for each address to replace.
STARTERS: dict[str, dict[str, Any]] = {
    "oidc": {"issuer": "https://idp.example.com", "clientId": "kanvaro"},
    "oauth2": {
        "clientId": "kanvaro",
        "authorizationURL": "https://idp.example.com/authorize",
        "tokenURL": "https://idp.example.com/token",
        "userInfoURL": "https://idp.example.com/userinfo",
    },
    "saml": {},
}


def config_fields(provider_type: str) -> list[config_form.FormField]:
    """The form's fields for a provider type (none for a type that does not exist)."""
    schema = config_schemas().get(provider_type)
    if schema is None:
        return []
    return config_form.form_fields(schema, skip=schema.SECRET_FIELDS, shared=ProviderConfigBase)


def _starter_text(provider_type: str) -> dict[str, str]:
    """A new provider's form: the schema's defaults and the placeholders above."""
    schema = config_schemas()[provider_type]
    defaults = {
        (f.alias or n): f.get_default(call_default_factory=True)
        for n, f in schema.model_fields.items()
        if not f.is_required()
    }
    defaults["attributeMapping"] = _nested_defaults(schema, "attribute_mapping")
    return config_form.form_values(config_fields(provider_type), defaults | STARTERS[provider_type])


def _nested_defaults(schema: type[ProviderConfigBase], name: str) -> dict[str, Any]:
    field = schema.model_fields.get(name)
    if field is None:
        return {}
    value = field.get_default(call_default_factory=True)
    return value.model_dump(by_alias=True) if value is not None else {}


NOTICES.update(
    {
        "sso-created": "Identity provider added.",
        "sso-saved": "Identity provider saved.",
        "sso-enabled": "Identity provider switched on.",
        "sso-disabled": "Identity provider switched off: no new sign-ins through it.",
        "sso-deleted": "Identity provider removed; the sessions it opened have ended.",
    }
)


def _config(provider_type: str, text: dict[str, str], secret: str) -> dict[str, Any]:
    """The form's fields as the API's ``config`` object, plus the secret when one was typed."""
    value = config_form.object_from(config_fields(provider_type), text)
    if secret:
        value["clientSecret"] = secret
    return value


async def _list_page(
    request: Request,
    ctx: Ctx,
    slug: str,
    *,
    provider_type: str = "oidc",
    problem: Problem | None = None,
    sent: dict[str, str] | None = None,
    config_text: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    listed = await sso_routes.list_providers(ctx)
    chosen = provider_type if provider_type in TYPES else "oidc"
    return page(
        request,
        "admin/sso.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        providers=listed,
        types=TYPES,
        chosen=chosen,
        config_fields=config_fields(chosen),
        config_text=config_text if config_text is not None else _starter_text(chosen),
        config_errors=config_form.messages(
            config_fields(chosen), problem.fields if problem else {}
        ),
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
    config_text: dict[str, str] | None = None,
) -> Response:
    tenant = await page_tenant(ctx, slug)
    out = sso_routes.provider_out(ctx, await providers.get(ctx, provider_id))
    fields_ = config_fields(out["providerType"])
    return page(
        request,
        "admin/sso_provider.html",
        ctx,
        status=problem.status if problem else 200,
        tenant=tenant,
        provider=out,
        config_fields=fields_,
        config_text=config_text
        if config_text is not None
        else config_form.form_values(fields_, out["config"]),
        config_errors=config_form.messages(fields_, problem.fields if problem else {}),
        problem=problem,
        test=test,
    )


@router.get("/t/{slug}/admin/sso")
async def sso_page(slug: Slug, ctx: Admin, request: Request) -> Response:
    return await _list_page(
        request, ctx, slug, provider_type=request.query_params.get("type", "oidc")
    )


@router.post("/t/{slug}/admin/sso/providers")
async def create_provider(slug: Slug, ctx: Admin, request: Request) -> Response:
    await page_tenant(ctx, slug)
    form = await request.form()
    text = fields(form, "providerType", "name", "clientSecret")
    typed = config_form.submitted(config_fields(text["providerType"]), form)
    try:
        body = {
            "providerType": text["providerType"],
            "name": text["name"],
            "enabled": checked(form, "enabled"),
            "config": _config(text["providerType"], typed, text["clientSecret"]),
        }
        row = await attempt(ctx, providers.create(ctx, parse(ProviderIn, body)))
    except ProblemError as exc:
        text.pop("clientSecret")  # never shown again, not even the one just typed
        text["enabled"] = "on" if checked(form, "enabled") else ""
        return await _list_page(
            request,
            ctx,
            slug,
            provider_type=text["providerType"],
            problem=problem_of(exc),
            sent=text,
            config_text=typed if text["providerType"] in TYPES else None,
        )
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
    form = await request.form()
    text = fields(form, "name", "clientSecret", "version")
    provider_type = (await providers.get(ctx, provider_id)).provider_type
    typed = config_form.submitted(config_fields(provider_type), form)
    try:
        body = {
            "name": text["name"],
            "config": _config(provider_type, typed, text["clientSecret"]),
            "version": integer(text["version"]),
        }
        await attempt(ctx, providers.update(ctx, provider_id, parse(ProviderPatch, body), None))
    except ProblemError as exc:
        return await _provider_page(
            request, ctx, slug, provider_id, problem=problem_of(exc), config_text=typed
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
