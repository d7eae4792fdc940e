"""Restore: a node's data directory from a verified backup.

`restore_backup` accepts a backup only after `verify_dir` passes (backup/archive.py), refuses
a backup of another chain than the node's genesis, and refuses a data directory holding
newer data (height above the backup's) or another chain: in each case nothing is changed.
A data directory holding older data of the same chain is not destroyed: its blocks/, state/
and consensus.wal are moved into `pre-restore/<n>/` first.

What is written: the backup's block segments become the node's blocks/ (same record format;
the node's BlockStore checks every record again at open), and the node's state/ is built by
the deep verification itself (backup/replay.py: blocks 1..H re-executed from the genesis,
every header's state root checked, the end state equal to the backup's certified one), so
the world state, every receipt and the tx index are exactly what the chain decided. Commit
order: blocks.restoring -> blocks, then state.restoring -> state; a crash between the two
leaves blocks without a state, which the node rebuilds by replay at start. Consensus starts
fresh at H (no WAL); the node then syncs blocks above H from its peers, if any are ahead.
Called by cli/backup.py and cli/up.py."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..ledger.block import Block
from ..ledger.errors import DecodeError
from ..ledger.genesis import Genesis
from ..storage.blocks import read_records
from ..storage.state import StateStore
from .archive import opened, verify_dir
from .format import BLOCKS, BackupError, Manifest

_U64 = struct.Struct(">Q")
_LEDGER = ("blocks", "state", "consensus.wal")


@dataclass(frozen=True, slots=True)
class RestoreResult:
    data_dir: Path
    manifest: Manifest
    moved_aside: Path | None  # where older data of the same chain was kept


@dataclass(frozen=True, slots=True)
class _Existing:
    genesis_hash: bytes | None
    height: int


def _stored_height(blocks_dir: Path) -> int:
    segs = sorted(blocks_dir.glob("seg-*.blk"))
    for seg in reversed(segs):
        last = None
        for payload in read_records(seg):
            last = payload
        if last is not None:
            try:
                return Block.decode(last).height
            except DecodeError:
                return 0
    return 0


def existing_ledger(data_dir: Path) -> _Existing:
    """The chain (genesis hash) and height a data directory holds now (None, 0 when empty)."""
    genesis_hash, height = None, 0
    if (data_dir / "state" / "data.mdb").exists():
        lock = data_dir / "state" / "lock.mdb"
        ours = not lock.exists()  # LMDB creates its reader table on open: ours to remove
        try:
            store = StateStore(data_dir / "state", readonly=True)
        except Exception as e:  # lmdb.Error: damaged or foreign files
            raise BackupError(
                f"cannot read the state in {data_dir}: {e} (nothing changed; move it aside)"
            ) from None
        finally:
            if ours:
                lock.unlink(missing_ok=True)
        try:
            with store.snapshot() as snap:
                if (raw := snap.meta(b"height")) is not None:
                    height = int(_U64.unpack(raw)[0])
                genesis_hash = snap.meta(b"genesis")
        finally:
            store.close()
    return _Existing(genesis_hash, max(height, _stored_height(data_dir / "blocks")))


def check_target(m: Manifest, data_dir: Path, genesis_file: Path | None) -> None:
    """Refuses (BackupError) to restore backup `m` into `data_dir` when the node's genesis is
    another chain's, or the directory holds another chain or newer data. Changes nothing."""
    if genesis_file is not None:
        try:
            mine = Genesis.from_json(genesis_file.read_bytes())
        except (OSError, DecodeError, ValueError) as e:
            raise BackupError(f"cannot read the node's genesis {genesis_file}: {e}") from None
        if mine.hash != m.genesis_hash:
            raise BackupError(
                f"backup is of chain {m.chain_id!r} (genesis {m.genesis_hash.hex()[:16]}), "
                f"the node's genesis is chain {mine.chain_id!r} "
                f"({mine.hash.hex()[:16]}): another chain"
            )
    have = existing_ledger(data_dir)
    if have.genesis_hash is not None and have.genesis_hash != m.genesis_hash:
        raise BackupError(f"{data_dir} holds another chain than the backup (nothing changed)")
    if have.height > m.height:
        raise BackupError(
            f"{data_dir} holds newer data (height {have.height}) than the backup "
            f"(height {m.height}): refused, nothing changed"
        )


def restore_many(backup: Path, targets: list[tuple[Path, Path | None]]) -> list[RestoreResult]:
    """Restores the backup at `backup` (directory or tar) into each (data_dir, genesis_file).
    The backup is verified once and every target checked before any is changed, so a refusal
    (BackupError, one line) leaves all of them as they were."""
    with opened(backup) as root, tempfile.TemporaryDirectory(prefix="consortium-restore-") as t:
        replayed = Path(t) / "state"
        m = verify_dir(root, replayed)
        for data_dir, genesis_file in targets:
            check_target(m, data_dir, genesis_file)
        return [_write(root, m, replayed, data_dir) for data_dir, _ in targets]


def restore_backup(backup: Path, data_dir: Path, genesis_file: Path | None) -> RestoreResult:
    """Restores one node's `data_dir`; its genesis (`genesis_file`) must be the backup's chain."""
    return restore_many(backup, [(data_dir, genesis_file)])[0]


def _write(root: Path, m: Manifest, replayed: Path, data_dir: Path) -> RestoreResult:
    data_dir.mkdir(parents=True, exist_ok=True)
    aside = _move_aside(data_dir)
    staging = data_dir / "blocks.restoring"
    if staging.exists():  # left by a restore that crashed: never the node's blocks/
        shutil.rmtree(staging)
    staging.mkdir()
    for name in sorted(n for n in m.files if n.startswith(BLOCKS + "/")):
        dst = staging / Path(name).name
        shutil.copyfile(root / name, dst)
        with dst.open("rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(staging)
    os.rename(staging, data_dir / "blocks")  # from here the node can start (it replays)
    _fsync_dir(data_dir)
    state = data_dir / "state.restoring"
    if state.exists():
        shutil.rmtree(state)
    shutil.copytree(replayed, state)  # another file system, maybe: copy, then rename
    for p in state.iterdir():
        with p.open("rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(state)
    os.rename(state, data_dir / "state")
    _fsync_dir(data_dir)
    return RestoreResult(data_dir, m, aside)


def _move_aside(data_dir: Path) -> Path | None:
    present = [data_dir / n for n in _LEDGER if (data_dir / n).exists()]
    if not present:
        return None
    root = data_dir / "pre-restore"
    root.mkdir(exist_ok=True)
    n = 1 + max((int(p.name) for p in root.iterdir() if p.name.isdigit()), default=0)
    aside = root / str(n)
    aside.mkdir()
    for p in present:
        os.rename(p, aside / p.name)
    _fsync_dir(aside)
    _fsync_dir(data_dir)
    return aside


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
