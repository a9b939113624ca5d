"""Merkle tree hashes, inclusion proofs and consistency proofs: RFC 9162 section 2.1.

The leaves are the audit entries' record hashes (32 bytes each), in sequence order: entry
``n`` is leaf ``n - 1``. The definitions follow the RFC exactly:

* ``MTH({}) = SHA-256()``, ``MTH({d0}) = SHA-256(0x00 || d0)``,
  ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` with ``k`` the largest power of
  two smaller than ``n`` (2.1.1);
* ``PATH(m, D[n])`` (2.1.3.1) and ``PROOF(m, D[n])`` / ``SUBPROOF`` (2.1.4.1);
* the verification algorithms of 2.1.3.2 and 2.1.4.2, which need only the proof, the sizes
  and the roots, so an auditor can run them with no access to the log.

Pure functions, no I/O. The list-based functions (``root``, ``inclusion_proof``,
``consistency_proof``) are the reference definitions. A chain of a million entries is not
rebuilt per request: the server stores the hashes of the perfect subtrees as entries are
sequenced (:mod:`kanvaro.audit.tree`) and builds proofs from the *ranges* below
(``inclusion_ranges``, ``consistency_ranges``), each of which is the fold of a few perfect
subtrees (``perfect_subtrees``), so a proof reads O(log n) stored hashes. Tests prove both
ways equal for every tree size up to 70.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32


class ProofError(ValueError):
    """A proof is malformed or does not prove what it claims."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return leaf_hash(leaves[lo])
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the whole list."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _mth(leaves, 0, len(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) for ``n = len(leaves)``."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} is outside a tree of size {len(leaves)}")
    path: list[bytes] = []
    lo, hi, m = 0, len(leaves), index
    # Walk from the root down; the RFC's recursion appends the sibling *after* the subpath,
    # so collect top-down and reverse.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_mth(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaves, lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], first: int) -> list[bytes]:
    """PROOF(first, D[n]) for ``n = len(leaves)`` and ``0 < first <= n``."""
    n = len(leaves)
    if not 0 < first <= n:
        raise ProofError(f"a consistency proof needs 0 < {first} <= {n}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, n, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_mth(leaves, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaves, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(_mth(leaves, lo, hi))
    proof.reverse()
    return proof


# -- proofs as ranges of leaves -----------------------------------------------------------------
#
# Every subtree hash that RFC 9162 puts into a proof is MTH(D[lo:hi]) of a range that starts at a
# multiple of the power of two at or above its size (induction over the RFC's recursion: the
# left part [lo, lo+k) is perfect, the right part starts at lo+k, a multiple of k, and is at
# most k long). Such a range splits into perfect subtrees by the binary digits of its size,
# largest first, and its MTH is their right fold: the same shape as the compact range of a
# growing tree.

Range = tuple[int, int]
Subtree = tuple[int, int]  # (level, index): leaves index * 2**level .. (index + 1) * 2**level - 1


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose MTH, in order, are PATH(index, D[size]) (mirrors
    :func:`inclusion_proof`)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[Range] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, size: int) -> list[Range]:
    """The leaf ranges whose MTH, in order, are PROOF(first, D[size]) (mirrors
    :func:`consistency_proof`)."""
    if not 0 < first <= size:
        raise ProofError(f"a consistency proof needs 0 < {first} <= {size}")
    ranges: list[Range] = []
    lo, hi, m, complete = 0, size, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def perfect_subtrees(lo: int, hi: int) -> list[Subtree]:
    """The perfect subtrees, left to right, whose right fold is MTH(D[lo:hi])."""
    if not 0 <= lo < hi:
        raise ProofError(f"the leaf range {lo}..{hi} is empty")
    parts: list[Subtree] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo & ((1 << level) - 1):
            raise ProofError(f"the leaf range {lo}..{hi} is not a subtree of an RFC 9162 tree")
        parts.append((level, lo >> level))
        lo += 1 << level
    return parts


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of adjacent perfect subtrees given left to right (largest first)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    result = hashes[-1]
    for node in reversed(hashes[:-1]):
        result = node_hash(node, result)
    return result


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    for value in values:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"{what} holds a value that is not a 32-byte hash")


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """RFC 9162 2.1.3.2; ``leaf`` is the entry's record hash. Raises :class:`ProofError`."""
    _check_hashes([*proof, root_hash], "the inclusion proof")
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} is outside a tree of size {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root_hash:
        raise ProofError("the inclusion proof does not lead to the root hash")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: the tree of size ``second`` extends the one of size ``first``."""
    _check_hashes([*proof, first_root, second_root], "the consistency proof")
    if not 0 < first <= second:
        raise ProofError(f"a consistency proof needs 0 < {first} <= {second}")
    if first == second:
        if proof:
            raise ProofError("equal tree sizes need an empty consistency proof")
        if first_root != second_root:
            raise ProofError("equal tree sizes with different root hashes")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofError("the consistency proof does not lead to the first root hash")
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the second root hash")
