"""``encryption_keys`` (seed 004) and ``key_rotations``.

A row of ``encryption_keys`` is one *data key* (DEK): 256 random bits, stored only wrapped by
a KEK of the provider (``key_identifier`` names that KEK). Data keys form lineages by
(``scope``, ``owner_id``): the instance, each tenant, each user; ``version`` counts up within
a lineage and exactly one version is ``active`` (takes new writes). Rotation marks the active
one ``retiring``; it becomes ``retired`` once no row uses it. ``destroyed`` means the wrapped
material (and for user keys the provider's KEK) is gone: crypto-shredding.

Not ``TenantScoped``: the keyring reads instance keys from tenant sessions and every key from
the rotation job. PostgreSQL row-level security still binds it (instance rows are visible to
all, tenant rows to their tenant).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, new_id, utcnow

SCOPES = ("instance", "tenant", "user")
STATES = ("active", "retiring", "retired", "destroyed")


class EncryptionKey(Base):
    __tablename__ = "encryption_keys"
    __table_args__ = (
        UniqueConstraint("scope", "owner_id", "version"),
        Index("ix_encryption_keys_lineage_state", "scope", "owner_id", "state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    key_identifier: Mapped[str] = mapped_column(String(255))  # the provider's KEK
    algorithm: Mapped[str] = mapped_column(String(50), default="AES-256-GCM")
    scope: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[str] = mapped_column(String(64))  # "instance", a tenant or a user id
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    wrapped_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(10), default="active")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:  # never the wrapped material
        return (
            f"<EncryptionKey {self.id} {self.scope}:{self.owner_id} v{self.version} {self.state}>"
        )


class KeyRotation(Base):
    """One rotation run: progress of the background re-encryption, resumable by its cursor."""

    __tablename__ = "key_rotations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(12), default="running")  # running | completed
    reason: Mapped[str] = mapped_column(String(20), default="manual")  # manual | scheduled
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    reencrypted_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Rows that failed to decrypt (tampered or moved): skipped, logged, and their key is kept.
    unreadable_rows: Mapped[int] = mapped_column(Integer, default=0)
    # {"users.phone": "<last primary key scanned>", "_unreadable": {"<key id>": n}}: a
    # restart continues after the last key.
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class KeyShredding(Base):
    """One lineage's crypto-shredding (migration 0006): ``intent`` once the database side and
    its audit entry committed, ``done`` once the provider destroyed the KEK. An ``intent`` row
    left by a crash is completed by key maintenance or by re-running the command."""

    __tablename__ = "key_shreddings"
    __table_args__ = (Index("ix_key_shreddings_state", "state"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(10))  # tenant | user
    owner_id: Mapped[str] = mapped_column(String(64))
    # The chain the completion is audited in: the user's tenant, or None (the instance).
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(10), default="intent")
    destroyed_keys: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
