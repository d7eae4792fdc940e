"""Durability with a real node process: kill -9 under load loses no acknowledged-committed
transaction; a torn or corrupt block-segment tail is cut at start-up and never served."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client

from .nodeproc import NodeProcess

pytestmark = pytest.mark.integration


def _segments(node: NodeProcess) -> list[Path]:
    return sorted((node.data_dir / "ledger" / "blocks").glob("seg-*.blk"))


def test_kill9_under_load_loses_no_committed_tx(node: NodeProcess, funded: Signer) -> None:
    client = Client(node.endpoint, 10.0)
    chain = client.status().chain_id
    txs = [
        funded.build_tx(chain, i, types_pb2.KvPut(key=b"k%d" % i, value=b"%d" % i))
        for i in range(3000)
    ]
    committed: dict[bytes, int] = {}  # tx id -> height, acknowledged by the node as committed
    killed = threading.Event()

    def load() -> None:
        c = Client(node.endpoint, 10.0)
        try:
            for start in range(0, len(txs), 100):
                chunk = txs[start : start + 100]
                c.submit([t for _, t in chunk])
                got = c.wait_tx(chunk[-1][0], timeout=10)
                for tid, _ in chunk:
                    r = c.get_tx(tid)
                    if r is not None:
                        committed[tid] = r.receipt.height
                if len(committed) >= 1000 and not killed.is_set():
                    killed.set()
                assert got.receipt.height > 0
        except ClientError:
            pass  # the node died under us: expected
        finally:
            c.close()

    t = threading.Thread(target=load)
    t.start()
    assert killed.wait(timeout=60), "load never reached 1000 committed txs"
    node.kill()
    t.join(timeout=30)
    client.close()
    assert len(committed) >= 1000

    node.start()
    with Client(node.endpoint, 10.0) as after:
        height = after.status().height
        assert height >= max(committed.values())
        for tid, h in committed.items():
            r = after.get_tx(tid)
            assert r is not None, f"committed tx {tid.hex()} lost after kill -9"
            assert r.receipt.height == h
        # it keeps committing from where it stopped
        nonce = after.next_nonce(funded.public_key)
        tid, tx = funded.build_tx(chain, nonce, types_pb2.KvPut(key=b"after", value=b"1"))
        assert after.submit([tx])[0].code == 0
        assert after.wait_tx(tid, timeout=10).receipt.height == height + 1


def _commit_some(node: NodeProcess, funded: Signer, n: int) -> int:
    with Client(node.endpoint, 10.0) as c:
        chain = c.status().chain_id
        nonce = c.next_nonce(funded.public_key)
        last = b""
        for i in range(n):
            last, tx = funded.build_tx(
                chain, nonce + i, types_pb2.KvPut(key=b"c%d" % i, value=b"x")
            )
            assert c.submit([tx])[0].code == 0
            c.wait_tx(last, timeout=10)
        return c.status().height


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_torn_tail_is_cut_and_never_served(node: NodeProcess, funded: Signer, seed: int) -> None:
    rng = random.Random(seed)
    height = _commit_some(node, funded, 5)
    assert node.stop() == 0
    seg = _segments(node)[-1]
    good = seg.read_bytes()
    # A crash mid-append: a partial record after the last committed block.
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    seg.write_bytes(good + junk)
    node.start()
    assert seg.read_bytes() == good, "torn tail not truncated back to the last whole record"
    with Client(node.endpoint, 10.0) as c:
        assert c.status().height == height
        with pytest.raises(ClientError):
            c.get_block(height + 1)
        for h in range(1, height + 1):
            assert c.get_block(h).header_view.height == h
    assert "block store repaired" in node.tail(20000)
    assert _commit_some(node, funded, 1) == height + 1


def test_corrupt_committed_block_refuses_to_serve(node: NodeProcess, funded: Signer) -> None:
    """A bit flip inside a committed block: the node must not serve it. A solo node has no
    peer to refetch from, so it stops with a clear message instead of running corrupt."""
    _commit_some(node, funded, 3)
    assert node.stop() == 0
    seg = _segments(node)[-1]
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(RuntimeError) as e:
        node.start()
    assert "committed blocks are missing" in str(e.value)
    assert node.proc is not None and node.proc.returncode == 3
