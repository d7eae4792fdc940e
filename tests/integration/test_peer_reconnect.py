"""Issue 13 defect 3 on a real 4-validator BFT consortium (TLS, kill -9, restart): peer links
come back within LINKS_WITHIN seconds of the restarted node answering, even after it was down
long enough for its dialers' back-off to reach its cap; and a second failure right after the
restart (3 of 4 validators up) stalls the chain for at most STALL_WITHIN seconds (see there).

Before the fix: only the smaller id dials and both our dial loop and grpc's own channel
reconnect back-off had grown to 5 s and more while the peer was down: links took 6-10 s and
the chain stalled 5-8 s. The measured numbers are printed (pytest -s)."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, LocalNode, parse_manifest
from consortium_node.localnet import init_data_dir as init_net

from tests.support.wait import wait_for

from .localnets import gauge, running

pytestmark = pytest.mark.integration

LINKS_WITHIN = 1.0
# The goal is 2 s. After the link fix the longest gap between commits was 0.6-2.8 s
# (10 runs), the links' share <= 0.7 s; the BFT round changes after the quorum returns (nil
# precommit majority -> next round at once, a late peer greeted with our votes at once) took
# it to 0.59-1.40 s (8 runs, interleaved with 8 of the old engine: 1.20-1.79 s; see
# reconnect_timeline.py). The remaining share is the restarted node's link and block sync,
# which load on the machine stretches, so the bound keeps a margin over the goal.
STALL_WITHIN = 4.0
DOWN_FOR = 8.0  # longer than the old back-off's growth to its 5 s cap (0.1 s doubling)

MANIFEST = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "reconnect"},
    "spec": {
        "chainId": "reconnect-chain",
        "consensus": {"type": "bft"},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
    },
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_net(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _links(node: LocalNode) -> int:
    try:
        return int(gauge(node, "consortium_peers_connected"))
    except OSError:
        return -1  # not serving metrics (yet)


def _all_linked(nodes: list[LocalNode], peers: int) -> bool:
    return all(_links(n) == peers for n in nodes)


class Commits:
    """Follows committed blocks on `node` (StreamBlocks) and records when each arrived,
    while a second thread keeps transactions flowing into it."""

    def __init__(self, net: LocalNet, node: LocalNode) -> None:
        self.net, self.node = net, node
        self.arrivals: list[float] = []
        self.rounds: list[int] = []  # the commit round of each arrival (its certificate's)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._follow), threading.Thread(target=self._load)]

    def _follow(self) -> None:
        with Client(self.node.endpoint, 60.0, tls=self.node.tls) as c:
            start = int(c.status().height) + 1
            try:
                for b in c.stream_blocks(start, follow=True, headers_only=True):
                    self.rounds.append(int(b.certificate.round))
                    self.arrivals.append(time.monotonic())
                    if self.stop.is_set():
                        return
            except ClientError:
                return

    def _load(self) -> None:
        signer = Signer.load(self.net.data_dir / "keys" / "client.json")
        with Client(self.node.endpoint, 5.0, tls=self.node.tls) as c:
            while not self.stop.is_set():
                try:
                    nonce = c.next_nonce(signer.public_key)
                    _, tx = signer.build_tx(
                        self.net.chain_id, nonce, types_pb2.KvPut(key=b"r%d" % nonce, value=b"x")
                    )
                    c.submit([tx])
                    self.stop.wait(0.02)
                except ClientError:
                    self.stop.wait(0.1)

    def __enter__(self) -> Commits:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=70)

    def longest_gap(self, since: float, until: float) -> float:
        times = [since] + [t for t in self.arrivals if since < t <= until] + [until]
        return max(b - a for a, b in itertools.pairwise(times))


def test_links_return_fast_and_a_second_failure_stalls_briefly(net: LocalNet) -> None:
    nodes = net.nodes
    wait_for(lambda: _all_linked(nodes, 3), 30, "all links up")
    by_id = sorted(nodes, key=lambda n: n.node_id)
    victim = by_id[-1]  # the largest id: every other node dials it
    second, observer = by_id[0], by_id[1]
    live = [n for n in nodes if n is not second]
    with Commits(net, observer) as commits:
        wait_for(lambda: len(commits.arrivals) >= 3, 20, "commits under load")
        victim.stop(signal.SIGKILL)
        time.sleep(DOWN_FOR)  # how long the peer is down is the condition under test
        victim.start()
        ready = victim.directory / "ready.json"
        wait_for(ready.exists, 30, "the restarted node serving", every=0.01)
        t_ready = time.monotonic()
        # a second single failure in the reconnection window: 3 of 4 validators up
        second.stop(signal.SIGKILL)
        wait_for(lambda: _all_linked(live, 2), 15, "links back after the restart", every=0.02)
        links_after = time.monotonic() - t_ready
        wait_for(
            lambda: len([t for t in commits.arrivals if t > t_ready]) >= 5,
            20,
            "progress with 3 of 4 up",
        )
        stall = commits.longest_gap(t_ready, commits.arrivals[-1])
    print(f"\nlinks back {links_after:.2f} s after the restart; stall with 3/4 up {stall:.2f} s")
    assert links_after <= LINKS_WITHIN, f"links took {links_after:.2f} s"
    assert stall <= STALL_WITHIN, f"the chain stalled {stall:.2f} s with 3 of 4 up"
