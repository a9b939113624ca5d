"""SCIM 2.0 provisioning (RFC 7643/7644): per-tenant bearer tokens, the SCIM view of users,
SCIM groups with their members, and the mapping from groups to roles.

A SCIM user is a Kanvaro ``users`` row plus a ``scim_users`` row holding what SCIM names and
Kanvaro has no column for (``userName``, ``externalId``, ``displayName``). Every table is
tenant-owned and bound by RLS like the rest (migration 0013).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.db import Base, TenantScoped, Timestamped, new_id


class ScimToken(TenantScoped, Timestamped, Base):
    """A bearer token an identity provider provisions one tenant with. Only the SHA-256 of
    the token is stored (it is 256 random bits, so a plain hash cannot be guessed back); the
    token itself is shown once, at creation and at each rotation."""

    __tablename__ = "scim_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters after the prefix, so an admin can tell tokens apart in a list.
    hint: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    rotated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def __repr__(self) -> str:  # never the hash
        return f"<ScimToken {self.id} tenant={self.tenant_id}>"


class ScimUser(TenantScoped, Timestamped, Base):
    """What SCIM says about a user beyond the ``users`` row."""

    __tablename__ = "scim_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_name_key", name="uq_scim_users_user_name"),
        UniqueConstraint("tenant_id", "external_id", name="uq_scim_users_external_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    user_name: Mapped[str] = mapped_column(String(254))
    # userName is case-insensitive (RFC 7643 §4.1.1: caseExact false): unique lower-cased.
    user_name_key: Mapped[str] = mapped_column(String(254))
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Once SCIM has given this person a role (created through SCIM, or in a mapped group),
    # SCIM keeps deciding it: leaving every mapped group falls back to the default role.
    manages_role: Mapped[bool] = mapped_column(Boolean, default=False)
    # DELETE deactivates and hides the user from SCIM; the row stays for the record.
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ScimGroup(TenantScoped, Timestamped, Base):
    __tablename__ = "scim_groups"
    __table_args__ = (
        UniqueConstraint("tenant_id", "display_name_key", name="uq_scim_groups_display_name"),
        UniqueConstraint("tenant_id", "external_id", name="uq_scim_groups_external_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    display_name: Mapped[str] = mapped_column(String(255))
    display_name_key: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ScimGroupMember(TenantScoped, Base):
    __tablename__ = "scim_group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scim_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ScimRoleMapping(TenantScoped, Timestamped, Base):
    """A group name (as the IdP names it) and the role its members get. The first mapping,
    by ``position``, that names one of a person's groups decides. Deleting a custom role
    (possible only once nobody holds it) takes its mappings along."""

    __tablename__ = "scim_role_mappings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "group_key", name="uq_scim_role_mappings_group"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    group_name: Mapped[str] = mapped_column(String(255))
    group_key: Mapped[str] = mapped_column(String(255))
    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
