"""Append-only block segments (storage/blocks.py): framing, reopen, torn/corrupt tail repair,
segment rolling. Damaged bytes must be cut at open and never served."""

from __future__ import annotations

import os
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_node.ledger.block import Block, BlockHeader, CommitCertificate
from consortium_node.ledger.errors import InvariantError
from consortium_node.storage.blocks import BlockStore

pytestmark = pytest.mark.unit

FRAME = 8


def make_blocks(n: int, seed: int = 0, start: int = 1) -> list[Block]:
    rng = random.Random(seed)
    out = []
    prev = rng.randbytes(32)
    for h in range(start, start + n):
        header = BlockHeader(
            h,
            1000 + h,
            prev,
            rng.randbytes(32),
            rng.randbytes(32),
            rng.randbytes(32),
            rng.randbytes(32),
        )
        txs = tuple(rng.randbytes(rng.randrange(1, 120)) for _ in range(rng.randrange(0, 4)))
        b = Block(header, txs)
        if rng.random() < 0.5:
            b = b.with_certificate(
                CommitCertificate(h, 0, b.hash, ((rng.randbytes(32), rng.randbytes(64)),))
            )
        out.append(b)
        prev = b.hash
    return out


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Durability is not observable in a unit test; skipping the syncs keeps hundreds of
    # reopen/repair cycles fast. The code paths (truncate, unlink, pwrite) are unchanged.
    monkeypatch.setattr(os, "fsync", _no_sync)
    monkeypatch.setattr(os, "fdatasync", _no_sync)
    yield tmp_path / "blocks"


def _no_sync(fd: int) -> None:
    os.fstat(fd)  # still fails on a bad descriptor, like the real call


def open_store(d: Path, segment_bytes: int = 1 << 20) -> BlockStore:
    return BlockStore(d, segment_bytes=segment_bytes)


def fill(d: Path, blocks: list[Block], segment_bytes: int = 1 << 20) -> None:
    s = open_store(d, segment_bytes)
    for b in blocks:
        s.append(b)
    s.close()


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("seg-*.blk"))


def record_ends(blocks: list[Block]) -> list[int]:
    """Offsets (in a single segment) just after each record."""
    ends, pos = [], 0
    for b in blocks:
        pos += FRAME + len(b.encode())
        ends.append(pos)
    return ends


def assert_serves_exactly(s: BlockStore, blocks: list[Block]) -> None:
    assert s.height == len(blocks)
    for b in blocks:
        got = s.get(b.height)
        assert got == b
        assert got is not None and got.hash == b.hash
        assert s.get_raw(b.height) == b.encode()
    assert s.get(len(blocks) + 1) is None
    assert s.get_raw(len(blocks) + 1) is None


# -- basics -----------------------------------------------------------------------------------


def test_empty_store(store_dir: Path) -> None:
    s = open_store(store_dir)
    assert s.height == 0 and s.repaired == 0
    assert s.get(0) is None and s.get(1) is None and s.get(-1) is None
    assert segments(store_dir) == []
    s.close()


def test_append_get_and_framing(store_dir: Path) -> None:
    blocks = make_blocks(5)
    s = open_store(store_dir)
    for i, b in enumerate(blocks):
        s.append(b)
        assert s.height == i + 1
    assert_serves_exactly(s, blocks)
    s.close()
    [seg] = segments(store_dir)
    assert seg.name == "seg-000000000001.blk"
    data = seg.read_bytes()
    assert len(data) == record_ends(blocks)[-1]
    pos = 0
    for b in blocks:  # u32 length | u32 crc32 | payload, big-endian
        length, crc = struct.unpack_from(">II", data, pos)
        payload = data[pos + FRAME : pos + FRAME + length]
        assert payload == b.encode() and crc == zlib.crc32(payload)
        pos += FRAME + length


def test_reopen_gives_the_same_chain(store_dir: Path) -> None:
    blocks = make_blocks(7)
    fill(store_dir, blocks)
    s = open_store(store_dir)
    assert s.repaired == 0
    assert_serves_exactly(s, blocks)
    more = make_blocks(3, start=8)
    for b in more:
        s.append(b)
    s.close()
    s = open_store(store_dir)
    assert_serves_exactly(s, blocks + more)
    s.close()


@pytest.mark.parametrize("height", [0, 2, 4, 100], ids=lambda h: f"h={h}")
def test_append_of_wrong_height_raises(store_dir: Path, height: int) -> None:
    blocks = make_blocks(3)
    s = open_store(store_dir)
    s.append(blocks[0])
    s.append(blocks[1])
    wrong = (
        make_blocks(1, start=height)[0]
        if height
        else Block(BlockHeader(0, 0, bytes(32), bytes(32), bytes(32), bytes(32), bytes(32)), ())
    )
    with pytest.raises(InvariantError, match="append"):
        s.append(wrong)
    assert s.height == 2
    s.append(blocks[2])
    assert_serves_exactly(s, blocks)
    s.close()


# -- torn and corrupt tails -------------------------------------------------------------------


def test_torn_tail_at_every_offset_of_the_last_records(store_dir: Path) -> None:
    blocks = make_blocks(4, seed=1)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    full = seg.read_bytes()
    ends = record_ends(blocks)
    starts = [0, *ends[:-1]]
    # every offset inside the last record, around the previous record's frame, and the first's
    offsets = [
        *range(starts[3], ends[3] + 1),
        *range(starts[2] - 1, starts[2] + FRAME + 2),
        *range(0, FRAME + 2),
    ]
    assert len(offsets) > 100
    for cut in offsets:
        seg.write_bytes(full[:cut])
        s = open_store(store_dir)
        whole = sum(1 for e in ends if e <= cut)
        keep = ends[whole - 1] if whole else 0
        assert s.height == whole, cut
        assert s.repaired == cut - keep, cut
        assert (s.repaired > 0) == (cut not in [0, *ends]), cut
        assert seg.stat().st_size == keep, cut
        assert_serves_exactly(s, blocks[:whole])
        s.close()


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
def test_torn_tail_at_random_offsets_then_recovery(store_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    blocks = make_blocks(12, seed=seed)
    ends = record_ends(blocks)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    full = seg.read_bytes()
    for cut in rng.sample(range(1, len(full)), 25):
        seg.write_bytes(full[:cut])
        s = open_store(store_dir)
        whole = sum(1 for e in ends if e <= cut)
        assert s.height == whole
        assert s.repaired == cut - (ends[whole - 1] if whole else 0)
        assert_serves_exactly(s, blocks[:whole])
        # the repaired store accepts the missing blocks again, and a reopen is clean
        for b in blocks[whole:]:
            s.append(b)
        s.close()
        s = open_store(store_dir)
        assert s.repaired == 0
        assert_serves_exactly(s, blocks)
        s.close()
        assert seg.read_bytes() == full


@pytest.mark.parametrize("where", ["length", "crc", "payload", "header-version"])
def test_corrupt_last_record_is_cut(store_dir: Path, where: str) -> None:
    blocks = make_blocks(5, seed=2)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    data = bytearray(seg.read_bytes())
    ends = record_ends(blocks)
    last = ends[-2]
    offset = {
        "length": last + 3,
        "crc": last + 6,
        "payload": len(data) - 1,
        "header-version": last + FRAME + 1,
    }[where]
    data[offset] ^= 0x01
    if where == "header-version":  # keep the CRC valid so only decoding can catch it
        payload = bytes(data[last + FRAME :])
        data[last + 4 : last + 8] = struct.pack(">I", zlib.crc32(payload))
    seg.write_bytes(bytes(data))
    s = open_store(store_dir)
    assert s.height == 4
    assert s.repaired == ends[-1] - ends[-2]
    assert_serves_exactly(s, blocks[:4])
    s.close()


def test_valid_record_with_wrong_height_is_cut(store_dir: Path) -> None:
    """A well-framed, well-formed record that does not continue the height sequence."""
    blocks = make_blocks(3)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    stray = make_blocks(1, start=7)[0].encode()
    with seg.open("ab") as f:
        f.write(struct.pack(">II", len(stray), zlib.crc32(stray)) + stray)
    s = open_store(store_dir)
    assert s.height == 3
    assert s.repaired == FRAME + len(stray)
    assert_serves_exactly(s, blocks)
    s.close()


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
def test_garbage_appended_is_cut(store_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    blocks = make_blocks(3)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    garbage = rng.choice([bytes(rng.randrange(1, 64)), rng.randbytes(rng.randrange(1, 300))])
    with seg.open("ab") as f:
        f.write(garbage)
    s = open_store(store_dir)
    assert s.height == 3
    assert s.repaired == len(garbage)
    assert_serves_exactly(s, blocks)
    s.append(make_blocks(4)[3])
    assert s.height == 4
    s.close()


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
def test_random_bit_flips_never_serve_damaged_blocks(store_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    blocks = make_blocks(6, seed=seed)
    ends = record_ends(blocks)
    fill(store_dir, blocks)
    [seg] = segments(store_dir)
    full = seg.read_bytes()
    for _ in range(10):
        data = bytearray(full)
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        seg.write_bytes(bytes(data))
        s = open_store(store_dir)
        damaged = next(i for i, e in enumerate(ends) if pos < e)  # record holding the flip
        assert s.height == damaged
        assert_serves_exactly(s, blocks[:damaged])
        s.close()


# -- segments ---------------------------------------------------------------------------------


def test_segments_roll_and_reopen(store_dir: Path) -> None:
    blocks = make_blocks(10, seed=3)
    fill(store_dir, blocks, segment_bytes=1)  # every block in its own segment
    segs = segments(store_dir)
    assert [p.name for p in segs] == [f"seg-{h:012d}.blk" for h in range(1, 11)]
    s = open_store(store_dir, segment_bytes=1)
    assert s.repaired == 0
    assert_serves_exactly(s, blocks)
    s.close()
    # a larger limit groups several blocks per segment; reopening with another limit is fine
    d2 = store_dir.parent / "grouped"
    fill(d2, blocks, segment_bytes=600)
    assert 1 < len(segments(d2)) < 10
    s = open_store(d2, segment_bytes=1 << 20)
    assert_serves_exactly(s, blocks)
    s.close()


def test_corruption_in_a_middle_segment_drops_later_segments(store_dir: Path) -> None:
    blocks = make_blocks(8, seed=4)
    fill(store_dir, blocks, segment_bytes=1)
    segs = segments(store_dir)
    later = sum(p.stat().st_size for p in segs[4:])
    data = bytearray(segs[3].read_bytes())  # holds block 4
    data[-1] ^= 0xFF
    segs[3].write_bytes(bytes(data))
    s = open_store(store_dir, segment_bytes=1)
    assert s.height == 3
    assert s.repaired == len(data) + later
    assert [p.name for p in segments(store_dir)] == [p.name for p in segs[:4]]
    assert segs[3].stat().st_size == 0
    assert_serves_exactly(s, blocks[:3])
    for b in blocks[3:]:  # refetched from peers
        s.append(b)
    s.close()
    s = open_store(store_dir, segment_bytes=1)
    assert s.repaired == 0
    assert_serves_exactly(s, blocks)
    s.close()


def test_missing_middle_segment_drops_later_segments(store_dir: Path) -> None:
    blocks = make_blocks(6, seed=5)
    fill(store_dir, blocks, segment_bytes=1)
    segs = segments(store_dir)
    later = sum(p.stat().st_size for p in segs[3:])
    segs[2].unlink()  # block 3 gone
    s = open_store(store_dir, segment_bytes=1)
    assert s.height == 2
    assert s.repaired == later > 0
    assert segments(store_dir) == segs[:2]
    assert_serves_exactly(s, blocks[:2])
    s.close()


def test_torn_tail_in_the_last_of_several_segments(store_dir: Path) -> None:
    blocks = make_blocks(9, seed=6)
    fill(store_dir, blocks, segment_bytes=700)
    segs = segments(store_dir)
    assert len(segs) >= 3
    last = segs[-1]
    data = last.read_bytes()
    last.write_bytes(data[:-5])
    s = open_store(store_dir, segment_bytes=700)
    assert s.repaired > 0
    assert s.height < 9
    assert_serves_exactly(s, blocks[: s.height])
    s.close()


def test_empty_trailing_segment_is_reused(store_dir: Path) -> None:
    """A crash right after creating a new segment leaves an empty file: it is a valid, empty
    continuation and the next append goes into it."""
    blocks = make_blocks(3, seed=7)
    fill(store_dir, blocks[:2], segment_bytes=1)
    (store_dir / "seg-000000000003.blk").touch()
    s = open_store(store_dir, segment_bytes=1)
    assert s.height == 2 and s.repaired == 0
    s.append(blocks[2])
    s.close()
    assert [p.name for p in segments(store_dir)][-1] == "seg-000000000003.blk"
    s = open_store(store_dir, segment_bytes=1)
    assert_serves_exactly(s, blocks)
    s.close()


def test_snapshot_base_leaves_a_gap_that_survives_reopen(store_dir: Path) -> None:
    """After a state-snapshot install at height 20 the store continues at 21; heights in the
    gap read as None, before and after a reopen; a base below the stored height is refused."""
    store = BlockStore(store_dir)
    for b in make_blocks(5):
        store.append(b)
    with pytest.raises(InvariantError):
        store.set_base(3)
    store.set_base(20)
    assert store.height == 20 and store.base == 20
    later = make_blocks(3, seed=7, start=21)
    for b in later:
        store.append(b)
    store.close()
    again = BlockStore(store_dir)
    assert again.height == 23 and again.repaired == 0
    assert [again.get(h) for h in range(1, 6)] == make_blocks(5)
    assert all(again.get(h) is None for h in range(6, 21))
    assert [again.get(h) for h in (21, 22, 23)] == later
    with pytest.raises(InvariantError):
        again.append(make_blocks(1, start=25)[0])
    again.close()
