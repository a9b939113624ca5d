"""Audit entries sequenced after commit, and the stored Merkle tree (issue 9, points 3 and 4).

Revision ID: 0008
Revises: 0007

* ``audit_pending``: entries whose change committed and that wait for the sequencer (tenant-
  bound by RLS like ``audit_logs``; rows are deleted when they move, so not append-only).
* ``audit_merkle_nodes``: the hashes of the perfect subtrees of each chain's RFC 9162 tree
  from level 4 up (append-only, tenant-bound).
* ``audit_chain_heads.frontier`` / ``frontier_size``: the tree's compact range at the head.

Existing chains are backfilled from their record hashes here, so proofs work right after the
upgrade. The hashing is written out below rather than imported, so this migration keeps doing
what it did when the application code moves on (RFC 9162 section 2.1: leaf = SHA-256(0x00 ||
record hash), node = SHA-256(0x01 || left || right)).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

from kanvaro.migrations import guards

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PENDING = "audit_pending"
NODES = "audit_merkle_nodes"
STORED_LEVEL = 4
READ_BATCH = 10_000

_nodes = sa.table(
    NODES,
    sa.column("chain_id", sa.String),
    sa.column("level", sa.SmallInteger),
    sa.column("node_index", sa.BigInteger),
    sa.column("tenant_id", sa.Uuid),
    sa.column("hash", sa.LargeBinary),
)
_heads = sa.table(
    "audit_chain_heads",
    sa.column("chain_id", sa.String),
    sa.column("frontier", sa.LargeBinary),
    sa.column("frontier_size", sa.BigInteger),
)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        PENDING,
        # An identity, not a serial: the application role needs no grant on a sequence.
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("resource_type", sa.String(length=50), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_salt", sa.String(length=32), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f(f"pk_{PENDING}")),
        sa.UniqueConstraint("id", name=op.f(f"uq_{PENDING}_id")),
    )
    op.create_index("ix_audit_pending_chain_position", PENDING, ["chain_id", "position"])
    op.create_table(
        NODES,
        sa.Column("chain_id", sa.String(length=36), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("node_index", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "level", "node_index", name=op.f(f"pk_{NODES}")),
    )
    if bind.dialect.name == "postgresql":
        for table in (PENDING, NODES):
            for statement in guards.rls_statements(table):
                bind.exec_driver_sql(statement)
    guards._append_only(bind, NODES)
    # Plain ADD COLUMN (no batch mode), as in 0002.
    op.add_column("audit_chain_heads", sa.Column("frontier", sa.LargeBinary(), nullable=True))
    op.add_column(
        "audit_chain_heads",
        sa.Column("frontier_size", sa.BigInteger(), nullable=False, server_default="0"),
    )
    _backfill(bind)


def _leaf(record_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record_hash).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _backfill(bind: Any) -> None:
    """Every existing chain's stored subtrees and compact range, from its record hashes."""
    if bind.dialect.name == "postgresql":  # FORCEd RLS binds the owner too
        bind.execute(sa.text("SELECT set_config('app.all_tenants', 'on', true)"))
    heads = bind.execute(sa.text("SELECT chain_id, sequence_number FROM audit_chain_heads"))
    for chain_id, head_size in heads.all():
        tenant_id = None if chain_id == "instance" else uuid.UUID(chain_id)
        frontier: list[bytes] = []
        size = 0
        while size < head_size:
            rows = bind.execute(
                sa.text(
                    "SELECT record_hash FROM audit_logs WHERE chain_id = :chain AND "
                    "sequence_number > :after AND sequence_number <= :upto "
                    "ORDER BY sequence_number LIMIT :batch"
                ),
                {"chain": chain_id, "after": size, "upto": head_size, "batch": READ_BATCH},
            ).all()
            if not rows:
                break  # a gap: the sequencer's catch-up and the verifier deal with it
            nodes = []
            for (record_hash,) in rows:
                node, level = _leaf(bytes.fromhex(record_hash)), 0
                while (size >> level) & 1:
                    node = _node(frontier.pop(), node)
                    level += 1
                    if level >= STORED_LEVEL:
                        nodes.append(
                            {
                                "chain_id": chain_id,
                                "level": level,
                                "node_index": size >> level,
                                "tenant_id": tenant_id,
                                "hash": node,
                            }
                        )
                frontier.append(node)
                size += 1
            if nodes:
                bind.execute(_nodes.insert(), nodes)
        bind.execute(
            _heads.update()
            .where(_heads.c.chain_id == chain_id)
            .values(frontier=b"".join(frontier), frontier_size=size)
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT set_config('app.all_tenants', 'on', true)"))
    waiting = bind.execute(sa.text("SELECT count(*) FROM audit_pending")).scalar_one()
    if waiting:
        # Dropping them would lose committed audit entries: fail closed.
        raise RuntimeError(
            f"{waiting} audit entries are still pending; start the application once so they "
            "are sequenced, then downgrade"
        )
    for column in ("frontier_size", "frontier"):
        bind.exec_driver_sql(f"ALTER TABLE audit_chain_heads DROP COLUMN {column}")
    guards._drop_append_only(bind, NODES)
    if bind.dialect.name == "postgresql":
        for table in (PENDING, NODES):
            bind.exec_driver_sql(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.drop_table(NODES)
    op.drop_index("ix_audit_pending_chain_position", table_name=PENDING)
    op.drop_table(PENDING)
