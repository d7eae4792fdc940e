"""Append-only block segment files: the node's copy of the chain.

Record framing: u32 length | u32 CRC-32 of payload | payload (= `Block.encode()`), big-endian.
Every append is fdatasync'ed before it returns (one fsync per block). Segments are named after
the first height they hold and roll at `segment_bytes`.

After a state-snapshot install at height H (`set_base`), the store holds no blocks in
(old height, H]: a BASE file records H, the next segment starts at H + 1, and reads of the
missing heights return None (the node answers NOT_FOUND; peers still serve them).

At open, every segment is scanned; the first record that is short, fails its CRC, does not
decode, or breaks the height sequence marks a torn/corrupt tail. Nothing is destroyed before
a decision: the damaged segment is first copied (and every later segment moved) into
`damaged/<n>/` beside the segments, then the live file is truncated at the last good record,
so the damaged bytes are never served but stay on disk for inspection. `repaired` tells the
runtime how many bytes were cut and `damaged` where they were kept; committed blocks lost
that way are fetched again from peers and verified (runtime/repair.py). Called by runtime
only."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..ledger.block import Block
from ..ledger.errors import DecodeError, InvariantError

log = logging.getLogger(__name__)
_FRAME = struct.Struct(">II")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Loc:
    segment: int  # index into BlockStore._segments
    offset: int  # of the payload
    length: int


class BlockStore:
    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._segments: list[Path] = []
        self._fds: list[int] = []
        self._index: dict[int, _Loc] = {}  # height -> location
        self._height = 0
        self._base = self._read_base()
        self._tail_size = 0
        self.repaired = 0  # bytes cut from a torn or corrupt tail at open
        self.damaged: Path | None = None  # where the cut bytes were kept
        self._open()

    # -- start-up scan --------------------------------------------------------------------
    def _open(self) -> None:
        names = sorted(p for p in self._dir.glob("seg-*.blk"))
        for i, path in enumerate(names):
            first = int(path.stem.split("-")[1])
            if first == self._base + 1 and self._base >= self._height:
                self._height = self._base  # the gap a snapshot install left
            if first != self._height + 1:
                self._cut_from(i, names, 0, f"segment {path.name} does not continue the chain")
                return
            self._segments.append(path)
            self._fds.append(os.open(path, os.O_RDWR))
            good = self._scan(len(self._segments) - 1)
            size = os.fstat(self._fds[-1]).st_size
            if good != size:
                self._cut_from(i, names, good, f"torn or corrupt record at {path.name}:{good}")
                return
            self._tail_size = size

    def _scan(self, seg: int) -> int:
        """Indexes valid records of one segment; returns the offset after the last good one."""
        fd = self._fds[seg]
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        pos = 0
        while pos + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, pos)
            start, end = pos + _FRAME.size, pos + _FRAME.size + length
            if end > len(data):
                break
            payload = data[start:end]
            if zlib.crc32(payload) != crc:
                break
            try:
                height = Block.decode(payload).height
            except DecodeError:
                break
            if height != self._height + 1:
                break
            self._index[height] = _Loc(seg, start, length)
            self._height = height
            pos = end
        return pos

    def _cut_from(self, i: int, names: list[Path], offset: int, why: str) -> None:
        opened = i < len(self._segments)  # segment i is open; cut it at `offset`
        later = names[i + 1 :] if opened else names[i:]
        cut = (os.fstat(self._fds[i]).st_size - offset if opened else 0) + sum(
            p.stat().st_size for p in later
        )
        if cut == 0:  # only empty files break the sequence: nothing to keep
            for p in later:
                p.unlink()
            _fsync_dir(self._dir)
            return
        aside = self._quarantine()
        if opened:  # a durable copy of the whole damaged file first, then the cut
            _copy_durably(names[i], aside / names[i].name)
        for p in later:
            os.rename(p, aside / p.name)
        _fsync_dir(aside)
        if opened:
            fd = self._fds[i]
            os.ftruncate(fd, offset)
            os.fsync(fd)
            self._tail_size = offset
        _fsync_dir(self._dir)
        self.repaired = cut
        self.damaged = aside
        log.error(
            "block store repaired: %s; cut %d bytes (kept in %s), height now %d",
            why,
            cut,
            aside,
            self.height,
        )

    def _quarantine(self) -> Path:
        """A new, empty `damaged/<n>` directory (n = 1, 2, ...: earlier ones are kept)."""
        root = self._dir / "damaged"
        root.mkdir(exist_ok=True)
        n = 1 + max((int(p.name) for p in root.iterdir() if p.name.isdigit()), default=0)
        aside = root / str(n)
        aside.mkdir()
        _fsync_dir(root)
        return aside

    # -- API ------------------------------------------------------------------------------
    def _read_base(self) -> int:
        try:
            return int((self._dir / "BASE").read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def set_base(self, height: int) -> None:
        """After a state snapshot at `height`: the next block appended is height + 1."""
        if height < self._height:
            raise InvariantError(f"snapshot base {height} below stored height {self._height}")
        tmp = self._dir / "BASE.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.write(fd, str(height).encode())
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, self._dir / "BASE")
        _fsync_dir(self._dir)
        self._base = self._height = height
        self._tail_size = self._segment_bytes  # the next append opens segment `height + 1`

    @property
    def base(self) -> int:
        return self._base

    @property
    def height(self) -> int:
        return self._height

    def append(self, block: Block) -> None:
        if block.height != self.height + 1:
            raise InvariantError(f"append of block {block.height} on top of {self.height}")
        payload = block.encode()
        if not self._segments or self._tail_size >= self._segment_bytes:
            self._new_segment(block.height)
        fd = self._fds[-1]
        record = frame(payload)
        written = os.pwrite(fd, record, self._tail_size)
        if written != len(record):
            raise InvariantError(f"short write to {self._segments[-1]}")
        os.fdatasync(fd)
        self._index[block.height] = _Loc(
            len(self._segments) - 1, self._tail_size + _FRAME.size, len(payload)
        )
        self._height = block.height
        self._tail_size += len(record)

    def _new_segment(self, first: int) -> None:
        path = self._dir / segment_name(first)
        self._segments.append(path)
        self._fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640))
        self._tail_size = 0
        _fsync_dir(self._dir)

    def get_raw(self, height: int) -> bytes | None:
        loc = self._index.get(height)
        if loc is None:
            return None
        return os.pread(self._fds[loc.segment], loc.length, loc.offset)

    def get(self, height: int) -> Block | None:
        raw = self.get_raw(height)
        return None if raw is None else Block.decode(raw)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def segment_name(first: int) -> str:
    """The file name of the segment whose first record is block `first`."""
    return f"seg-{first:012d}.blk"


def frame(payload: bytes) -> bytes:
    """One record as segments hold it: u32 length | u32 CRC-32 | payload."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> Iterator[bytes]:
    """The payloads of one segment file in order, read one record at a time (memory bounded
    by the largest record) and without opening it for writing, so another process may read a
    live node's segments. Stops silently at the first short record or CRC mismatch: that is
    the tail a live writer has not finished (callers needing a given height check they got
    it). Used by backup/ to export and verify."""
    with path.open("rb") as f:
        while len(head := f.read(_FRAME.size)) == _FRAME.size:
            length, crc = _FRAME.unpack(head)
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                return
            yield payload


def _copy_durably(src: Path, dst: Path) -> None:
    with src.open("rb") as f, dst.open("xb") as g:
        while chunk := f.read(1 << 20):
            g.write(chunk)
        g.flush()
        os.fsync(g.fileno())


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
