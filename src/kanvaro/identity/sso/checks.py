"""``POST /api/v1/sso/providers/{id}/test``: what is wrong with a provider, in words.

It checks what a sign-in would need without signing anyone in: the config against its
schema, the mapped roles, the tenant's domains, and the IdP itself (OIDC: discovery with a
matching issuer, the endpoints, a JWKS with keys, the algorithms; OAuth2: the URLs; SAML:
``saml_manage.check``).
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from kanvaro.acting import Acting
from kanvaro.identity.sso import domains, oidc, policy, providers, schemas
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import OIDC, SAML, SsoProvider
from kanvaro.tenancy.models import Role


async def run(ctx: Acting, provider: SsoProvider) -> dict[str, Any]:
    problems: list[str] = []
    checked: list[str] = ["config"]
    try:
        cfg = providers.typed_config(provider)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"config.{where}: {err['msg']}")
        return {"ok": False, "problems": problems, "checked": checked}
    if not provider.enabled:
        problems.append("The provider is disabled: nobody can sign in with it.")
    checked.append("roles")
    names = {getattr(cfg, "default_role", "viewer"), *getattr(cfg, "role_mapping", {}).values()}
    found = set((await ctx.db.execute(select(Role.name).where(Role.name.in_(names)))).scalars())
    problems += [f"The role {n!r} does not exist in this tenant." for n in sorted(names - found)]
    checked.append("domains")
    tenant_policy = await policy.current(ctx)
    if not (
        {
            *tenant_policy.allowed_domains,
            *tenant_policy.verified_domains,
            *getattr(cfg, "domains", []),
        }
    ):
        problems.append(
            "No email domain is allowed for SSO: set allowedDomains in the SSO policy or "
            "domains on the provider, or every sign-in is refused."
        )
    proven = set(tenant_policy.verified_domains)  # DNS-verified, IDNA form
    stray = {d for d in getattr(cfg, "domains", []) if domains.comparable(d) not in proven}
    if stray:
        problems.append(
            "Home-realm discovery ignores domains the tenant has not verified by DNS "
            "(/api/v1/sso/domains): " + ", ".join(sorted(stray)) + "."
        )
    if provider.provider_type == SAML:
        checked.append("saml")
        problems += await _saml(provider, cfg)
    else:
        checked.append("idp")
        problems += await _oauth(ctx, provider, cfg)
    # A test reaches out to the IdP in the tenant's name: who ran it, and what it found.
    await ctx.record(
        "api:sso_provider:test",
        category="system",
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={"ok": not problems, "problems": len(problems)},
    )
    return {"ok": not problems, "problems": problems, "checked": checked}


async def _oauth(ctx: Acting, provider: SsoProvider, cfg: Any) -> list[str]:
    settings = ctx.services.settings
    problems: list[str] = []
    oidc.forget_caches()
    try:
        found = await oidc.endpoints(provider, cfg, settings)
    except SsoRefused as exc:
        return [exc.detail]
    if provider.provider_type == OIDC:
        assert isinstance(cfg, schemas.OIDCConfig)
        meta = await oidc.discover(cfg, settings)
        offered = set(meta.get("id_token_signing_alg_values_supported") or ())
        if offered and not offered & set(cfg.id_token_signing_algs):
            problems.append(
                "The IdP signs ID tokens with "
                + ", ".join(sorted(offered))
                + "; none of them is accepted (idTokenSigningAlgs)."
            )
        methods = set(meta.get("code_challenge_methods_supported") or ())
        if methods and "S256" not in methods:
            problems.append("The IdP does not offer PKCE with S256.")
        scopes = set(meta.get("scopes_supported") or ())
        missing = [s for s in cfg.scopes if scopes and s not in scopes]
        if missing:
            problems.append("The IdP does not offer the scopes " + ", ".join(missing) + ".")
        if not cfg.client_secret and cfg.token_endpoint_auth_method != "none":
            problems.append("No client secret is set for a confidential client.")
        try:
            assert found.jwks_uri is not None
            keys = await oidc.key_set(found.jwks_uri, settings)
            if not keys.keys:
                problems.append("The IdP's JWKS holds no keys.")
        except SsoRefused as exc:
            problems.append(exc.detail)
    return problems


async def _saml(provider: SsoProvider, cfg: Any) -> list[str]:
    try:
        from kanvaro.identity.sso import saml_manage
    except ImportError:  # pragma: no cover
        return ["SAML is not available in this build."]
    check = getattr(saml_manage, "check", None)
    if check is None:
        return []
    result = check(provider, cfg)
    if inspect.isawaitable(result):
        result = await result
    return list(result)
