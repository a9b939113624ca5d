"""Tenants (organizations) and their roles."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, Boolean, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, TenantScoped, Timestamped, Versioned, new_id


class Tenant(Timestamped, Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended
    # Tenant policy overrides (password policy now; MFA/session/rate/retention later).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Role(TenantScoped, Versioned, Base):
    """A tenant's role: the five built-in roles (permissions from code) or a custom set."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(String(500), default="")
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    # Limited to the projects the holder is a member of (team_member, client, viewer).
    project_scoped: Mapped[bool] = mapped_column(Boolean, default=True)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
