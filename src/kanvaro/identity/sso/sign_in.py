"""What every protocol calls once it has validated the IdP's answer: who the answer names in
this tenant, and the session (or Kanvaro's own second step) for him.

The rules, in order (each refusal is audited, and answers a problem in words):

* the provider must be enabled and its tenant active;
* the address must be one the tenant allows (its SSO policy's allowed domains, the domains
  it verified by DNS, and the provider's own ``domains``) - none means none allowed (fail
  closed);
* the IdP's subject, once linked, names the user for good (an address change at the IdP
  does not move the link); an unlinked subject whose address matches an existing account is
  linked only when the IdP vouches for the address (``email_verified``) and the tenant's
  policy allows linking; otherwise, with JIT provisioning on and a vouched address, the
  account is created without a password;
* the role comes from the group mapping (first entry whose group the user has, else the
  default, ``viewer``); once the mapping names any group the IdP manages roles and each
  sign-in applies it; break-glass admins are never changed by an IdP;
* MFA: ``trust_idp`` accepts the IdP's word (amr/acr, AuthnContext) as the second factor,
  otherwise (and in ``kanvaro`` mode always) the tenant's own MFA rules ask for Kanvaro's
  second step exactly as after a password;
* the session opens through ``identity.auth`` (risk assessment, session policy, audit) with
  ``sso`` as its method; the ``sso_sessions`` row ties it to the IdP's session for logout,
  and the session ends no later than the IdP says its own does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import record_surviving
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import switch_tenant, utcnow
from kanvaro.identity import auth
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.mfa.models import MfaChallenge
from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sessions import signin
from kanvaro.identity.sessions.signin import SignInRequest
from kanvaro.identity.sso import domains
from kanvaro.identity.sso import policy as sso_policy
from kanvaro.identity.sso.errors import SsoRefused
from kanvaro.identity.sso.models import SsoIdentity, SsoProvider, SsoSession
from kanvaro.identity.sso.providers import typed_config
from kanvaro.services import Services
from kanvaro.tenancy.models import Role, Tenant

security_log = structlog.get_logger("kanvaro.security")

SSO_METHOD = "sso"  # the session's auth method (``amr``)
IDP_MFA = "idp_mfa"  # the second "method" when the IdP's MFA is trusted
SSO_LOGOUT = "sso_logout"


@dataclass(frozen=True)
class ExternalIdentity:
    """Who a validated IdP answer names. The protocol fills it; nothing here is trusted
    beyond what the protocol checked."""

    subject: str
    email: str | None
    email_verified: bool
    first_name: str | None = None
    last_name: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    idp_session_id: str | None = None
    mfa_asserted: bool = False
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # the subject and address are personal data: not in logs
        return f"ExternalIdentity(mfa_asserted={self.mfa_asserted})"


@dataclass(frozen=True)
class SignedIn:
    pair: auth.TokenPair
    user_id: uuid.UUID
    session_id: uuid.UUID

    def __repr__(self) -> str:
        return f"SignedIn(user_id={self.user_id}, session_id={self.session_id})"


async def _refuse(
    services: Services,
    provider: SsoProvider,
    reason: str,
    detail: str,
    context: AuditContext,
    user_id: uuid.UUID | None = None,
) -> NoReturn:
    security_log.warning(
        "sso_refused", reason=reason, provider_id=str(provider.id), ip=context.ip_address
    )
    await record_surviving(
        services,
        action="auth:sso:refused",
        category="authentication",
        tenant_id=provider.tenant_id,
        context=AuditContext(user_id, context.ip_address, context.user_agent),
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={"reason": reason},
    )
    raise SsoRefused(detail, reason=reason)


def _allowed_domains(policy: sso_policy.SsoPolicy, provider_domains: list[str]) -> set[str]:
    """The domains SSO may sign in, compared in their IDNA form (the DNS-verified ones are
    stored so; named ones may be written either way)."""
    named = (*policy.allowed_domains, *policy.verified_domains, *provider_domains)
    return {domains.comparable(d) for d in named}


def _role_name(cfg: object, groups: tuple[str, ...]) -> tuple[str, bool]:
    """(role name, whether the IdP manages roles)."""
    mapping: dict[str, str] = getattr(cfg, "role_mapping", {}) or {}
    have = set(groups)
    for group, role in mapping.items():
        if group in have:
            return role, True
    return getattr(cfg, "default_role", "viewer") or "viewer", bool(mapping)


def _name(value: str | None, fallback: str) -> str:
    text = " ".join((value or "").split())[:50]
    return text or fallback


async def complete(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    identity: ExternalIdentity,
    *,
    context: AuditContext,
    client: SignInRequest,
) -> SignedIn | MfaStep:
    """The user the validated answer names, provisioned or updated, and his session (or the
    second step Kanvaro asks for). ``db`` is the request's session; it is narrowed to the
    provider's tenant here."""
    await switch_tenant(db, provider.tenant_id)
    tenant = await db.get(Tenant, provider.tenant_id)
    if not provider.enabled or tenant is None or tenant.status != "active":
        await _refuse(
            services,
            provider,
            "provider_disabled",
            "This identity provider is not enabled.",
            context,
        )
    cfg = typed_config(provider)
    policy = await sso_policy.load(db)
    if not identity.subject or len(identity.subject) > 255:
        await _refuse(
            services,
            provider,
            "no_subject",
            "The identity provider named no usable subject.",
            context,
        )
    try:
        email = normalize_email(identity.email or "")
    except InvalidEmail:
        await _refuse(
            services,
            provider,
            "no_email",
            "The identity provider sent no usable email address.",
            context,
        )
    domain = email.rsplit("@", 1)[1]
    allowed = _allowed_domains(policy, list(getattr(cfg, "domains", []) or []))
    if domains.comparable(domain) not in allowed:
        await _refuse(
            services,
            provider,
            "domain_not_allowed",
            f"Addresses at {domain} may not sign in to this organization.",
            context,
        )
    user = await _user_for(services, db, provider, cfg, policy, identity, email, context)
    if not user.is_active:
        await _refuse(
            services, provider, "user_inactive", "This account is deactivated.", context, user.id
        )
    if getattr(cfg, "require_idp_mfa", False) and not identity.mfa_asserted:
        await _refuse(
            services,
            provider,
            "idp_mfa_missing",
            "The identity provider did not confirm a second factor, and this "
            "provider requires one.",
            context,
            user.id,
        )
    await _apply_profile(db, cfg, policy, user, identity)
    return await _open(services, db, provider, cfg, user, identity, context=context, client=client)


async def _user_for(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    cfg: object,
    policy: sso_policy.SsoPolicy,
    identity: ExternalIdentity,
    email: str,
    context: AuditContext,
) -> User:
    now = services.clock.now()
    link = (
        await db.execute(
            select(SsoIdentity).where(
                SsoIdentity.provider_id == provider.id, SsoIdentity.subject == identity.subject
            )
        )
    ).scalar_one_or_none()
    if link is not None:
        user = await db.get(User, link.user_id)
        assert user is not None  # the link cascades with the user
        link.email = email
        link.last_login_at = now
        return user
    existing = (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if existing is not None:
        if not (identity.email_verified and policy.link_existing_accounts):
            await _refuse(
                services,
                provider,
                "link_not_allowed",
                "An account with this address exists, and this organization does not "
                "link it to the identity provider (or the provider does not vouch for "
                "the address).",
                context,
                existing.id,
            )
        user = existing
        action = "auth:sso:link"
    else:
        if not getattr(cfg, "jit_provisioning", True):
            await _refuse(
                services,
                provider,
                "no_account",
                "There is no account for this address, and this provider does not create accounts.",
                context,
            )
        if not identity.email_verified:
            await _refuse(
                services,
                provider,
                "email_unverified",
                "The identity provider does not vouch for this address.",
                context,
            )
        user = await _provision(db, cfg, identity, email, provider)
        action = "auth:sso:provision"
    db.add(
        SsoIdentity(
            tenant_id=provider.tenant_id,
            provider_id=provider.id,
            subject=identity.subject,
            user_id=user.id,
            email=email,
            last_login_at=now,
        )
    )
    await db.flush()
    await audit.record(
        db,
        action=action,
        category="user_activity",
        tenant_id=provider.tenant_id,
        context=AuditContext(user.id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=user.id,
        changes={"providerId": str(provider.id)},
    )
    return user


async def _role(db: AsyncSession, name: str) -> Role | None:
    return (await db.execute(select(Role).where(Role.name == name))).scalar_one_or_none()


async def _provision(
    db: AsyncSession, cfg: object, identity: ExternalIdentity, email: str, provider: SsoProvider
) -> User:
    """A new account for an IdP's user: no password (it signs in through the IdP), the
    mapped role."""
    name, _ = _role_name(cfg, identity.groups)
    role = await _role(db, name)
    user = User(
        id=uuid.uuid4(),
        tenant_id=provider.tenant_id,
        email=email,
        first_name=_name(identity.first_name, email.split("@", 1)[0][:50]),
        last_name=_name(identity.last_name, "-"),
        role_id=role.id if role is not None else None,
        is_active=True,
        password_hash=None,
    )
    async with db.begin_nested():
        db.add(user)
        await db.flush()
    return user


async def _apply_profile(
    db: AsyncSession,
    cfg: object,
    policy: sso_policy.SsoPolicy,
    user: User,
    identity: ExternalIdentity,
) -> None:
    """Names and, when the IdP manages roles, the role, from this sign-in."""
    first = _name(identity.first_name, user.first_name)
    last = _name(identity.last_name, user.last_name)
    if (first, last) != (user.first_name, user.last_name):
        user.first_name, user.last_name = first, last
    name, managed = _role_name(cfg, identity.groups)
    if managed and user.id not in policy.break_glass_user_ids:
        role = await _role(db, name)
        if role is not None and role.id != user.role_id:
            user.role_id = role.id
            await audit.record(
                db,
                action="api:user:update",
                category="permissions",
                tenant_id=user.tenant_id,
                context=AuditContext(user.id, None, None),
                resource_type="user",
                resource_id=user.id,
                changes={"role": {"to": name}, "by": "sso_group_mapping"},
            )
    await db.flush()


async def _open(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    cfg: object,
    user: User,
    identity: ExternalIdentity,
    *,
    context: AuditContext,
    client: SignInRequest,
) -> SignedIn | MfaStep:
    trusted = getattr(cfg, "mfa_mode", "trust_idp") == "trust_idp" and identity.mfa_asserted
    factor = auth.FirstFactor(
        user.id,
        user.tenant_id,
        SSO_METHOD,
        user.password_hash,
        second=IDP_MFA if trusted else None,
    )
    now = services.clock.now()
    session_policy = await auth.session_policy(services, user.tenant_id, db)
    expires = now + session_policy.absolute_timeout
    if identity.expires_at is not None and identity.expires_at < expires:
        expires = identity.expires_at
    assessment = await signin.assess(
        services,
        db,
        user_id=user.id,
        tenant_id=user.tenant_id,
        request=client,
        policy=session_policy,
        now=now,
    )
    enrollment_only = False
    if not trusted:
        step = await auth.second_step(
            services, db, factor, assessment, context=context, now=now, first_method=SSO_METHOD
        )
        if isinstance(step, MfaStep):
            _record(db, provider, user, identity, expires, mfa_challenge_id=step.challenge_id)
            await db.flush()
            return step
        enrollment_only = step
    opened = await auth.open_session(
        services,
        db,
        factor,
        context=context,
        client=client,
        assessment=assessment,
        mfa_done=trusted,
        enrollment_only=enrollment_only,
    )
    await _bound_session(db, opened.id, expires)
    _record(db, provider, user, identity, expires, user_session_id=opened.id)
    await db.flush()
    pair = await auth.issue_tokens(services, db, opened)
    return SignedIn(pair, user.id, opened.id)


def _record(
    db: AsyncSession,
    provider: SsoProvider,
    user: User,
    identity: ExternalIdentity,
    expires: datetime,
    *,
    user_session_id: uuid.UUID | None = None,
    mfa_challenge_id: uuid.UUID | None = None,
) -> None:
    db.add(
        SsoSession(
            tenant_id=provider.tenant_id,
            user_id=user.id,
            provider_id=provider.id,
            session_id=(identity.idp_session_id or "")[:255],
            subject=identity.subject,
            user_session_id=user_session_id,
            mfa_challenge_id=mfa_challenge_id,
            expires_at=expires,
            created_at=_now(),
        )
    )


def _now() -> datetime:
    return utcnow()


async def _bound_session(db: AsyncSession, session_id: uuid.UUID, expires: datetime) -> None:
    """Our session ends no later than the IdP's (SAML ``SessionNotOnOrAfter``)."""
    await db.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.expires_at > expires)
        .values(expires_at=expires)
    )


async def after_second_step(
    db: AsyncSession, *, challenge_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """An SSO sign-in finished Kanvaro's second step: its SSO session now names the session
    (so that logout from the IdP finds it). Called by ``auth.complete_second_step``."""
    row = (
        await db.execute(select(SsoSession).where(SsoSession.mfa_challenge_id == challenge_id))
    ).scalar_one_or_none()
    if row is None:
        return
    row.user_session_id = session_id
    row.mfa_challenge_id = None
    await _bound_session(db, session_id, row.expires_at)
    await db.flush()


async def end_sso_sessions(
    services: Services,
    db: AsyncSession,
    provider: SsoProvider,
    *,
    idp_session_id: str | None = None,
    subject: str | None = None,
    context: AuditContext,
) -> int:
    """Logout from the IdP (OIDC back-channel, SAML SLO): end the sessions it opened for this
    IdP session, or, with only a subject, every session of that subject through this provider.
    Audited; the number ended (0 is no error: the IdP may tell us twice)."""
    if not idp_session_id and not subject:
        return 0
    await switch_tenant(db, provider.tenant_id)
    query = select(SsoSession).where(
        SsoSession.provider_id == provider.id, SsoSession.ended_at.is_(None)
    )
    if idp_session_id:
        query = query.where(SsoSession.session_id == idp_session_id)
    if subject:
        query = query.where(SsoSession.subject == subject)
    rows = list((await db.execute(query)).scalars())
    ended = await _end(db, rows, reason=SSO_LOGOUT)
    await audit.record(
        db,
        action="auth:sso:logout",
        category="authentication",
        tenant_id=provider.tenant_id,
        context=context,
        resource_type="sso_provider",
        resource_id=provider.id,
        changes={"sessionsEnded": ended, "bySession": bool(idp_session_id)},
    )
    return ended


async def _end(db: AsyncSession, rows: list[SsoSession], *, reason: str) -> int:
    now = _now()
    ended = 0
    for row in rows:
        row.ended_at = now
        if row.user_session_id is not None:
            ended += int(await auth.revoke_session(db, row.user_session_id, reason=reason))
        if row.mfa_challenge_id is not None:  # a second step still open: void it
            await db.execute(
                update(MfaChallenge)
                .where(MfaChallenge.id == row.mfa_challenge_id, MfaChallenge.used_at.is_(None))
                .values(used_at=now)
            )
    await db.flush()
    return ended


async def end_provider_sessions(db: AsyncSession, provider: SsoProvider, *, reason: str) -> int:
    """Every open session a provider opened (the provider is being deleted)."""
    rows = list(
        (
            await db.execute(
                select(SsoSession).where(
                    SsoSession.provider_id == provider.id, SsoSession.ended_at.is_(None)
                )
            )
        ).scalars()
    )
    return await _end(db, rows, reason=reason)
