"""Signed checkpoints and Merkle proofs built from the stored chains.

A checkpoint is issued for a chain's current head (pending entries sequenced first): the
record hashes 1..N are read in order (their links checked on the way), the RFC 9162 root
computed and compared with the stored tree's, the last signed checkpoint (size and root read
from its note, its signature checked with the instance's keys; the unsigned columns are never
trusted) checked to still be a prefix of the tree (so a rewritten past is refused, not signed),
and the note signed with the instance's checkpoint key. Issuing is idempotent per (chain, tree
size), so several processes issuing at once write one row.

Proofs are built from the stored tree (:mod:`kanvaro.audit.tree`): O(log n) stored hashes
whatever the chain's length.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import sequencer
from kanvaro.audit import service as audit
from kanvaro.audit.chain import to_document
from kanvaro.audit.hashing import GENESIS_HASH
from kanvaro.audit.keys import CheckpointSigner, TrustedKeys, key_name, load_signer, load_trusted
from kanvaro.audit.models import AuditChainHead, AuditCheckpoint, AuditLog
from kanvaro.audit.note import Checkpoint, NoteError, sign_checkpoint
from kanvaro.audit.tree import Frontier, StoredTree, TreeIncomplete
from kanvaro.db import utcnow
from kanvaro.errors import Conflict, Unprocessable

if TYPE_CHECKING:
    from kanvaro.acting import Acting

security_log = structlog.get_logger("kanvaro.security")


class ChainBroken(Conflict):
    """The chain does not link up; it must be verified and investigated, not signed."""


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def head_size(session: AsyncSession, chain_id: str) -> int:
    head = await session.get(AuditChainHead, chain_id, populate_existing=True)
    return head.sequence_number if head else 0


SCAN_BATCH = 10_000


async def scan_roots(
    session: AsyncSession, chain_id: str, upto: int, *, also_at: int | None = None
) -> tuple[bytes, bytes | None]:
    """The Merkle root of record hashes 1..upto (and of 1..also_at), read in order; refuses a
    gap or a broken link."""
    frontier, previous, also = Frontier(), GENESIS_HASH, None
    while frontier.size < upto:
        rows = (
            await session.execute(
                select(AuditLog.sequence_number, AuditLog.previous_hash, AuditLog.record_hash)
                .where(
                    AuditLog.chain_id == chain_id,
                    AuditLog.sequence_number > frontier.size,
                    AuditLog.sequence_number <= upto,
                )
                .order_by(AuditLog.sequence_number)
                .limit(SCAN_BATCH)
            )
        ).all()
        if not rows:
            raise ChainBroken(f"The audit chain is missing entry {frontier.size + 1}.")
        for seq, prev_hash, rec_hash in rows:
            if seq != frontier.size + 1 or prev_hash != previous:
                raise ChainBroken(
                    f"The audit chain is broken at entry {frontier.size + 1}; run a verification."
                )
            try:
                frontier.append(bytes.fromhex(rec_hash))
            except ValueError:
                raise ChainBroken(
                    f"Entry {seq} has no valid record hash; run a verification."
                ) from None
            previous = rec_hash
            if frontier.size == also_at:
                also = frontier.root()
    return frontier.root(), also


async def stored_root(session: AsyncSession, chain_id: str, size: int) -> bytes:
    try:
        return await StoredTree(session, chain_id).root(size)
    except TreeIncomplete as exc:
        raise _damaged(exc) from None


def _damaged(exc: TreeIncomplete) -> ChainBroken:
    return ChainBroken(
        f"The stored Merkle tree of this chain is damaged ({exc}); run a verification."
    )


async def _at_size(session: AsyncSession, chain_id: str, size: int) -> AuditCheckpoint | None:
    return (
        await session.execute(
            select(AuditCheckpoint).where(
                AuditCheckpoint.chain_id == chain_id, AuditCheckpoint.tree_size == size
            )
        )
    ).scalar_one_or_none()


async def latest(session: AsyncSession, chain_id: str) -> AuditCheckpoint | None:
    return (
        await session.execute(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain_id == chain_id)
            .order_by(AuditCheckpoint.tree_size.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def last_signed(
    session: AsyncSession, trusted: TrustedKeys, chain_id: str
) -> tuple[AuditCheckpoint, Checkpoint] | None:
    """The newest checkpoint row and what its signed note says (never the unsigned columns).

    Fails closed: a newest row that no trusted key signed, or whose columns disagree with its
    note, is tampering, and nothing is signed on top of it.
    """
    row = await latest(session, chain_id)
    if row is None:
        return None
    try:
        signed = trusted.open(row.signed_note, chain_id)
    except NoteError as exc:
        security_log.error("audit_checkpoint_forged", chain_id=chain_id, size=row.tree_size)
        raise ChainBroken(
            f"The checkpoint of size {row.tree_size} is not signed by this instance ({exc}); "
            "run a verification."
        ) from None
    if signed.tree_size != row.tree_size or signed.root_hash.hex() != row.root_hash:
        security_log.error("audit_checkpoint_forged", chain_id=chain_id, size=row.tree_size)
        raise ChainBroken(
            f"The stored checkpoint of size {row.tree_size} differs from its signed note; "
            "run a verification."
        )
    return row, signed


async def issue(
    session: AsyncSession,
    signer: CheckpointSigner,
    trusted: TrustedKeys,
    chain_id: str,
    tenant_id: uuid.UUID | None,
) -> tuple[AuditCheckpoint | None, bool]:
    """Sign the chain's current head; returns (checkpoint, newly signed).

    The history is compared with the last *signed* checkpoint (size and root from its note,
    checked with the instance's keys), so a rewritten past is refused, not signed.
    """
    await sequencer.settle(session, chain_id)
    size = await head_size(session, chain_id)
    if size == 0:
        return None, False
    previous = await last_signed(session, trusted, chain_id)
    signed = previous[1] if previous is not None else None
    root, signed_prefix = await scan_roots(
        session, chain_id, size, also_at=signed.tree_size if signed else None
    )
    if signed is not None:
        if signed.tree_size > size or signed_prefix != signed.root_hash:
            security_log.error(
                "audit_chain_rewritten", chain_id=chain_id, checkpoint=signed.tree_size
            )
            raise ChainBroken(
                f"The first {signed.tree_size} entries no longer match their signed "
                "checkpoint; the chain was rewritten. Run a verification."
            )
        if signed.tree_size == size:
            return previous[0], False
    if await stored_root(session, chain_id, size) != root:
        # The proofs are built from the stored tree: one that disagrees must not be signed.
        security_log.error("audit_tree_mismatch", chain_id=chain_id, size=size)
        raise ChainBroken(
            "The stored Merkle tree differs from the chain's entries; run a verification."
        )
    note = sign_checkpoint(
        Checkpoint(signer.origin(chain_id), size, root), signer.name, signer.private_key
    )
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    result = await session.execute(
        insert(AuditCheckpoint)
        .values(
            id=uuid.uuid4(),
            chain_id=chain_id,
            tenant_id=tenant_id,
            tree_size=size,
            root_hash=root.hex(),
            key_id=signer.verifier.key_id.hex(),
            signed_note=note,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["chain_id", "tree_size"])
    )
    # Several processes may sign the same head at once: one row, one audit entry.
    return await _at_size(session, chain_id, size), bool(result.rowcount)


async def checkpoint_keys(acting: Acting) -> tuple[CheckpointSigner, TrustedKeys]:
    """The active signing key (read afresh: another process may have rotated it) and the
    trusted keys."""
    services = acting.services
    name = services.audit.signer.name if services.audit else key_name(services.settings.public_url)
    signer = await load_signer(acting.db, services.master_key, name=name)
    return signer, await load_trusted(acting.db, services.master_key)


async def issue_checkpoint(
    acting: Acting, *, tenant_id: uuid.UUID | None
) -> AuditCheckpoint | None:
    """The one action that signs a chain's head, from the API, the CLI and the periodic job.

    The acting transaction must be scoped to the chain's tenant (or span all tenants for the
    instance chain). A newly signed checkpoint is audited in that chain, tagged with the entry
    point (``api:``, ``cli:``, ``job:``).
    """
    chain_id = audit.chain_for(tenant_id)
    signer, trusted = await checkpoint_keys(acting)
    row, created = await issue(acting.db, signer, trusted, chain_id, tenant_id)
    if row is not None and created:
        await audit.record(
            acting.db,
            action=f"{acting.origin.channel}:audit_checkpoint:create",
            category="system",
            tenant_id=tenant_id,
            context=acting.audit,
            resource_type="audit_checkpoint",
            resource_id=row.tree_size,
            changes={"chainId": chain_id, "treeSize": row.tree_size},
        )
    return row


async def due(session: AsyncSession, chain_id: str) -> bool:
    """Whether the periodic job should sign this chain: it moved since its last checkpoint by
    more than that checkpoint's own audit entry (else every run would sign its own entry)."""
    await sequencer.settle(session, chain_id)
    size = await head_size(session, chain_id)
    newest = await latest(session, chain_id)
    if not size or (newest is not None and newest.tree_size >= size):
        return False
    if newest is None or size > newest.tree_size + 1:
        return True
    action = (
        await session.execute(
            select(AuditLog.action).where(
                AuditLog.chain_id == chain_id, AuditLog.sequence_number == size
            )
        )
    ).scalar_one_or_none()
    return not (action or "").endswith(":audit_checkpoint:create")


def checkpoint_out(row: AuditCheckpoint) -> dict[str, Any]:
    return {
        "chainId": row.chain_id,
        "treeSize": row.tree_size,
        "rootHash": b64(bytes.fromhex(row.root_hash)),
        "keyId": row.key_id,
        "note": row.signed_note,
        "createdAt": row.created_at,
    }


def _bad(field: str, message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"field": field, "in": "query", "message": message}])


async def _default_size(session: AsyncSession, chain_id: str, size: int | None) -> int:
    await sequencer.settle(session, chain_id)
    current = await head_size(session, chain_id)
    if size is None:
        mark = await latest(session, chain_id)
        size = mark.tree_size if mark else current
    if size > current:
        raise _bad("treeSize", f"the chain has only {current} entries")
    return size


async def inclusion_bundle(
    session: AsyncSession, chain_id: str, sequence: int | None, tree_size: int | None
) -> dict[str, Any]:
    """The entry, its inclusion proof in the tree of ``tree_size`` and that tree's checkpoint."""
    size = await _default_size(session, chain_id, tree_size)
    if sequence is None:
        sequence = size
    if not 1 <= sequence <= size:
        raise _bad("sequence", f"the sequence number must be between 1 and {size}")
    try:
        path, root = await StoredTree(session, chain_id).inclusion(sequence - 1, size)
    except TreeIncomplete as exc:
        raise _damaged(exc) from None
    entry = (
        await session.execute(
            select(AuditLog).where(
                AuditLog.chain_id == chain_id, AuditLog.sequence_number == sequence
            )
        )
    ).scalar_one_or_none()
    if entry is None:
        raise ChainBroken(f"The audit chain is missing entry {sequence}; run a verification.")
    mark = await _at_size(session, chain_id, size)
    return {
        "type": "inclusion",
        "chainId": chain_id,
        "sequence": sequence,
        "leafIndex": sequence - 1,
        "treeSize": size,
        "rootHash": b64(root),
        "proof": [b64(h) for h in path],
        "entry": to_document(entry),
        "checkpoint": mark.signed_note if mark else None,
    }


async def consistency_bundle(
    session: AsyncSession, chain_id: str, first: int, second: int | None
) -> dict[str, Any]:
    """The consistency proof between two tree sizes, with their checkpoints when signed."""
    size = await _default_size(session, chain_id, second)
    if not 1 <= first <= size:
        raise _bad("from", f"'from' must be between 1 and {size}")
    try:
        proof, first_root, root = await StoredTree(session, chain_id).consistency(first, size)
    except TreeIncomplete as exc:
        raise _damaged(exc) from None
    old = await _at_size(session, chain_id, first)
    new = await _at_size(session, chain_id, size)
    return {
        "type": "consistency",
        "chainId": chain_id,
        "from": first,
        "to": size,
        "fromRoot": b64(first_root),
        "toRoot": b64(root),
        "proof": [b64(h) for h in proof],
        "fromCheckpoint": old.signed_note if old else None,
        "toCheckpoint": new.signed_note if new else None,
    }
