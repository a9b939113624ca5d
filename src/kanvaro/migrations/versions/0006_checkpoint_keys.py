"""Checkpoint signing-key rotation (issue 7 point 2): co-signatures of old checkpoints.

Revision ID: 0006
Revises: 0005

``audit_checkpoints`` is append-only, so a rotation cannot add the new key's signature line
to an existing note in place: the co-signed note goes into ``audit_checkpoint_cosignatures``
(append-only and tenant-bound like the checkpoints), one row per (checkpoint, key).

``key_shreddings`` records crypto-shredding as a resumable two-step (issue 8 point 2):
``intent`` committed with its audit entry, then the provider destroys the KEK, then ``done``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "audit_checkpoint_cosignatures"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("checkpoint_id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("signed_note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f(f"fk_{TABLE}_checkpoint_id_audit_checkpoints"),
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint(
            "checkpoint_id", "key_id", name=op.f(f"uq_{TABLE}_checkpoint_id_key_id")
        ),
    )
    op.create_index(op.f(f"ix_{TABLE}_chain_id"), TABLE, ["chain_id"], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for statement in guards.rls_statements(TABLE):
            bind.exec_driver_sql(statement)
    guards._append_only(bind, TABLE)
    op.create_table(
        "key_shreddings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("destroyed_keys", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_shreddings")),
    )
    op.create_index("ix_key_shreddings_state", "key_shreddings", ["state"], unique=False)
    if bind.dialect.name == "postgresql":
        for statement in guards.rls_statements("key_shreddings"):
            bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP POLICY IF EXISTS tenant_isolation ON key_shreddings")
    op.drop_index("ix_key_shreddings_state", table_name="key_shreddings")
    op.drop_table("key_shreddings")
    guards._drop_append_only(bind, TABLE)
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"DROP POLICY IF EXISTS tenant_isolation ON {TABLE}")
    op.drop_index(op.f(f"ix_{TABLE}_chain_id"), table_name=TABLE)
    op.drop_table(TABLE)
