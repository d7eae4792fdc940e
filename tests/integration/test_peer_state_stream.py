"""The SyncState stream ends when its reader is done (found under the 10-validator x 4 KiB
bench, issue 19): every block sync began by opening the peer's state snapshot to read its
height, and a reader that stopped after the header left the peer's handler holding a state
read transaction, having read and queued state chunks, until the call's 120 s deadline
(10-18 such streams per node at once). Two in-process PeerHubs on real gRPC (plaintext, fake
signatures, test_peer_hub_streams.Pair); the serving side's snapshot is an instrumented one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from consortium_node.transport.peers import StateSnapshot

from .test_peer_hub_streams import A, B, Inbox, Pair

pytestmark = pytest.mark.integration

HEIGHT = 40
ENTRIES = 200_000  # far more than the chunks gRPC flow control lets a handler queue ahead


class Snapshot:
    """A state snapshot at HEIGHT with ENTRIES entries that records how far it was read."""

    def __init__(self) -> None:
        self.read = 0
        self.closed = asyncio.Event()

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        for i in range(ENTRIES):
            self.read += 1
            yield i.to_bytes(8, "big"), b"v" * 64

    def meta(self, key: bytes) -> bytes | None:
        return {b"height": HEIGHT.to_bytes(8, "big"), b"hash": b"\x07" * 32}.get(key)

    def close(self) -> None:
        self.closed.set()


class StateInbox(Inbox):
    def __init__(self) -> None:
        super().__init__()
        self.snaps: list[Snapshot] = []

    def snapshot(self) -> StateSnapshot:
        self.snaps.append(Snapshot())
        return self.snaps[-1]


@contextlib.asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Pair, StateInbox]]:
    inbox = StateInbox()
    pair = Pair(inbox)  # B serves the instrumented snapshot
    await pair.start()
    try:
        yield pair, inbox
    finally:
        await pair.stop()


async def test_a_peer_not_far_enough_ahead_sends_the_header_alone() -> None:
    async with _pair() as (pair, inbox):
        chunks = [c async for c in pair.hubs[A].fetch_state(B, min_height=HEIGHT + 1)]
        assert [(c.height, c.last, len(c.keys)) for c in chunks] == [(HEIGHT, True, 0)]
        await asyncio.wait_for(inbox.snaps[0].closed.wait(), 5)
        assert inbox.snaps[0].read == 0  # the peer never iterated its state


async def test_a_reader_that_stops_after_the_header_ends_the_peer_s_stream() -> None:
    async with _pair() as (pair, inbox):
        async with contextlib.aclosing(pair.hubs[A].fetch_state(B)) as chunks:
            header = await anext(chunks)
            assert header.height == HEIGHT and not header.last
        # closed within seconds, not at the call's 120 s deadline; well before the end
        await asyncio.wait_for(inbox.snaps[0].closed.wait(), 5)
        assert inbox.snaps[0].read < ENTRIES


async def test_a_peer_far_enough_behind_gets_every_entry() -> None:
    async with _pair() as (pair, inbox):
        n, last = 0, False
        async for c in pair.hubs[A].fetch_state(B, min_height=HEIGHT):
            n += len(c.keys)
            last = c.last
        assert (n, last) == (ENTRIES, True)
        await asyncio.wait_for(inbox.snaps[0].closed.wait(), 5)
