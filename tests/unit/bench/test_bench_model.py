"""bench/model.py, the model peer of issue 19. A tiny run of each shape (real processes on
127.0.0.1, a few seconds) must do the real work, so that it cannot be a stub: every validator
ends with the same blocks, each block's commit certificate verifies (real votes, real
signatures), and every validator's LMDB state root is the one the pure state machine gives
for the same signed txs executed in-process. Then the figures a run is summarised into, from
hand-made peer results. Keys and values are seeded: every run of a config has one root."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from consortium_api.v1 import types_pb2
from consortium_node import crypto
from consortium_node.ledger.block import certificate_problem
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import OK, execute_block
from consortium_node.storage.blocks import BlockStore
from consortium_node.storage.state import StateStore
from consortium_node.transport.codec import decode_tx

from bench.model import (
    CHAIN_ID,
    ModelConfig,
    ModelFailed,
    genesis_lthash,
    genesis_writes,
    node_keys,
    read_txs,
    run,
    signed_txs,
    summarize_nodes,
    write_txs,
)
from bench.procs import Procs

pytestmark = pytest.mark.unit


def _executed_in_process(cfg: ModelConfig) -> tuple[str, list[bytes]]:
    """(state root hex, tx ids) of the run's txs executed block by block over a dict by
    `ledger.state.execute_block`, with nothing of the model but its inputs."""
    state: dict[bytes, bytes] = dict(genesis_writes(cfg))
    acc = genesis_lthash(cfg)
    raws = signed_txs(cfg)
    root = acc.digest()
    ids = []
    for h in range(1, cfg.blocks + 1):
        txs = [decode_tx(r) for r in raws[(h - 1) * cfg.block_txs : h * cfg.block_txs]]
        res = execute_block(state, acc, h, txs)
        assert [r.code for r in res.receipts] == [OK] * len(txs)  # vouched senders, in order
        state.update({k: v for k, v in res.writes.items() if v is not None})
        acc, root = LtHash(res.lthash), res.state_root
        ids += [t.id for t in txs]
    return root.hex(), ids


@pytest.mark.parametrize(
    ("shape", "validators", "gossip"),
    [("bft", 4, False), ("bft", 4, True), ("raft", 3, False)],
    ids=["bft4", "bft4-gossip", "raft3"],
)
def test_a_tiny_run_does_the_real_work_on_every_validator(
    tmp_path: Path, shape: str, validators: int, gossip: bool
) -> None:
    cfg = ModelConfig(
        shape, validators, blocks=3, block_txs=10, senders=3, seed=7, gossip=gossip, timeout=60
    )
    procs = Procs()
    try:
        r = run(cfg, tmp_path, procs)
    finally:
        procs.stop_all()
    root, ids = _executed_in_process(cfg)
    assert r["state_root"] == root
    assert (r["committed"], r["blocks"]) == (30, 3)
    assert r["tx_per_s"] > 0 and r["latency_ms"]["p50"] > 0 and r["node_cpu_s"] >= 0
    if shape == "bft":  # every validator checked every tx and the others' proposal
        assert r["signature_checks"] >= validators * 30 + (validators - 1) * 3
    else:  # only the leader checks txs (crash-fault model)
        assert r["signature_checks"] == 30
    pubs = [k.public for k in node_keys(cfg)]
    chains = []
    for i in range(validators):
        blocks = BlockStore(tmp_path / f"node{i}" / "blocks")
        state = StateStore(tmp_path / f"node{i}" / "state")
        try:
            assert blocks.height == 3
            chain = [blocks.get(h) for h in (1, 2, 3)]
            for b in chain:
                assert b is not None
                assert certificate_problem(b, CHAIN_ID, pubs, shape == "bft", crypto.verify) is None
            chains.append([b.hash for b in chain if b is not None])
            meta = state.meta()
            assert meta is not None and (meta.height, meta.state_root.hex()) == (3, root)
            loc = state.tx_location(ids[-1])
            assert loc is not None and (loc.height, loc.code) == (3, OK)
        finally:
            blocks.close()
            state.close()
    assert all(c == chains[0] for c in chains)


@pytest.mark.parametrize(("shape", "validators"), [("bft", 4), ("raft", 3)])
def test_a_tx_with_a_bad_signature_fails_the_run_at_once(
    tmp_path: Path, shape: str, validators: int
) -> None:
    """Signatures are really checked: one flipped bit in block 2 ends the run with the
    reason, long before its timeout (a stalled run would take the whole 60 s)."""
    cfg = ModelConfig(shape, validators, blocks=3, block_txs=10, senders=3, seed=7, timeout=60)
    txs = signed_txs(cfg)
    bad = types_pb2.SignedTx.FromString(txs[14])
    bad.signature = bytes([bad.signature[0] ^ 1]) + bad.signature[1:]
    txs[14] = bad.SerializeToString()
    procs = Procs()
    t0 = time.monotonic()
    try:
        with pytest.raises(ModelFailed, match="bad signature"):
            run(cfg, tmp_path, procs, txs)
    finally:
        procs.stop_all()
    assert time.monotonic() - t0 < 30


def test_txs_are_seeded_and_the_tx_file_round_trips(tmp_path: Path) -> None:
    cfg = ModelConfig("bft", 4, blocks=2, block_txs=3, seed=1)
    raws = signed_txs(cfg)
    assert raws == signed_txs(cfg) and len(raws) == 6
    assert raws != signed_txs(ModelConfig("bft", 4, blocks=2, block_txs=3, seed=2))
    write_txs(tmp_path / "t", raws)
    assert read_txs(tmp_path / "t") == raws


def test_configs_outside_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        ModelConfig("pbft")
    with pytest.raises(ValueError, match=">= 2 validators"):
        ModelConfig("raft", 1)
    cfg = ModelConfig("raft", 3, blocks=4, block_txs=5, gossip=True)
    assert ModelConfig.from_json(cfg.to_json()) == cfg and cfg.txs == 20


def _result(index: int, root: str = "ab", hashes: tuple[str, ...] = ("h1", "h2")) -> dict[str, Any]:
    return {
        "index": index,
        "height": len(hashes),
        "state_root": root,
        "block_hashes": list(hashes),
        # node 0 commits block 1 at 30 ms and block 2 at 70 ms (ns since some origin)
        "commits_ns": [30_000_000, 70_000_000] if index == 0 else [31_000_000, 72_000_000],
        "starts_ns": {"1": 10_000_000} if index == 1 else {"2": 40_000_000} if index == 0 else {},
        "signature_checks": 5,
        "signatures": 2,
        "fsyncs": 8,
    }


def test_figures_come_from_node_0s_commits_and_the_proposers_starts() -> None:
    cfg = ModelConfig("bft", 3, blocks=2, block_txs=100)
    r = summarize_nodes(cfg, [_result(0), _result(1), _result(2)], cpu_s=0.1)
    # 200 txs from block 1's start (10 ms) to node 0's last commit (70 ms)
    assert r["tx_per_s"] == pytest.approx(200 / 0.06, abs=0.1)
    assert r["latency_ms"]["p50"] == 20.0  # block 1: 30 - 10; block 2: 70 - 40 = 30
    assert r["latency_ms"]["max"] == 30.0
    assert r["cpu_s_per_1000_tx"] == 0.5
    assert (r["signature_checks"], r["signatures"], r["fsyncs"]) == (15, 6, 24)


@pytest.mark.parametrize(
    "odd",
    [_result(2, root="cd"), _result(2, hashes=("h1", "hX")), _result(2, hashes=("h1",))],
    ids=["state-root", "block-hash", "height"],
)
def test_validators_that_disagree_give_no_figure(odd: dict[str, Any]) -> None:
    with pytest.raises(ModelFailed, match="disagree"):
        summarize_nodes(ModelConfig("bft", 3, blocks=2), [_result(0), _result(1), odd], 0.1)
