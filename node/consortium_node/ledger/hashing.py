"""SHA-256 helpers and the RFC 6962 Merkle tree over a block's transaction ids.

Called by block.py (tx root), runtime (inclusion proofs for GetTx) and the CLI (proof check)."""

from __future__ import annotations

import hashlib

HASH_LEN = 32
ZERO_HASH = b"\x00" * HASH_LEN
_LEAF = b"\x00"
_NODE = b"\x01"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _leaf(item: bytes) -> bytes:
    return sha256(_LEAF + item)


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE + left + right)


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(items: list[bytes] | tuple[bytes, ...]) -> bytes:
    """RFC 6962 Merkle tree hash; the empty tree hashes to SHA-256 of nothing."""
    if not items:
        return sha256(b"")
    level = [_leaf(i) for i in items]
    return _root_of_leaves(level)


def _root_of_leaves(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = _split(n)
    return _node(_root_of_leaves(leaves[:k]), _root_of_leaves(leaves[k:]))


def merkle_proof(items: list[bytes] | tuple[bytes, ...], index: int) -> list[bytes]:
    """Audit path for items[index], leaf to root (RFC 6962 section 2.1.1)."""
    if not 0 <= index < len(items):
        raise IndexError(f"index {index} out of range for {len(items)} items")
    return _path(index, [_leaf(i) for i in items])


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, leaves[:k]), _root_of_leaves(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _root_of_leaves(leaves[:k])]


def verify_merkle_proof(item: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """True iff `path` proves `item` is leaf `index` of a `size`-leaf tree with `root`
    (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = _leaf(item)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
