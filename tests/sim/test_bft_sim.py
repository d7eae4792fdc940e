"""Seeded simulations of the BFT engine (tests/sim/harness.py): 4 validators, one of them
Byzantine as a Twins pair (two instances sharing its key, on opposite sides of partitions, with
different mempools, so they equivocate), drops, delays, duplicates, partitions, crash-restart
(torn too) of honest nodes. Checks: agreement on every committed height among honest nodes,
2f+1-signature certificates on every applied block, nothing committed lost, progress after heal."""

from __future__ import annotations

import random

import pytest
from consortium_node.consensus.bft import BftConfig, BftEngine

from tests.support.engines import CHAIN_ID, GENESIS_HASH, FakeApp, node_id

from .harness import Sim, SimEngine, SimParams, Stored, run_or_explain

pytestmark = pytest.mark.sim

CFG = BftConfig(
    timeout_propose=6,
    timeout_prevote=3,
    timeout_precommit=3,
    timeout_delta=2,
    empty_block_ticks=3,
    rebroadcast_ticks=8,
    sync_retry_ticks=10,
)


def make_bft(nid: bytes, app: FakeApp, rng: random.Random, st: Stored | None) -> SimEngine:
    if st is None:
        return BftEngine(nid, app, rng, chain_id=CHAIN_ID, applied_hash=GENESIS_HASH, config=CFG)
    return BftEngine.restore(
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


def test_bft_sim(seed: int) -> None:
    run_or_explain(
        lambda: Sim(
            seed,
            ["v0", "v1", "v2", "v3"],
            make_bft,
            byzantine="v3" if seed % 4 else None,
            params=SimParams(corrupt_rate=0.01),
            check_certificates="quorum",
        ),
        seed,
        f"tests/sim/test_bft_sim.py::test_bft_sim[seed={seed}]",
    )


def _bft_schedule(h: int) -> tuple[bytes, ...]:
    """v4 joins at height 4 (n = 5), v0 leaves at height 9: one member at a time."""
    names = ("v0", "v1", "v2", "v3") if h < 4 else ("v0", "v1", "v2", "v3", "v4")
    if h >= 9:
        names = ("v1", "v2", "v3", "v4")
    return tuple(sorted(node_id(n) for n in names))


def test_bft_membership_sim(seed: int) -> None:
    """Validator-set change (add v4, then remove v0) with a Byzantine Twin (v3) and faults."""
    run_or_explain(
        lambda: Sim(
            seed,
            ["v0", "v1", "v2", "v3", "v4"],
            make_bft,
            byzantine="v3",
            params=SimParams(min_height=11, liveness_ticks=300),
            check_certificates="quorum",
            validators=_bft_schedule,
        ),
        seed,
        f"tests/sim/test_bft_sim.py::test_bft_membership_sim[seed={seed}]",
    )
