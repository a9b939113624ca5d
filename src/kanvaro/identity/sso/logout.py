"""OpenID Connect Back-Channel Logout 1.0: the IdP POSTs a signed logout token when a user's
session there ends; the sessions it opened here for that IdP session (``sid``) or user
(``sub``) end at once.

The token is checked as the spec says (§2.6): signature against the IdP's JWKS (the same
asymmetric allow-list as ID tokens), ``iss``, ``aud``, ``iat``, a ``jti`` never seen before
(replay), the back-channel logout event, ``sub`` or ``sid``, and no ``nonce``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.service import AuditContext
from kanvaro.db import switch_tenant
from kanvaro.identity.sso import oidc, providers, requests, sign_in
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import OIDC, SsoProvider
from kanvaro.services import Services

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_AGE = timedelta(minutes=10)  # a logout token older than this is refused (with the skew)


def _refused(why: str) -> SsoRefused:
    return SsoRefused(f"The logout token was not accepted: {why}.", reason="logout_token")


async def verify(services: Services, provider: SsoProvider, token: str | None) -> dict[str, Any]:
    if provider.provider_type != OIDC:
        raise _refused("this provider is not OpenID Connect")
    if not token or len(token) > 16_384:
        raise _refused("missing")
    cfg = providers.typed_config(provider)
    settings = services.settings
    found = await oidc.endpoints(provider, cfg, settings)
    assert found.jwks_uri is not None
    registry = JWSRegistry(algorithms=list(cfg.id_token_signing_algs))
    keys = await oidc.key_set(found.jwks_uri, settings)
    try:
        try:
            decoded = jwt.decode(token, keys, registry=registry)
        except InvalidKeyIdError:
            keys = await oidc.key_set(found.jwks_uri, settings, fresh=True)
            decoded = jwt.decode(token, keys, registry=registry)
    except (JoseError, ValueError):
        raise _refused("bad signature") from None
    now = int(services.clock.now().timestamp())
    checks = JWTClaimsRegistry(
        now=now,
        leeway=cfg.clock_skew_seconds,
        iss={"essential": True, "value": found.issuer},
        aud={"essential": True, "value": cfg.client_id},
        iat={"essential": True},
        jti={"essential": True},
    )
    claims = decoded.claims
    try:
        checks.validate(claims)
    except JoseError as exc:
        raise _refused(f"{exc.error}") from None
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise _refused("not a back-channel logout event")
    if "nonce" in claims:
        raise _refused("it carries a nonce")
    if not (isinstance(claims.get("sub"), str) or isinstance(claims.get("sid"), str)):
        raise _refused("it names neither sub nor sid")
    if now - int(claims["iat"]) > MAX_AGE.total_seconds() + cfg.clock_skew_seconds:
        raise _refused("too old")
    return claims


async def handle(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    token: str | None,
    *,
    context: AuditContext,
) -> int:
    claims = await verify(services, provider, token)
    await switch_tenant(db, provider.tenant_id)
    expires = datetime.fromtimestamp(int(claims["iat"]), UTC) + MAX_AGE + timedelta(minutes=5)
    await requests.remember_assertion(db, provider, f"logout:{claims['jti']}", expires)
    return await sign_in.end_sso_sessions(
        services,
        db,
        provider,
        idp_session_id=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        subject=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        context=context,
    )
