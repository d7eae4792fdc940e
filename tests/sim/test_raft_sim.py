"""Seeded simulations of the Raft engine (tests/sim/harness.py): 3 or 5 nodes, drops, delays,
duplicates, partitions, crash-restart (torn too), log compaction forcing block-sync catch-up.
Checks: agreement on every committed height, no committed block lost, progress after heal."""

from __future__ import annotations

import random

import pytest
from consortium_node.consensus.raft import RaftConfig, RaftEngine

from tests.support.engines import CHAIN_ID, GENESIS_HASH, FakeApp, node_id

from .harness import Sim, SimEngine, SimNode, SimParams, Stored, run_or_explain

pytestmark = pytest.mark.sim

CFG = RaftConfig(election_ticks=10, heartbeat_ticks=2, empty_block_ticks=5, sync_retry_ticks=10)


def make_raft(nid: bytes, app: FakeApp, rng: random.Random, st: Stored | None) -> SimEngine:
    if st is None:
        return RaftEngine(nid, app, rng, chain_id=CHAIN_ID, applied_hash=GENESIS_HASH, config=CFG)
    return RaftEngine.restore(
        nid,
        app,
        rng,
        chain_id=CHAIN_ID,
        hard_state=st.hard_state,
        entries=st.entries,
        last_applied_height=app.height,
        last_block_hash=app.tip_hash,
        config=CFG,
    )


def compact(node: SimNode) -> None:
    """Keep the raft log short so lagging nodes must catch up by block sync."""
    eng = node.engine
    assert isinstance(eng, RaftEngine)
    if eng.applied_index - eng.log.snap_index > 12:
        eng.compact(eng.applied_index - 4)


def test_raft_sim(seed: int) -> None:
    names = ["n0", "n1", "n2"] if seed % 3 else ["n0", "n1", "n2", "n3", "n4"]
    run_or_explain(
        lambda: Sim(
            seed,
            names,
            make_raft,
            params=SimParams(),
            check_certificates="leader",
            after_advance=compact,
        ),
        seed,
        f"tests/sim/test_raft_sim.py::test_raft_sim[seed={seed}]",
    )


def _raft_schedule(h: int) -> tuple[bytes, ...]:
    """n3 joins at height 4, n0 leaves at height 9: one member at a time."""
    if h < 4:
        return tuple(sorted(node_id(n) for n in ("n0", "n1", "n2")))
    if h < 9:
        return tuple(sorted(node_id(n) for n in ("n0", "n1", "n2", "n3")))
    return tuple(sorted(node_id(n) for n in ("n1", "n2", "n3")))


def test_raft_membership_sim(seed: int) -> None:
    """Validator-set change through the app (add n3, then remove n0) under the same faults."""
    run_or_explain(
        lambda: Sim(
            seed,
            ["n0", "n1", "n2", "n3"],
            make_raft,
            params=SimParams(min_height=11, liveness_ticks=300),
            check_certificates="leader",
            after_advance=compact,
            validators=_raft_schedule,
        ),
        seed,
        f"tests/sim/test_raft_sim.py::test_raft_membership_sim[seed={seed}]",
    )
