"""A real node process over real gRPC: submit, commit, query, proofs, blocks, bad input."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from consortium_api.v1 import ledger_pb2, types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.ledger.hashing import sha256, verify_merkle_proof

from .nodeproc import NodeProcess

pytestmark = pytest.mark.integration


def _put(
    s: Signer, chain: str, nonce: int, key: bytes, value: bytes = b"v"
) -> tuple[bytes, types_pb2.SignedTx]:
    return s.build_tx(chain, nonce, types_pb2.KvPut(key=key, value=value))


def test_submit_commit_query_roundtrip(client: Client, funded: Signer) -> None:
    chain = client.status().chain_id
    other = Signer.generate()
    txs = [_put(funded, chain, i, b"key-%d" % i, b"value-%d" % i) for i in range(20)]
    tid, transfer = funded.build_tx(
        chain, 20, types_pb2.AssetTransfer(asset="coin", to=other.public_key, amount=1234)
    )
    txs.append((tid, transfer))
    results = client.submit([t for _, t in txs])
    assert [r.code for r in results] == [0] * len(txs), [r.message for r in results]
    assert [r.tx_id for r in results] == [i for i, _ in txs]
    got = client.wait_tx(tid, timeout=10)
    assert got.receipt.code == types_pb2.TX_CODE_OK
    for i in range(20):
        assert client.query_key(b"key-%d" % i).value == b"value-%d" % i
    assert client.balance("coin", other.public_key) == 1234
    assert client.balance("coin", funded.public_key) == 1_000_000_000 - 1234
    assert client.next_nonce(funded.public_key) == 21

    # inclusion proof against the header's tx root, header hash = sha256(fixed header)
    resp = client.wait_tx(txs[7][0], timeout=10)
    p = resp.proof
    assert verify_merkle_proof(txs[7][0], p.index, p.size, list(p.path), p.tx_root)
    assert not verify_merkle_proof(sha256(b"other"), p.index, p.size, list(p.path), p.tx_root)
    block = client.get_block(resp.receipt.height)
    assert sha256(block.header) == block.header_view.hash
    assert block.header_view.tx_root == p.tx_root
    assert client.get_block(block.header_view.hash).header == block.header
    assert resp.tx.body == txs[7][1].body


def test_a_query_with_min_height_waits_for_that_block_or_says_how_far_the_node_is(
    node: NodeProcess, funded: Signer
) -> None:
    """Read-your-writes through a Service that picks any node: QueryState with min_height
    answers as of that block or later, waiting for it; past the deadline it is OUT_OF_RANGE
    with this node's height in plain words, never a stale "not found"."""
    c = Client(node.endpoint, 2.0)
    try:
        h = c.status().height
        pending = c._stub.QueryState.future(
            ledger_pb2.QueryStateRequest(key=b"later", min_height=h + 1), timeout=10
        )
        (tid, tx) = _put(funded, c.status().chain_id, c.next_nonce(funded.public_key), b"later")
        assert [r.code for r in c.submit([tx])] == [0]
        got = pending.result()
        assert got.height >= h + 1 and got.found and got.value == b"v", got
        assert c.wait_tx(tid, timeout=10).receipt.height <= got.height

        far = c.status().height + 1000
        with pytest.raises(grpc.RpcError) as e:
            c._stub.QueryState(
                ledger_pb2.QueryStateRequest(key=b"later", min_height=far), timeout=1.5
            )
        assert e.value.code() is grpc.StatusCode.OUT_OF_RANGE, e.value
        assert f"below the asked minimum height {far}" in (e.value.details() or "")
        # and the CLI path: the same one line
        with pytest.raises(ClientError, match=r"OUT_OF_RANGE: this node is at height \d+, below"):
            c.query_key(b"later", far)
    finally:
        c.close()


def test_stream_blocks_follows_new_commits(client: Client, funded: Signer) -> None:
    chain = client.status().chain_id
    stream = client.stream_blocks(1, follow=True, ids_only=True)
    ids = []
    for i in range(3):
        tid, tx = _put(funded, chain, i, b"s%d" % i)
        assert client.submit([tx])[0].code == 0
        ids.append(tid)
    seen: list[bytes] = []
    heights = []
    for blk in stream:
        heights.append(blk.header_view.height)
        seen.extend(blk.tx_ids)
        if set(ids) <= set(seen):
            break
    assert heights == list(range(1, len(heights) + 1))


@pytest.mark.usefixtures("node")
def test_status_reports_chain(client: Client) -> None:
    st = client.status()
    assert st.chain_id == "dev-chain"
    assert st.role == "solo"
    assert len(st.node_id) == 32 and st.leader == st.node_id
    assert [v.node_id for v in st.validators] == [st.node_id]
    assert st.sync_state == "synced"


def _code(client: Client, tx: types_pb2.SignedTx) -> tuple[grpc.StatusCode, str]:
    r = client.submit([tx])[0]
    code = next(c for c in grpc.StatusCode if c.value[0] == r.code)
    return code, r.message


def test_bad_input_answered_with_codes(client: Client, funded: Signer) -> None:
    chain = client.status().chain_id
    ok_id, ok = _put(funded, chain, 0, b"a")
    assert _code(client, ok)[0] == grpc.StatusCode.OK
    client.wait_tx(ok_id, timeout=10)
    cases: list[tuple[str, types_pb2.SignedTx, grpc.StatusCode, str]] = []
    cases.append(("replay", ok, grpc.StatusCode.ALREADY_EXISTS, "already"))
    _, replay_nonce = _put(funded, chain, 0, b"other-key")
    cases.append(
        ("nonce replay", replay_nonce, grpc.StatusCode.ALREADY_EXISTS, "nonce 0 already used")
    )
    _, gap = _put(funded, chain, 5, b"b")
    cases.append(("nonce gap", gap, grpc.StatusCode.FAILED_PRECONDITION, "gap"))
    _, wrong_chain = _put(funded, "not-this-chain", 1, b"c")
    cases.append(("wrong chain", wrong_chain, grpc.StatusCode.INVALID_ARGUMENT, "chain id"))
    _, forged = _put(funded, chain, 1, b"d")
    forged.signature = bytes(64)
    cases.append(("bad signature", forged, grpc.StatusCode.UNAUTHENTICATED, "signature"))
    cases.append(
        (
            "malformed",
            types_pb2.SignedTx(body=b"\xff\xff\xff", signature=bytes(64)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "decode",
        )
    )
    _, big = _put(funded, chain, 1, b"e", b"x" * (200 * 1024))
    cases.append(("oversized", big, grpc.StatusCode.INVALID_ARGUMENT, "limit"))
    body = types_pb2.TxBody(chain_id=chain, sender=funded.public_key, nonce=1).SerializeToString()
    cases.append(
        (
            "unknown type",
            types_pb2.SignedTx(body=body, signature=funded.sign(body)),
            grpc.StatusCode.UNIMPLEMENTED,
            "payload type",
        )
    )
    _, poor = funded.build_tx(
        chain, 1, types_pb2.AssetTransfer(asset="coin", to=bytes(32), amount=10**15)
    )
    cases.append(("insufficient balance", poor, grpc.StatusCode.FAILED_PRECONDITION, "balance"))
    _, gov = funded.build_tx(chain, 1, types_pb2.SetParam(name="max_block_txs", value="10"))
    cases.append(("not an admin", gov, grpc.StatusCode.PERMISSION_DENIED, "admin"))
    batch = client.submit([c[1] for c in cases])
    for (name, _, want, words), r in zip(cases, batch, strict=True):
        code = next(c for c in grpc.StatusCode if c.value[0] == r.code)
        assert code == want, f"{name}: got {code} {r.message!r}"
        assert words in r.message, f"{name}: message {r.message!r} lacks {words!r}"
    # The node is still up and still commits.
    tid, tx = _put(funded, chain, 1, b"after")
    assert _code(client, tx)[0] == grpc.StatusCode.OK
    assert client.wait_tx(tid, timeout=10).receipt.code == 0


def test_malformed_request_and_unknown_block(node: NodeProcess, client: Client) -> None:
    with grpc.insecure_channel(node.endpoint) as ch:
        raw = ch.unary_unary(
            "/consortium.v1.Ledger/SubmitBatch",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff", timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed" in (e.value.details() or "")
        get = ch.unary_unary(
            "/consortium.v1.Ledger/GetBlock",
            request_serializer=ledger_pb2.GetBlockRequest.SerializeToString,
            response_deserializer=types_pb2.Block.FromString,
        )
        with pytest.raises(grpc.RpcError) as e:
            get(ledger_pb2.GetBlockRequest(height=10_000), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert client.status().chain_id == "dev-chain"


def test_health_and_reflection(node: NodeProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(node.endpoint) as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="consortium.v1.Ledger"), timeout=5
        )
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
        names = {s.name for s in resp.list_services_response.service}
        assert "consortium.v1.Ledger" in names


def test_metrics_endpoint(tmp_path: Path) -> None:
    import socket
    import urllib.request

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = NodeProcess(tmp_path / "m", ["--metrics-listen", f"127.0.0.1:{port}"]).start()
    try:
        with Client(proc.endpoint, 10.0) as c:
            signer = Signer.load(proc.data_dir / "keys" / "client.json")
            tid, tx = _put(signer, c.status().chain_id, 0, b"m")
            assert c.submit([tx])[0].code == 0
            c.wait_tx(tid, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        import re

        height = re.search(r"^consortium_height (\S+)$", text, re.M)
        assert height is not None and float(height.group(1)) >= 1
        for name in (
            "consortium_txs_committed_total 1.0",
            "consortium_mempool_size",
            "consortium_block_interval_seconds",
            "consortium_commit_latency_seconds_count 1.0",
            "consortium_tx_per_second",
        ):
            assert name in text, f"{name} missing from /metrics"
    finally:
        proc.kill()
