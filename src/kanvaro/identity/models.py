"""People, invitations, sessions, refresh tokens and token signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.crypto.blind_index import normalize_phone, normalize_ssn
from kanvaro.crypto.fields import ConvertibleText, Encrypted, EncryptedText
from kanvaro.db import Base, TenantScoped, Timestamped, Versioned, new_id


class User(TenantScoped, Versioned, Base):
    """A person. Tenant members carry ``tenant_id``; the instance super admin has none
    (``tenant_id`` is nullable here, so tenant-scoped queries never return super admins).
    """

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        Index(
            "uq_users_instance_email",
            "email",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    # Stored lower-cased; unique per tenant (``uq_users_tenant_email``), and among the
    # instance's super admins (``uq_users_instance_email``, partial on ``tenant_id IS NULL``).
    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(50))
    last_name: Mapped[str] = mapped_column(String(50))
    # Personal data under the user's own data key (crypto-shredding), with a blind index for
    # equality search; application code reads and writes ``user.phone`` as plaintext.
    phone_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    phone_bidx: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    phone = Encrypted(
        "phone_encrypted",
        scope="user",
        owner="id",
        blind_index="phone_bidx",
        normalize=normalize_phone,
    )
    # The seed's SSN, optional: encrypted under the user's key while ``users.ssn`` is listed in
    # KANVARO_ENCRYPTED_FIELDS (the default), else plaintext until ``kanvaro keys encrypt-field``.
    ssn_stored: Mapped[str | None] = mapped_column("ssn", ConvertibleText(), nullable=True)
    ssn_bidx: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    ssn = Encrypted(
        "ssn_stored",
        scope="user",
        owner="id",
        blind_index="ssn_bidx",
        normalize=normalize_ssn,
        convertible=True,
    )
    role_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("roles.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    is_super_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:  # never the hash
        return f"<User {self.id} tenant={self.tenant_id}>"


class Invitation(TenantScoped, Timestamped, Base):
    """A one-time invitation; only the SHA-256 of its token is stored."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)


class UserSession(TenantScoped, Timestamped, Base):
    """A login: one refresh-token family. Revoking it ends every token issued under it."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_active", "user_id", "is_active"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(255), default="")
    device_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    auth_methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_activity_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # Seed 004: SHA-256 of the newest access and refresh token issued (never the tokens).
    access_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When the user last proved who he is in this session (sign-in, or POST /auth/reauth):
    # what step-up for sensitive permissions compares against.
    authenticated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Sign-in risk: the score, its reasons, the place (GeoIP, when configured) and network.
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    risk_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    network: Mapped[str | None] = mapped_column(String(49), nullable=True)
    # SHA-256 of the one-time token in a "was this you?" email's revoke link.
    revoke_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)


class RefreshToken(Base):
    """One refresh token of a session's family; presenting a used one revokes the family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True
    )
    # Not TenantScoped (refresh runs before the tenant is known); RLS still binds it.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The family's order: the first token of a session is 0, each rotation adds one.
    generation: Mapped[int] = mapped_column(Integer, default=0)


class SigningKey(Timestamped, Base):
    """An Ed25519 token-signing key. The private half is stored encrypted."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(20), default="EdDSA")
    public_key: Mapped[str] = mapped_column(Text)  # PEM
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Retired keys keep verifying until every token they signed has expired.
    retired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    verify_until: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:
        return f"<SigningKey {self.kid}>"
