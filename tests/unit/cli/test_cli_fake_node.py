"""The CLI and `Client` end to end against the in-process fake Ledger service (conftest.py):
tx submission and --wait, queries with proof verification, status, blocks, bench, --data-dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from consortium_api.v1 import ledger_pb2
from consortium_node.cli import app
from consortium_node.client.keys import Signer
from consortium_node.client.loadgen import BenchConfig, run_bench
from consortium_node.client.rpc import Client, connect
from typer.testing import CliRunner

if TYPE_CHECKING:
    from tests.unit.cli.conftest import FakeNode

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    p = tmp_path / "client.json"
    Signer.generate().save(p)
    return p


def _json(args: list[str]) -> Any:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_put_wait_get_and_query_tx(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint]
    out = _json(["tx", "put", "hello", "world", "--key", str(key), "--wait", "--json", *ep])
    assert out["code"] == 0 and out["committed"] and out["height"] >= 1
    assert out["receipt_status"] == "OK" and out["nonce"] == 0
    r = runner.invoke(app, ["query", "get", "hello", *ep])
    assert r.exit_code == 0 and r.stdout.strip() == "world"
    q = _json(["query", "tx", out["tx_id"], "--json", *ep])
    assert q["proof_verified"] and q["height"] == out["height"]
    assert q["tx"]["type"] == "kv_put"
    r = runner.invoke(app, ["query", "tx", out["tx_id"], *ep])
    assert r.exit_code == 0 and "verified" in r.stdout
    # second tx picks up the next nonce
    out2 = _json(["tx", "delete", "hello", "--key", str(key), "-w", "--json", *ep])
    assert out2["nonce"] == 1
    r = runner.invoke(app, ["query", "get", "hello", *ep])
    assert r.exit_code == 1 and "not found" in r.stderr


def test_tampered_proof_fails_verification(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint]
    ids = [
        _json(["tx", "put", f"k{i}", "v", "--key", str(key), "--json", *ep])["tx_id"]
        for i in range(3)
    ]
    with Client(fake_node.endpoint) as c:
        got = c.wait_tx(bytes.fromhex(ids[-1]), 5)
    from consortium_node.cli.query import verify_tx_response

    assert verify_tx_response(bytes.fromhex(ids[-1]), got) == []
    got.proof.tx_root = b"\x00" * 32
    assert verify_tx_response(bytes.fromhex(ids[-1]), got)
    r = runner.invoke(app, ["query", "tx", "ab" * 32, *ep])
    assert r.exit_code == 1 and "not found" in r.stderr


def test_assets_and_failed_receipt(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint]
    me = Signer.load(key).public_key.hex()
    other = Signer.generate().public_key.hex()
    _json(["tx", "issue", "gold", me, "100", "--key", str(key), "-w", "--json", *ep])
    _json(["tx", "transfer", "gold", other, "30", "--key", str(key), "-w", "--json", *ep])
    assert _json(["query", "balance", "gold", other, "--json", *ep])["balance"] == 30
    r = runner.invoke(app, ["query", "balance", "gold", me, *ep])
    assert r.stdout.strip() == "70"
    r = runner.invoke(app, ["tx", "transfer", "gold", other, "1000", "--key", str(key), "-w", *ep])
    assert r.exit_code == 1
    assert "INSUFFICIENT_BALANCE" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_rejected_tx_is_one_line(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint]
    r = runner.invoke(app, ["tx", "put", "a", "b", "--key", str(key), "--nonce", "5", *ep])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "rejected: FAILED_PRECONDITION" in lines[0]


def test_governance_commands_submit(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint, "--key", str(key), "--json"]
    nid = "cd" * 32
    assert _json(["tx", "add-validator", nid, "org2", *ep])["code"] == 0
    assert _json(["tx", "remove-validator", nid, *ep])["code"] == 0
    assert _json(["tx", "set-param", "block_ms", "50", *ep])["code"] == 0


def test_add_org_submits_the_ca_file(fake_node: FakeNode, key: Path, tmp_path: Path) -> None:
    from consortium_api.v1 import types_pb2

    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ep = ["--endpoint", fake_node.endpoint, "--key", str(key), "--json"]
    out = _json(["tx", "add-org", "org3", str(ca), *ep, "--wait"])
    assert out["code"] == 0 and out["committed"] is True
    body = types_pb2.TxBody.FromString(
        types_pb2.SignedTx.FromString(fake_node.ledger.blocks[-1].txs[-1]).body
    )
    assert body.WhichOneof("payload") == "add_organization"
    assert body.add_organization.name == "org3"
    assert body.add_organization.ca_cert == ca.read_bytes()
    out = _json(["tx", "set-org-ca", "org3", str(ca), *ep, "--wait"])
    assert out["code"] == 0
    body = types_pb2.TxBody.FromString(
        types_pb2.SignedTx.FromString(fake_node.ledger.blocks[-1].txs[-1]).body
    )
    assert body.WhichOneof("payload") == "set_organization_ca"
    assert body.set_organization_ca.ca_cert == ca.read_bytes()
    # a CA file that cannot be read: one line, exit 1, nothing submitted
    n = len(fake_node.ledger.blocks)
    r = runner.invoke(app, ["tx", "add-org", "org4", str(tmp_path / "missing.pem"), *ep])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "cannot read CA file" in r.stderr
    assert len(fake_node.ledger.blocks) == n


def test_status_blocks_and_block(fake_node: FakeNode, key: Path) -> None:
    ep = ["--endpoint", fake_node.endpoint]
    for i in range(3):
        _json(["tx", "put", f"k{i}", "v", "--key", str(key), "-w", "--json", *ep])
    st = _json(["status", "--json", *ep])
    assert st["chain_id"] == "test-chain" and st["height"] >= 1 and st["role"] == "solo"
    r = runner.invoke(app, ["status", *ep])
    assert r.exit_code == 0 and "test-chain" in r.stdout
    r = runner.invoke(app, ["blocks", "--from", "1", "--json", *ep])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [b["height"] for b in rows] == list(range(1, st["height"] + 1))
    assert sum(b["txs"] for b in rows) == 3
    r = runner.invoke(app, ["blocks", *ep])
    assert r.exit_code == 0 and r.stdout.count("txs") == st["height"]
    b = _json(["query", "block", "1", "--json", "--txs", *ep])
    assert b["header_verified"] and b["height"] == 1 and len(b["tx_ids"]) == b["tx_count"]
    by_hash = _json(["query", "block", b["hash"], "--json", *ep])
    assert by_hash["height"] == 1
    latest = _json(["query", "block", "latest", "--json", *ep])
    assert latest["height"] == st["height"]
    r = runner.invoke(app, ["query", "block", "1", *ep])
    assert r.exit_code == 0 and "hash verified" in r.stdout


def test_status_shows_a_halted_node(fake_node: FakeNode) -> None:
    """A node halted for contracts (engine-version mismatch) says so in `status`."""
    ep = ["--endpoint", fake_node.endpoint]
    assert _json(["status", "--json", *ep])["halted"] == ""
    r = runner.invoke(app, ["status", *ep])
    assert r.exit_code == 0 and "halted" not in r.stdout
    why = "block 3 runs contract code this node cannot execute: [wasmtime-0.0.1]"
    fake_node.ledger.halted = why
    assert _json(["status", "--json", *ep])["halted"] == why
    r = runner.invoke(app, ["status", *ep])
    assert r.exit_code == 0 and "halted" in r.stdout and "[wasmtime-0.0.1]" in r.stdout


def test_status_shows_the_peer_links(fake_node: FakeNode) -> None:
    """`status` lists each peer link: up, or down with the node's one-line reason."""
    ep = ["--endpoint", fake_node.endpoint]
    assert _json(["status", "--json", *ep])["peers"] == []
    assert "peers" not in runner.invoke(app, ["status", *ep]).stdout
    why = "UNAVAILABLE: failed to connect to all addresses; [x] refused"
    fake_node.ledger.peers = [
        ledger_pb2.PeerLink(node_id=b"\x08" * 32, address="h:1", connected=True, since_seconds=9),
        ledger_pb2.PeerLink(node_id=b"\x09" * 32, address="h:2", error=why, since_seconds=41.26),
    ]
    assert _json(["status", "--json", *ep])["peers"][1] == {
        "node_id": "09" * 32,
        "address": "h:2",
        "connected": False,
        "error": why,
        "since_seconds": 41.3,
    }
    r = runner.invoke(app, ["status", *ep])
    assert r.exit_code == 0 and "1/2 connected" in r.stdout and "[x] refused" in r.stdout


def test_data_dir_picks_answering_node_and_client_key(
    fake_node: FakeNode, tmp_path: Path, closed_port: int
) -> None:
    d = tmp_path / "dd"
    d.mkdir()
    Signer.generate().save(d / "keys" / "client.json")
    nodes = [
        {"name": "dead", "organization": "o", "endpoint": f"127.0.0.1:{closed_port}", "pid": 1},
        {"name": "live", "organization": "o", "endpoint": fake_node.endpoint, "pid": 2},
    ]
    (d / "endpoints.json").write_text(
        json.dumps(
            {
                "chain_id": "test-chain",
                "consensus": "solo",
                "nodes": nodes,
                "client_key": "keys/client.json",
            }
        )
    )
    out = _json(["tx", "put", "x", "y", "--data-dir", str(d), "-w", "--json"])
    assert out["sender"] == Signer.load(d / "keys" / "client.json").public_key.hex()
    assert _json(["status", "--data-dir", str(d), "--json"])["endpoint"] == fake_node.endpoint
    r = runner.invoke(app, ["status", "--data-dir", str(d), "--node", "dead"])
    assert r.exit_code == 1 and "unreachable" in r.stderr
    with connect(data_dir=d) as c:
        assert c.endpoint == fake_node.endpoint
    every = _json(["status", "--all", "--data-dir", str(d), "--json"])
    assert [(n["name"], n["up"]) for n in every["nodes"]] == [("dead", False), ("live", True)]
    r = runner.invoke(app, ["status", "--all", "--data-dir", str(d)])
    assert r.exit_code == 0 and "down" in r.stdout and "live" in r.stdout


def test_bench_reports_throughput_and_latency(fake_node: FakeNode) -> None:
    rep = run_bench(BenchConfig(endpoint=fake_node.endpoint, txs=300, streams=3, keys=6))
    assert rep.committed == 300 and rep.rejected == 0 and rep.uncommitted == 0
    assert rep.tx_per_s > 0 and 0 < rep.latency_ms["p50"] <= rep.latency_ms["p99"]
    out = _json(
        ["bench", "--txs", "100", "--streams", "2", "--json", "--endpoint", fake_node.endpoint]
    )
    assert out["committed"] == 100 and set(out["latency_ms"]) >= {"p50", "p90", "p99"}


def test_bench_batch_mode_and_rate(fake_node: FakeNode) -> None:
    rep = run_bench(BenchConfig(endpoint=fake_node.endpoint, txs=250, streams=2, batch=40))
    assert rep.committed == 250 and rep.to_json()["api"] == "SubmitBatch x40"
    rep = run_bench(BenchConfig(endpoint=fake_node.endpoint, txs=50, streams=1, rate=500))
    assert rep.committed == 50 and rep.send_s >= 0.08


def test_bench_counts_rejections(fake_node: FakeNode) -> None:
    fake_node.ledger.reject_all = "mempool full"
    r = runner.invoke(
        app,
        [
            "bench",
            "--txs",
            "20",
            "--endpoint",
            fake_node.endpoint,
            "--json",
            "--commit-timeout",
            "0.2",
        ],
    )
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["rejected"] == 20 and out["committed"] == 0
    assert out["rejections"] == {"RESOURCE_EXHAUSTED: mempool full": 20}
    assert "no transaction committed" in r.stderr


def test_bench_with_processes(fake_node: FakeNode) -> None:
    rep = run_bench(BenchConfig(endpoint=fake_node.endpoint, txs=200, streams=2, procs=2))
    assert rep.committed == 200 and rep.procs == 2


def test_client_api(fake_node: FakeNode) -> None:
    s = Signer.generate()
    with Client(fake_node.endpoint, timeout=2) as c:
        chain = c.status().chain_id
        assert c.next_nonce(s.public_key) == 0
        built = [s.build_tx(chain, n, s_payload(n)) for n in range(3)]
        res = c.submit([tx for _, tx in built])
        assert [r.code for r in res] == [0, 0, 0]
        assert [r.tx_id for r in res] == [i for i, _ in built]
        more = [s.build_tx(chain, n, s_payload(n)) for n in range(3, 6)]
        res2 = list(c.submit_stream(tx for _, tx in more))
        assert [r.code for r in res2] == [0, 0, 0]
        got = c.wait_tx(more[-1][0], timeout=5)
        assert got.receipt.tx_id == more[-1][0]
        assert c.get_tx(b"\x00" * 32) is None
        assert c.next_nonce(s.public_key) == 6
        assert c.query_key(b"n5").value == b"v"
        blocks = list(c.stream_blocks(1, ids_only=True))
        assert sum(len(b.tx_ids) for b in blocks) == 6
        assert c.get_block(1).header_view.height == 1
        last = [s.build_tx(chain, n, s_payload(n)) for n in range(6, 9)]
        res3 = c.submit_raw([tx.SerializeToString() for _, tx in last])
        assert [(r.tx_id, r.code) for r in res3] == [(i, 0) for i, _ in last]


def s_payload(n: int) -> Any:
    from consortium_api.v1 import types_pb2

    return types_pb2.KvPut(key=f"n{n}".encode(), value=b"v")


def test_bench_spread_over_data_dir_nodes(
    fake_node: FakeNode, tmp_path: Path, closed_port: int
) -> None:
    nodes = [
        {"name": "a", "endpoint": fake_node.endpoint},
        {"name": "down", "endpoint": f"127.0.0.1:{closed_port}"},
        {"name": "b", "endpoint": fake_node.endpoint},
    ]
    (tmp_path / "endpoints.json").write_text(json.dumps({"chain_id": "c", "nodes": nodes}))
    out = _json(
        ["bench", "--txs", "60", "--streams", "3", "--spread", "-d", str(tmp_path), "--json"]
    )
    assert out["committed"] == 60
    assert out["submit_to"] == [fake_node.endpoint, fake_node.endpoint]


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("consortium ")
