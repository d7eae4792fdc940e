"""Peer transport: one long-lived, batched gRPC `Exchange` stream per pair of nodes, transaction
gossip, and block sync (`SyncBlocks`).

Stream ownership: the node with the smaller node id dials; both directions share that stream.
A dialer whose stream breaks reconnects with exponential backoff (0.1 s doubling to
DIAL_BACKOFF_MAX_S, with jitter from an injected Random); grpc's own channel reconnect back-off
is capped alike (channel_options), so a link is back within about a second of the peer
answering, however long it was down (a peer is a known, small set: a redial every 0.3 s
costs nothing, a link missing for seconds stalls consensus). Each direction opens with a
signed `PeerHello`; a peer that is not in our configuration, claims the wrong chain/genesis,
or cannot sign for its node id is refused (PERMISSION_DENIED) and logged.

With TLS (`tls` given: a tls.CertStore) links are mutual TLS: the handshake already refused
any certificate not chaining to a genesis organisation's CA (or expired); the dialler verifies
that the server's certificate names the node id it dials (pki.node_dns_name) and, for a
validator, was issued by its organisation's CA (the channel trusts that CA alone), and the server
that the client certificate binds the node id its hello claims and, for a validator, was issued
by the CA of the organisation the chain registered it with (one organisation's CA cannot
speak for another's validator). The same certificate rule guards `SyncBlocks` and `SyncState`
(`check_node_certificate`): a member user's client certificate passes the handshake but binds
no node id, so it gets PERMISSION_DENIED. `refresh_credentials` (after a
certificate reload) re-creates the channels, so new streams use the new certificate.

Outbound messages are queued per peer (bounded: when full the oldest are dropped, which the
consensus engines tolerate by design: timeouts and retransmission) and written as one batch
per wake-up. Inbound batches go to the runtime through the `PeerHandler` protocol. Owned and
started by runtime.service.

Link state for GetStatus (`link_states`, ledger.proto PeerLink): per configured peer whether
the link is up, since when (monotonic clock, injected) and, while it is down, why — a plain
one-line reason (`plain_error`: the gRPC status code name and details of the failed dial or
lost stream, our own refusal reason, never a traceback or an object's repr). The smaller id
dials, so the other side of a link that never came up can only say that it has not been
dialled (or that it refused a caller claiming that peer's id, and why)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from consortium_api.v1 import peer_pb2, peer_pb2_grpc, types_pb2

from .. import pki
from ..consensus.api import Envelope
from ..ledger.block import Block
from . import codec
from .guard import Malformed, MalformedGuard, listen_on, server_options
from .tls import CertStore, peer_identity

log = logging.getLogger(__name__)
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lags grpc.aio
MAX_QUEUE = 20_000
MAX_BATCH = 2_000
HELLO_SKEW_MS = 5 * 60 * 1000
SYNC_BATCH = 256
STATE_CHUNK = 2000  # state entries per SyncState message
MAX_PEER_MESSAGE = 256 * 1024 * 1024
# The dialler pings an idle link this often; the servers' keepalive policy (guard.server_options)
# permits pings at guard.KEEPALIVE_MIN_PING_MS or slower, so this must not be shorter.
CLIENT_KEEPALIVE_MS = 10_000
DIAL_BACKOFF_MIN_S = 0.1
DIAL_BACKOFF_MAX_S = 0.3
MAX_ERROR_CHARS = 300  # a link's error text (GetStatus), one line
DIALLING = "not connected yet (dialling)"
AWAITING_DIAL = "not connected yet: the peer dials this node (it has the smaller node id)"


def channel_options() -> list[tuple[str, Any]]:
    """Channel arguments of an outbound peer channel."""
    return [
        ("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
        ("grpc.max_send_message_length", MAX_PEER_MESSAGE),
        ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # keep probing an idle link
        # grpc's subchannel back-off (default 1 s growing to 120 s) would otherwise fail our
        # redials fast for many seconds after the peer is back
        ("grpc.initial_reconnect_backoff_ms", int(DIAL_BACKOFF_MIN_S * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(DIAL_BACKOFF_MIN_S * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(DIAL_BACKOFF_MAX_S * 1000)),
    ]


class PeerHandler(Protocol):
    """What the runtime offers to the peer layer."""

    def on_peer_messages(self, sender: bytes, payloads: list[bytes]) -> None: ...
    def on_peer_txs(self, sender: bytes, txs: list[bytes]) -> None: ...
    def block_at(self, height: int) -> Block | None: ...
    @property
    def height(self) -> int: ...
    def snapshot(self) -> StateSnapshot: ...
    def organization_of(self, node_id: bytes) -> str | None: ...


class StateSnapshot(Protocol):
    def entries(self) -> Iterator[tuple[bytes, bytes]]: ...
    def meta(self, key: bytes) -> bytes | None: ...
    def close(self) -> None: ...


def hello_bytes(
    chain_id: str, genesis_hash: bytes, node_id: bytes, peer_id: bytes, t: int
) -> bytes:
    cid = chain_id.encode()
    return (
        b"consortium/peer-hello/v1"
        + struct.pack(">I", len(cid))
        + cid
        + genesis_hash
        + node_id
        + peer_id
        + struct.pack(">Q", t)
    )


@dataclass(eq=False)
class _Stream:
    """One live Exchange stream of a link; `close` ends it (cancels the call or handler)."""

    close: Callable[[], object]


@dataclass
class _Link:
    peer_id: bytes
    address: str
    queue: deque[bytes] = field(default_factory=deque)
    txs: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Invariant: `stream` is the one stream that carries this link's traffic (the newest);
    # `connected` is True exactly while it is set. An older stream is closed when a newer one
    # starts (a peer that reconnected, or a second process with the same identity), so no
    # stream is left open without a writer.
    stream: _Stream | None = None
    generation: int = 0  # bumps on each new stream; a stale writer exits
    # Why the link is down (plain, one line; GetStatus); "" while connected. `changed_at`:
    # monotonic time of the last change between connected and not (or of the link's creation).
    error: str = ""
    changed_at: float = 0.0

    @property
    def connected(self) -> bool:
        return self.stream is not None


@dataclass(frozen=True, slots=True)
class LinkState:
    """What GetStatus reports of one peer link (ledger.proto PeerLink)."""

    node_id: bytes
    address: str
    connected: bool
    error: str  # why it is down, one plain line; "" while connected
    since_seconds: float  # time in the current state (connected or not)


def plain_error(e: BaseException) -> str:
    """A one-line reason for a link failure, fit for status: the gRPC status code name and
    details, our own ConnectionError's message, or only the exception's type name (never a
    repr that could carry object addresses or internals)."""
    if isinstance(e, grpc.aio.AioRpcError):
        text = f"{e.code().name}: {e.details() or 'no details'}"
    elif isinstance(e, asyncio.CancelledError):
        text = "stream closed (new credentials or a newer stream)"
    elif isinstance(e, ConnectionError):
        text = str(e) or type(e).__name__
    else:
        text = type(e).__name__
    return " ".join(text.split())[:MAX_ERROR_CHARS]


class PeerHub:
    def __init__(
        self,
        node_id: bytes,
        chain_id: str,
        genesis_hash: bytes,
        sign: Callable[[bytes], bytes],
        verify: Callable[[bytes, bytes, bytes], bool],
        peers: dict[bytes, str],
        handler: PeerHandler,
        rng: random.Random | None = None,
        tls: CertStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self._sign = sign
        self._verify = verify
        self._handler = handler
        self._rng = rng or random.Random()
        self._clock = clock  # monotonic seconds: link state ages (GetStatus)
        self.links = {
            pid: self._new_link(pid, addr) for pid, addr in peers.items() if pid != node_id
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[bytes, grpc.aio.Channel] = {}
        self._closing = False
        self.tls = tls
        self._creds: dict[str | None, grpc.ChannelCredentials] = {}  # by peer organisation

    def refresh_credentials(self) -> None:
        """Our certificate changed: new channels (and so new streams) present the new one."""
        self._creds = {}
        for pid in list(self._channels):
            self._close_channel(pid)

    # -- outbound API (PeerNetwork) ---------------------------------------------------------
    def send(self, env: Envelope) -> None:
        link = self.links.get(env.to)
        if link is None:
            return
        if len(link.queue) >= MAX_QUEUE:
            link.queue.popleft()  # bounded: the oldest message to a slow peer goes first
        link.queue.append(env.payload)
        link.wake.set()

    def gossip(self, raw_tx: bytes, to: bytes | None = None) -> None:
        if to is None:
            links = list(self.links.values())
        else:
            one = self.links.get(to)
            links = [one] if one is not None else []  # a peer with no link: nothing to queue
        for link in links:
            if len(link.txs) >= MAX_QUEUE:
                link.txs.popleft()
            link.txs.append(raw_tx)
            link.wake.set()

    def update_peers(self, peers: dict[bytes, str]) -> None:
        """Applies a new peer list (membership changed): new peers get links (dialled when
        ours is the smaller id), removed peers' links are closed, moved addresses redialled."""
        peers = {pid: addr for pid, addr in peers.items() if pid != self.node_id}
        for pid in [p for p in self.links if p not in peers]:
            gone = self.links.pop(pid)
            gone.generation += 1
            gone.wake.set()
            if gone.stream is not None:
                gone.stream.close()
            self._close_channel(pid)
        for pid, addr in peers.items():
            link = self.links.get(pid)
            if link is not None and link.address == addr:
                continue
            if link is not None:
                link.address = addr
                if not link.connected and self.node_id < pid:
                    link.error = DIALLING  # the old address's error no longer applies
                self._close_channel(pid)
                continue  # the dial loop reconnects to the new address
            self.links[pid] = self._new_link(pid, addr)
            if self.node_id < pid and not self._closing:
                self._tasks.append(asyncio.create_task(self._dial_loop(self.links[pid])))

    def _close_channel(self, pid: bytes) -> None:
        ch = self._channels.pop(pid, None)
        if ch is not None:
            self._tasks.append(asyncio.create_task(_close(ch)))

    def connected(self) -> list[bytes]:
        return [pid for pid, link in self.links.items() if link.connected]

    def link_states(self) -> tuple[LinkState, ...]:
        """Every configured peer's link, by node id: up or not, for how long, and why not."""
        now = self._clock()
        return tuple(
            LinkState(
                pid,
                link.address,
                link.connected,
                "" if link.connected else link.error,
                max(0.0, now - link.changed_at),
            )
            for pid, link in sorted(self.links.items())
        )

    def _new_link(self, pid: bytes, address: str) -> _Link:
        waiting = DIALLING if self.node_id < pid else AWAITING_DIAL
        return _Link(pid, address, error=waiting, changed_at=self._clock())

    def _set_stream(self, link: _Link, stream: _Stream | None, why: str = "") -> None:
        """The one place `link.stream` changes: stamps a change between connected and not,
        and keeps the error ("" while connected, `why` once down)."""
        if (stream is None) != (link.stream is None):
            link.changed_at = self._clock()
        link.stream = stream
        link.error = "" if stream is not None else why

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        for pid, link in self.links.items():
            if self.node_id < pid:
                self._tasks.append(asyncio.create_task(self._dial_loop(link)))

    async def stop(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for ch in self._channels.values():
            await ch.close(None)

    def _channel(self, link: _Link) -> grpc.aio.Channel:
        ch = self._channels.get(link.peer_id)
        if ch is None:
            options = channel_options()
            if self.tls is None:
                ch = grpc.aio.insecure_channel(link.address, options=options)
            else:
                # The server must hold a certificate naming the node id we mean to reach,
                # issued by the CA of the organisation the chain registered it with (if it
                # is a validator; any consortium CA for an observer).
                org = self._handler.organization_of(link.peer_id)
                creds = self._creds.get(org)
                if creds is None:
                    creds = self._creds[org] = self.tls.channel_credentials(org)
                options.append(("grpc.ssl_target_name_override", pki.node_dns_name(link.peer_id)))
                ch = grpc.aio.secure_channel(link.address, creds, options=options)
            self._channels[link.peer_id] = ch
        return ch

    def _hello(self, peer_id: bytes) -> peer_pb2.PeerHello:
        t = int(time.time() * 1000)
        sig = self._sign(hello_bytes(self.chain_id, self.genesis_hash, self.node_id, peer_id, t))
        return peer_pb2.PeerHello(
            node_id=self.node_id,
            peer_id=peer_id,
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
            time_ms=t,
            signature=sig,
        )

    def _check_hello(self, h: peer_pb2.PeerHello, expect: bytes | None) -> str | None:
        if h.node_id not in self.links:
            return "not a configured peer"
        if expect is not None and h.node_id != expect:
            return "answered with another node id"
        if h.peer_id != self.node_id:
            return "hello addressed to another node"
        if h.chain_id != self.chain_id or h.genesis_hash != self.genesis_hash:
            return "different chain or genesis"
        if abs(h.time_ms - int(time.time() * 1000)) > HELLO_SKEW_MS:
            return "hello time too far from ours"
        msg = hello_bytes(h.chain_id, h.genesis_hash, h.node_id, h.peer_id, h.time_ms)
        if not self._verify(h.node_id, msg, h.signature):
            return "bad hello signature"
        return None

    # -- dialer -----------------------------------------------------------------------------
    async def _dial_loop(self, link: _Link) -> None:
        backoff = DIAL_BACKOFF_MIN_S
        while not self._closing and self.links.get(link.peer_id) is link:
            linked = False  # this attempt got as far as a live stream
            try:
                stub = peer_pb2_grpc.PeerStub(self._channel(link))
                call = stub.Exchange()  # type: ignore[call-arg]  # aio: no iterator, use write()
                await call.write(peer_pb2.PeerBatch(hello=self._hello(link.peer_id)))
                first = _batch(await call.read())
                if first is None or not first.HasField("hello"):
                    raise ConnectionError("peer closed before hello")
                why = self._check_hello(first.hello, link.peer_id)
                if why is not None:
                    raise ConnectionError(f"peer hello refused: {why}")
                backoff = DIAL_BACKOFF_MIN_S

                async def read(c: Any = call) -> peer_pb2.PeerBatch | None:
                    return _batch(await c.read())

                linked = True
                await self._run_link(link, read, call.write, first, _Stream(call.cancel))
            except (grpc.aio.AioRpcError, ConnectionError) as e:
                if not linked and not link.connected:
                    link.error = plain_error(e)  # (a lost stream was recorded by _run_link)
                if linked:
                    log.info(
                        "peer link lost",
                        extra={"fields": {"peer": link.peer_id.hex()[:16], "error": str(e)[:200]}},
                    )
            except asyncio.CancelledError:
                # Closing the channel under a live stream (refresh_credentials: a reloaded
                # certificate or new trust roots) or a newer stream replacing this one cancels
                # the call, which surfaces here as a CancelledError too: only a cancellation
                # of this task itself ends the loop.
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise
                log.info(
                    "peer link closed (new credentials or a newer stream)",
                    extra={"fields": {"peer": link.peer_id.hex()[:16]}},
                )
            delay = backoff * (0.5 + self._rng.random())
            backoff = min(backoff * 2, DIAL_BACKOFF_MAX_S)
            await asyncio.sleep(delay)

    # -- server side ------------------------------------------------------------------------
    def check_node_certificate(
        self, context: grpc.aio.ServicerContext[Any, Any], claimed: bytes | None
    ) -> str | None:
        """Why the caller may not use the Peer service, or None. With TLS, only a configured
        peer's node certificate gets in (a user's client certificate chains to a member CA
        too, but binds no node id), and a validator's must come from the CA of the
        organisation the chain registered it with. `claimed`: the node id the caller's hello
        names (Exchange), or None to take the certificate's (SyncBlocks, SyncState).
        Plaintext (dev) links carry no identity: None."""
        if self.tls is None:
            return None
        ident = peer_identity(context, self.tls)
        if ident is None or ident.node_id is None:
            return "no node certificate"
        if claimed is not None and ident.node_id != claimed:
            return f"certificate is for node {ident.node_id.hex()[:16]}..., not the hello's"
        if ident.node_id not in self.links:
            return "not a configured peer"
        registered = self._handler.organization_of(ident.node_id)
        if registered is not None and ident.issuer != registered:
            return (
                f"certificate issued by the CA of {ident.issuer or 'no organisation'}, "
                f"but the validator belongs to {registered}"
            )
        return None

    async def refuse_non_peers(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Aborts the call PERMISSION_DENIED unless the caller is a configured peer node."""
        why = self.check_node_certificate(context, None)
        if why is not None:
            log.warning("refused peer service call", extra={"fields": {"reason": why}})
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"peer refused: {why}")

    async def serve_exchange(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        item = await context.read()
        if isinstance(item, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.message)
        first = _batch(item)
        if first is None or not first.HasField("hello"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first batch must carry a hello")
            return
        why = self._check_hello(first.hello, None)
        if why is None and self.tls is not None:
            why = self.check_node_certificate(context, first.hello.node_id)
        if why is not None:
            log.warning(
                "refused peer",
                extra={"fields": {"claimed": first.hello.node_id.hex(), "reason": why}},
            )
            claimed = self.links.get(first.hello.node_id)
            if claimed is not None and not claimed.connected:
                # (unauthenticated: the claim is what was refused; the text says so)
                claimed.error = plain_error(
                    ConnectionError(f"refused a caller claiming this peer's node id: {why}")
                )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"peer refused: {why}")
        link = self.links[first.hello.node_id]
        await context.write(peer_pb2.PeerBatch(hello=self._hello(link.peer_id)))

        async def read() -> peer_pb2.PeerBatch | None:
            item = await context.read()
            if isinstance(item, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.message)
            return _batch(item)

        # A newer stream for this peer id closes this one: the link runs in a task of its
        # own, and this handler ends the call with a status the dialler sees (ABORTED: it
        # redials). Cancelling the handler task itself does not reliably end the call: the
        # dialler could keep waiting on a stream that no longer carries anything.
        replaced = asyncio.Event()
        run = asyncio.create_task(
            self._run_link(link, read, context.write, first, _Stream(replaced.set))
        )
        superseded = asyncio.create_task(replaced.wait())
        try:
            await asyncio.wait({run, superseded}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            return  # grpc cancelled the call (server stopping, client gone): nothing to answer
        finally:
            superseded.cancel()
            if not run.done():
                run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        if replaced.is_set():
            await context.abort(
                grpc.StatusCode.ABORTED, "replaced by a newer stream for this peer id"
            )
        run.result()  # re-raises what ended the link (the call's own error)

    # -- a live stream ----------------------------------------------------------------------
    async def _run_link(
        self,
        link: _Link,
        read: Callable[[], Awaitable[peer_pb2.PeerBatch | None]],
        write: Callable[[peer_pb2.PeerBatch], Awaitable[None]],
        first: peer_pb2.PeerBatch,
        me: _Stream,
    ) -> None:
        link.generation += 1
        gen = link.generation
        older = link.stream
        self._set_stream(link, me)
        if older is not None:
            log.info(
                "peer link replaced by a newer stream",
                extra={"fields": {"peer": link.peer_id.hex()[:16]}},
            )
            older.close()
        else:
            log.info("peer link up", extra={"fields": {"peer": link.peer_id.hex()[:16]}})
        self._deliver(link.peer_id, first)
        writer = asyncio.create_task(self._writer(link, write, gen))
        ended = "link lost: the peer ended the stream"
        try:
            while True:
                batch = await read()
                if batch is None:
                    return
                self._deliver(link.peer_id, batch)
        except BaseException as e:
            ended = f"link lost: {plain_error(e)}"
            raise
        finally:
            if link.stream is me:
                self._set_stream(link, None, ended)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _deliver(self, sender: bytes, batch: peer_pb2.PeerBatch) -> None:
        if batch.txs:
            self._handler.on_peer_txs(sender, list(batch.txs))
        if batch.consensus:
            self._handler.on_peer_messages(sender, list(batch.consensus))

    async def _writer(
        self, link: _Link, write: Callable[[peer_pb2.PeerBatch], Awaitable[None]], gen: int
    ) -> None:
        while link.generation == gen:
            if not link.queue and not link.txs:
                link.wake.clear()
                await link.wake.wait()
                continue
            msgs = [link.queue.popleft() for _ in range(min(len(link.queue), MAX_BATCH))]
            txs = [link.txs.popleft() for _ in range(min(len(link.txs), MAX_BATCH))]
            await write(peer_pb2.PeerBatch(consensus=msgs, txs=txs))

    # -- block sync -------------------------------------------------------------------------
    async def fetch_blocks(self, peer_id: bytes, from_height: int) -> AsyncGenerator[Block, None]:
        link = self.links.get(peer_id)
        if link is None:
            return
        stub = peer_pb2_grpc.PeerStub(self._channel(link))
        call = stub.SyncBlocks(
            peer_pb2.SyncBlocksRequest(from_height=from_height, max_blocks=SYNC_BATCH), timeout=30
        )
        try:
            async for pb in call:
                yield codec.block_from_pb(pb)
        finally:
            call.cancel()  # a consumer that stops early ends the peer's stream now (no-op if done)

    async def fetch_state(
        self, peer_id: bytes, min_height: int = 0
    ) -> AsyncGenerator[peer_pb2.StateChunk, None]:
        """The peer's state snapshot: a header chunk, then entry chunks (see peer.proto); only
        the header if the peer's height is below `min_height`. Closing the generator cancels
        the call: the peer's handler holds a state read transaction until its stream ends
        (before, a consumer that stopped after the header left it open up to the 120 s
        deadline, reading and queueing state chunks nobody read)."""
        link = self.links.get(peer_id)
        if link is None:
            return
        stub = peer_pb2_grpc.PeerStub(self._channel(link))
        call = stub.SyncState(peer_pb2.SyncStateRequest(min_height=min_height), timeout=120)
        try:
            async for chunk in call:
                yield chunk
        finally:
            call.cancel()


async def _close(ch: grpc.aio.Channel) -> None:
    await ch.close(None)


def _batch(item: object) -> peer_pb2.PeerBatch | None:
    if item is _EOF or not isinstance(item, peer_pb2.PeerBatch):
        return None
    return item


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, hub: PeerHub, handler: PeerHandler) -> None:
        self.hub = hub
        self.handler = handler

    async def Exchange(  # type: ignore[override]  # aio read()/write() style handler
        self,
        request_iterator: Any,  # noqa: ARG002 -- reads via context.read()
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await self.hub.serve_exchange(context)

    async def SyncBlocks(
        self, request: peer_pb2.SyncBlocksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[types_pb2.Block]:
        await self.hub.refuse_non_peers(context)
        n = min(request.max_blocks or SYNC_BATCH, SYNC_BATCH)
        h = max(1, request.from_height)
        end = min(self.handler.height, h + n - 1)
        while h <= end:
            block = self.handler.block_at(h)
            if block is None:
                return
            yield codec.block_to_pb(block)
            h += 1

    async def SyncState(
        self,
        request: peer_pb2.SyncStateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[peer_pb2.StateChunk]:
        await self.hub.refuse_non_peers(context)
        snap = self.handler.snapshot()
        try:
            height = int.from_bytes(snap.meta(b"height") or b"", "big")
            header = peer_pb2.StateChunk(
                height=height,
                block_hash=snap.meta(b"hash") or b"",
                lthash=snap.meta(b"lthash") or b"",
            )
            if height < request.min_height:
                header.last = True  # not far enough ahead: no entries (see peer.proto)
                yield header
                return
            yield header
            keys: list[bytes] = []
            values: list[bytes] = []
            for k, v in snap.entries():
                keys.append(k)
                values.append(v)
                if len(keys) >= STATE_CHUNK:
                    yield peer_pb2.StateChunk(keys=keys, values=values)
                    keys, values = [], []
            yield peer_pb2.StateChunk(keys=keys, values=values, last=True)
        finally:
            snap.close()


class PeerServer:
    def __init__(
        self, hub: PeerHub, handler: PeerHandler, listen: str, tls: CertStore | None = None
    ) -> None:
        # no max connection age: Exchange streams live as long as both processes do
        self.server = grpc.aio.server(
            options=server_options(MAX_PEER_MESSAGE, None), interceptors=(MalformedGuard(),)
        )
        peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(hub, handler), self.server)
        # mutual TLS when tls is given: only certificates of consortium organisations get in
        self.port = listen_on(
            self.server, listen, None if tls is None else tls.server_credentials(True)
        )

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 0.5) -> None:
        await self.server.stop(grace)
