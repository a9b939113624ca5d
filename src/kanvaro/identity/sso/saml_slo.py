"""SAML single logout (saml-profiles-2.0-os §4.4), HTTP-Redirect binding, where the IdP
supports it (a ``logoutUrl`` in the provider's config or its metadata).

IdP-initiated: the IdP's signed LogoutRequest ends the sessions it opened for that IdP session
(``SessionIndex``), or for the subject when it names no session, and we answer with a signed
LogoutResponse. This is offboarding's path: disabling a person at the IdP logs him out here.
An unsigned or wrongly signed request changes nothing (python3-saml verifies the redirect
signature against the IdP's certificates; the settings demand one).

SP-initiated: ``logout_redirect`` sends the browser to the IdP with a signed LogoutRequest for
the SSO session being ended here; the IdP's LogoutResponse only needs to be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.audit.service import AuditContext
from kanvaro.identity import account
from kanvaro.identity.sso import saml, sign_in
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import SAML, SsoProvider, SsoSession
from kanvaro.services import Services


@dataclass(frozen=True)
class LogoutHandled:
    redirect: str | None  # where to send the browser (the IdP, with our LogoutResponse)
    sessions_ended: int


def _auth(view: saml.SamlProvider, query: dict[str, str]) -> OneLogin_Saml2_Auth:
    data = saml.request_data(view.endpoints.slo, get=query)
    return OneLogin_Saml2_Auth(data, old_settings=saml.library_settings(view, logout=True))


async def handle(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    view: saml.SamlProvider,
    query: dict[str, str],
    *,
    context: AuditContext,
) -> LogoutHandled:
    """A message from the IdP at our SLO endpoint: a LogoutRequest (end sessions, answer)
    or the LogoutResponse to one we sent (nothing left to do)."""
    if not view.config.logout_url:
        raise SsoRefused("Single logout is not configured for this provider.", reason="no_slo")
    if "SAMLRequest" not in query and "SAMLResponse" not in query:
        raise SsoRefused("No SAML logout message.", reason="slo_missing")
    auth = _auth(view, query)
    try:
        redirect = auth.process_slo(keep_local_session=True)
    except Exception:
        raise SsoRefused("The logout message is not readable SAML.", reason="slo_invalid") from None
    if auth.get_errors():
        raise SsoRefused(
            "The identity provider's logout message was refused (signature, issuer, "
            "destination or time).",
            reason="slo_refused",
        )
    if "SAMLResponse" in query:
        return LogoutHandled(None, 0)
    xml = auth.get_last_request_xml()
    subject = OneLogin_Saml2_Logout_Request.get_nameid(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    ended = 0
    if indexes:
        for index in indexes:
            ended += await sign_in.end_sso_sessions(
                services, db, provider, idp_session_id=index, subject=subject, context=context
            )
    else:
        ended = await sign_in.end_sso_sessions(
            services, db, provider, subject=subject, context=context
        )
    return LogoutHandled(redirect, ended)


def logout_redirect(
    view: saml.SamlProvider, *, subject: str, session_index: str | None, return_to: str
) -> str | None:
    """The IdP URL that ends the IdP's session too, or None when it has no SLO."""
    if not view.config.logout_url:
        return None
    auth = _auth(view, {})
    return auth.logout(
        return_to=return_to,
        name_id=subject,
        session_index=session_index or None,
        name_id_format=view.config.name_id_format,
    )


async def sp_logout(ctx: Acting) -> str | None:
    """The caller signs out here: his session ends now, and when it came from a SAML IdP with
    single logout, the signed LogoutRequest URL that ends the IdP's session too (the browser
    goes there; the IdP sends it back to our SLO endpoint)."""
    principal = ctx.me()
    row = (
        await ctx.db.execute(
            select(SsoSession).where(
                SsoSession.user_session_id == principal.session_id,
                SsoSession.ended_at.is_(None),
            )
        )
    ).scalar_one_or_none()
    provider = await ctx.db.get(SsoProvider, row.provider_id) if row is not None else None
    if row is not None:
        row.ended_at = ctx.services.clock.now()
        await ctx.db.flush()
    await account.logout(ctx)
    if row is None or provider is None or provider.provider_type != SAML:
        return None
    from kanvaro.identity.sso.saml_login import protocol_view

    view = protocol_view(ctx.services, provider)
    return logout_redirect(
        view,
        subject=row.subject,
        session_index=row.session_id or None,
        return_to=f"{ctx.services.settings.public_url.rstrip('/')}/sign-in",
    )
