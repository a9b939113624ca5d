"""The append-only, hash-chained audit log (seed 004 ``audit_logs_immutable``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, new_id

INSTANCE_CHAIN = "instance"
CATEGORIES = (
    "user_activity",
    "business_operations",
    "financial",
    "system",
    "permissions",
    "authentication",
)


class AuditLog(Base):
    """One entry of one chain: a tenant's chain (``chain_id`` = tenant id) or the instance's.

    Not ``TenantScoped``: the audit service reads and writes it with explicit chain filters,
    and PostgreSQL row-level security still binds it to the tenant of the transaction.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (
        UniqueConstraint("chain_id", "sequence_number"),
        Index("ix_audit_logs_chain_created", "chain_id", "created_at"),
        Index("ix_audit_logs_chain_actor", "chain_id", "actor_id"),
        Index("ix_audit_logs_chain_category", "chain_id", "category"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    chain_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    sequence_number: Mapped[int] = mapped_column(BigInteger)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    category: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime]
    previous_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest sequence number and hash of a chain; its row lock serializes appends."""

    __tablename__ = "audit_chain_heads"

    chain_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    sequence_number: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
