"""Storage ports: the three durable stores a node needs, as Protocols.

  BlockLog      the chain's blocks, append-only (adapter: storage/blocks.py segment files)
  StateStore    world state, tx index, chain metadata (adapter: storage/state.py, LMDB)
  ConsensusLog  the engine's hard state and log entries (adapter: storage/wal.py)

runtime/node.py reaches storage only through these; `NodeStorage` bundles one of each for a
node. `open_files` builds the production adapters in a data directory (what `consortium-node`
runs); storage/memory.py holds fault-injecting in-memory adapters for tests/sim. Every method
that returns has made its write durable (the fsync is inside the adapter): callers rely on
that to send a message that depends on it (persist before send)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ..consensus.api import Entry
from ..ledger.block import Block
from ..ledger.state import BlockResult, Validator


class StateView(Protocol):
    """A read-only, consistent view of the state at one committed height (a context manager;
    `close` releases it)."""

    def has_tx(self, tx_id: bytes) -> bool: ...

    def get(self, key: bytes) -> bytes | None: ...

    def entries(self) -> Iterator[tuple[bytes, bytes]]: ...

    def meta(self, key: bytes) -> bytes | None: ...

    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> StateView: ...

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None: ...


class BlockLog(Protocol):
    """Blocks 1..height (or base+1..height after a snapshot install). `repaired` is the number
    of bytes a torn/corrupt tail cost at open (0 = clean)."""

    repaired: int

    @property
    def base(self) -> int: ...

    @property
    def height(self) -> int: ...

    def set_base(self, height: int) -> None: ...

    def append(self, block: Block) -> None: ...

    def get_raw(self, height: int) -> bytes | None: ...

    def get(self, height: int) -> Block | None: ...

    def close(self) -> None: ...


class StateStore(Protocol):
    """The state is always exactly "after block `meta().height`": `commit_block` is atomic."""

    def meta(self) -> Meta | None: ...

    def init_genesis(
        self, writes: dict[bytes, bytes | None], lthash: bytes, root: bytes, genesis_hash: bytes
    ) -> None: ...

    def commit_block(self, height: int, block_hash: bytes, result: BlockResult) -> None: ...

    def install_snapshot(
        self,
        entries: list[tuple[bytes, bytes]],
        height: int,
        block_hash: bytes,
        lthash: bytes,
        root: bytes,
    ) -> None: ...

    def snapshot(self) -> StateView: ...

    def tx_location(self, tx_id: bytes) -> TxLocation | None: ...

    def height_of(self, block_hash: bytes) -> int | None: ...

    def validator_history(self) -> list[tuple[int, tuple[Validator, ...]]]: ...

    def close(self) -> None: ...


class ConsensusLog(Protocol):
    """Latest hard state and the live entries, as replayed at open."""

    hard_state: bytes | None
    entries: dict[int, Entry]

    def save(
        self,
        hard_state: bytes | None,
        entries: tuple[Entry, ...] | list[Entry],
        truncate_from: int | None = None,
    ) -> None: ...

    def compact(self, below: int) -> None: ...

    def ordered_entries(self) -> list[Entry]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Meta:
    height: int
    block_hash: bytes
    lthash: bytes
    state_root: bytes
    genesis_hash: bytes


@dataclass(slots=True)
class NodeStorage:
    """One node's stores. `wal` is None for solo consensus (no consensus state to keep)."""

    blocks: BlockLog
    state: StateStore
    wal: ConsensusLog | None


def open_files(data_dir: Path, fsync: bool, with_wal: bool) -> NodeStorage:
    """The production adapters under `data_dir` (blocks/, state/, consensus.wal)."""
    from .blocks import BlockStore
    from .state import StateStore as LmdbStateStore
    from .wal import ConsensusWal

    return NodeStorage(
        blocks=BlockStore(data_dir / "blocks"),
        state=LmdbStateStore(data_dir / "state", sync=fsync),
        wal=ConsensusWal(data_dir / "consensus.wal", fsync=fsync) if with_wal else None,
    )
