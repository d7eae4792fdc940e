"""GetStatus.peers on real node processes over real gRPC + TLS (issue 15: the operator's
status.remotePeers and PeerUnreachable read it): a node whose configured peer has nothing
listening at its address reports that link down with a plain one-line reason (the dial's gRPC
status, no traceback, no object repr) and a growing since_seconds; two running nodes report
their link up; once the missing node starts, every link is up with no error and its
since_seconds restarted. In process (two PeerHubs, real gRPC, an injected clock): the side
that is dialled says so, records a refused hello without changing state, and a lost link."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from consortium_api.v1 import ledger_pb2, peer_pb2, peer_pb2_grpc
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest
from consortium_node.transport.peers import AWAITING_DIAL, PeerHub, PeerServer

from tests.support.wait import wait_for

from .localnets import fast_raft_manifest
from .test_peer_hub_streams import CHAIN, GENESIS, A, B, Inbox, _sign_as, _until, _verify

pytestmark = pytest.mark.integration

# what a plain reason must never contain: a traceback, an object's repr, a line break
INTERNALS = re.compile(r"Traceback|object at 0x|<[A-Za-z_.]+ |\n")


def _links(n: LocalNode) -> dict[str, ledger_pb2.PeerLink] | None:
    try:
        with Client(n.endpoint, 2.0, tls=n.tls) as c:
            return {p.node_id.hex(): p for p in c.status().peers}
    except ClientError:
        return None


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    """A 3-validator Raft consortium, initialised, none of its nodes started."""
    init_data_dir(parse_manifest(fast_raft_manifest("links")), tmp_path / "net", fsync=False)
    n = LocalNet(tmp_path / "net")
    try:
        yield n
    finally:
        for node in n.nodes:
            node.stop()


def test_links_report_a_peer_nobody_answers_for_then_all_up(net: LocalNet) -> None:
    # The largest node id is dialled by both others (the smaller id dials): both report why
    # their dial fails.
    *running, missing = sorted(net.nodes, key=lambda n: n.node_id)
    for n in running:
        n.start()
    for n in running:
        n.wait_ready(time.monotonic() + 30)

    def down_with_reason() -> list[ledger_pb2.PeerLink] | None:
        out = []
        for n in running:
            links = _links(n)
            if links is None or set(links) != {p.node_id for p in net.nodes} - {n.node_id}:
                return None
            other = next(p for p in running if p is not n)
            if not links[other.node_id].connected or links[other.node_id].error:
                return None  # the live pair: up, and no error while up
            gone = links[missing.node_id]
            if gone.connected or not gone.error.startswith("UNAVAILABLE: "):
                return None  # (before the first dial fails: "not connected yet (dialling)")
            out.append(gone)
        return out

    gone = wait_for(down_with_reason, 30, "both nodes to report the missing peer's dial error")
    for link in gone:
        assert not INTERNALS.search(link.error) and len(link.error) <= 300, link.error
        assert link.address == f"127.0.0.1:{link.address.rpartition(':')[2]}"
    first = gone[0].since_seconds
    # the state (down) has not changed since the node started: its age only grows
    wait_for(
        lambda: (
            (ls := _links(running[0])) is not None
            and ls[missing.node_id].since_seconds > first + 0.5
            and not ls[missing.node_id].connected
        ),
        10,
        "the down link's since_seconds to grow",
    )

    missing.start()
    missing.wait_ready(time.monotonic() + 30)

    def all_up() -> list[ledger_pb2.PeerLink] | None:
        out: list[ledger_pb2.PeerLink] = []
        for n in net.nodes:
            links = _links(n)
            if links is None or len(links) != 2 or not all(p.connected for p in links.values()):
                return None
            out.extend(links.values())
        return out

    links = wait_for(all_up, 30, "every link to come up once the missing node runs")
    assert all(p.error == "" for p in links)
    # the links to the node that just started changed state a moment ago
    to_missing = [p for p in links if p.node_id.hex() == missing.node_id]
    assert len(to_missing) == 2 and all(p.since_seconds < 30 for p in to_missing)


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_the_dialled_side_a_refused_hello_and_a_lost_link() -> None:
    clock = Clock()
    # B (the larger id) is only ever dialled; A's address is never used by B
    inbox_b = Inbox()
    hub_b = PeerHub(
        B, CHAIN, GENESIS, _sign_as(B), _verify, {A: "127.0.0.1:1"}, inbox_b, clock=clock
    )
    server_b = PeerServer(hub_b, inbox_b, "127.0.0.1:0")
    await server_b.start()
    addr_b = f"127.0.0.1:{server_b.port}"
    hub_a = PeerHub(A, CHAIN, GENESIS, _sign_as(A), _verify, {B: addr_b}, Inbox(), clock=clock)
    try:
        (st,) = hub_b.link_states()
        assert (st.node_id, st.connected, st.error, st.since_seconds) == (
            A,
            False,
            AWAITING_DIAL,
            0,
        )
        clock.t += 40
        # a caller claiming A's id without A's key: refused, and the reason is on the link
        async with grpc.aio.insecure_channel(addr_b) as ch:
            call = peer_pb2_grpc.PeerStub(ch).Exchange()  # type: ignore[call-arg]
            t = int(time.time() * 1000)
            hello = peer_pb2.PeerHello(
                node_id=A,
                peer_id=B,
                chain_id=CHAIN,
                genesis_hash=GENESIS,
                time_ms=t,
                signature=b"\x00" * 64,
            )
            await call.write(peer_pb2.PeerBatch(hello=hello))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        (st,) = hub_b.link_states()
        assert st.error == "refused a caller claiming this peer's node id: bad hello signature"
        assert (st.connected, st.since_seconds) == (False, 40)  # no change of state
        # the real A dials: up on both sides, no error, the age restarts
        hub_a.start()
        await _until(lambda: hub_b.connected() == [A] and hub_a.connected() == [B], 10, "link")
        for hub in (hub_a, hub_b):
            (st,) = hub.link_states()
            assert (st.connected, st.error, st.since_seconds) == (True, "", 0)
        clock.t += 5
        assert hub_b.link_states()[0].since_seconds == 5
        await hub_a.stop()  # A goes away: B's link is lost
        await _until(lambda: not hub_b.connected(), 10, "the link to drop")
        (st,) = hub_b.link_states()
        assert not st.connected and st.since_seconds == 0
        assert st.error.startswith("link lost: ") and not INTERNALS.search(st.error), st.error
    finally:
        await hub_a.stop()
        await hub_b.stop()
        await server_b.stop(0)
