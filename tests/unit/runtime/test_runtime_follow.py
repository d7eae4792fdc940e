"""Node.wants_blocks (runtime/node.py): when the driver (runtime/service.py, tests/sim) polls a
peer for committed blocks. A validator that applied no block for FOLLOW_STALL_S polls too, once
per period: one that governance removed at a height above its own gets no consensus traffic
and would otherwise never catch up (issue 13; the whole-node sim's raft seeds 76 and 147 fail
without it). On a real solo node (files in a temp dir, fsync off) with a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_node.__main__ import init_dev
from consortium_node.config import NodeConfig
from consortium_node.crypto import Ed25519Key
from consortium_node.runtime.node import FOLLOW_STALL_S, Node, load_genesis
from consortium_node.transport import codec

pytestmark = pytest.mark.unit


class Clock:
    """The clock injected into the node (runtime/clock.py): monotonic time set by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(tmp_path: Path, clock: Clock) -> Iterator[Node]:
    init_dev(tmp_path, "follow-chain")
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    d = cfg.to_dict()
    d["fsync"] = False
    cfg = NodeConfig.from_dict(d, tmp_path)
    n = Node(
        cfg,
        Ed25519Key.load(cfg.key_file),
        load_genesis(cfg.genesis_file),
        codec.decode_tx,
        clock=clock,
    )
    try:
        yield n
    finally:
        n.close()


def test_a_stalled_validator_polls_once_per_period(node: Node, clock: Clock) -> None:
    assert node.node_id in node.validators_at(node.height + 1)
    assert not node.wants_blocks()  # just started
    clock.t += FOLLOW_STALL_S - 0.01
    assert not node.wants_blocks()
    clock.t += 0.01
    assert node.wants_blocks()  # no block for FOLLOW_STALL_S: ask a peer
    assert not node.wants_blocks()  # at most once per period
    clock.t += FOLLOW_STALL_S
    assert node.wants_blocks()


def test_a_committing_validator_does_not_poll(node: Node, clock: Clock) -> None:
    clock.t += 10 * FOLLOW_STALL_S
    block = node.build_block(node.height + 1, node.last_hash, allow_empty=True)
    assert block is not None
    node.apply(block)  # the chain moves: consensus traffic reaches this node
    clock.t += FOLLOW_STALL_S - 0.01
    assert not node.wants_blocks()
    clock.t += 0.01
    assert node.wants_blocks()


def test_an_observer_always_polls(node: Node) -> None:
    node._vsets = [(1, ())]  # a chain whose validator set no longer holds this node
    assert node.node_id not in node.validators_at(node.height + 1)
    assert node.wants_blocks() and node.wants_blocks()
