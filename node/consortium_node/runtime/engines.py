"""Engine factory: builds (or restores from the consensus WAL) the engine a genesis names.

Called by runtime.node at start-up. Engines are pure; this module owns the glue that maps node
configuration (milliseconds) onto engine configuration (ticks) and compaction of the WAL."""

from __future__ import annotations

import random

from ..config import NodeConfig
from ..consensus.api import Application, Engine
from ..consensus.bft.engine import BftConfig, BftEngine
from ..consensus.raft import RaftConfig, RaftEngine
from ..consensus.solo import SoloEngine
from ..ledger.errors import InvariantError
from ..storage.ports import ConsensusLog

BFT_AVAILABLE = True
COMPACT_EVERY = 512  # raft: keep this many applied entries in the WAL before compacting


def _ticks(ms: int, tick_ms: int) -> int:
    return max(1, ms // tick_ms)


def make_engine(
    kind: str,
    node_id: bytes,
    chain_id: str,
    app: Application,
    cfg: NodeConfig,
    height: int,
    last_hash: bytes,
    wal: ConsensusLog | None,
) -> Engine:
    c = cfg.consensus
    empty = _ticks(c.empty_block_ms, c.tick_ms) if c.empty_block_ms else None
    rng = random.Random(int.from_bytes(node_id[:8], "big") ^ height)
    if kind == "solo":
        return SoloEngine(node_id, chain_id, app, height, last_hash, empty or 0)
    if wal is None:
        raise InvariantError(f"{kind} consensus needs a WAL")
    if kind == "raft":
        rc = RaftConfig(
            election_ticks=c.election_ticks,
            heartbeat_ticks=c.heartbeat_ticks,
            empty_block_ticks=empty,
        )
        return RaftEngine.restore(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            hard_state=wal.hard_state,
            entries=wal.ordered_entries(),
            last_applied_height=height,
            last_block_hash=last_hash,
            config=rc,
        )
    if kind == "bft":
        bc = BftConfig(empty_block_ticks=empty if empty is not None else 1 << 40)
        return BftEngine.restore(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            hard_state=wal.hard_state,
            entries=wal.ordered_entries(),
            last_applied_height=height,
            last_block_hash=last_hash,
            config=bc,
        )
    raise InvariantError(f"unknown consensus {kind!r}")


def maybe_compact(engine: Engine, wal: ConsensusLog | None) -> None:
    """Raft: drop WAL entries whose blocks are in the block store (keeps a tail so slow
    followers can still be fed from the log instead of block sync)."""
    if wal is None or not isinstance(engine, RaftEngine):
        return
    upto = engine.applied_index - COMPACT_EVERY
    if upto > engine.log.snap_index + COMPACT_EVERY:
        engine.compact(upto)


def after_persist(engine: Engine, wal: ConsensusLog | None) -> None:
    """Raft: once a hard state recording a new snapshot point is durable, the WAL may drop the
    entries at or below it. BFT: entries of decided heights (term <= height) are garbage."""
    if wal is None:
        return
    if isinstance(engine, RaftEngine):
        wal.compact(engine.log.snap_index + 1)
    elif isinstance(engine, BftEngine) and wal.entries:
        height = engine.status().height
        done = [e.index for e in wal.entries.values() if e.term <= height]
        live = [e.index for e in wal.entries.values() if e.term > height]
        if done:
            below = max(done) + 1
            if not live or min(live) >= below:
                wal.compact(below)
