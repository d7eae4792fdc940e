"""Issue 13 defect 2, both sides of a link, deterministically: two in-process PeerHubs (real
gRPC on 127.0.0.1, plaintext, fake signatures) and an intruder Exchange call claiming one of
their ids. Whether the replaced stream is one the hub accepted (the peer dialled it) or one
it dialled, the older stream is closed, and once the intruder is gone the real link carries
traffic both ways again."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import grpc
import pytest
from consortium_api.v1 import peer_pb2, peer_pb2_grpc
from consortium_node.consensus.api import Envelope
from consortium_node.ledger.block import Block
from consortium_node.transport.peers import PeerHub, PeerServer, StateSnapshot, hello_bytes

pytestmark = pytest.mark.integration

CHAIN, GENESIS = "hub-chain", b"\x09" * 32
A, B = b"\x01" * 32, b"\x02" * 32  # A < B: A dials B


def _sign_as(nid: bytes) -> Callable[[bytes], bytes]:
    return lambda msg: hashlib.sha512(nid + msg).digest()


def _verify(nid: bytes, msg: bytes, sig: bytes) -> bool:
    return hashlib.sha512(nid + msg).digest() == sig


class Inbox:
    """The runtime side of a hub: records what arrives, from whom."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, bytes]] = []
        self.arrived = asyncio.Event()

    def on_peer_messages(self, sender: bytes, payloads: list[bytes]) -> None:
        self.got.extend((sender, p) for p in payloads)
        self.arrived.set()

    def on_peer_txs(self, sender: bytes, txs: list[bytes]) -> None:
        pass

    def block_at(self, height: int) -> Block | None:
        return None

    @property
    def height(self) -> int:
        return 0

    def snapshot(self) -> StateSnapshot:
        raise NotImplementedError("not used by these tests")

    def organization_of(self, node_id: bytes) -> str | None:
        return None


async def _until(cond: Callable[[], bool], within: float, what: str) -> None:
    """Polls observable hub state (bounded) from the event loop the hubs run on."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


class Pair:
    def __init__(self, inbox_b: Inbox | None = None) -> None:
        self.inbox = {A: Inbox(), B: inbox_b or Inbox()}
        self.hubs = {
            nid: PeerHub(
                nid, CHAIN, GENESIS, _sign_as(nid), _verify, {A: "", B: ""}, self.inbox[nid]
            )
            for nid in (A, B)
        }
        self.servers = {
            nid: PeerServer(self.hubs[nid], self.inbox[nid], "127.0.0.1:0") for nid in (A, B)
        }
        self.addr = {nid: f"127.0.0.1:{self.servers[nid].port}" for nid in (A, B)}

    async def start(self) -> None:
        for nid, hub in self.hubs.items():
            hub.update_peers(self.addr)
            await self.servers[nid].start()
        for hub in self.hubs.values():
            hub.start()
        await _until(lambda: all(h.connected() for h in self.hubs.values()), 10, "the link")

    async def stop(self) -> None:
        for nid, hub in self.hubs.items():
            await hub.stop()
            await self.servers[nid].stop(0)

    async def delivered(self, frm: bytes, to: bytes, payload: bytes) -> bool:
        """Sends `payload` over the link and waits (bounded) for it to arrive."""
        inbox = self.inbox[to]
        self.hubs[frm].send(Envelope(frm, to, payload))
        deadline = time.monotonic() + 5
        while (frm, payload) not in inbox.got:
            inbox.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(inbox.arrived.wait(), left)
            except TimeoutError:
                return False
        return True


async def _intrude(addr: str, claim: bytes, target: bytes) -> tuple[grpc.aio.Channel, object]:
    """An Exchange call to `target` at `addr` whose hello claims to be `claim`."""
    ch = grpc.aio.insecure_channel(addr)
    call = peer_pb2_grpc.PeerStub(ch).Exchange()  # type: ignore[call-arg]  # aio write() style
    t = int(time.time() * 1000)
    hello = peer_pb2.PeerHello(
        node_id=claim,
        peer_id=target,
        chain_id=CHAIN,
        genesis_hash=GENESIS,
        time_ms=t,
        signature=_sign_as(claim)(hello_bytes(CHAIN, GENESIS, claim, target, t)),
    )
    await call.write(peer_pb2.PeerBatch(hello=hello))
    reply = await call.read()
    assert isinstance(reply, peer_pb2.PeerBatch) and reply.HasField("hello")
    return ch, call


@pytest.mark.parametrize(
    ("target", "claim"),
    [(B, A), (A, B)],
    ids=["replaces-an-accepted-stream", "replaces-a-dialled-stream"],
)
async def test_an_intruding_stream_replaces_the_link_and_the_link_comes_back(
    target: bytes, claim: bytes
) -> None:
    pair = Pair()  # grpc.aio servers belong to the test's event loop
    await pair.start()
    try:
        assert await pair.delivered(A, B, b"before-ab") and await pair.delivered(B, A, b"before-ba")
        ch, call = await _intrude(pair.addr[target], claim, target)
        hub = pair.hubs[target]
        await asyncio.sleep(0.3)  # the intruder holds its stream: the condition under test
        await ch.close(None)
        del call
        # the real link is redialled and carries traffic both ways
        await _until(lambda: claim in hub.connected(), 10, "the real link back")
        assert await pair.delivered(target, claim, b"after-1")
        assert await pair.delivered(claim, target, b"after-2")
    finally:
        await pair.stop()
