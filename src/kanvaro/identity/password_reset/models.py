"""A password reset link's token: only its SHA-256 is stored."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, Timestamped, new_id


class PasswordResetToken(Timestamped, Base):
    """One mailed reset link: single use (``used_at``), short-lived (``expires_at``).

    Not TenantScoped: the link is spent before anyone is signed in (the token names the
    account); RLS on PostgreSQL still binds the row to its tenant."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:  # never the hash
        return f"<PasswordResetToken {self.id} user={self.user_id}>"
