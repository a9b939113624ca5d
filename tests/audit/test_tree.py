"""The stored Merkle tree: proofs read from stored subtrees equal the RFC 9162 list-based
reference (``merkle.inclusion_proof`` / ``consistency_proof`` / ``root``) for every tree size up
to 70, in memory and from the database the sequencer filled."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from kanvaro.audit import merkle
from kanvaro.audit.models import AuditLog, AuditMerkleNode
from kanvaro.audit.tree import STORED_LEVEL, Frontier, StoredTree

SIZES = range(1, 71)
LEAVES = [hashlib.sha256(bytes([i])).digest() for i in range(max(SIZES))]


def _all_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    frontier, nodes = Frontier(), {}
    for leaf in leaves:
        for level, index, value in frontier.append(leaf):
            nodes[(level, index)] = value
    return nodes


def _from_nodes(nodes, ranges):
    return [
        merkle.fold([nodes[part] for part in merkle.perfect_subtrees(lo, hi)]) for lo, hi in ranges
    ]


def test_the_frontier_is_the_root_of_every_prefix():
    frontier = Frontier()
    for size, leaf in enumerate(LEAVES, start=1):
        frontier.append(leaf)
        assert frontier.root() == merkle.root(LEAVES[:size])
        reloaded = Frontier.load(size, frontier.dump())
        assert reloaded is not None and reloaded.root() == frontier.root()
    assert Frontier.load(5, b"\0" * 32) is None  # 5 entries are two subtrees, not one


def test_the_completed_subtrees_are_the_rfc_subtree_hashes():
    nodes = _all_nodes(LEAVES[:64])
    for (level, index), value in nodes.items():
        span = LEAVES[index << level : (index + 1) << level]
        assert value == merkle.root(span)
    assert len(nodes) == 127  # every subtree of a perfect tree of 64 leaves, once


@pytest.mark.parametrize("size", SIZES)
def test_range_proofs_equal_the_list_based_proofs(size):
    leaves = LEAVES[:size]
    nodes = _all_nodes(leaves)
    assert _from_nodes(nodes, [(0, size)]) == [merkle.root(leaves)]
    for index in range(size):
        ranges = merkle.inclusion_ranges(index, size)
        assert _from_nodes(nodes, ranges) == merkle.inclusion_proof(leaves, index)
    for first in range(1, size + 1):
        ranges = merkle.consistency_ranges(first, size)
        assert _from_nodes(nodes, ranges) == merkle.consistency_proof(leaves, first)


def test_unaligned_ranges_are_refused():
    with pytest.raises(merkle.ProofError):
        merkle.perfect_subtrees(1, 3)  # never part of an RFC 9162 tree
    with pytest.raises(merkle.ProofError):
        merkle.perfect_subtrees(4, 4)


async def test_proofs_from_the_database_equal_the_reference(throwaway):
    tenant_id = await throwaway.chain(max(SIZES))
    chain = str(tenant_id)
    async with throwaway.db.session(tenant_id=tenant_id) as session:
        leaves = [
            bytes.fromhex(h)
            for h in (
                await session.execute(
                    select(AuditLog.record_hash)
                    .where(AuditLog.chain_id == chain)
                    .order_by(AuditLog.sequence_number)
                )
            ).scalars()
        ]
        stored = await session.scalar(
            select(func.count())
            .select_from(AuditMerkleNode)
            .where(AuditMerkleNode.chain_id == chain)
        )
        levels = set(
            (
                await session.execute(
                    select(AuditMerkleNode.level).where(AuditMerkleNode.chain_id == chain)
                )
            ).scalars()
        )
        # Only subtrees of 16 leaves and more are stored: 4 + 2 + 1 + 0 for 70 entries.
        assert min(levels) == STORED_LEVEL and stored == 7
        tree = StoredTree(session, chain)
        for size in SIZES:
            assert await tree.root(size) == merkle.root(leaves[:size])
            for index in range(size):
                path, root = await tree.inclusion(index, size)
                assert path == merkle.inclusion_proof(leaves[:size], index)
                merkle.verify_inclusion(leaves[index], index, size, path, root)
            for first in range(1, size + 1):
                proof, first_root, root = await tree.consistency(first, size)
                assert proof == merkle.consistency_proof(leaves[:size], first)
                merkle.verify_consistency(first, size, first_root, root, proof)
