"""Keys and encryption: ``encryption_keys``, ``key_rotations``; ``users.phone`` becomes
``phone_encrypted`` (ciphertext) + ``phone_bidx`` (blind index).

The plaintext ``users.phone`` column is dropped. A migration cannot encrypt (it holds no
keys), so it refuses to run while that column still holds values instead of losing them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations.guards import rls_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Instance keys (tenant_id NULL) are readable in every tenant's transaction: the keyring needs
# them there, and they are wrapped, so reading one gives nothing without the KEK. Writing one
# (creating, retiring, destroying) needs an all-tenants transaction.
_MINE = "tenant_id::text = current_setting('app.tenant_id', true)"
_ALL = "current_setting('app.all_tenants', true) = 'on'"
_KEYS_POLICY = (
    f"CREATE POLICY tenant_isolation ON encryption_keys USING ({_ALL} OR tenant_id IS NULL OR "
    f"{_MINE}) WITH CHECK ({_ALL} OR {_MINE})"
)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "encryption_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key_identifier", sa.String(length=255), nullable=False),
        sa.Column("algorithm", sa.String(length=50), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "scope IN ('instance', 'tenant', 'user')", name=op.f("ck_encryption_keys_scope")
        ),
        sa.CheckConstraint(
            "state IN ('active', 'retiring', 'retired', 'destroyed')",
            name=op.f("ck_encryption_keys_state"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_encryption_keys_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encryption_keys")),
        sa.UniqueConstraint(
            "scope", "owner_id", "version", name=op.f("uq_encryption_keys_scope_owner_id_version")
        ),
    )
    op.create_index(
        "ix_encryption_keys_lineage_state", "encryption_keys", ["scope", "owner_id", "state"]
    )
    op.create_index(op.f("ix_encryption_keys_tenant_id"), "encryption_keys", ["tenant_id"])
    op.create_table(
        "key_rotations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("done_rows", sa.Integer(), nullable=False),
        sa.Column("reencrypted_rows", sa.Integer(), nullable=False),
        sa.Column("unreadable_rows", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_rotations")),
    )

    plaintext = bind.execute(sa.text("SELECT count(*) FROM users WHERE phone IS NOT NULL")).scalar()
    if plaintext:
        raise RuntimeError(
            f"users.phone holds {plaintext} plaintext values; export them, clear the column, "
            "migrate, and set them again through the API (they will be encrypted)"
        )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_bidx", sa.String(length=64), nullable=True))
        batch.drop_column("phone")
    op.create_index(op.f("ix_users_phone_bidx"), "users", ["phone_bidx"])

    if bind.dialect.name == "postgresql":
        for statement in rls_statements("encryption_keys")[:2]:
            bind.exec_driver_sql(statement)
        bind.exec_driver_sql(_KEYS_POLICY)


def downgrade() -> None:
    op.drop_index(op.f("ix_users_phone_bidx"), table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch.drop_column("phone_bidx")
        batch.drop_column("phone_encrypted")
    op.drop_table("key_rotations")
    op.drop_index(op.f("ix_encryption_keys_tenant_id"), table_name="encryption_keys")
    op.drop_index("ix_encryption_keys_lineage_state", table_name="encryption_keys")
    op.drop_table("encryption_keys")
