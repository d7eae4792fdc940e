"""Export: a verifiable backup of a node's ledger at its committed height H, while it runs.

Mechanism: read the node's data directory from another process (`consortium backup create`
on the node's host or in a pod mounting its volume). One LMDB read transaction is a
consistent snapshot of the state after block H (the node's writer never waits for it); the
node appends a block to its segments before it commits the block's state, so blocks 1..H are
in the segment files, which are append-only and read here one record at a time. After the
state is written, the exporter waits (bounded by `certifier_timeout`) until the node has
stored block H+1 — the block whose header carries the state root after H — and writes it as
the certifier. A live chain commits an empty block at least every `empty_block_ms` (2 s by
default), so a running node always provides it. Memory stays flat: one record at a time.

Output (backup/format.py): written into OUT.partial and renamed to OUT only when complete and
fsync'ed, so a crashed export never looks like a backup; OUT ending in `.tar` gets a tar of
the directory. Only the ledger and the genesis are read: never a key file. Called by
cli/backup.py and bench/, and inside the node process by the ExportBackup RPC
(`node_exporter`, wired by __main__: the node reads its own data directory, so a Job that
cannot mount the node's ReadWriteOnce volume backs it up over gRPC)."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..ledger.block import Block
from ..ledger.errors import DecodeError
from ..ledger.genesis import Genesis
from ..storage.blocks import frame, read_records, segment_name
from ..storage.state import Snapshot, StateStore
from ..transport.server import Exporter, ExportFailed
from .format import (
    BLOCKS,
    CERTIFIER,
    GENESIS,
    MANIFEST,
    SEAL,
    STATE,
    BackupError,
    FileEntry,
    Manifest,
    encode_entry,
    seal,
)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_FRAME = struct.Struct(">II")
_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest: Manifest
    bytes: int
    seconds: float
    waited: float  # of `seconds`, waiting for the node to store the certifying block H+1


class _HashingFile:
    """A file being written whose size and SHA-256 are tracked as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO = path.open("xb")
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def close(self) -> FileEntry:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return FileEntry(self._h.hexdigest(), self.size)


def _segments(blocks_dir: Path) -> list[tuple[int, Path]]:
    return sorted((int(p.stem.split("-")[1]), p) for p in blocks_dir.glob("seg-*.blk"))


def _base(blocks_dir: Path) -> int:
    try:
        return int((blocks_dir / "BASE").read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def export_backup(
    data_dir: Path,
    genesis_file: Path,
    out: Path,
    *,
    certifier_timeout: float = 30.0,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    store: StateStore | None = None,
) -> ExportResult:
    """Writes a backup of the ledger in `data_dir` (a node's data_dir: blocks/ and state/) at
    the height its state holds now. Raises BackupError (one line) when it cannot. `store`:
    the node's own open state (inside the node process, which LMDB lets open it only once)."""
    t0 = time.monotonic()
    if out.exists():
        raise BackupError(f"{out} already exists (nothing overwritten)")
    blocks_dir, state_dir = data_dir / "blocks", data_dir / "state"
    if not (state_dir / "data.mdb").exists():
        raise BackupError(f"{data_dir}: no node ledger here (no state/data.mdb)")
    if (base := _base(blocks_dir)) > 0:
        raise BackupError(
            f"{data_dir} holds blocks {base + 1}.. only (seeded from a state snapshot): "
            "export from a node holding the whole chain"
        )
    try:
        genesis_bytes = genesis_file.read_bytes()
        genesis = Genesis.from_json(genesis_bytes)
    except (OSError, DecodeError, ValueError) as e:
        raise BackupError(f"cannot read genesis {genesis_file}: {e}") from None
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work) if work.is_dir() else work.unlink()  # an earlier crashed export
    work.mkdir(parents=True)
    (work / BLOCKS).mkdir()
    try:
        manifest, waited = _write(
            work,
            blocks_dir,
            state_dir,
            genesis,
            genesis_bytes,
            certifier_timeout,
            segment_bytes,
            store,
        )
        raw = manifest.encode()
        _write_file(work / MANIFEST, raw)
        _write_file(work / SEAL, seal(raw))
        _fsync_dir(work / BLOCKS)
        _fsync_dir(work)
        if out.name.endswith(".tar"):
            _tar(work, manifest, out)
            shutil.rmtree(work)
        else:
            os.rename(work, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(f.bytes for f in manifest.files.values())
    return ExportResult(out, manifest, size, time.monotonic() - t0, waited)


def node_exporter(data_dir: Path, genesis_file: Path, state: object) -> Exporter:
    """The ExportBackup RPC's exporter for the node whose ledger is `data_dir` and whose open
    state store is `state`: a tar at the given path (ending in .tar), its height;
    ExportFailed (one line) when refused."""

    def export(out: Path) -> int:
        if not isinstance(state, StateStore):
            raise ExportFailed("this node's state is not on disk (an in-memory store)")
        try:
            return export_backup(data_dir, genesis_file, out, store=state).manifest.height
        except BackupError as e:
            raise ExportFailed(str(e)) from None

    return export


def _write(
    work: Path,
    blocks_dir: Path,
    state_dir: Path,
    genesis: Genesis,
    genesis_bytes: bytes,
    certifier_timeout: float,
    segment_bytes: int,
    given: StateStore | None,
) -> tuple[Manifest, float]:
    files: dict[str, FileEntry] = {}
    files[GENESIS] = _write_file(work / GENESIS, genesis_bytes)
    if given is not None:
        store = given
    else:
        try:
            store = StateStore(state_dir, readonly=True)
        except Exception as e:  # lmdb.Error: unreadable or foreign files
            raise BackupError(f"cannot open the state in {state_dir}: {e}") from None
    try:
        # One read transaction: every byte of the state written below is "after block H".
        with store.snapshot() as snap:
            height = _U64.unpack(_meta(snap, b"height"))[0]
            block_hash, lanes, root = (_meta(snap, k) for k in (b"hash", b"lthash", b"root"))
            if _meta(snap, b"genesis") != genesis.hash:
                raise BackupError(f"{state_dir} holds another chain than {GENESIS} describes")
            if height == 0:
                raise BackupError("the chain has no committed block yet: nothing to back up")
            created = int(time.time())
            out = _HashingFile(work / STATE)
            entries = 0
            for key, value in snap.entries():
                out.write(frame(encode_entry(key, value)))
                entries += 1
            files[STATE] = out.close()
    finally:
        if given is None:
            store.close()
    files.update(_copy_blocks(blocks_dir, work, height, block_hash, segment_bytes))
    t_wait = time.monotonic()
    certifier = _await_block(blocks_dir, height + 1, certifier_timeout)
    waited = time.monotonic() - t_wait
    files[CERTIFIER] = _write_file(work / CERTIFIER, frame(certifier))
    manifest = Manifest(
        chain_id=genesis.chain_id,
        consensus=genesis.consensus,
        genesis_hash=genesis.hash,
        height=height,
        block_hash=block_hash,
        state_root=root,
        lthash=lanes,
        state_entries=entries,
        created_unix=created,
        files=files,
    )
    return manifest, waited


def _meta(snap: Snapshot, key: bytes) -> bytes:
    value = snap.meta(key)
    if value is None:
        raise BackupError(f"the node's state lacks its {key.decode()} (not a node ledger?)")
    return bytes(value)


def _copy_blocks(
    blocks_dir: Path, work: Path, height: int, block_hash: bytes, segment_bytes: int
) -> dict[str, FileEntry]:
    """Blocks 1..height from the node's segments into fresh segments of the same format."""
    files: dict[str, FileEntry] = {}
    out: _HashingFile | None = None
    h = 0
    last_hash = b""
    for _first, seg in _segments(blocks_dir):
        for payload in read_records(seg):
            if h == height:
                break
            block = Block.decode(payload)
            if block.height != h + 1:
                raise BackupError(f"{seg.name}: block {block.height} where {h + 1} belongs")
            if out is None or out.size >= segment_bytes:
                if out is not None:
                    files[f"{BLOCKS}/{out.path.name}"] = out.close()
                out = _HashingFile(work / BLOCKS / segment_name(block.height))
            out.write(frame(payload))
            h, last_hash = block.height, block.hash
        if h == height:
            break
    if out is not None:
        files[f"{BLOCKS}/{out.path.name}"] = out.close()
    if h != height:
        raise BackupError(f"the node's block store ends at {h}, below its state height {height}")
    if last_hash != block_hash:
        raise BackupError(f"block {height} in the segments is not the one the state committed")
    return files


def _await_block(blocks_dir: Path, height: int, timeout: float) -> bytes:
    """The stored record of block `height`, once the node has appended it. Polls the tail
    segment from where the last look stopped (another process writes it; there is nothing to
    wait on), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    scanned: dict[Path, int] = {}  # segment -> offset after its last whole record seen
    while True:
        segs = [p for first, p in _segments(blocks_dir) if first <= height]
        if segs:
            seg = segs[-1]
            payload, scanned[seg] = _scan_for(seg, scanned.get(seg, 0), height)
            if payload is not None:
                return payload
        if time.monotonic() > deadline:
            raise BackupError(
                f"the node stored no block {height} within {timeout:.0f}s: the certifier of the "
                "state is the next block — is the node running and committing?"
            )
        time.sleep(0.05)


def _scan_for(seg: Path, offset: int, height: int) -> tuple[bytes | None, int]:
    """(payload of block `height` or None, offset after the last whole record) scanning a live
    segment from `offset`; a record still being written ends the scan."""
    with seg.open("rb") as f:
        f.seek(offset)
        while len(head := f.read(_FRAME.size)) == _FRAME.size:
            length, crc = _FRAME.unpack(head)
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            offset += _FRAME.size + length
            if Block.decode(payload).height == height:
                return payload, offset
    return None, offset


def _write_file(path: Path, data: bytes) -> FileEntry:
    f = _HashingFile(path)
    f.write(data)
    return f.close()


def _tar(work: Path, manifest: Manifest, out: Path) -> None:
    partial = out.with_name(out.name + ".partial.tar")
    with tarfile.open(partial, "x:") as tar:
        for name in [
            SEAL,
            MANIFEST,
            GENESIS,
            STATE,
            CERTIFIER,
            *sorted(n for n in manifest.files if n.startswith(BLOCKS + "/")),
        ]:
            tar.add(work / name, arcname=name, recursive=False)
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.rename(partial, out)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
