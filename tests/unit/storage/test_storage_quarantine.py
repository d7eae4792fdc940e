"""Issue 13 defect 4 (storage half): damage found at open is cut from the live segments but
never destroyed: the damaged segment is copied and every later segment moved into
`damaged/<n>/` first (storage/blocks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from consortium_node.storage.blocks import BlockStore

from tests.unit.storage.test_storage_blocks import fill, make_blocks, record_ends, segments

pytestmark = pytest.mark.unit


def test_a_flipped_byte_is_cut_but_kept_aside(tmp_path: Path) -> None:
    d = tmp_path / "blocks"
    blocks = make_blocks(10, seed=4)
    fill(d, blocks)
    (seg,) = segments(d)
    ends = record_ends(blocks)
    original = bytearray(seg.read_bytes())
    original[ends[4] + 20] ^= 0xFF  # inside block 6
    seg.write_bytes(bytes(original))
    s = BlockStore(d)
    try:
        assert s.height == 5 and s.get(6) is None
        assert s.damaged == d / "damaged" / "1"
        assert (s.damaged / seg.name).read_bytes() == bytes(original)
        assert seg.read_bytes() == bytes(original[: ends[4]])
        assert s.repaired == len(original) - ends[4]
    finally:
        s.close()


def test_later_segments_are_moved_aside_and_each_repair_gets_its_own_dir(tmp_path: Path) -> None:
    d = tmp_path / "blocks"
    blocks = make_blocks(30, seed=5)
    fill(d, blocks, segment_bytes=1000)
    names = segments(d)
    assert len(names) >= 3
    before = {p.name: p.read_bytes() for p in names}
    first = bytearray(names[0].read_bytes())
    first[10] ^= 0x01  # the first record's CRC fails: everything after it is suspect
    names[0].write_bytes(bytes(first))
    s = BlockStore(d, segment_bytes=1000)
    s.close()
    aside = d / "damaged" / "1"
    assert {p.name for p in aside.iterdir()} == set(before)
    for p in names[1:]:
        assert (aside / p.name).read_bytes() == before[p.name]
    assert segments(d) == [names[0]] and names[0].read_bytes() == b""
    # a second repair keeps the first one's evidence
    names[0].write_bytes(b"\x00\x00\x00\x05junk!")
    BlockStore(d, segment_bytes=1000).close()
    assert (d / "damaged" / "1").is_dir() and (d / "damaged" / "2").is_dir()
