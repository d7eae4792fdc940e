"""The in-memory Raft log: a compacted prefix (snapshot point) plus contiguous entries.

Used only by raft/engine.py. An entry's data is either empty (the no-op a new leader appends,
Raft §5.4.2 / §8) or `encode_entry(validators, block)`: the validator set deciding that block's
height followed by `Block.encode()`. Carrying the set makes membership a property of the log, as
Raft requires (thesis §4.1: a server uses the latest configuration in its log, committed or
not), although the application only learns a height's set once the block before it is applied.
For every entry we keep (height, hash, validators) so nothing is decoded twice.

Invariants: `entries[i].index == snap_index + 1 + i`; entries never go below `snap_index`;
`snap_block` is the last block at or below `snap_index` (the genesis/base block if none).
"""

from __future__ import annotations

import struct

from ...ledger.block import HEADER_LEN, Block, BlockHeader
from ...ledger.errors import DecodeError, InvariantError
from ..api import Entry

BlockRef = tuple[int, bytes]  # (height, block hash)
Ref = tuple[int, bytes, tuple[bytes, ...]]  # (height, block hash, validators deciding it)
ID_LEN = 32
_U16 = struct.Struct(">H")


def encode_entry(validators: tuple[bytes, ...], block: Block) -> bytes:
    if any(len(v) != ID_LEN for v in validators):
        raise InvariantError("validator ids must be 32 bytes")
    return _U16.pack(len(validators)) + b"".join(validators) + block.encode()


def _split(data: bytes) -> tuple[tuple[bytes, ...], int]:
    if len(data) < _U16.size:
        raise DecodeError("truncated raft entry")
    (n,) = _U16.unpack_from(data, 0)
    end = _U16.size + n * ID_LEN
    if len(data) < end + HEADER_LEN:
        raise DecodeError("truncated raft entry")
    vals = tuple(data[_U16.size + i * ID_LEN : _U16.size + (i + 1) * ID_LEN] for i in range(n))
    return vals, end


def decode_entry(data: bytes) -> tuple[tuple[bytes, ...], Block]:
    """(validators, block) of a block entry; raises DecodeError on garbage."""
    vals, end = _split(data)
    return vals, Block.decode(data[end:])


def block_ref(data: bytes) -> Ref | None:
    """(height, hash, validators) of the block in an entry, None for a no-op entry. Entries
    come from our own log or a leader's AppendEntries (trusted in the crash-fault model)."""
    if not data:
        return None
    try:
        vals, end = _split(data)
        h = BlockHeader.decode(data[end : end + HEADER_LEN])
    except DecodeError:
        raise InvariantError("raft log entry holds an undecodable block") from None
    return h.height, h.hash, vals


class RaftLog:
    __slots__ = ("entries", "refs", "snap_block", "snap_index", "snap_term")

    def __init__(self, snap_index: int, snap_term: int, snap_block: BlockRef) -> None:
        self.snap_index = snap_index
        self.snap_term = snap_term
        self.snap_block = snap_block
        self.entries: list[Entry] = []
        self.refs: list[Ref | None] = []

    @property
    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap_term

    def term(self, i: int) -> int | None:
        """Term of entry `i`; None when `i` is compacted away (below the snapshot) or absent."""
        if i == self.snap_index:
            return self.snap_term
        if self.snap_index < i <= self.last_index:
            return self.entries[i - self.snap_index - 1].term
        return None

    def get(self, i: int) -> Entry:
        return self.entries[i - self.snap_index - 1]

    def ref(self, i: int) -> Ref | None:
        return self.refs[i - self.snap_index - 1]

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries lo..hi inclusive, at least one, stopping once `max_bytes` is exceeded."""
        out: list[Entry] = []
        size = 0
        for i in range(lo - self.snap_index - 1, hi - self.snap_index):
            e = self.entries[i]
            if out and size + len(e.data) > max_bytes:
                break
            out.append(e)
            size += len(e.data)
        return out

    def append(self, e: Entry) -> None:
        if e.index != self.last_index + 1:
            raise InvariantError(f"raft log append at {e.index}, last is {self.last_index}")
        self.entries.append(e)
        self.refs.append(block_ref(e.data))

    def truncate_from(self, i: int) -> None:
        """Drop entries with index >= i (a conflicting uncommitted suffix, Raft §5.3)."""
        k = i - self.snap_index - 1
        if k < 0:
            raise InvariantError(f"raft log truncation at {i} below snapshot {self.snap_index}")
        del self.entries[k:]
        del self.refs[k:]

    def tip(self) -> BlockRef:
        """The highest block in the log (or the snapshot's block)."""
        for r in reversed(self.refs):
            if r is not None:
                return r[0], r[1]
        return self.snap_block

    def last_config(self) -> tuple[bytes, ...] | None:
        """Validators carried by the last block entry (None: no block above the snapshot)."""
        for r in reversed(self.refs):
            if r is not None:
                return r[2]
        return None

    def compact(self, upto: int) -> None:
        """Forget entries <= upto (all applied); the snapshot point moves to `upto`."""
        if upto <= self.snap_index:
            return
        if upto > self.last_index:
            raise InvariantError(f"raft compaction to {upto} beyond last index {self.last_index}")
        k = upto - self.snap_index
        for r in reversed(self.refs[:k]):
            if r is not None:
                self.snap_block = (r[0], r[1])
                break
        self.snap_term = self.entries[k - 1].term
        self.snap_index = upto
        del self.entries[:k]
        del self.refs[:k]

    def reset(self, snap_index: int, snap_term: int, snap_block: BlockRef) -> None:
        self.snap_index, self.snap_term, self.snap_block = snap_index, snap_term, snap_block
        self.entries.clear()
        self.refs.clear()
