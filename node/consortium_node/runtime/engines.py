"""Engine factory: builds (or restores from the consensus WAL) the engine a genesis names.

Called by runtime.node at start-up. Engines are pure; this module owns the glue that maps node
configuration (milliseconds) onto engine configuration (ticks). WAL compaction needs no glue:
engines say which entries are garbage in `Ready.compact_below`."""

from __future__ import annotations

import random

from ..config import NodeConfig
from ..consensus.api import Application, Engine
from ..consensus.bft.engine import BftConfig, BftEngine
from ..consensus.raft import RaftConfig, RaftEngine
from ..consensus.solo import SoloEngine
from ..ledger.errors import InvariantError
from ..storage.ports import ConsensusLog

COMPACT_EVERY = 512  # raft: keep this many applied entries in the log (RaftConfig.compact_every)


def _ticks(ms: int, tick_ms: int) -> int:
    return max(1, ms // tick_ms)


def engine_config(kind: str, cfg: NodeConfig) -> RaftConfig | BftConfig | None:
    """The engine configuration a node config implies (None for solo)."""
    c = cfg.consensus
    empty = _ticks(c.empty_block_ms, c.tick_ms) if c.empty_block_ms else None
    if kind == "raft":
        return RaftConfig(
            election_ticks=c.election_ticks,
            heartbeat_ticks=c.heartbeat_ticks,
            empty_block_ticks=empty,
            compact_every=COMPACT_EVERY,
        )
    if kind == "bft":
        return BftConfig(empty_block_ticks=empty if empty is not None else 1 << 40)
    return None


def make_engine(
    kind: str,
    node_id: bytes,
    chain_id: str,
    app: Application,
    cfg: NodeConfig,
    height: int,
    last_hash: bytes,
    wal: ConsensusLog | None,
    config: RaftConfig | BftConfig | None = None,
) -> Engine:
    """`config` overrides `engine_config(kind, cfg)` (tests/sim draws engine tunings)."""
    c = cfg.consensus
    rng = random.Random(int.from_bytes(node_id[:8], "big") ^ height)
    if kind == "solo":
        empty = _ticks(c.empty_block_ms, c.tick_ms) if c.empty_block_ms else None
        return SoloEngine(node_id, chain_id, app, height, last_hash, empty or 0)
    if wal is None:
        raise InvariantError(f"{kind} consensus needs a WAL")
    conf = config if config is not None else engine_config(kind, cfg)
    if kind == "raft" and isinstance(conf, RaftConfig):
        return RaftEngine.restore(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            hard_state=wal.hard_state,
            entries=wal.ordered_entries(),
            last_applied_height=height,
            last_block_hash=last_hash,
            config=conf,
        )
    if kind == "bft" and isinstance(conf, BftConfig):
        return BftEngine.restore(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            hard_state=wal.hard_state,
            entries=wal.ordered_entries(),
            last_applied_height=height,
            last_block_hash=last_hash,
            config=conf,
        )
    raise InvariantError(f"unknown consensus {kind!r} (or a config of another engine)")
