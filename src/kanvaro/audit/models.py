"""The append-only, hash-chained audit log (seed 004 ``audit_logs_immutable``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kanvaro.audit.hashing import canonical_json
from kanvaro.db import Base, new_id, utcnow

INSTANCE_CHAIN = "instance"
CATEGORIES = (
    "user_activity",
    "business_operations",
    "financial",
    "system",
    "permissions",
    "authentication",
)


class CanonicalJSON(TypeDecorator[Any]):
    """A JSON column whose text is the RFC 8785 form of the value (the driver's ``json.dumps``
    is not canonical).

    The text stored is then exactly the ``changes`` bytes the content digest was computed over,
    so verification can hash it as read, without parsing and re-encoding it (it falls back to
    that for entries written before migration 0008). ``bytes`` are taken as JSON text that is
    already canonical: the sequencer moves a pending entry's text unchanged.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Any) -> str | None:
            if value is None:
                return None
            if isinstance(value, bytes):
                return value.decode()
            return canonical_json(value).decode()

        return process


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
    changes: Mapped[dict[str, Any]] = mapped_column(CanonicalJSON, default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    category: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime]
    previous_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))
    # Retention-ready (migration 0002): the record hash covers ``content_digest``, a salted
    # digest of ``changes``/``ip_address``/``user_agent``; those and the salt may be erased
    # later without breaking the chain. NULL digest = an entry written before 0002, hashed
    # over its content directly.
    content_salt: Mapped[str | None] = mapped_column(String(32), nullable=True)
    content_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditPending(Base):
    """An entry whose change has committed but which has no place in its chain yet (migration
    0008): written by ``record()`` in the request's transaction, moved to ``audit_logs`` by the
    sequencer (:mod:`kanvaro.audit.sequencer`). Everything but the sequence number and the two
    hashes is final here, the content digest included. ``position`` keeps the order in which
    entries were written (the order of one transaction's entries is its chain order).
    """

    __tablename__ = "audit_pending"
    __table_args__ = (
        Index("ix_audit_pending_chain_position", "chain_id", "position"),
        # record() needs no generated key back: no RETURNING on the request's insert.
        {"implicit_returning": False},
    )

    # An identity column: on PostgreSQL the application role needs no grant on a sequence.
    position: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    chain_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    changes: Mapped[dict[str, Any]] = mapped_column(CanonicalJSON, default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    category: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime]
    content_salt: Mapped[str] = mapped_column(String(32))
    content_digest: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest sequence number and hash of a chain; its row lock serializes the sequencers.

    ``frontier`` is the chain's Merkle tree as a compact range (the roots of its perfect
    subtrees, largest first, 32 bytes each) for ``frontier_size`` entries: what the sequencer
    needs to add leaves without reading the tree. It lags ``sequence_number`` only if something
    else advanced the head (an application older than migration 0008 during a rolling
    upgrade); the sequencer then catches up from the entries.
    """

    __tablename__ = "audit_chain_heads"

    chain_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    sequence_number: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
    frontier: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    frontier_size: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditMerkleNode(Base):
    """The hash of one perfect subtree of a chain's RFC 9162 tree (migration 0008): leaves
    ``index * 2**level + 1`` to ``(index + 1) * 2**level`` in sequence numbers. Written once
    by the sequencer when the subtree's last leaf is sequenced, never changed (append-only).
    Only levels from ``tree.STORED_LEVEL`` up are stored (one row per 8 entries); smaller
    subtrees are recomputed from the record hashes, at most 2 x 16 of them per proof."""

    __tablename__ = "audit_merkle_nodes"

    chain_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    index: Mapped[int] = mapped_column("node_index", BigInteger, primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    """A signed checkpoint (tree size + Merkle root) of one chain, as a C2SP-style note."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("chain_id", "tree_size"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    chain_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(8))
    signed_note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditSigningKey(Base):
    """The Ed25519 key that signs checkpoints; the private half sealed under the master key."""

    __tablename__ = "audit_signing_keys"

    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditCheckpointCosignature(Base):
    """A checkpoint's note co-signed by a later key (migration 0006): written by a key
    rotation, so an auditor pinning only the new key verifies old checkpoints too."""

    __tablename__ = "audit_checkpoint_cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_id", "key_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    checkpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("audit_checkpoints.id", ondelete="RESTRICT")
    )
    chain_id: Mapped[str] = mapped_column(String(36), index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(8))
    signed_note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
