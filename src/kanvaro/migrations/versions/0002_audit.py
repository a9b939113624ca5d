"""Audit: retention-ready content digest, signed Merkle checkpoints, checkpoint signing key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:50:00

Written by hand. ``audit_logs`` gains two nullable columns with plain ``ADD COLUMN`` (no batch
mode: rebuilding the table on SQLite would drop its append-only triggers).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("content_salt", sa.String(length=32), nullable=True))
    op.add_column("audit_logs", sa.Column("content_digest", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("signed_note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
        sa.UniqueConstraint(
            "chain_id", "tree_size", name=op.f("uq_audit_checkpoints_chain_id_tree_size")
        ),
    )
    op.create_index(
        op.f("ix_audit_checkpoints_tenant_id"), "audit_checkpoints", ["tenant_id"], unique=False
    )
    op.create_table(
        "audit_signing_keys",
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_audit_signing_keys")),
    )
    guards.install_audit_0002(op.get_bind())


def downgrade() -> None:
    guards.remove_audit_0002(op.get_bind())
    op.drop_table("audit_signing_keys")
    op.drop_index(op.f("ix_audit_checkpoints_tenant_id"), table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    # Native DROP COLUMN (SQLite >= 3.35 too): no table rebuild, the triggers stay.
    bind = op.get_bind()
    for column in ("content_digest", "content_salt"):
        bind.exec_driver_sql(f"ALTER TABLE audit_logs DROP COLUMN {column}")
