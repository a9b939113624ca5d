"""A tenant's session policy and the devices its members sign in from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, TenantScoped, Timestamped, new_id


class SessionPolicyRow(TenantScoped, Timestamped, Base):
    """Seed 004 ``session_policies``: one row per tenant that changed a default (a tenant
    without a row has :class:`~kanvaro.identity.sessions.policy.SessionPolicy`'s defaults)."""

    __tablename__ = "session_policies"
    __table_args__ = (UniqueConstraint("tenant_id", name="uq_session_policies_tenant"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    idle_timeout_minutes: Mapped[int] = mapped_column(Integer, default=30)
    absolute_timeout_hours: Mapped[int] = mapped_column(Integer, default=8)
    refresh_token_rotation: Mapped[bool] = mapped_column(Boolean, default=True)
    single_device_only: Mapped[bool] = mapped_column(Boolean, default=False)
    require_reauth_permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Beyond the seed: how recent "recent re-authentication" is, the refresh grace window,
    # how long a device stays trusted, and what a sign-in's risk score leads to.
    reauth_max_age_minutes: Mapped[int] = mapped_column(Integer, default=15)
    refresh_grace_seconds: Mapped[int] = mapped_column(Integer, default=10)
    device_trust_days: Mapped[int] = mapped_column(Integer, default=30)
    risk_notify_at: Mapped[int] = mapped_column(Integer, default=30)
    risk_mfa_at: Mapped[int] = mapped_column(Integer, default=60)
    risk_deny_at: Mapped[int] = mapped_column(Integer, default=101)


class TrustedDevice(TenantScoped, Timestamped, Base):
    """Seed 004 ``trusted_devices``: a device a user signed in from, trusted or not.

    ``device_id`` is a keyed hash (the keyring's blind index) of a random secret the client
    holds (a cookie or a header value handed out at sign-in); the secret itself is never
    stored, and the User-Agent string plays no part in recognising the device.
    """

    __tablename__ = "trusted_devices"
    __table_args__ = (UniqueConstraint("user_id", "device_id", name="uq_trusted_devices_user"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Nullable like users.tenant_id: the instance super admin has devices too.
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(64))
    device_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # What the parsed User-Agent said when the device was first seen (display only).
    device_fingerprint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    is_trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    trust_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)

    def __repr__(self) -> str:
        return f"<TrustedDevice {self.id} user={self.user_id}>"
