"""Single sign-on (issue 13, seed 004 ``sso_providers`` / ``sso_sessions``): a tenant's
identity providers, the links between an IdP's subject and our user, the SSO sessions (the
IdP's session next to ours, for logout), the tenant's SSO policy, the email domains it proved
by DNS (home-realm discovery), the short-lived records of a sign-in in flight, and the
assertion ids already seen (replay).

Secrets (an OIDC client secret, a SAML SP private key) never sit in ``config``: they live in
``secrets`` (a JSON object), encrypted at rest under the tenant's data key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.crypto.fields import Encrypted, EncryptedText
from kanvaro.db import Base, TenantScoped, Timestamped, Versioned, new_id

SAML, OIDC, OAUTH2 = "saml", "oidc", "oauth2"
PROVIDER_TYPES = (SAML, OIDC, OAUTH2)


class SsoProvider(TenantScoped, Versioned, Base):
    """Seed ``sso_providers``: one identity provider of a tenant. ``config`` is the validated,
    secret-free configuration (camelCase, as the API takes it); ``secrets`` holds the
    JSON of the secret fields, encrypted."""

    __tablename__ = "sso_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_sso_providers_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    secrets = Encrypted("secrets_encrypted", scope="tenant")

    def __repr__(self) -> str:  # never the config's secrets
        return f"<SsoProvider {self.id} {self.provider_type} tenant={self.tenant_id}>"


class SsoIdentity(TenantScoped, Timestamped, Base):
    """An IdP's subject linked to our user: the key of every later sign-in (never the email,
    which an IdP may let its users change)."""

    __tablename__ = "sso_identities"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject", name="uq_sso_identities_provider_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sso_providers.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SsoSession(TenantScoped, Base):
    """Seed ``sso_sessions``: the IdP's session (``session_id``: OIDC ``sid``, SAML
    ``SessionIndex``) behind one of our sessions, until ``expires_at``; what logout from the
    IdP finds and ends."""

    __tablename__ = "sso_sessions"
    __table_args__ = (Index("ix_sso_sessions_provider_session", "provider_id", "session_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sso_providers.id", ondelete="CASCADE")
    )
    session_id: Mapped[str] = mapped_column(String(255))  # the IdP's; "" when it names none
    subject: Mapped[str] = mapped_column(String(255))
    user_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_sessions.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # A sign-in waiting for Kanvaro's own second factor: the MFA challenge it continues as.
    mfa_challenge_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SsoPolicyRow(TenantScoped, Versioned, Base):
    """The tenant's SSO policy (one row; defaults when none): which email domains SSO may
    sign in, whether SSO identities may be linked to existing local accounts, whether
    password sign-in is closed except for the named break-glass admins. The domains that
    route home-realm discovery are the DNS-verified ``sso_domains``, not a field here."""

    __tablename__ = "sso_policies"
    __table_args__ = (UniqueConstraint("tenant_id", name="uq_sso_policies_tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    allowed_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    link_existing_accounts: Mapped[bool] = mapped_column(Boolean, default=False)
    require_sso: Mapped[bool] = mapped_column(Boolean, default=False)
    break_glass_user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


DOMAIN_PENDING, DOMAIN_VERIFIED = "pending", "verified"


class SsoDomain(TenantScoped, Timestamped, Base):
    """An email domain a tenant claims for home-realm discovery (``domains``): verified only
    once a DNS TXT record at ``_kanvaro-challenge.<domain>`` holds this row's ``token``, and
    checked again periodically (``failures`` in a row demote it). ``domain`` is lower-case
    ASCII (IDNA A-labels). One tenant at most holds a domain verified: the partial unique
    index refuses a second, whatever row-level security lets a tenant see."""

    __tablename__ = "sso_domains"
    __table_args__ = (
        UniqueConstraint("tenant_id", "domain", name="uq_sso_domains_tenant_domain"),
        Index(
            "uq_sso_domains_verified_domain",
            "domain",
            unique=True,
            sqlite_where=text("status = 'verified'"),
            postgresql_where=text("status = 'verified'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    domain: Mapped[str] = mapped_column(String(253))
    token: Mapped[str] = mapped_column(String(64))  # published in public DNS: not a secret
    status: Mapped[str] = mapped_column(String(16), default=DOMAIN_PENDING)
    verified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed checks in a row
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:
        return f"<SsoDomain {self.id} {self.status} tenant={self.tenant_id}>"


class SsoRequest(TenantScoped, Base):
    """A sign-in in flight (OIDC state, SAML AuthnRequest): single use, short-lived, bound to
    the browser that started it (``browser_hash``: SHA-256 of a cookie only that browser
    holds). ``request_id`` is the OIDC ``state`` hash or the SAML request ID (InResponseTo);
    ``data`` (encrypted JSON) keeps nonce, PKCE verifier and the local return path."""

    __tablename__ = "sso_requests"
    __table_args__ = (UniqueConstraint("provider_id", "request_id", name="uq_sso_requests_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sso_providers.id", ondelete="CASCADE")
    )
    request_id: Mapped[str] = mapped_column(String(255))
    browser_hash: Mapped[str] = mapped_column(String(64))
    data_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    data = Encrypted("data_encrypted", scope="tenant")
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]


class SsoSeenAssertion(TenantScoped, Base):
    """An assertion (SAML ``ID``) or token id already accepted, kept until it would have
    expired anyway: a second presentation is a replay."""

    __tablename__ = "sso_seen_assertions"
    __table_args__ = (
        UniqueConstraint("provider_id", "assertion_id", name="uq_sso_seen_assertions"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sso_providers.id", ondelete="CASCADE")
    )
    assertion_id: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)
