"""The contract between a consensus engine and the node runtime that drives it.

Every engine (solo.py, raft/, bft/) is a pure state machine with inputs `tick()`, `step(env)`,
and outputs collected by `ready()`. The runtime loop is, in order:

    rd = engine.ready()
    persist rd.hard_state and rd.entries, fsync      # durability before anything depends on it
    send rd.messages                                  # persist before send
    apply rd.committed blocks, in height order        # apply only committed blocks
    drop log entries below rd.compact_below           # garbage once persisted and applied
    engine.advance(rd)

Engines never raise on untrusted input: a bad peer message is dropped and reported through
`Ready.rejections` (reason + offender) so the runtime can log it and count it in a metric.
An `InvariantError` (ledger.errors) from an engine means our own state is corrupt: stop.

The engine reaches the application (block building, validation, signatures) only through the
injected `Application`, so simulations can plug in deterministic fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..ledger.block import Block


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message between two nodes. `payload` is engine-encoded bytes (see each engine's
    codec); transport carries it opaquely. `sender`/`to` are node ids (32-byte public keys)."""

    sender: bytes
    to: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """A durable consensus-log record (raft log entry); BFT engines may use none."""

    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """An untrusted message the engine discarded: who sent it and why (metric + log line)."""

    offender: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Ask the runtime to fetch committed blocks [from_height, ...] (with their commit
    certificates) from `peer`, verify them, apply them and call `Engine.synced(height, hash)`."""

    peer: bytes
    from_height: int


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver, in order: persist `hard_state`/`entries` (fsync), then send
    `messages`, then apply `committed` (height order, each with its certificate); then call
    `advance(ready)`. `hard_state` is opaque engine-encoded bytes (None = unchanged)."""

    hard_state: bytes | None = None
    entries: tuple[Entry, ...] = ()
    truncate_from: int | None = None  # drop persisted entries with index >= this first
    messages: tuple[Envelope, ...] = ()
    committed: tuple[Block, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    sync: tuple[SyncRequest, ...] = ()
    # once this Ready is persisted, persisted entries with index < this are no longer needed
    # (their blocks are in the block store): the driver may drop them from its consensus log
    compact_below: int | None = None

    def empty(self) -> bool:
        return not (
            self.hard_state is not None
            or self.entries
            or self.truncate_from is not None
            or self.messages
            or self.committed
            or self.rejections
            or self.sync
            or self.compact_below is not None
        )


EMPTY_READY = Ready()


@dataclass(frozen=True, slots=True)
class Status:
    role: str  # solo | leader | follower | candidate | validator | observer
    leader: bytes | None
    height: int  # highest committed height known to the engine
    round: int  # term (raft) or view/round (bft)


class Application(Protocol):
    """The node as seen by an engine. Implemented by runtime (real) and tests/sim (fakes)."""

    def build_block(self, height: int, prev_hash: bytes, allow_empty: bool) -> Block | None:
        """A proposal for `height` extending `prev_hash` with this node as proposer, or None
        when it cannot build one now: the parent is not applied yet, or the mempool is empty
        and not `allow_empty` (the engine decides when an empty block is due)."""
        ...

    def has_pending(self) -> bool:
        """True when the mempool holds transactions worth a block."""
        ...

    def validate_block(self, block: Block) -> str | None:
        """None if `block` is a valid proposal on top of our last committed block, else a
        reason. Checks header linkage, tx root, state root, signatures, nonces."""
        ...

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        """Validator node ids (sorted) that decide `height`. Governance changes executed in
        block h take effect at height h + 2, so this is known once h + 1 is committed."""
        ...

    def sign(self, data: bytes) -> bytes: ...

    def verify(self, signer: bytes, data: bytes, signature: bytes) -> bool: ...


class Engine(Protocol):
    node_id: bytes

    def tick(self) -> None: ...

    def step(self, env: Envelope) -> None: ...

    def ready(self) -> Ready: ...

    def advance(self, rd: Ready) -> None: ...

    def synced(self, height: int, block_hash: bytes) -> None:
        """The runtime applied blocks up to `height` obtained by block sync."""
        ...

    def status(self) -> Status: ...
