"""SAML sign-in as actions: start one (SP-initiated), accept the IdP's answer at the ACS, and
hand the validated identity to ``sign_in.complete`` like every protocol does.

The AuthnRequest's ID is recorded as a single-use request bound to this browser
(``requests``), so the ACS knows which InResponseTo to expect and refuses an answer that a
different browser started (login CSRF). The assertion's ID is remembered until it expires
(replay). The return path is kept on our side with the request; the RelayState an IdP sends
back is only trusted, and only as a local path, for an IdP-initiated sign-in the provider
allows. No web framework here: the routes pass in cookies and form values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import record_surviving
from kanvaro.audit.service import AuditContext
from kanvaro.errors import NotFound
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.sessions.signin import SignInRequest
from kanvaro.identity.sso import requests, saml, saml_acs, sign_in
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import SAML, SsoProvider
from kanvaro.identity.sso.providers import secret_values, typed_config
from kanvaro.identity.sso.saml_schema import SAMLConfig
from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")
DEFAULT_RETURN = "/"


def local_path(value: str | None) -> str | None:
    """``value`` if it is a path on this site, else None: no scheme, no host, no
    protocol-relative ``//`` or ``/\\`` (browsers read both as another host), no control
    characters. An open redirect through RelayState is so impossible."""
    if not value or len(value) > 1024 or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or any(ord(c) < 0x21 or c == "\\" for c in value):
        return None
    return value


async def load(db: AsyncSession, provider_id: uuid.UUID) -> SsoProvider:
    """A SAML provider by id, in any tenant (the public endpoints name only the provider);
    404 for an unknown id and for a provider of another type alike."""
    row = (
        await db.execute(
            select(SsoProvider).where(
                SsoProvider.id == provider_id, SsoProvider.provider_type == SAML
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("No such SAML identity provider.")
    return row


def protocol_view(services: Services, provider: SsoProvider) -> saml.SamlProvider:
    cfg = typed_config(provider)
    assert isinstance(cfg, SAMLConfig)
    return saml.SamlProvider(
        provider.id,
        provider.tenant_id,
        cfg,
        secret_values(provider),
        saml.Endpoints.of(services.settings.public_url, provider.id),
    )


def metadata(services: Services, provider: SsoProvider) -> str:
    return saml.metadata(protocol_view(services, provider))


async def begin(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    return_to: str | None,
    cookies: Any,
) -> tuple[str, str]:
    """Start an SP-initiated sign-in: (the IdP URL to send the browser to, the browser
    secret to set as ``requests.BROWSER_COOKIE`` with SameSite=None — the IdP's answer
    arrives as a cross-site POST, which a Lax cookie would not accompany)."""
    if not provider.enabled:
        raise SsoRefused("This identity provider is not enabled.", reason="provider_disabled")
    view = protocol_view(services, provider)
    secret = requests.browser_secret(dict(cookies or {}))
    target = local_path(return_to) or DEFAULT_RETURN
    redirect = saml.login_redirect(view, target)
    await requests.start(
        db, services, provider, request_id=redirect.request_id, data={"returnTo": target},
        secret=secret,
    )  # fmt: skip
    return redirect.url, secret


@dataclass(frozen=True)
class Accepted:
    outcome: sign_in.SignedIn | MfaStep
    return_to: str


def _identity(view: saml.SamlProvider, found: saml_acs.SamlAssertion) -> sign_in.ExternalIdentity:
    return sign_in.ExternalIdentity(
        subject=found.subject,
        email=found.email,
        email_verified=view.config.asserts_verified_email,
        first_name=found.first_name,
        last_name=found.last_name,
        groups=found.groups,
        idp_session_id=found.session_index,
        mfa_asserted=found.mfa_asserted,
        expires_at=found.session_expires_at,
    )


async def _refused(
    services: Services, provider: SsoProvider, reason: str, context: AuditContext
) -> None:
    security_log.warning("saml_refused", reason=reason, provider_id=str(provider.id),
                         ip=context.ip_address)  # fmt: skip
    await record_surviving(
        services,
        action="auth:sso:refused",
        category="authentication",
        tenant_id=provider.tenant_id,
        context=context,
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={"reason": reason[:200], "protocol": SAML},
    )


async def accept(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    *,
    saml_response: str | None,
    relay_state: str | None,
    browser_secret: str | None,
    context: AuditContext,
    client: SignInRequest,
) -> Accepted:
    """The ACS: validate the answer, spend the request it answers, refuse a replay, sign in."""
    if not provider.enabled:
        raise SsoRefused("This identity provider is not enabled.", reason="provider_disabled")
    view = protocol_view(services, provider)
    now = services.clock.now()
    skew = timedelta(seconds=view.config.clock_skew_seconds)
    try:
        in_response_to = saml_acs.peek_in_response_to(saml_response)
        if in_response_to is not None:
            data = await requests.consume(
                db, services, provider, request_id=in_response_to, secret=browser_secret
            )
            return_to = local_path(data.get("returnTo")) or DEFAULT_RETURN
        else:
            return_to = local_path(relay_state) or DEFAULT_RETURN
        found = saml_acs.validate(
            view, saml_response or "", request_id=in_response_to, now=now, skew=skew
        )
        await requests.remember_assertion(db, provider, found.assertion_id, found.expires_at)
    except SsoRefused as exc:
        await _refused(services, provider, getattr(exc, "reason", None) or exc.detail, context)
        raise
    outcome = await sign_in.complete(
        services, db, provider, _identity(view, found), context=context, client=client
    )
    return Accepted(outcome, return_to)
