"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and their verification.

Hashes in, hashes out. Proof generation reads complete subtrees through a ``NodeReader`` (level,
index) -> hash, so a tree of any size is served from stored nodes without holding it in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from fabguard.domain.errors import FabGuardError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

NodeReader = Callable[[int, int], bytes]
"""``get(level, index)``: the hash of the complete subtree covering leaves [index*2^level, (index+1)*2^level)."""


class ProofError(FabGuardError, ValueError):
    """A proof or tree size that cannot be right (still a ``ValueError``, as callers catch one)."""

    code = "proof_invalid"
    status = 422


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: Sequence[bytes]) -> bytes:
    """The reference definition over leaf *hashes* (RFC 9162 2.1.1), for tests and small trees."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def subtree_hash(get: NodeReader, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), where [start, end) is a subtree of RFC 9162's recursion."""
    n = end - start
    if n <= 0:
        raise ProofError("empty subtree")
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return get(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(get, start, start + k), subtree_hash(get, start + k, end))


def root(get: NodeReader, size: int) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(get, 0, size)


def inclusion_proof(get: NodeReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(subtree_hash(get, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(get, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(get: NodeReader, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[second]) of RFC 9162 2.1.4.1."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    proof: list[bytes] = []
    start, end, whole = 0, second, True
    m = first
    while True:
        n = end - start
        if m == n:
            if not whole:
                proof.append(subtree_hash(get, start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_hash(get, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(get, start, start + k))
            start += k
            m -= k
            whole = False
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises ProofError unless ``leaf`` is at ``index`` in the tree with that root."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != expected_root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2; raises ProofError unless the tree of size ``second`` extends that of ``first``."""
    if first > second:
        raise ProofError(f"size {first} is larger than size {second}")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for the same size {first}: a fork")
        return
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root:
        raise ProofError(f"consistency proof does not match the root of size {first}")
    if sr != second_root:
        raise ProofError(f"consistency proof does not match the root of size {second}")


class CompactRange:
    """Streaming MTH: append leaf hashes one by one in O(log n) memory; ``root()`` at any point."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns the complete subtrees (level, index, hash) this append finished."""
        made = [(0, self.size, leaf)]
        level, h = 0, leaf
        stack = self._stack
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            h = node_hash(left, h)
            level += 1
            made.append((level, self.size >> level, h))
        stack.append((level, h))
        self.size += 1
        return made

    def push(self, leaf: bytes) -> None:
        """``append`` without reporting the finished subtrees: the verifier's hot loop."""
        stack = self._stack
        level, h = 0, leaf
        while stack and stack[-1][0] == level:
            h = _sha256(b"\x01" + stack.pop()[1] + h).digest()
            level += 1
        stack.append((level, h))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.push(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r
