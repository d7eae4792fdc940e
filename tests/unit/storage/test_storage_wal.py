"""The consensus WAL's fdatasync points (storage/wal.py): one per `save`, none for `compact`,
and a COMPACT record lost or torn by a crash leaves the file as it was before `compact` (the
state a crash between a block's apply and its compaction leaves anyway)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from consortium_node.consensus.api import Entry
from consortium_node.storage.wal import ConsensusWal

pytestmark = pytest.mark.unit


@pytest.fixture
def fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fds that os.fdatasync was called on (the real call still runs)."""
    calls: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    return calls


def test_save_syncs_and_compact_does_not(tmp_path: Path, fdatasyncs: list[int]) -> None:
    wal = ConsensusWal(tmp_path / "consensus.wal")
    wal.save(b"hs1", [Entry(1, 1, b"a"), Entry(2, 1, b"b")])
    assert len(fdatasyncs) == 1
    wal.compact(2)
    assert len(fdatasyncs) == 1, "compact must not fdatasync: its record rides the next save"
    assert wal.ordered_entries() == [Entry(2, 1, b"b")]
    wal.save(b"hs2", [])
    assert len(fdatasyncs) == 2
    wal.close()
    again = ConsensusWal(tmp_path / "consensus.wal")
    assert again.compacted == 2 and again.hard_state == b"hs2"
    assert again.ordered_entries() == [Entry(2, 1, b"b")]
    again.close()


@pytest.mark.parametrize("keep", [0, 1, 8, 12])
def test_a_lost_or_torn_compact_record_restores_the_state_before_it(
    tmp_path: Path, keep: int
) -> None:
    """A crash after compact (and before the next save's fdatasync) keeps any prefix of the
    COMPACT record (17 bytes: 9 of frame, 8 of body): replay cuts it and sees the pre-compact
    entries and hard state, all of which the last save made durable."""
    path = tmp_path / "consensus.wal"
    wal = ConsensusWal(path)
    wal.save(b"hs1", [Entry(1, 1, b"a"), Entry(2, 1, b"b")])
    durable = path.stat().st_size
    wal.compact(2)
    assert path.stat().st_size == durable + 17
    wal.close()
    os.truncate(path, durable + keep)
    again = ConsensusWal(path)
    assert again.compacted == 0 and again.hard_state == b"hs1"
    assert again.ordered_entries() == [Entry(1, 1, b"a"), Entry(2, 1, b"b")]
    assert path.stat().st_size == durable  # the torn bytes were cut
    again.save(b"hs2", [])  # and the log goes on from there
    again.close()
    last = ConsensusWal(path)
    assert last.hard_state == b"hs2"
    last.close()
