"""Seed 004's ``rate_limit_rules`` and ``rate_limit_violations``, and the IP lists.

Every table has a nullable ``tenant_id``: NULL is the instance (a super admin's rule, a
client refused before any tenant was known), a tenant id is that tenant's own. Tenant
sessions see only their tenant's rows (automatic scoping, and RLS on PostgreSQL).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from kanvaro.db import Base, TenantScoped, Timestamped, new_id, utcnow


class _InstanceOrTenant(TenantScoped):
    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID | None]:  # type: ignore[override]
        return mapped_column(
            ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
        )


class RateLimitRule(_InstanceOrTenant, Timestamped, Base):
    """A limit on requests matching ``endpoint_pattern`` (``*`` one path segment, ``**`` the
    rest), optionally one method and one role; counted per user or per client network."""

    __tablename__ = "rate_limit_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    endpoint_pattern: Mapped[str] = mapped_column(String(255))
    method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    requests_per_minute: Mapped[int] = mapped_column(Integer)
    burst_allowance: Mapped[int] = mapped_column(Integer, default=0)
    per_user: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str | None] = mapped_column(String(100), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    def __repr__(self) -> str:
        return f"<RateLimitRule {self.id} {self.method or '*'} {self.endpoint_pattern}>"


class RateLimitViolation(_InstanceOrTenant, Base):
    """A client (or user) that went over a limit: one row per minute with refusals, and one
    per block (``blocked_until``); a lifted block keeps its row with who lifted it."""

    __tablename__ = "rate_limit_violations"
    __table_args__ = (Index("idx_ip_blocked", "ip_address", "blocked_until"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # The client's address, or its /64 for IPv6 (what it was counted under).
    ip_address: Mapped[str | None] = mapped_column(String(49), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    limit_name: Mapped[str] = mapped_column(String(120))
    violation_count: Mapped[int] = mapped_column(Integer, default=1)
    blocked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lifted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lifted_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IpAccessRule(_InstanceOrTenant, Timestamped, Base):
    """An IP list entry: ``deny`` (403 before any other work), ``allow`` (once a scope has
    one, only its networks get in) or ``exempt`` (instance only: no per-address limits or
    automatic blocks, e.g. an office's NAT)."""

    __tablename__ = "ip_access_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    network: Mapped[str] = mapped_column(String(49))
    action: Mapped[str] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(String(255), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    def __repr__(self) -> str:
        return f"<IpAccessRule {self.id} {self.action} {self.network}>"
