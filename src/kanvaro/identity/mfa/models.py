"""Multi-factor authentication (seed 004 "MFA"): each user's methods, the tenant's policy, the
one-time backup codes, and the short-lived challenges of the sign-in's second step."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.crypto.fields import Encrypted, EncryptedText
from kanvaro.db import Base, TenantScoped, Timestamped, new_id

# Method names (the API's and the tables'): seed 004's, with the seed's ``u2f`` served by
# WebAuthn and backup codes as a method of their own.
TOTP, EMAIL, SMS, WEBAUTHN, BACKUP_CODE = "totp", "email", "sms", "webauthn", "backup_code"
METHODS = (TOTP, EMAIL, SMS, WEBAUTHN, BACKUP_CODE)
PHISHING_RESISTANT = frozenset({WEBAUTHN})


class MfaConfiguration(TenantScoped, Timestamped, Base):
    """Seed ``mfa_configurations``: whether the user has MFA on (one verified method or more),
    and since when a policy requires it of him (the start of his enrollment grace period)."""

    __tablename__ = "mfa_configurations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    enforced_by_policy: Mapped[bool] = mapped_column(Boolean, default=False)
    required_since: Mapped[datetime | None] = mapped_column(nullable=True)


class MfaMethod(TenantScoped, Timestamped, Base):
    """Seed ``mfa_methods``: one enrolled factor. A method is usable once ``verified_at`` is
    set (enrollment proved it works)."""

    __tablename__ = "mfa_methods"
    __table_args__ = (Index("ix_mfa_methods_user", "user_id", "method_type"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    method_type: Mapped[str] = mapped_column(String(20))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    # The address or phone number a code goes to (email, sms); under the user's key.
    identifier_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    identifier = Encrypted("identifier_encrypted", scope="user", owner="user_id")
    # TOTP secret (base32), under the user's own key: erasing the user shreds it.
    secret_encrypted: Mapped[str | None] = mapped_column(EncryptedText(), nullable=True)
    secret = Encrypted("secret_encrypted", scope="user", owner="user_id")
    device_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    device_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # TOTP: the last accepted time step; a code of that step or earlier is a replay.
    last_used_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # WebAuthn: the credential (public parts only).
    credential_id: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    aaguid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    transports: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    discoverable: Mapped[bool] = mapped_column(Boolean, default=False)
    user_verified: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:  # never the secret or identifier
        return f"<MfaMethod {self.id} {self.method_type} user={self.user_id}>"


class MfaBackupCode(TenantScoped, Base):
    """One backup code: only a hash is kept; used once (``used_at``). Regenerating replaces the
    whole set (``batch``)."""

    __tablename__ = "mfa_backup_codes"
    __table_args__ = (Index("ix_mfa_backup_codes_user", "user_id", "used_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    batch: Mapped[uuid.UUID] = mapped_column()
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MfaPolicyRow(TenantScoped, Timestamped, Base):
    """Seed ``mfa_policies`` (``MFAPolicy``), one row per tenant that changed a default."""

    __tablename__ = "mfa_policies"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, unique=True
    )
    enforce_for_roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # role names
    enforce_for_permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_methods: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(METHODS))
    backup_codes_count: Mapped[int] = mapped_column(Integer, default=10)
    totp_window: Mapped[int] = mapped_column(Integer, default=1)  # steps either side
    phishing_resistant_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    require_user_verification: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_aaguids: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: any
    enrollment_grace_days: Mapped[int] = mapped_column(Integer, default=7)
    trusted_devices_skip_mfa: Mapped[bool] = mapped_column(Boolean, default=True)


class MfaChallenge(Timestamped, Base):
    """The sign-in's second step (the login answer's ``sessionId``), or an enrollment's proof:
    short-lived, single use, attempt-limited. Holds hashes only (the code sent by mail or SMS,
    never the code)."""

    __tablename__ = "mfa_challenges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    # None for a passkey sign-in until the authenticator names its user.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    purpose: Mapped[str] = mapped_column(String(20))  # sign_in | setup | passkey
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The first factor as verified (a password change meanwhile voids the challenge).
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    first_method: Mapped[str] = mapped_column(String(20), default="password")
    # Where step 1 came from (ip, user agent): step 2 must come from the same client.
    client: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Email/SMS: the method the code went to, the code's hash and when it was sent.
    code_method_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # WebAuthn: the challenge bytes of the ceremony in progress.
    webauthn_challenge: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
