"""A chain's RFC 9162 Merkle tree, stored as it grows, so a proof reads O(log n) hashes.

As the sequencer appends entries it keeps the tree's compact range (:class:`Frontier`: the
roots of the perfect subtrees the tree is made of, largest first) in the chain head, and writes
every perfect subtree it completes at ``STORED_LEVEL`` or above to ``audit_merkle_nodes``. A
proof or a root is then a handful of perfect subtrees (:func:`merkle.perfect_subtrees` of the
ranges :func:`merkle.inclusion_ranges` / :func:`merkle.consistency_ranges` name): the big ones
are read from the stored nodes in one query, the small ones recomputed from at most a few
blocks of 16 record hashes read in one more query.

Below ``STORED_LEVEL`` (subtrees of fewer than 16 leaves) nothing is stored: that keeps the
table at one row per 8 entries (a full binary tree would store two per entry), for at most
2 x 15 extra hashes per proof.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import hotpath, merkle

STORED_LEVEL = 4
BLOCK = 1 << STORED_LEVEL
HASH = merkle.HASH_SIZE

Node = tuple[int, int, bytes]  # (level, index, hash) of a completed perfect subtree


class TreeIncomplete(Exception):
    """A stored node or a record hash that the tree needs is missing: the tree is damaged."""


@dataclass
class Frontier:
    """The compact range of a tree of ``size`` leaves: one hash per set bit of ``size``."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @classmethod
    def load(cls, size: int, packed: bytes | None) -> Frontier | None:
        """The stored form back; None if it does not fit the size (damaged or missing)."""
        packed = packed or b""
        if len(packed) != HASH * size.bit_count():
            return None
        return cls(size, [packed[i : i + HASH] for i in range(0, len(packed), HASH)])

    def dump(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, record_hash: bytes) -> list[Node]:
        """Add the next leaf; returns every perfect subtree this completes (the leaf too)."""
        index, level = self.size, 0
        node = merkle.leaf_hash(record_hash)
        completed = [(0, index, node)]
        # A set bit `level` of the old size is a perfect subtree of that level at the right
        # edge: the new leaf completes it into one twice as big.
        while (self.size >> level) & 1:
            node = merkle.node_hash(self.hashes.pop(), node)
            level += 1
            completed.append((level, index >> level, node))
        self.hashes.append(node)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return merkle.fold(self.hashes)


def stored(nodes: Iterable[Node]) -> list[Node]:
    """The completed subtrees that are written to ``audit_merkle_nodes``."""
    return [node for node in nodes if node[0] >= STORED_LEVEL]


class StoredTree:
    """Reads subtree hashes of one chain from ``audit_merkle_nodes`` and the record hashes."""

    def __init__(self, session: AsyncSession, chain_id: str) -> None:
        self.session = session
        self.chain_id = chain_id

    async def hashes(self, ranges: Sequence[merkle.Range]) -> list[bytes]:
        """MTH(D[lo:hi]) of each range, in two queries whatever the tree size."""
        covers = [merkle.perfect_subtrees(lo, hi) for lo, hi in ranges]
        wanted = {part for cover in covers for part in cover}
        big = sorted(part for part in wanted if part[0] >= STORED_LEVEL)
        small = [part for part in wanted if part[0] < STORED_LEVEL]
        values = await self._stored(big)
        values.update(await self._recomputed(small))
        missing = wanted - values.keys()
        if missing:
            level, index = min(missing)
            raise TreeIncomplete(f"the subtree at level {level}, index {index} is missing")
        return [merkle.fold([values[part] for part in cover]) for cover in covers]

    async def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.root([])
        return (await self.hashes([(0, size)]))[0]

    async def inclusion(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        """PATH(index, D[size]) and the root of D[size]."""
        ranges = merkle.inclusion_ranges(index, size)
        *path, root = await self.hashes([*ranges, (0, size)])
        return path, root

    async def consistency(self, first: int, size: int) -> tuple[list[bytes], bytes, bytes]:
        """PROOF(first, D[size]) and the roots of D[first] and D[size]."""
        ranges = merkle.consistency_ranges(first, size)
        *proof, first_root, root = await self.hashes([*ranges, (0, first), (0, size)])
        return proof, first_root, root

    async def _stored(self, parts: list[merkle.Subtree]) -> dict[merkle.Subtree, bytes]:
        if not parts:
            return {}
        levels, indexes = [p[0] for p in parts], [p[1] for p in parts]
        rows = await hotpath.fetch_raw(
            self.session,
            postgresql=(_NODES_PG, (self.chain_id, levels, indexes)),
            sqlite=(_NODES_SQLITE, (json.dumps(parts), self.chain_id)),
        )
        return {(level, index): bytes(value) for level, index, value in rows}

    async def _recomputed(self, parts: list[merkle.Subtree]) -> dict[merkle.Subtree, bytes]:
        if not parts:
            return {}
        # A subtree below STORED_LEVEL lies inside one aligned block of BLOCK leaves.
        blocks = sorted({(index << level) >> STORED_LEVEL for level, index in parts})
        sequences = [b * BLOCK + k for b in blocks for k in range(1, BLOCK + 1)]
        rows = await hotpath.fetch_raw(
            self.session,
            postgresql=(_LEAVES_PG, (self.chain_id, sequences)),
            sqlite=(_LEAVES_SQLITE, (self.chain_id, json.dumps(sequences))),
        )
        leaves = {}
        for seq, record in rows:
            try:
                leaves[seq - 1] = bytes.fromhex(record)
            except ValueError:
                continue  # not a hash: the subtree counts as missing
        values: dict[merkle.Subtree, bytes] = {}
        for level, index in parts:
            span = range(index << level, (index + 1) << level)
            if all(i in leaves for i in span):
                values[(level, index)] = merkle.root([leaves[i] for i in span])
        return values


# Primary-key lookups, one statement of a fixed shape whatever the number of subtrees (built
# through SQLAlchemy, the statement cost more than the queries). SQLite's CROSS JOIN keeps the
# list as the outer loop; a row-value IN made it scan every node of the chain.
_NODES_PG = (
    "SELECT n.level, n.node_index, n.hash FROM unnest($2::smallint[], $3::bigint[]) AS w(l, i) "
    "JOIN audit_merkle_nodes AS n ON n.chain_id = $1 AND n.level = w.l AND n.node_index = w.i"
)
_NODES_SQLITE = (
    "SELECT n.level, n.node_index, n.hash FROM json_each(?) AS w CROSS JOIN "
    "audit_merkle_nodes AS n WHERE n.chain_id = ? AND n.level = w.value ->> 0 "
    "AND n.node_index = w.value ->> 1"
)
_LEAVES_PG = (
    "SELECT sequence_number, record_hash FROM audit_logs "
    "WHERE chain_id = $1 AND sequence_number = ANY($2::bigint[])"
)
_LEAVES_SQLITE = (
    "SELECT sequence_number, record_hash FROM audit_logs "
    "WHERE chain_id = ? AND sequence_number IN (SELECT value FROM json_each(?))"
)
