"""Key management (issue 16): the seed's ``users.ssn`` as an optional encrypted field.

Revision ID: 0015
Revises: 0014

``users.ssn`` is a convertible encrypted field (crypto/fields.py): ciphertext while
``users.ssn`` is listed in ``KANVARO_ENCRYPTED_FIELDS`` (the default), plaintext otherwise until
``kanvaro keys encrypt-field users.ssn`` converts it. TEXT, because a ciphertext (``kv1:``,
key id, version, nonce, tag, base64) is far longer than the value; ``ssn_bidx`` holds the
blind index for equality search.

A column added to the list later needs the same widening first (a migration of its own, e.g.
``ALTER TABLE ... ALTER COLUMN ... TYPE TEXT``), then the command converts its rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("ssn", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ssn_bidx", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_users_ssn_bidx"), "users", ["ssn_bidx"])


def downgrade() -> None:
    op.drop_index(op.f("ix_users_ssn_bidx"), table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("ssn_bidx")
        batch.drop_column("ssn")
