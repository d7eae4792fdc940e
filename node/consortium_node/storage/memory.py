"""Fault-injecting in-memory storage: the ports of storage/ports.py over a simulated `Disk`.

Used by tests/sim (the whole-node simulator), never by a running node. Modelled on
tigerbeetle's testing/storage.zig: the disk survives the node; the node's stores are rebuilt from
it at every restart, the way the file adapters re-open their files, so recovery code runs for
real. What the disk does wrong, each decided by the disk's own seeded `random.Random`:

  lost writes   a record that was written but not made durable (no fsync yet, or its fsync
                failed) survives a crash only as part of a random prefix of such records
  torn record   a power loss during a write leaves that record cut short (its CRC fails)
  flipped bit   `flip_block_bit` damages one bit of one stored block record
  failed fsync  a write's fsync raises OSError(EIO): the record stays non-durable and the
                caller must stop (fail-stop, like PostgreSQL after fsyncgate)

Power loss is raised as `PowerLoss` from inside the write: the simulator catches it and treats
the node as crashed at that exact point (e.g. between appending a block and committing state).

Formats mirror the file adapters: block records are `Block.encode()` bytes with a CRC-32, and
the consensus log replays HARD/ENTRY/TRUNCATE/COMPACT records in order; at open, the first
record that fails its CRC (or does not decode, or breaks the height sequence) ends the valid
prefix and the rest is set aside in `Disk.aside` (kept, never served). LMDB commits are atomic,
so the state store has no torn writes: a commit is applied whole or not at all, and without
`sync` a crash keeps a random prefix of the commits since the last durable one."""

from __future__ import annotations

import errno
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from ..consensus.api import Entry
from ..ledger.block import Block
from ..ledger.errors import DecodeError, InvariantError
from ..ledger.state import VSET_PREFIX, BlockResult, Validator, decode_validators
from .ports import Meta, TxLocation

_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">QQ")
_TXLOC = struct.Struct(">QIB")
HARD, ENTRY, TRUNCATE, COMPACT = 1, 2, 3, 4


class PowerLoss(Exception):
    """The simulated machine lost power during a write; the node is gone from this point."""


@dataclass(frozen=True, slots=True)
class DiskFaults:
    """Per-write probabilities (0 = never)."""

    power_loss: float = 0.0  # crash during a write (the record may be torn)
    fsync_fail: float = 0.0  # the write's fsync reports EIO


@dataclass(slots=True)
class _Record:
    data: bytes
    crc: int
    durable: bool


@dataclass
class _File:
    """An append-only file of CRC-framed records."""

    records: list[_Record] = field(default_factory=list)

    def valid_prefix(self) -> int:
        n = 0
        for r in self.records:
            if zlib.crc32(r.data) != r.crc:
                break
            n += 1
        return n


@dataclass
class _StateImage:
    state: dict[bytes, bytes] = field(default_factory=dict)
    txs: dict[bytes, bytes] = field(default_factory=dict)
    hashes: dict[bytes, bytes] = field(default_factory=dict)
    meta: dict[bytes, bytes] = field(default_factory=dict)


# (table, key, previous value or None) — undo records of a commit that is not durable yet
_Undo = list[tuple[str, bytes, bytes | None]]


class Disk:
    """One node's simulated disk: what survives the node process. `writes`/`faults_hit`
    count for the sim's statistics."""

    def __init__(self, rng: random.Random, faults: DiskFaults | None = None) -> None:
        self.rng = rng
        self.faults = faults or DiskFaults()
        self.blocks = _File()
        self.block_base = 0
        self.wal = _File()
        self.image = _StateImage()
        self.pending_commits: list[_Undo] = []  # newest last; undone at a crash
        self.aside: list[bytes] = []  # damaged records set aside at open (never served)
        self.writes = 0
        self.faults_hit: dict[str, int] = {"power_loss": 0, "fsync_fail": 0, "bit_flip": 0}
        self.armed = True  # faults fire only while the node runs (not during a final heal)

    # -- the write path -------------------------------------------------------------------
    def _maybe_power_loss(self) -> bool:
        self.writes += 1
        if self.armed and self.faults.power_loss and self.rng.random() < self.faults.power_loss:
            self.faults_hit["power_loss"] += 1
            return True
        return False

    def _fsync(self) -> None:
        if self.armed and self.faults.fsync_fail and self.rng.random() < self.faults.fsync_fail:
            self.faults_hit["fsync_fail"] += 1
            raise OSError(errno.EIO, "simulated fsync failure")

    def append(self, f: _File, data: bytes, sync: bool) -> None:
        """Write one record; with `sync`, fsync the file (every earlier record becomes durable
        with it). Raises PowerLoss (record possibly torn) or OSError (fsync failed)."""
        if self._maybe_power_loss():
            if self.rng.random() < 0.5:  # torn: part of the record reached the platter
                cut = self.rng.randrange(len(data)) if data else 0
                f.records.append(_Record(data[:cut], zlib.crc32(data), durable=True))
            raise PowerLoss("power lost during a write")
        f.records.append(_Record(data, zlib.crc32(data), durable=False))
        if sync:
            self._fsync()
            for r in f.records:
                r.durable = True

    # -- what a crash does ----------------------------------------------------------------
    def crash(self) -> None:
        """Power off: of each file's non-durable records a random prefix survives (the last
        survivor possibly torn); non-durable state commits are undone from a random point."""
        for f in (self.blocks, self.wal):
            first = next((i for i, r in enumerate(f.records) if not r.durable), None)
            if first is None:
                continue
            keep = first + self.rng.randint(0, len(f.records) - first)
            del f.records[keep:]
            if keep > first and self.rng.random() < 0.3:
                last = f.records[keep - 1]
                last.data = last.data[: self.rng.randrange(len(last.data) or 1)]
            for r in f.records:
                r.durable = True
        if self.pending_commits:
            keep = self.rng.randint(0, len(self.pending_commits))
            for undo in reversed(self.pending_commits[keep:]):
                for table, key, old in reversed(undo):
                    d = getattr(self.image, table)
                    if old is None:
                        d.pop(key, None)
                    else:
                        d[key] = old
            self.pending_commits.clear()

    def flip_block_bit(self) -> int | None:
        """Flip one bit in a random stored block record; returns its position in the file."""
        valid = self.blocks.valid_prefix()
        if valid == 0:
            return None
        i = self.rng.randrange(valid)
        r = self.blocks.records[i]
        b = bytearray(r.data)
        pos = self.rng.randrange(len(b))
        b[pos] ^= 1 << self.rng.randrange(8)
        r.data = bytes(b)
        self.faults_hit["bit_flip"] += 1
        return i


class MemoryBlockLog:
    """BlockLog port over `Disk.blocks` (see storage/blocks.py for the semantics)."""

    def __init__(self, disk: Disk) -> None:
        self._disk = disk
        self._blocks: dict[int, bytes] = {}
        self._base = disk.block_base
        self._height = self._base
        self.repaired = 0
        f = disk.blocks
        good = 0
        for r in f.records:
            if zlib.crc32(r.data) != r.crc:
                break
            try:
                h = Block.decode(r.data).height
            except DecodeError:
                break
            if h <= self._base:  # below a snapshot base: superseded, skip
                good += 1
                continue
            if h != self._height + 1:
                break
            self._blocks[h] = r.data
            self._height = h
            good += 1
        if good != len(f.records):
            cut = f.records[good:]
            disk.aside.extend(r.data for r in cut)
            self.repaired = sum(len(r.data) for r in cut)
            del f.records[good:]

    @property
    def base(self) -> int:
        return self._base

    @property
    def height(self) -> int:
        return self._height

    def set_base(self, height: int) -> None:
        if height < self._height:
            raise InvariantError(f"snapshot base {height} below stored height {self._height}")
        if self._disk._maybe_power_loss():
            raise PowerLoss("power lost while writing BASE")
        self._disk._fsync()  # BASE is written to a temp file, fsynced, renamed: atomic
        self._disk.block_base = height
        self._base = self._height = height

    def append(self, block: Block) -> None:
        if block.height != self._height + 1:
            raise InvariantError(f"append of block {block.height} on top of {self._height}")
        payload = block.encode()
        self._disk.append(self._disk.blocks, payload, sync=True)
        self._blocks[block.height] = payload
        self._height = block.height

    def get_raw(self, height: int) -> bytes | None:
        return self._blocks.get(height)

    def get(self, height: int) -> Block | None:
        raw = self.get_raw(height)
        return None if raw is None else Block.decode(raw)

    def close(self) -> None:
        self._blocks.clear()


class MemoryConsensusLog:
    """ConsensusLog port over `Disk.wal` (see storage/wal.py for the record kinds)."""

    def __init__(self, disk: Disk, fsync: bool = True) -> None:
        self._disk = disk
        self._fsync = fsync
        self.hard_state: bytes | None = None
        self.entries: dict[int, Entry] = {}
        self.compacted = 0
        f = disk.wal
        good = f.valid_prefix()
        for r in f.records[:good]:
            self._apply(r.data[0], r.data[1:])
        if good != len(f.records):
            disk.aside.extend(r.data for r in f.records[good:])
            del f.records[good:]

    def _apply(self, kind: int, body: bytes) -> None:
        if kind == HARD:
            self.hard_state = body
        elif kind == ENTRY:
            index, term = _ENTRY.unpack_from(body)
            self.entries[index] = Entry(index, term, body[_ENTRY.size :])
        elif kind == TRUNCATE:
            cut = _U64.unpack(body)[0]
            for i in [i for i in self.entries if i >= cut]:
                del self.entries[i]
        elif kind == COMPACT:
            self.compacted = max(self.compacted, _U64.unpack(body)[0])
            for i in [i for i in self.entries if i < self.compacted]:
                del self.entries[i]

    def save(
        self,
        hard_state: bytes | None,
        entries: tuple[Entry, ...] | list[Entry],
        truncate_from: int | None = None,
    ) -> None:
        recs: list[tuple[int, bytes]] = []
        if truncate_from is not None:
            recs.append((TRUNCATE, _U64.pack(truncate_from)))
        for e in entries:
            recs.append((ENTRY, _ENTRY.pack(e.index, e.term) + e.data))
        if hard_state is not None:
            recs.append((HARD, hard_state))
        if recs:
            self._append(recs)

    def compact(self, below: int) -> None:
        if below <= self.compacted:
            return
        self._append([(COMPACT, _U64.pack(below))], sync=False)  # as ConsensusWal.compact
        if len(self._disk.wal.records) > 4096:
            self._rewrite()

    def _append(self, recs: list[tuple[int, bytes]], sync: bool = True) -> None:
        # one write of all records, one fsync unless `sync` is off (as ConsensusWal._append):
        # model each record as written in order; a power loss may tear the one being written
        for i, (kind, body) in enumerate(recs):
            self._disk.append(
                self._disk.wal,
                bytes([kind]) + body,
                sync=self._fsync and sync and i == len(recs) - 1,
            )
        for kind, body in recs:
            self._apply(kind, body)

    def _rewrite(self) -> None:
        """Atomic replace by the live state (temp file + fsync + rename in the file adapter)."""
        recs = [(COMPACT, _U64.pack(self.compacted))]
        recs += [(ENTRY, _ENTRY.pack(e.index, e.term) + e.data) for e in self.ordered_entries()]
        if self.hard_state is not None:
            recs.append((HARD, self.hard_state))
        if self._disk._maybe_power_loss():
            raise PowerLoss("power lost while rewriting the consensus log")
        self._disk._fsync()
        self._disk.wal.records = [
            _Record(bytes([k]) + b, zlib.crc32(bytes([k]) + b), durable=True) for k, b in recs
        ]

    def ordered_entries(self) -> list[Entry]:
        return [self.entries[i] for i in sorted(self.entries)]

    def close(self) -> None:
        """Nothing to release: the records live on the Disk."""


class MemorySnapshot:
    """StateView over the live image. Valid until the next commit (the store refuses to commit
    while one is open: the runtime always closes its snapshot before committing)."""

    __slots__ = ("_image", "_open", "_store")

    def __init__(self, store: MemoryStateStore) -> None:
        self._store = store
        self._image = store._disk.image
        self._open = True
        store._open_snapshots += 1

    def has_tx(self, tx_id: bytes) -> bool:
        return tx_id in self._image.txs

    def get(self, key: bytes) -> bytes | None:
        return self._image.state.get(key)

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        yield from sorted(self._image.state.items())

    def meta(self, key: bytes) -> bytes | None:
        return self._image.meta.get(key)

    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from sorted((k, v) for k, v in self._image.state.items() if k.startswith(prefix))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._store._open_snapshots -= 1

    def __enter__(self) -> MemorySnapshot:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class MemoryStateStore:
    """StateStore port over `Disk.image` (see storage/state.py for the tables)."""

    def __init__(self, disk: Disk, sync: bool = True) -> None:
        self._disk = disk
        self._sync = sync
        self._open_snapshots = 0

    def meta(self) -> Meta | None:
        m = self._disk.image.meta
        if b"height" not in m:
            return None
        return Meta(
            height=int(_U64.unpack(m[b"height"])[0]),
            block_hash=m[b"hash"],
            lthash=m[b"lthash"],
            state_root=m[b"root"],
            genesis_hash=m[b"genesis"],
        )

    def _commit(self, puts: list[tuple[str, bytes, bytes | None]]) -> None:
        """One atomic transaction of (table, key, value-or-None-to-delete)."""
        if self._open_snapshots:
            raise InvariantError("state commit while a snapshot is open")
        disk = self._disk
        if disk._maybe_power_loss():
            raise PowerLoss("power lost before the state commit")
        if self._sync:
            disk._fsync()  # LMDB aborts the transaction when its fsync fails
        undo: _Undo = []
        img = disk.image
        for table, key, value in puts:
            d: dict[bytes, bytes] = getattr(img, table)
            undo.append((table, key, d.get(key)))
            if value is None:
                d.pop(key, None)
            else:
                d[key] = value
        if self._sync:
            disk.pending_commits.clear()  # an fsync makes every earlier commit durable too
        else:
            disk.pending_commits.append(undo)

    @staticmethod
    def _meta_puts(
        height: int, bhash: bytes, lthash: bytes, root: bytes
    ) -> list[tuple[str, bytes, bytes | None]]:
        return [
            ("meta", b"height", _U64.pack(height)),
            ("meta", b"hash", bhash),
            ("meta", b"lthash", lthash),
            ("meta", b"root", root),
        ]

    def init_genesis(
        self, writes: dict[bytes, bytes | None], lthash: bytes, root: bytes, genesis_hash: bytes
    ) -> None:
        puts: list[tuple[str, bytes, bytes | None]] = [
            ("state", k, v) for k, v in writes.items() if v is not None
        ]
        puts += self._meta_puts(0, genesis_hash, lthash, root)
        puts.append(("meta", b"genesis", genesis_hash))
        self._commit(puts)

    def commit_block(self, height: int, block_hash: bytes, result: BlockResult) -> None:
        puts: list[tuple[str, bytes, bytes | None]] = [
            ("state", k, v) for k, v in result.writes.items()
        ]
        for r in result.receipts:
            puts.append(("txs", r.tx_id, _TXLOC.pack(height, r.index, r.code) + r.message.encode()))
        puts.append(("hashes", block_hash, _U64.pack(height)))
        puts += self._meta_puts(height, block_hash, result.lthash, result.state_root)
        self._commit(puts)

    def install_snapshot(
        self,
        entries: list[tuple[bytes, bytes]],
        height: int,
        block_hash: bytes,
        lthash: bytes,
        root: bytes,
    ) -> None:
        new = dict(entries)
        puts: list[tuple[str, bytes, bytes | None]] = [
            ("state", k, None) for k in self._disk.image.state if k not in new
        ]
        puts += [("state", k, v) for k, v in entries]
        puts.append(("hashes", block_hash, _U64.pack(height)))
        puts += self._meta_puts(height, block_hash, lthash, root)
        self._commit(puts)

    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(self)

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        raw = self._disk.image.txs.get(tx_id)
        if raw is None:
            return None
        h, i, c = _TXLOC.unpack_from(raw)
        return TxLocation(h, i, c, raw[_TXLOC.size :].decode(errors="replace"))

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self._disk.image.hashes.get(block_hash)
        return None if raw is None else int(_U64.unpack(raw)[0])

    def validator_history(self) -> list[tuple[int, tuple[Validator, ...]]]:
        with self.snapshot() as snap:
            return [
                (int(_U64.unpack(k[len(VSET_PREFIX) :])[0]), decode_validators(v))
                for k, v in snap.prefix(VSET_PREFIX)
            ]

    def close(self) -> None:
        """Nothing to release: the image lives on the Disk."""
