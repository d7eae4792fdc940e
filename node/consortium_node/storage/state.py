"""LMDB world state, indexes and chain metadata.

One LMDB environment with named databases:
  state   the key space of ledger/state.py (what the state root commits to)
  txs     tx id -> u64 height | u32 index | u8 code | message   (receipt + location)
  hashes  block hash -> u64 height
  meta    height, last block hash, LtHash lanes, state root, genesis hash

`commit_block` writes a block's state changes, receipts, indexes and meta in ONE write
transaction (LMDB fsyncs on commit), so the state is always exactly "after block `height`".
Readers get a consistent snapshot (`snapshot()`), which is what queries use. Called by
runtime only."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import lmdb

from ..ledger.errors import InvariantError
from ..ledger.state import VSET_PREFIX, BlockResult, Validator, decode_validators
from .ports import Meta, TxLocation

_U64 = struct.Struct(">Q")
_TXLOC = struct.Struct(">QIB")
DEFAULT_MAP_SIZE = 64 * 1024**3  # sparse; grows on demand up to this
__all__ = ["DEFAULT_MAP_SIZE", "Meta", "Snapshot", "StateStore", "TxLocation"]


class Snapshot:
    """A read-only, consistent view of the state at one committed height."""

    __slots__ = ("_meta", "_state", "_txn", "_txs")

    def __init__(self, txn: Any, state: Any, txs: Any, meta: Any) -> None:
        self._txn = txn
        self._state = state
        self._txs = txs
        self._meta = meta

    def has_tx(self, tx_id: bytes) -> bool:
        """True if `tx_id` is committed (as of this snapshot)."""
        return self._txn.get(tx_id, db=self._txs) is not None

    def get(self, key: bytes) -> bytes | None:
        v = self._txn.get(key, db=self._state)
        return None if v is None else bytes(v)

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the world state, in key order."""
        cur = self._txn.cursor(db=self._state)
        for k, v in cur:
            yield bytes(k), bytes(v)

    def meta(self, key: bytes) -> bytes | None:
        v = self._txn.get(key, db=self._meta)
        return None if v is None else bytes(v)

    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(db=self._state)
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            if not bytes(k).startswith(prefix):
                return
            yield bytes(k), bytes(v)

    def close(self) -> None:
        self._txn.abort()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def _required(txn: Any, key: bytes) -> bytes:
    v = txn.get(key)
    if v is None:
        raise InvariantError(f"state store meta lacks {key!r}")
    return bytes(v)


class StateStore:
    def __init__(
        self,
        path: Path,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
        readonly: bool = False,
    ) -> None:
        """`readonly`: open an existing store without write access, e.g. from another process
        while the node runs (LMDB readers never block its writer); backup/ exports that way."""
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        self._env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=8,
            sync=sync,
            metasync=sync,
            readahead=False,
            readonly=readonly,
        )
        self._state = self._env.open_db(b"state", create=not readonly)
        self._txs = self._env.open_db(b"txs", create=not readonly)
        self._hashes = self._env.open_db(b"hashes", create=not readonly)
        self._meta = self._env.open_db(b"meta", create=not readonly)

    def meta(self) -> Meta | None:
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(b"height")
            if raw is None:
                return None
            return Meta(
                height=int(_U64.unpack(raw)[0]),
                block_hash=_required(txn, b"hash"),
                lthash=_required(txn, b"lthash"),
                state_root=_required(txn, b"root"),
                genesis_hash=_required(txn, b"genesis"),
            )

    def init_genesis(
        self, writes: dict[bytes, bytes | None], lthash: bytes, root: bytes, genesis_hash: bytes
    ) -> None:
        with self._env.begin(write=True) as txn:
            for k, v in writes.items():
                if v is not None:
                    txn.put(k, v, db=self._state)
            self._put_meta(txn, 0, genesis_hash, lthash, root)
            txn.put(b"genesis", genesis_hash, db=self._meta)

    def _put_meta(self, txn: Any, height: int, bhash: bytes, lthash: bytes, root: bytes) -> None:
        txn.put(b"height", _U64.pack(height), db=self._meta)
        txn.put(b"hash", bhash, db=self._meta)
        txn.put(b"lthash", lthash, db=self._meta)
        txn.put(b"root", root, db=self._meta)

    def commit_block(self, height: int, block_hash: bytes, result: BlockResult) -> None:
        with self._env.begin(write=True) as txn:
            for k, v in result.writes.items():
                if v is None:
                    txn.delete(k, db=self._state)
                else:
                    txn.put(k, v, db=self._state)
            for r in result.receipts:
                txn.put(
                    r.tx_id,
                    _TXLOC.pack(height, r.index, r.code) + r.message.encode(),
                    db=self._txs,
                )
            txn.put(block_hash, _U64.pack(height), db=self._hashes)
            self._put_meta(txn, height, block_hash, result.lthash, result.state_root)

    def install_snapshot(
        self,
        entries: list[tuple[bytes, bytes]],
        height: int,
        block_hash: bytes,
        lthash: bytes,
        root: bytes,
    ) -> None:
        """Replaces the whole world state with a verified snapshot "after block `height`", in
        one transaction. The tx index keeps what it had; txs committed in the skipped blocks
        are not indexed here (peers still have them)."""
        with self._env.begin(write=True) as txn:
            txn.drop(self._state, delete=False)
            for k, v in entries:
                txn.put(k, v, db=self._state)
            txn.put(block_hash, _U64.pack(height), db=self._hashes)
            self._put_meta(txn, height, block_hash, lthash, root)

    def snapshot(self) -> Snapshot:
        txn = self._env.begin(buffers=False)
        return Snapshot(txn, self._state, self._txs, self._meta)

    def tx_location(self, tx_id: bytes) -> TxLocation | None:
        with self._env.begin(db=self._txs) as txn:
            raw = txn.get(tx_id)
        if raw is None:
            return None
        h, i, c = _TXLOC.unpack_from(raw)
        return TxLocation(h, i, c, bytes(raw[_TXLOC.size :]).decode(errors="replace"))

    def height_of(self, block_hash: bytes) -> int | None:
        with self._env.begin(db=self._hashes) as txn:
            raw = txn.get(block_hash)
        return None if raw is None else int(_U64.unpack(raw)[0])

    def validator_history(self) -> list[tuple[int, tuple[Validator, ...]]]:
        """(effective height, set) pairs, ascending."""
        with self.snapshot() as snap:
            return [
                (int(_U64.unpack(k[len(VSET_PREFIX) :])[0]), decode_validators(v))
                for k, v in snap.prefix(VSET_PREFIX)
            ]

    def flush(self) -> None:
        """Forces everything committed to disk (for a store opened with sync=False)."""
        self._env.sync(True)

    def close(self) -> None:
        self._env.close()
