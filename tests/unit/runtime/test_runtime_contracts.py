"""The node and its contract engine (runtime/node.py; issue 16 "Engine pinned per chain"): a
node whose wasmtime differs from the chain's `contracts_engine` refuses contract
transactions at admission, never writes a block that runs contract code (execute_block
raises ContractsUnavailable before anything is committed), restarts halted at that block
(serving reads), and with the chain's engine replays it — on a real solo node, files in a
temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.__main__ import init_dev
from consortium_node.client.keys import Signer
from consortium_node.client.tx import Payload
from consortium_node.config import NodeConfig
from consortium_node.contracts import WasmEngine
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger import contracts as cx
from consortium_node.ledger.block import Block
from consortium_node.runtime.node import Node, load_genesis
from consortium_node.transport import codec

from tests.support import wat

pytestmark = pytest.mark.unit


class OtherEngine(WasmEngine):
    """The same adapter claiming another wasmtime version (as after a dependency bump)."""

    @property
    def engine(self) -> str:
        return "wasmtime-0.0.1"


def open_node(d: Path, vm: cx.ContractVM | None = None) -> Node:
    cfg = NodeConfig.load(d / "config.yaml")
    raw = cfg.to_dict()
    raw["fsync"] = False
    cfg = NodeConfig.from_dict(raw, d)
    return Node(
        cfg,
        Ed25519Key.load(cfg.key_file),
        load_genesis(cfg.genesis_file),
        codec.decode_tx,
        contract_vm=vm,
    )


def submit(node: Node, who: Signer, nonce: int, payload: Payload) -> str:
    """The admission's refusal message, or "" when the tx was pooled."""
    _, tx = who.build_tx(node.chain_id, nonce, payload)
    (a,) = node.submit_many([tx.SerializeToString()], gossip=False)
    return a.message if a.reject is not None else ""


def commit(node: Node) -> Block:
    block = node.build_block(node.height + 1, node.last_hash, allow_empty=False)
    assert block is not None
    node.apply(block)
    return block


def counter(node: Node) -> int:
    with node.snapshot() as snap:
        raw = snap.get(cx.state_key("counter", b"n"))
    return 0 if raw is None else int.from_bytes(raw, "little")


def test_engine_mismatch_halts_without_writing_and_resumes(tmp_path: Path) -> None:
    init_dev(tmp_path, "wasm-dev")
    admin = Signer.load(tmp_path / "keys" / "admin.json")
    client = Signer.load(tmp_path / "keys" / "client.json")
    incr = types_pb2.Invoke(contract="counter", method="incr", fuel_limit=100_000)

    good = open_node(tmp_path)
    assert good.vm.engine == cx.CONTRACTS_ENGINE
    assert (
        submit(good, admin, 0, types_pb2.DeployContract(name="counter", code=wat.counter())) == ""
    )
    commit(good)
    assert submit(good, client, 0, incr) == ""
    commit(good)
    assert counter(good) == 1
    assert submit(good, client, 1, incr) == ""
    pending = good.build_block(good.height + 1, good.last_hash, allow_empty=False)
    assert pending is not None  # block 3 runs contract code; not applied here
    height = good.height
    good.close()

    other = open_node(tmp_path, OtherEngine())
    assert "cannot run the chain's contracts" in submit(other, client, 1, incr)
    kv = types_pb2.KvPut(key=b"k", value=b"v")
    assert submit(other, client, 1, kv) == ""  # everything else is admitted
    with pytest.raises(cx.ContractsUnavailable, match=r"wasmtime-0\.0\.1"):
        other.apply(pending)
    assert (other.height, counter(other)) == (height, 1)  # nothing of block 3 committed
    other.close()

    again = open_node(tmp_path, OtherEngine())  # block 3 is stored: replay halts on it
    assert again.halted is not None and "block 3" in again.halted
    assert again.status().halted == again.halted  # GetStatus.halted, `consortium status`
    assert (again.height, counter(again)) == (height, 1)
    again.close()

    fixed = open_node(tmp_path)  # the chain's engine: block 3 replays
    assert fixed.halted is None and fixed.height == height + 1 and counter(fixed) == 2
    assert fixed.status().halted == ""
    fixed.close()


def test_a_block_holds_at_most_contract_block_fuel_of_invokes(tmp_path: Path) -> None:
    """The proposer's block builder applies the chain's contract_block_fuel (default 10^9):
    of three Invokes of 4 * 10^8 fuel each, a block takes two; the third waits, pooled."""
    init_dev(tmp_path, "wasm-dev")
    admin = Signer.load(tmp_path / "keys" / "admin.json")
    client = Signer.load(tmp_path / "keys" / "client.json")
    node = open_node(tmp_path)
    deploy = types_pb2.DeployContract(name="counter", code=wat.counter())
    assert submit(node, admin, 0, deploy) == ""
    commit(node)
    incr = types_pb2.Invoke(contract="counter", method="incr", fuel_limit=400_000_000)
    for nonce in range(3):
        assert submit(node, client, nonce, incr) == ""
    assert len(commit(node).txs) == 2
    assert len(node.mempool) == 1
    assert len(commit(node).txs) == 1 and counter(node) == 3
    node.close()
