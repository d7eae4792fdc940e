"""RFC 6962 Merkle tree: roots, audit paths and proof verification (ledger/hashing.py).

The expected values are computed here independently from the RFC 6962 section 2.1 definitions
(leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || left || right), split at the largest power of
two strictly smaller than n), written recursively rather than the way the module does it, and
pinned to the published certificate-transparency known answers for the 8-leaf vector."""

from __future__ import annotations

import hashlib
import random

import pytest
from consortium_node.ledger.hashing import (
    HASH_LEN,
    ZERO_HASH,
    merkle_proof,
    merkle_root,
    sha256,
    verify_merkle_proof,
)

pytestmark = pytest.mark.unit

SIZES = list(range(21))


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two strictly smaller than n (RFC 6962: k < n <= 2k)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1."""
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = _k(n)
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1 (leaf to root)."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_verify(item: bytes, m: int, n: int, path: list[bytes], root: bytes) -> bool:
    """An independent verifier: rebuild the root along the tree shape of (m, n)."""

    def fold(m: int, n: int, path: list[bytes]) -> bytes | None:
        if n == 1:
            return _h(b"\x00" + item) if not path else None
        if not path:
            return None
        k = _k(n)
        if m < k:
            sub = fold(m, k, path[:-1])
            return None if sub is None else _h(b"\x01" + sub + path[-1])
        sub = fold(m - k, n - k, path[:-1])
        return None if sub is None else _h(b"\x01" + path[-1] + sub)

    if not 0 <= m < n:
        return False
    return fold(m, n, path) == root


def items_for(n: int) -> list[bytes]:
    """Distinct leaves of varying length (including the empty string)."""
    return [bytes([i]) * (i % 5) + i.to_bytes(2, "big") if i else b"" for i in range(n)]


# The certificate-transparency test vector (merkle_tree_test.cc): 8 leaves and MTH of each prefix.
CT_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_sha256_and_constants() -> None:
    assert sha256(b"abc") == hashlib.sha256(b"abc").digest()
    assert HASH_LEN == 32
    assert bytes(32) == ZERO_HASH


@pytest.mark.parametrize("n", range(len(CT_ROOTS)), ids=lambda n: f"n={n}")
def test_ct_known_answers(n: int) -> None:
    assert ref_mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]  # the reference itself is right
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n]
    assert merkle_root(tuple(CT_LEAVES[:n])).hex() == CT_ROOTS[n]


def test_empty_tree_is_hash_of_nothing() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").digest()


def test_single_leaf_is_domain_separated() -> None:
    # A one-leaf tree is H(0x00 || x), never H(x): leaves and nodes cannot be confused.
    assert merkle_root([b"x"]) == _h(b"\x00x") != _h(b"x")
    a, b = _h(b"\x00a"), _h(b"\x00b")
    assert merkle_root([b"a", b"b"]) == _h(b"\x01" + a + b)
    # A second-preimage attempt: a "leaf" equal to the concatenation of two child hashes.
    assert merkle_root([a + b]) != merkle_root([b"a", b"b"])


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n={n}")
def test_root_matches_reference(n: int) -> None:
    d = items_for(n)
    assert merkle_root(d) == ref_mth(d)


@pytest.mark.parametrize("n", SIZES[1:], ids=lambda n: f"n={n}")
def test_every_index_proves_and_verifies(n: int) -> None:
    d = items_for(n)
    root = ref_mth(d)
    for m in range(n):
        path = merkle_proof(d, m)
        assert path == ref_path(m, d), (n, m)
        assert all(len(p) == HASH_LEN for p in path)
        assert verify_merkle_proof(d[m], m, n, path, root), (n, m)
        assert ref_verify(d[m], m, n, path, root)


@pytest.mark.parametrize("n", [0, 1, 2, 7], ids=lambda n: f"n={n}")
def test_proof_index_out_of_range_raises(n: int) -> None:
    d = items_for(n)
    for m in (-1, n, n + 5):
        with pytest.raises(IndexError):
            merkle_proof(d, m)


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("n", SIZES[1:], ids=lambda n: f"n={n}")
def test_tampered_proofs_fail(n: int) -> None:
    rng = random.Random(6962 + n)
    d = items_for(n)
    root = ref_mth(d)
    for m in range(n):
        item, path = d[m], merkle_proof(d, m)
        # a different item (also one that is another leaf of the same tree)
        assert not verify_merkle_proof(item + b"!", m, n, path, root)
        for other in range(n):
            if other != m:
                assert not verify_merkle_proof(d[other], m, n, path, root)
        # tampered root
        assert not verify_merkle_proof(item, m, n, path, _flip(root, rng.randrange(256)))
        assert not verify_merkle_proof(item, m, n, path, ZERO_HASH)
        # each path element flipped, dropped, duplicated; extra elements; reordered
        for j in range(len(path)):
            bad = list(path)
            bad[j] = _flip(bad[j], rng.randrange(256))
            assert not verify_merkle_proof(item, m, n, bad, root)
            assert not verify_merkle_proof(item, m, n, path[:j] + path[j + 1 :], root)
            assert not verify_merkle_proof(item, m, n, [*path[: j + 1], *path[j:]], root)
        assert not verify_merkle_proof(item, m, n, [*path, root], root)
        assert not verify_merkle_proof(item, m, n, [*path, ZERO_HASH], root)
        if len(path) >= 2 and path[0] != path[-1]:
            assert not verify_merkle_proof(item, m, n, path[::-1], root)
        # a wrong index in the same tree never verifies (the position fixes the tree shape)
        for m2 in range(n):
            if m2 != m:
                assert not verify_merkle_proof(item, m2, n, path, root), (m, m2)
        # indices outside the tree
        for m2 in (-1, n, n + 1):
            assert not verify_merkle_proof(item, m2, n, path, root)


@pytest.mark.parametrize("n", SIZES[1:], ids=lambda n: f"n={n}")
def test_tampered_size(n: int) -> None:
    """A proof binds the position and the root, and a size only through the tree shape: a
    different size verifies exactly when (index, size') has the same shape and the root still
    matches — the independent verifier must agree on every case, and sizes that change the path
    length must fail."""
    d = items_for(n)
    root = ref_mth(d)
    for m in range(n):
        path = merkle_proof(d, m)
        for n2 in range(0, 2 * n + 3):
            if n2 == n:
                continue
            got = verify_merkle_proof(d[m], m, n2, path, root)
            assert got == ref_verify(d[m], m, n2, path, root), (n, m, n2)
            if m >= n2 or len(ref_path(m, items_for(n2))) != len(path):
                assert not got, (n, m, n2)


def test_size_change_that_keeps_the_shape_is_the_only_accepted_case() -> None:
    # Leaf 0 of a 3-leaf tree has the same audit-path shape in a 4-leaf tree: RFC 9162
    # verification accepts it (the root, not the size, is what a proof commits to).
    d = items_for(3)
    path = merkle_proof(d, 0)
    assert verify_merkle_proof(d[0], 0, 4, path, ref_mth(d))
    # ...but the last leaf's shape depends on the size.
    path2 = merkle_proof(d, 2)
    assert not verify_merkle_proof(d[2], 2, 4, path2, ref_mth(d))


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed={s}")
def test_random_trees(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(21, 200)
    d = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    root = merkle_root(d)
    assert root == ref_mth(d)
    for m in rng.sample(range(n), 20):
        path = merkle_proof(d, m)
        assert path == ref_path(m, d)
        assert verify_merkle_proof(d[m], m, n, path, root)
        assert not verify_merkle_proof(d[m], m, n, path, merkle_root(d[:-1]))


def test_duplicate_leaves_are_positional() -> None:
    d = [b"same"] * 5
    root = merkle_root(d)
    for m in range(5):
        assert verify_merkle_proof(b"same", m, 5, merkle_proof(d, m), root)
    # the proof of index 0 does not verify for index 4 even though the items are equal
    assert not verify_merkle_proof(b"same", 4, 5, merkle_proof(d, 0), root)
