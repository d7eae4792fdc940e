"""Reading a backup from disk: a directory or a tar of one (format: backup/format.py).

`verify_backup(path)` runs every check offline — the seal, the exact file list, each file's
size and SHA-256, then the chain rules of `ChainVerifier` over the records — reading each file
one record at a time (memory stays flat whatever the chain length). It returns the manifest
or raises BackupError with one line. `opened(path)` yields a directory for either form (a tar
is unpacked into a temporary directory, regular files with expected names only). Called by
backup/restore.py and cli/backup.py."""

from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import crypto
from ..ledger.errors import DecodeError, TxRejected
from ..ledger.tx import Tx
from ..storage.blocks import read_records
from ..transport.codec import decode_tx
from .format import (
    BLOCKS,
    CERTIFIER,
    GENESIS,
    MANIFEST,
    SEAL,
    STATE,
    BackupError,
    ChainVerifier,
    Manifest,
    check_seal,
)
from .replay import replay

_SEGMENT = re.compile(r"blocks/seg-\d{12}\.blk")
_NAMES = {SEAL, MANIFEST, GENESIS, STATE, CERTIFIER}
_CHUNK = 1 << 20


def _allowed(name: str) -> bool:
    return name in _NAMES or _SEGMENT.fullmatch(name) is not None


def is_tar(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


@contextmanager
def opened(path: Path) -> Iterator[Path]:
    """The backup at `path` as a directory. A tar is unpacked into a temporary directory
    (removed afterwards); only regular files named as the format names them are accepted."""
    if path.is_dir():
        yield path
        return
    if not path.exists():
        raise BackupError(f"{path}: no such backup")
    if not is_tar(path):
        raise BackupError(f"{path}: neither a backup directory nor a tar of one")
    with tempfile.TemporaryDirectory(prefix="consortium-backup-") as tmp:
        root = Path(tmp)
        (root / BLOCKS).mkdir()
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    if not member.isfile() or not _allowed(member.name):
                        raise BackupError(f"{path}: unexpected tar member {member.name!r}")
                    src = tar.extractfile(member)
                    assert src is not None  # a regular file always has content
                    with src, (root / member.name).open("xb") as dst:
                        while chunk := src.read(_CHUNK):
                            dst.write(chunk)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise BackupError(f"{path}: damaged tar ({e})") from None
        yield root


def read_manifest(root: Path) -> Manifest:
    """The sealed manifest of a backup directory (seal checked, not the files)."""
    try:
        raw = (root / MANIFEST).read_bytes()
        sealed = (root / SEAL).read_bytes()
    except FileNotFoundError as e:
        raise BackupError(f"{root}: not a backup (no {Path(e.filename).name})") from None
    check_seal(sealed, raw)
    return Manifest.decode(raw)


def _sha256(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _decode_tx(raw: bytes) -> Tx:
    try:
        return decode_tx(raw)
    except TxRejected as e:  # the codec refuses bytes that are not a SignedTx
        raise DecodeError(f"undecodable transaction: {e}") from None


def _check_files(root: Path, m: Manifest) -> None:
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    expected = set(m.files) | {SEAL, MANIFEST}
    if extra := sorted(present - expected):
        raise BackupError(f"unexpected file {extra[0]} (not in the manifest)")
    if missing := sorted(expected - present):
        raise BackupError(f"missing file {missing[0]} (truncated backup?)")
    for name, entry in sorted(m.files.items()):
        if not _allowed(name):
            raise BackupError(f"manifest names an unexpected file {name!r}")
        digest, size = _sha256(root / name)
        if size != entry.bytes:
            raise BackupError(
                f"{name} is {size} bytes, the manifest says {entry.bytes} (truncated?)"
            )
        if digest != entry.sha256:
            raise BackupError(f"{name} fails its checksum (damaged or tampered)")


def _records(path: Path, name: str, size: int) -> Iterator[bytes]:
    """Every record of a file, refusing a file that is not whole records."""
    used = 0
    for payload in read_records(path):
        used += 8 + len(payload)
        yield payload
    if used != size:
        raise BackupError(f"{name}: damaged record at byte {used}")


def verify_dir(root: Path, replay_into: Path | None = None) -> Manifest:
    """All checks of a backup directory; with `replay_into` (a path that must not exist) also
    the deep check, re-executing every block into a new state store there (backup/replay.py)."""
    m = read_manifest(root)
    _check_files(root, m)
    v = ChainVerifier(m, (root / GENESIS).read_bytes(), crypto.verify, _decode_tx)
    for payload in _records(root / STATE, STATE, m.files[STATE].bytes):
        v.state_record(payload)
    v.state_done()
    for name in sorted(n for n in m.files if n.startswith(BLOCKS + "/")):
        for payload in _records(root / name, name, m.files[name].bytes):
            v.block(payload, name)
    certifier = list(_records(root / CERTIFIER, CERTIFIER, m.files[CERTIFIER].bytes))
    if len(certifier) != 1:
        raise BackupError(f"{CERTIFIER} must hold exactly one block")
    v.certifier(certifier[0])
    v.done()
    if replay_into is not None:
        replay(root, m, v.genesis, replay_into, _decode_tx)
    return m


def verify_backup(path: Path, deep: bool = False) -> Manifest:
    """Verifies the backup at `path` (directory or tar) offline; its manifest, or BackupError.
    `deep`: also replay every block from the genesis (in a temporary directory)."""
    with opened(path) as root:
        if not deep:
            return verify_dir(root)
        with tempfile.TemporaryDirectory(prefix="consortium-replay-") as tmp:
            return verify_dir(root, Path(tmp) / "state")


def list_backups(directory: Path) -> list[tuple[Path, Manifest | None, str]]:
    """Each backup directly under `directory` (directories and tars): (path, manifest or None,
    a problem reading its manifest or ""). Reads manifests only; `verify` checks the rest."""
    out: list[tuple[Path, Manifest | None, str]] = []
    for p in sorted(directory.iterdir()):
        if not ((p / MANIFEST).exists() or is_tar(p)):
            continue
        try:
            if p.is_dir():
                out.append((p, read_manifest(p), ""))
            else:
                out.append((p, _tar_manifest(p), ""))
        except BackupError as e:
            out.append((p, None, str(e)))
    return out


def _tar_manifest(path: Path) -> Manifest:
    try:
        with tarfile.open(path, "r:") as tar:
            parts: dict[str, bytes] = {}
            for member in tar:
                if member.name in (SEAL, MANIFEST) and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    parts[member.name] = f.read()
                if len(parts) == 2:
                    break
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BackupError(f"{path}: damaged tar ({e})") from None
    if len(parts) != 2:
        raise BackupError(f"{path}: not a backup (no manifest and seal)")
    check_seal(parts[SEAL], parts[MANIFEST])
    return Manifest.decode(parts[MANIFEST])
