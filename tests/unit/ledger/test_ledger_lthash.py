"""LtHash16 multiset hash (ledger/lthash.py): homomorphism, lanes round trip, the lazy-mask
boundary. The reference here computes lanes directly from the definition: each element is
SHAKE-128(u32 len(key) || key || value) read as 1024 big-endian u16 lanes, summed mod 2**16."""

from __future__ import annotations

import collections
import hashlib
import random
import struct

import pytest
from consortium_node.ledger.lthash import LANES, LtHash

pytestmark = pytest.mark.unit

Pair = tuple[bytes, bytes]


def ref_element(key: bytes, value: bytes) -> list[int]:
    h = hashlib.shake_128(struct.pack(">I", len(key)) + key + value).digest(LANES * 2)
    return [int.from_bytes(h[2 * i : 2 * i + 2], "big") for i in range(LANES)]


def ref_lanes(counts: dict[Pair, int]) -> bytes:
    """Lanes of the multiset where `counts[pair]` may be negative (removals)."""
    acc = [0] * LANES
    for (k, v), c in counts.items():
        e = ref_element(k, v)
        for i in range(LANES):
            acc[i] += c * e[i]
    return b"".join(struct.pack(">H", x % 65536) for x in acc)


def ref_digest(lanes: bytes) -> bytes:
    return hashlib.sha256(b"consortium/lthash16/v1" + lanes).digest()


def pairs(rng: random.Random, n: int) -> list[Pair]:
    return [
        (rng.randbytes(rng.randrange(0, 12)), rng.randbytes(rng.randrange(0, 20))) for _ in range(n)
    ]


def of(items: list[Pair]) -> LtHash:
    h = LtHash()
    for k, v in items:
        h.add(k, v)
    return h


def test_empty() -> None:
    h = LtHash()
    assert h.lanes() == bytes(LANES * 2)
    assert h.digest() == ref_digest(bytes(LANES * 2))
    assert LtHash(bytes(LANES * 2)).digest() == h.digest()


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
def test_matches_reference_definition(seed: int) -> None:
    rng = random.Random(seed)
    items = pairs(rng, 6)
    h = of(items)
    removed = items[:2]
    for k, v in removed:
        h.remove(k, v)
    counts: dict[Pair, int] = collections.Counter(items)
    for p in removed:
        counts[p] -= 1
    assert h.lanes() == ref_lanes(counts)
    assert h.digest() == ref_digest(h.lanes())


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed={s}")
def test_order_independence(seed: int) -> None:
    rng = random.Random(seed)
    items = pairs(rng, 40)
    base = of(items).digest()
    for _ in range(5):
        shuffled = items[:]
        rng.shuffle(shuffled)
        assert of(shuffled).digest() == base


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed={s}")
def test_interleaved_add_remove_order_independence(seed: int) -> None:
    """Any interleaving of the same adds and removes lands on the same lanes (also when a
    remove comes before its add, i.e. the running multiset is temporarily 'negative')."""
    rng = random.Random(seed)
    adds = pairs(rng, 30)
    removes = rng.sample(adds, 10) + pairs(rng, 3)
    ops = [("add", p) for p in adds] + [("remove", p) for p in removes]
    results = set()
    for _ in range(4):
        rng.shuffle(ops)
        h = LtHash()
        for op, (k, v) in ops:
            (h.add if op == "add" else h.remove)(k, v)
        results.add(h.lanes())
    assert len(results) == 1
    counts: dict[Pair, int] = collections.Counter(adds)
    for p in removes:
        counts[p] = counts.get(p, 0) - 1
    assert results.pop() == ref_lanes(counts)


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
def test_remove_undoes_add(seed: int) -> None:
    rng = random.Random(seed)
    h = of(pairs(rng, 20))
    before = h.digest()
    extra = pairs(rng, 15)
    for k, v in extra:
        h.add(k, v)
    assert h.digest() != before
    rng.shuffle(extra)
    for k, v in extra:
        h.remove(k, v)
    assert h.digest() == before
    # removing everything returns to the empty hash
    empty = LtHash()
    k, v = extra[0]
    empty.add(k, v)
    empty.remove(k, v)
    assert empty.lanes() == bytes(LANES * 2)


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
def test_lanes_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    h = of(pairs(rng, 25))
    lanes = h.lanes()
    assert len(lanes) == LANES * 2
    back = LtHash(lanes)
    assert back.lanes() == lanes
    assert back.digest() == h.digest()
    # continuing from the restored accumulator equals continuing from the original
    more = pairs(rng, 10)
    for k, v in more:
        h.add(k, v)
        back.add(k, v)
    h.remove(*more[0])
    back.remove(*more[0])
    assert back.digest() == h.digest()


def test_copy_is_independent() -> None:
    h = of(pairs(random.Random(5), 5))
    c = h.copy()
    assert c.digest() == h.digest()
    c.add(b"k", b"v")
    assert c.digest() != h.digest()
    assert h.digest() == of(pairs(random.Random(5), 5)).digest()


@pytest.mark.parametrize("length", [0, 1, LANES * 2 - 1, LANES * 2 + 1, LANES * 4])
def test_wrong_lane_length_is_rejected(length: int) -> None:
    with pytest.raises(ValueError, match="2048"):
        LtHash(bytes(length))


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed={s}")
def test_equal_multisets_equal_digest_different_differ(seed: int) -> None:
    rng = random.Random(seed)
    items = pairs(rng, 12)
    assert of(items).digest() == of(list(reversed(items))).digest()
    # multiplicity matters
    assert of([*items, items[0]]).digest() != of(items).digest()
    # a different element, a dropped one, a changed value
    assert of([*items[1:], (b"other", b"x")]).digest() != of(items).digest()
    assert of(items[1:]).digest() != of(items).digest()
    k, v = items[0]
    assert of([(k, v + b"!"), *items[1:]]).digest() != of(items).digest()


def test_key_value_boundary_is_unambiguous() -> None:
    # the key length prefix keeps (ab, c) and (a, bc) apart
    assert of([(b"ab", b"c")]).digest() != of([(b"a", b"bc")]).digest()
    assert of([(b"", b"abc")]).digest() != of([(b"abc", b"")]).digest()


def test_mask_boundary_many_adds_and_removes() -> None:
    """More than 2**16 unmasked additions would carry out of a 32-bit slot into the next lane;
    the accumulator masks every 2**14 operations. Compare with the reference mod-2**16 sums
    across several mask boundaries (adds and removes, without any intermediate digest)."""
    rng = random.Random(1 << 14)
    elems = pairs(rng, 3)
    h = LtHash()
    counts = {p: 0 for p in elems}
    for i in range((1 << 16) + 2000):  # elems[0] alone is added more than 2**16 times
        p = elems[1] if i % 64 == 0 else elems[0]
        h.add(*p)
        counts[p] += 1
    assert counts[elems[0]] > 1 << 16
    for _ in range(1000):
        h.remove(*elems[2])
        counts[elems[2]] -= 1
    assert h.lanes() == ref_lanes(counts)


def test_pending_boundary_survives_copy_and_round_trip() -> None:
    rng = random.Random(14)
    k, v = pairs(rng, 1)[0]
    h = LtHash()
    for _ in range((1 << 14) - 1):  # one short of the mask
        h.add(k, v)
    c = h.copy()
    for _ in range(3):
        c.add(k, v)
    assert c.lanes() == ref_lanes({(k, v): (1 << 14) + 2})
    for _ in range(3):
        h.add(k, v)
    assert LtHash(h.lanes()).digest() == c.digest()
