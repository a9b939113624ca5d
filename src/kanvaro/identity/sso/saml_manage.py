"""Admin actions on a SAML provider's own side: rolling our SP key over, and the checks the
provider "test" reports in words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography import x509

from kanvaro.acting import Acting
from kanvaro.errors import NotFound
from kanvaro.identity.sso import providers, saml_keys
from kanvaro.identity.sso.models import SAML, SsoProvider
from kanvaro.identity.sso.saml_schema import SAMLConfig

Step = Literal["start", "complete"]


async def get(ctx: Acting, provider_id: uuid.UUID) -> SsoProvider:
    """A SAML provider of the acting tenant (404 for another type, as for an unknown id)."""
    provider = await providers.get(ctx, provider_id)
    if provider.provider_type != SAML:
        raise NotFound("No such SAML identity provider.")
    return provider


async def rollover(ctx: Acting, provider_id: uuid.UUID, step: Step) -> SsoProvider:
    """``start``: a next key pair, published in the metadata beside the current one (give the
    IdP time to load it); ``complete``: sign with it from now on, drop the old one."""
    provider = await get(ctx, provider_id)
    secrets = providers.secret_values(provider)
    now = ctx.services.clock.now()
    if step == "start":
        changed = saml_keys.start_rollover(secrets, f"kanvaro-sp-{provider.id}", now)
    else:
        changed = saml_keys.complete_rollover(secrets)
    providers.set_secret_values(provider, changed)
    await ctx.db.flush()
    await ctx.record(
        f"sso:saml_key:rollover_{step}",
        category="system",
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={
            "current": saml_keys.fingerprint(saml_keys.current(changed)["cert"]),
            "next": (
                saml_keys.fingerprint(nxt["cert"]) if (nxt := saml_keys.upcoming(changed)) else None
            ),
        },
    )
    return provider


def key_status(provider: SsoProvider) -> dict[str, Any]:
    """Fingerprints (SHA-256) of the current and next SP certificates: what an admin
    compares with what the IdP shows."""
    secrets = providers.secret_values(provider)
    nxt = saml_keys.upcoming(secrets)
    return {
        "current": saml_keys.fingerprint(saml_keys.current(secrets)["cert"]),
        "next": saml_keys.fingerprint(nxt["cert"]) if nxt else None,
    }


def _expiry(body: str) -> datetime:
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc


async def check(provider: SsoProvider, config: Any) -> list[str]:
    """What is wrong or risky with a SAML provider, in words (empty: nothing found).
    Called by the provider "test" (``POST /api/v1/sso/providers/{id}/test``)."""
    problems: list[str] = []
    if not isinstance(config, SAMLConfig):
        return ["The configuration is not a SAML configuration."]
    now = datetime.now(UTC)
    for number, body in enumerate(config.signing_certs(), start=1):
        ends = _expiry(body)
        if ends <= now:
            problems.append(f"IdP signing certificate {number} expired on {ends:%Y-%m-%d}.")
        elif ends - now < timedelta(days=30):
            problems.append(f"IdP signing certificate {number} expires on {ends:%Y-%m-%d}.")
    if not config.entry_point.startswith("https://"):
        problems.append("The IdP's SSO URL is not HTTPS: assertions could be read in transit.")
    if config.allow_sha1:
        problems.append("SHA-1 signatures are accepted: ask the IdP for RSA-SHA256.")
    if config.allow_idp_initiated:
        problems.append(
            "IdP-initiated sign-in is on: answers not bound to a request of this browser are"
            " accepted (login CSRF is possible)."
        )
    if not config.want_assertions_signed and not config.want_response_signed:
        problems.append("Neither the assertion nor the response must be signed (one is needed).")
    if not config.logout_url:
        problems.append("No single logout URL: signing out at the IdP will not end sessions here.")
    if not providers.secret_values(provider).get("spKeys"):
        problems.append("The provider has no SP key pair.")
    return problems
