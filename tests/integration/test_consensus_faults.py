"""Process-level fault tests: a local consortium of real node processes (3 raft / 4 bft) on
127.0.0.1 under load; kill -9 the leader, then a follower, restart both. Checks: no
acknowledged-committed transaction is lost, progress resumes within 5 s of each kill, and all
nodes end with identical block hashes and state roots."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import ledger_pb2, types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration
PROGRESS_WITHIN = 5.0


def _manifest(kind: str) -> dict[str, object]:
    orgs = [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 1}]
    if kind == "bft":
        orgs = [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}]
    return {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": f"faults-{kind}"},
        "spec": {"chainId": f"faults-{kind}", "consensus": {"type": kind}, "organizations": orgs},
    }


@pytest.fixture(params=["raft", "bft"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalNet]:
    kind = request.param
    init_data_dir(parse_manifest(_manifest(kind)), tmp_path / "net")
    with running(tmp_path / "net") as n:
        yield n


def _status(node: LocalNode) -> ledger_pb2.GetStatusResponse | None:
    if node.proc is None or node.proc.poll() is not None:
        return None
    try:
        with Client(node.endpoint, 2.0, tls=node.tls) as c:
            return c.status()
    except ClientError:
        return None


def _leader(net: LocalNet) -> LocalNode:
    found: list[LocalNode] = []

    def has_leader() -> bool:
        found.clear()
        for n in net.nodes:
            st = _status(n)
            if st is not None and st.leader and st.leader.hex() == n.node_id:
                found.append(n)
        return bool(found)

    wait_for(has_leader, 20, "a leader")
    return found[0]


def _max_height(net: LocalNet) -> int:
    return max((s.height for n in net.nodes if (s := _status(n)) is not None), default=0)


class Load:
    """Submits kv puts from several senders to live nodes; records what was acknowledged as
    committed (receipt seen) with its height."""

    def __init__(self, net: LocalNet, senders: int = 4) -> None:
        self.net = net
        self.signers = [Signer.generate() for _ in range(senders)]
        net.vouch([s.public_key for s in self.signers])  # the chain is permissioned
        self.committed: dict[bytes, int] = {}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(s, i)) for i, s in enumerate(self.signers)
        ]

    def _run(self, signer: Signer, idx: int) -> None:
        nonce = 0
        while not self.stop.is_set():
            live = [n for n in self.net.nodes if n.proc is not None and n.proc.poll() is None]
            node = live[(idx + nonce) % len(live)]
            try:
                with self.net.client(node, 3.0) as c:
                    nonce = c.next_nonce(signer.public_key)
                    batch = [
                        signer.build_tx(
                            self.net.chain_id,
                            nonce + i,
                            types_pb2.KvPut(key=b"%d-%d" % (idx, nonce + i), value=b"x"),
                        )
                        for i in range(20)
                    ]
                    res = c.submit([t for _, t in batch])
                    ok = [tid for (tid, _), r in zip(batch, res, strict=True) if r.code == 0]
                    if ok:
                        got = c.wait_tx(ok[-1], timeout=8)
                        for tid in ok:
                            r = c.get_tx(tid)
                            if r is not None:
                                self.committed[tid] = r.receipt.height
                        assert got.receipt.height > 0
            except ClientError:
                continue

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _progress_after_kill(net: LocalNet, victim: LocalNode) -> float:
    before = _max_height(net)
    t0 = time.monotonic()
    victim.stop(signal.SIGKILL)
    wait_for(lambda: _max_height(net) >= before + 2, PROGRESS_WITHIN + 5, "progress after kill")
    return time.monotonic() - t0


def test_kill_leader_then_follower_under_load(net: LocalNet) -> None:
    """One crash at a time, as f = 1 allows: the leader, restart it, then a follower."""
    with Load(net) as load:
        wait_for(lambda: len(load.committed) >= 100, 30, "initial load")
        leader = _leader(net)
        took = _progress_after_kill(net, leader)
        assert took <= PROGRESS_WITHIN, (
            f"no progress within {PROGRESS_WITHIN}s of killing the leader ({took:.1f}s)"
        )
        leader.start()
        leader.wait_ready(time.monotonic() + 30)
        # f = 1: the next crash is survivable only once the restarted node has caught up.
        wait_for(
            lambda: (s := _status(leader)) is not None and s.height >= _max_height(net) - 1,
            30,
            "the restarted node to catch up",
        )
        current = _leader(net)
        follower = next(n for n in net.nodes if n.node_id != current.node_id)
        took = _progress_after_kill(net, follower)
        assert took <= PROGRESS_WITHIN, (
            f"no progress within {PROGRESS_WITHIN}s of killing a follower ({took:.1f}s)"
        )
        follower.start()
        follower.wait_ready(time.monotonic() + 30)
        n_before = len(load.committed)
        wait_for(lambda: len(load.committed) >= n_before + 100, 30, "load after restarts")
    # Everyone converges on the same chain.
    wait_for(
        lambda: len({(s.height) for n in net.nodes if (s := _status(n))}) == 1, 30, "equal heights"
    )
    target = _max_height(net)
    sts = [_status(n) for n in net.nodes]
    assert all(s is not None for s in sts)
    hashes = {s.last_block_hash for s in sts if s}
    roots = {s.state_root for s in sts if s}
    assert len(hashes) == 1 and len(roots) == 1, "nodes disagree on the chain tip or the state"
    with net.client(0, 5.0) as c:
        for tid, h in load.committed.items():
            r = c.get_tx(tid)
            assert r is not None, f"acknowledged tx {tid.hex()} lost"
            assert r.receipt.height == h
        for h in range(1, target + 1, max(1, target // 20)):
            blocks = set()
            for n in net.nodes:
                with net.client(n, 5.0) as cn:
                    blocks.add(cn.get_block(h).header_view.hash)
            assert len(blocks) == 1, f"nodes committed different blocks at height {h}"
