"""The fault-injecting in-memory storage (storage/memory.py) that tests/sim runs nodes on: each
fault it promises (lost un-fsynced writes, torn record, flipped bit, failed fsync, power loss)
does what the docstring says, and with no fault the memory adapters behave like the file
adapters behind the same ports (storage/ports.py) for the same sequence of calls."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from consortium_node.consensus.api import Entry
from consortium_node.ledger.block import Block, BlockHeader
from consortium_node.ledger.errors import InvariantError
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import BlockResult, Receipt
from consortium_node.storage.memory import (
    Disk,
    DiskFaults,
    MemoryBlockLog,
    MemoryConsensusLog,
    MemoryStateStore,
    PowerLoss,
)
from consortium_node.storage.ports import BlockLog, ConsensusLog, StateStore, open_files

pytestmark = pytest.mark.unit


def make_blocks(n: int, seed: int = 0) -> list[Block]:
    rng = random.Random(seed)
    out, prev = [], rng.randbytes(32)
    for h in range(1, n + 1):
        tx, root, vals, proposer = (rng.randbytes(32) for _ in range(4))
        header = BlockHeader(h, 1000 + h, prev, tx, root, vals, proposer)
        b = Block(header, (rng.randbytes(rng.randrange(1, 90)),))
        out.append(b)
        prev = b.hash
    return out


def _result(height: int) -> BlockResult:
    writes: dict[bytes, bytes | None] = {b"k/%d" % height: b"v%d" % height, b"k/1": None}
    acc = LtHash()
    acc.add(b"k/%d" % height, b"v%d" % height)
    receipts = (Receipt(b"t" * 31 + bytes([height]), height, 0, 0, "ok"),)
    return BlockResult(writes, receipts, acc.lanes(), acc.digest())


def _exercise(blocks: BlockLog, state: StateStore, wal: ConsensusLog) -> list[object]:
    """One sequence of calls through the ports; returns everything observable."""
    seen: list[object] = []
    state.init_genesis({b"k/1": b"g"}, LtHash().lanes(), b"r" * 32, b"g" * 32)
    for b in make_blocks(3, seed=7):
        blocks.append(b)
        state.commit_block(b.height, b.hash, _result(b.height))
        seen += [blocks.height, blocks.get_raw(b.height), state.meta(), state.height_of(b.hash)]
    wal.save(b"hs1", [Entry(1, 1, b"a"), Entry(2, 1, b"b"), Entry(3, 2, b"c")])
    wal.save(b"hs2", [Entry(3, 3, b"d")], truncate_from=3)
    wal.compact(2)
    seen += [wal.hard_state, wal.ordered_entries()]
    with state.snapshot() as snap:
        seen += [list(snap.entries()), list(snap.prefix(b"k/")), snap.has_tx(b"t" * 31 + b"\x02")]
    seen.append(state.tx_location(b"t" * 31 + b"\x03"))
    return seen


def test_memory_adapters_match_the_file_adapters(tmp_path: Path) -> None:
    files = open_files(tmp_path, fsync=False, with_wal=True)
    assert files.wal is not None
    disk = Disk(random.Random(0))
    try:
        got = _exercise(MemoryBlockLog(disk), MemoryStateStore(disk), MemoryConsensusLog(disk))
        assert got == _exercise(files.blocks, files.state, files.wal)
    finally:
        files.blocks.close()
        files.state.close()
        files.wal.close()


def test_reopen_after_a_clean_crash_keeps_everything_fsynced() -> None:
    disk = Disk(random.Random(1))
    log, wal = MemoryBlockLog(disk), MemoryConsensusLog(disk)
    for b in make_blocks(4):
        log.append(b)
    wal.save(b"vote", [Entry(1, 1, b"x")])
    disk.crash()
    again, wal2 = MemoryBlockLog(disk), MemoryConsensusLog(disk)
    assert again.height == 4 and again.repaired == 0
    assert wal2.hard_state == b"vote" and wal2.ordered_entries() == [Entry(1, 1, b"x")]


def test_writes_without_fsync_survive_a_crash_only_as_a_prefix() -> None:
    """What the 'skipped fsync' mutant relies on: unsynced records may vanish at a crash."""
    lost = 0
    for seed in range(40):
        disk = Disk(random.Random(seed))
        wal = MemoryConsensusLog(disk, fsync=False)
        for i in range(1, 6):
            wal.save(b"hs%d" % i, [Entry(i, 1, b"e")])
        disk.crash()
        back = MemoryConsensusLog(disk)
        n = len(back.ordered_entries())
        assert back.ordered_entries() == [Entry(i, 1, b"e") for i in range(1, n + 1)]
        lost += n < 5
    assert lost > 0


def test_a_flipped_bit_is_cut_at_open_and_set_aside() -> None:
    disk = Disk(random.Random(2))
    log = MemoryBlockLog(disk)
    blocks = make_blocks(6)
    for b in blocks:
        log.append(b)
    at = disk.flip_block_bit()
    assert at is not None
    again = MemoryBlockLog(disk)
    assert again.height == at  # everything from the damaged record on is gone from the log
    assert again.repaired > 0 and len(disk.aside) == 6 - at
    assert all(again.get(h) == blocks[h - 1] for h in range(1, at + 1))


def test_power_loss_may_tear_the_record_being_written() -> None:
    torn = 0
    for seed in range(30):
        disk = Disk(random.Random(seed), DiskFaults(power_loss=0.3))
        log = MemoryBlockLog(disk)
        written = 0
        with pytest.raises(PowerLoss):
            for b in make_blocks(50):
                log.append(b)
                written += 1
        disk.crash()
        again = MemoryBlockLog(disk)
        assert again.height == written  # the record being written is never half-served
        torn += again.repaired > 0
    assert torn > 0


def test_a_failed_fsync_raises_and_leaves_the_write_undurable() -> None:
    disk = Disk(random.Random(3), DiskFaults(fsync_fail=1.0))
    state = MemoryStateStore(disk)
    with pytest.raises(OSError):
        state.init_genesis({b"a": b"1"}, LtHash().lanes(), b"r" * 32, b"g" * 32)
    assert state.meta() is None  # LMDB aborts a transaction whose fsync failed
    lost = 0
    for seed in range(20):
        d = Disk(random.Random(seed), DiskFaults(fsync_fail=1.0))
        with pytest.raises(OSError):
            MemoryConsensusLog(d).save(b"vote", [])
        d.crash()
        lost += MemoryConsensusLog(d).hard_state is None
    assert 0 < lost < 20


def test_state_commits_without_sync_roll_back_to_a_prefix_at_a_crash() -> None:
    for seed in range(20):
        disk = Disk(random.Random(seed))
        state = MemoryStateStore(disk, sync=False)
        state.init_genesis({}, LtHash().lanes(), b"r" * 32, b"g" * 32)
        for h in range(1, 6):
            state.commit_block(h, bytes([h]) * 32, _result(h))
        disk.crash()
        meta = MemoryStateStore(disk).meta()
        h = 0 if meta is None else meta.height
        with MemoryStateStore(disk).snapshot() as snap:
            assert all(snap.get(b"k/%d" % i) == b"v%d" % i for i in range(2, h + 1))
            assert all(snap.get(b"k/%d" % i) is None for i in range(h + 1, 6))


def test_a_commit_under_an_open_snapshot_is_refused() -> None:
    disk = Disk(random.Random(4))
    state = MemoryStateStore(disk)
    state.init_genesis({}, LtHash().lanes(), b"r" * 32, b"g" * 32)
    snap = state.snapshot()
    with pytest.raises(InvariantError):
        state.commit_block(1, b"h" * 32, _result(1))
    snap.close()
    state.commit_block(1, b"h" * 32, _result(1))
