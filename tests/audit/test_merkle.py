"""RFC 9162 section 2.1 Merkle trees: hand-computed small trees, the RFC's algorithm
properties, and property tests for every proof of random trees."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kanvaro.audit import merkle
from kanvaro.audit.merkle import ProofError


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def L(d: bytes) -> bytes:
    return H(b"\x00" + d)


def N(a: bytes, b: bytes) -> bytes:
    return H(b"\x01" + a + b)


D = [bytes([i]) * 32 for i in range(8)]


def test_hand_computed_roots():
    assert merkle.root([]) == H(b"")
    assert merkle.root(D[:1]) == L(D[0])
    assert merkle.root(D[:2]) == N(L(D[0]), L(D[1]))
    # n = 3: k = 2, the right subtree is the lone leaf d2 (not duplicated, unlike Bitcoin)
    assert merkle.root(D[:3]) == N(N(L(D[0]), L(D[1])), L(D[2]))
    # n = 7: k = 4
    left = N(N(L(D[0]), L(D[1])), N(L(D[2]), L(D[3])))
    right = N(N(L(D[4]), L(D[5])), L(D[6]))
    assert merkle.root(D[:7]) == N(left, right)


def test_hand_computed_proofs_of_the_rfc_example_tree():
    # RFC 9162 2.1.5: the tree of seven leaves a..g
    a, b, c, d, e, f, g = (L(x) for x in D[:7])
    k, l_, j = N(a, b), N(c, d), N(e, f)
    i = N(k, l_)
    assert merkle.inclusion_proof(D[:7], 0) == [b, l_, N(j, g)]  # the RFC's [b, h, l]
    assert merkle.inclusion_proof(D[:7], 3) == [c, k, N(j, g)]
    assert merkle.inclusion_proof(D[:7], 4) == [f, g, i]
    assert merkle.inclusion_proof(D[:7], 6) == [j, i]
    # consistency proofs of the RFC example: (3 -> 7) = [c, d, g, l], (4 -> 7) = [l],
    # (6 -> 7) = [i, j, k] with the RFC's letters; ours in our names:
    assert merkle.consistency_proof(D[:7], 3) == [c, d, k, N(j, g)]
    assert merkle.consistency_proof(D[:7], 4) == [N(j, g)]
    assert merkle.consistency_proof(D[:7], 6) == [j, g, i]
    assert merkle.consistency_proof(D[:7], 7) == []


def test_proof_lengths_follow_the_tree_shape():
    leaves = [bytes([i % 256]) * 32 for i in range(33)]
    assert len(merkle.inclusion_proof(leaves[:32], 5)) == 5  # a perfect tree: log2 32
    assert len(merkle.inclusion_proof(leaves[:33], 32)) == 1  # the lone rightmost leaf
    for n in range(1, 34):  # PATH has at most ceil(log2 n) nodes
        for m in range(n):
            assert len(merkle.inclusion_proof(leaves[:n], m)) <= (n - 1).bit_length()


def test_equal_sizes_and_bad_sizes():
    root = merkle.root(D[:5])
    merkle.verify_consistency(5, 5, root, root, [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 5, root, merkle.root(D[:4]), [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 5, root, root, [])
    with pytest.raises(ProofError):
        merkle.inclusion_proof(D[:5], 5)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(D[0], 5, 5, [], root)


leaf_lists = st.integers(min_value=1, max_value=70).flatmap(
    lambda n: st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n)
)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_byte_fails(leaves, data):
    n = len(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    merkle.verify_inclusion(leaves[index], index, n, proof, root)
    # a flipped byte anywhere: the leaf, a proof node, or the root
    targets = ["leaf", "root"] + [f"proof{i}" for i in range(len(proof))]
    target = data.draw(st.sampled_from(targets))
    position = data.draw(st.integers(min_value=0, max_value=31))
    bit = 1 << data.draw(st.integers(min_value=0, max_value=7))
    leaf, nodes, top = leaves[index], list(proof), root
    if target == "leaf":
        leaf = _flip(leaf, position, bit)
    elif target == "root":
        top = _flip(top, position, bit)
    else:
        i = int(target[5:])
        nodes[i] = _flip(nodes[i], position, bit)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, n, nodes, top)
    # the same proof does not prove another index, or a tree of another size
    if n > 1:
        other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
        assume(leaves[other] != leaves[index])
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[other], other, n, proof, root)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_any_flipped_byte_fails(leaves, data):
    n = len(leaves)
    m = data.draw(st.integers(min_value=1, max_value=n))
    old, new = merkle.root(leaves[:m]), merkle.root(leaves)
    proof = merkle.consistency_proof(leaves, m)
    merkle.verify_consistency(m, n, old, new, proof)
    if m == n:
        assert proof == []
        return
    targets = ["old", "new"] + [f"proof{i}" for i in range(len(proof))]
    target = data.draw(st.sampled_from(targets))
    position = data.draw(st.integers(min_value=0, max_value=31))
    bit = 1 << data.draw(st.integers(min_value=0, max_value=7))
    nodes = list(proof)
    if target == "old":
        old = _flip(old, position, bit)
    elif target == "new":
        new = _flip(new, position, bit)
    else:
        i = int(target[5:])
        nodes[i] = _flip(nodes[i], position, bit)
    with pytest.raises(ProofError):
        merkle.verify_consistency(m, n, old, new, nodes)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_a_changed_past_breaks_consistency(leaves, data):
    n = len(leaves)
    assume(n >= 2)
    m = data.draw(st.integers(min_value=1, max_value=n - 1))
    old = merkle.root(leaves[:m])
    rewritten = list(leaves)
    i = data.draw(st.integers(min_value=0, max_value=m - 1))
    rewritten[i] = _flip(rewritten[i], 0, 1)
    with pytest.raises(ProofError):
        merkle.verify_consistency(
            m, n, old, merkle.root(rewritten), merkle.consistency_proof(rewritten, m)
        )


def _flip(value: bytes, position: int, bit: int) -> bytes:
    out = bytearray(value)
    out[position] ^= bit
    return bytes(out)
