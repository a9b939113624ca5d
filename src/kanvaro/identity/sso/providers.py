"""A tenant's identity providers as actions: create, list, read, change, delete.

The config is validated by its type's schema (``schemas.config_schemas``); the fields the
schema names as secret go to the encrypted ``secrets`` column and are never shown again, and
a change that leaves them out keeps them. Role names in the mapping must exist in the tenant,
and an admin may only map groups to roles he could assign himself (no escalation through the
IdP). Every change is audited without secrets.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.errors import Conflict, Unprocessable
from kanvaro.identity.sso import schemas
from kanvaro.identity.sso.models import SAML, SsoProvider
from kanvaro.identity.sso.schemas import ProviderConfigBase, ProviderIn, ProviderPatch
from kanvaro.resources import check_version, get_or_404, stamp
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.role_service import missing_to_assign

NOT_FOUND = "SSO provider"


def secret_values(provider: SsoProvider) -> dict[str, Any]:
    """The provider's decrypted secrets (empty when none)."""
    raw = provider.secrets
    return json.loads(raw) if raw else {}


def set_secret_values(provider: SsoProvider, values: dict[str, Any]) -> None:
    provider.secrets = json.dumps(values, separators=(",", ":")) if values else None


def config_of(provider: SsoProvider) -> dict[str, Any]:
    """The stored config with its secret fields put back (camelCase keys)."""
    schema = schemas.config_schemas()[provider.provider_type]
    secrets = secret_values(provider)
    return {
        **provider.config,
        **{k: secrets[k] for k in schema.SECRET_FIELDS if secrets.get(k) is not None},
    }


def typed_config(provider: SsoProvider) -> ProviderConfigBase:
    schema = schemas.config_schemas()[provider.provider_type]
    return schema.model_validate(config_of(provider))


def validate(provider_type: str, config: dict[str, Any]) -> ProviderConfigBase:
    """``config`` checked by its type's schema; 422 naming each bad field as ``config.x``."""
    schema = schemas.config_schemas()[provider_type]
    try:
        return schema.model_validate(config)
    except ValidationError as exc:
        raise Unprocessable(
            "The provider's config is not valid.",
            errors=[
                {
                    "field": ".".join(["config", *(str(part) for part in err["loc"])]),
                    "in": "body",
                    "message": err["msg"],
                }
                for err in exc.errors(include_url=False, include_input=False)
            ],
        ) from None


def _split(model: ProviderConfigBase) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what ``config`` stores, the secret fields)."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=False)
    secrets = {k: data.pop(k) for k in model.SECRET_FIELDS if k in data}
    return data, {k: v for k, v in secrets.items() if v is not None}


async def _check_roles(ctx: Acting, model: ProviderConfigBase) -> None:
    mapping = getattr(model, "role_mapping", {}) or {}
    names = {getattr(model, "default_role", "viewer"), *mapping.values()}
    roles = {
        r.name: r
        for r in (await ctx.db.execute(select(Role).where(Role.name.in_(names)))).scalars()
    }
    for name in sorted(names):
        role = roles.get(name)
        field = (
            "config.defaultRole"
            if name == getattr(model, "default_role", None)
            else ("config.roleMapping")
        )
        if role is None:
            raise Unprocessable(
                f"The tenant has no role named {name!r}.",
                errors=[{"field": field, "in": "body", "message": "unknown role"}],
            )
        if missing_to_assign(ctx.me(), role) is not None:
            raise Unprocessable(
                f"You may not hand out the role {name!r} through an identity provider.",
                errors=[{"field": field, "in": "body", "message": "role beyond your own"}],
            )


def _initial_secrets(provider_type: str) -> dict[str, Any]:
    """A new SAML provider gets its SP key pair (``saml_keys.initial_secrets``, when there)."""
    if provider_type != SAML:
        return {}
    try:
        from kanvaro.identity.sso import saml_keys
    except ImportError:  # pragma: no cover - SAML not installed in this build
        return {}
    make = getattr(saml_keys, "initial_secrets", None)
    return dict(make()) if make is not None else {}


async def _name_free(ctx: Acting, name: str, keep: uuid.UUID | None = None) -> None:
    found = (
        await ctx.db.execute(select(SsoProvider.id).where(SsoProvider.name == name))
    ).scalar_one_or_none()
    if found is not None and found != keep:
        raise Conflict(
            "The tenant has a provider of this name.",
            errors=[{"field": "name", "in": "body", "message": "already used"}],
        )


async def create(ctx: Acting, data: ProviderIn) -> SsoProvider:
    model = validate(data.provider_type, data.config)
    await _check_roles(ctx, model)
    await _name_free(ctx, data.name)
    stored, secrets = _split(model)
    provider = SsoProvider(
        id=uuid.uuid4(),
        tenant_id=ctx.tenant_id,
        provider_type=data.provider_type,
        name=data.name,
        enabled=data.enabled,
        config=stored,
    )
    set_secret_values(provider, {**_initial_secrets(data.provider_type), **secrets})
    stamp(provider, ctx, created=True)
    ctx.db.add(provider)
    await ctx.db.flush()
    await ctx.record(
        "api:sso_provider:create",
        category="system",
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={
            "providerType": provider.provider_type,
            "name": provider.name,
            "enabled": provider.enabled,
            "secretsSet": sorted(secrets),
        },
    )
    return provider


async def list_all(ctx: Acting) -> list[SsoProvider]:
    rows = await ctx.db.execute(select(SsoProvider).order_by(SsoProvider.name))
    return list(rows.scalars())


async def enabled_providers(db: AsyncSession, tenant_id: uuid.UUID) -> list[SsoProvider]:
    """The tenant's enabled providers, by name (its sign-in page lists them)."""
    rows = await db.execute(
        select(SsoProvider)
        .where(SsoProvider.tenant_id == tenant_id, SsoProvider.enabled.is_(True))
        .order_by(SsoProvider.name)
    )
    return list(rows.scalars())


async def get(ctx: Acting, provider_id: uuid.UUID) -> SsoProvider:
    return await get_or_404(
        ctx.db, select(SsoProvider).where(SsoProvider.id == provider_id), NOT_FOUND
    )


async def update(
    ctx: Acting, provider_id: uuid.UUID, data: ProviderPatch, if_match: str | None
) -> SsoProvider:
    provider = await get(ctx, provider_id)
    check_version(provider.version, data.version, if_match)
    changed: dict[str, Any] = {}
    if data.name is not None and data.name != provider.name:
        await _name_free(ctx, data.name, keep=provider.id)
        changed["name"] = data.name
        provider.name = data.name
    if data.enabled is not None and data.enabled != provider.enabled:
        changed["enabled"] = data.enabled
        provider.enabled = data.enabled
    if data.config is not None:
        schema = schemas.config_schemas()[provider.provider_type]
        kept = secret_values(provider)
        incoming = dict(data.config)
        for key in schema.SECRET_FIELDS:  # left out: keep the stored one
            if key not in incoming and kept.get(key) is not None:
                incoming[key] = kept[key]
        model = validate(provider.provider_type, incoming)
        await _check_roles(ctx, model)
        stored, secrets = _split(model)
        changed["config"] = sorted(k for k in stored if stored[k] != provider.config.get(k))
        changed["secretsChanged"] = sorted(k for k in secrets if secrets[k] != kept.get(k))
        provider.config = stored
        others = {k: v for k, v in kept.items() if k not in schema.SECRET_FIELDS}
        set_secret_values(provider, {**others, **secrets})
    stamp(provider, ctx)
    await ctx.db.flush()
    await ctx.record(
        "api:sso_provider:update",
        category="system",
        resource_type="sso_provider",
        resource_id=provider.id,
        changes=changed,
    )
    return provider


async def delete(ctx: Acting, provider_id: uuid.UUID) -> None:
    """Remove a provider; the sessions it opened end with it (offboarding the IdP)."""
    from kanvaro.identity.sso.sign_in import end_provider_sessions

    provider = await get(ctx, provider_id)
    ended = await end_provider_sessions(ctx.db, provider, reason="sso_provider_deleted")
    await ctx.db.delete(provider)
    await ctx.db.flush()
    await ctx.record(
        "api:sso_provider:delete",
        category="system",
        resource_type="sso_provider",
        resource_id=provider_id,
        changes={"name": provider.name, "sessionsEnded": ended},
    )
