"""What every gRPC server of a node shares: request decoding that never raises through grpc
(an undecodable message is answered INVALID_ARGUMENT with a plain message, not UNKNOWN with
an exception text), and the server limits that keep memory bounded whatever a client sends.

`MalformedGuard` is a server interceptor applied to every method of a server (the Ledger,
Peer, health and reflection services alike): it swaps each method's request deserializer for
a lenient one that returns a `Malformed` marker instead of raising, and wraps the method so
the marker is refused before the servicer sees it. Handlers that read requests with
`context.read()` (peer `Exchange`) see the marker themselves and refuse it.

`server_options` are the channel arguments of every server (client port, peer port, health
port): HTTP/2 stream and connection limits and the keepalive policy that matches the peer
links' client keepalive (peers.CLIENT_KEEPALIVE). `listen_on` binds a server's port and turns
grpc's bare RuntimeError for a port it cannot bind into a ListenError (an OSError: the node
exits with one line naming the address). Used by transport.server and transport.peers."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError as PbDecodeError

log = logging.getLogger(__name__)


class ListenError(OSError):
    """A server port that cannot be bound (in use, or not an address of this host)."""


def listen_on(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Bind `address` on `server` (TLS with `credentials`, plaintext without); the port bound.
    grpc reports a failed bind as a RuntimeError with no cause (the core API returns port 0),
    which would end the node with a traceback: it is raised as ListenError instead."""
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError:
        raise ListenError(
            f"cannot listen on {address} (the port is in use, or not an address of this host)"
        ) from None


# Keepalive: a client may ping every KEEPALIVE_MIN_PING_MS or slower, also with no call in
# flight (an idle peer link). Invariant: peers.CLIENT_KEEPALIVE_MS >= KEEPALIVE_MIN_PING_MS,
# otherwise the server answers GOAWAY "too_many_pings" and the link drops (issue 13, 10).
KEEPALIVE_MIN_PING_MS = 5_000
# Per connection at most this many calls in flight; further ones wait in the client (HTTP/2
# SETTINGS_MAX_CONCURRENT_STREAMS), so one connection pins at most this many half-sent calls.
MAX_CONCURRENT_STREAMS = 64
# A connection with no call for this long is closed (the client reconnects transparently).
MAX_CONNECTION_IDLE_MS = 10 * 60 * 1000


def server_options(
    max_message: int, max_age_ms: int | None, age_grace_ms: int | None = None
) -> list[tuple[str, Any]]:
    """Channel arguments of a node's server. `max_age_ms`: connections are closed after this
    long (GOAWAY, then `age_grace_ms` for calls in flight): the bound on how long a half-sent
    call (headers but never its message) can hold memory. None for the peer port, whose
    `Exchange` streams are meant to live as long as the process."""
    opts: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.max_send_message_length", max_message),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MIN_PING_MS),
        ("grpc.http2.max_ping_strikes", 3),
        # the server's own pings detect dead clients (and so free their calls)
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if max_age_ms is not None:
        opts.append(("grpc.max_connection_age_ms", max_age_ms))
        if age_grace_ms is not None:
            opts.append(("grpc.max_connection_age_grace_ms", age_grace_ms))
    return opts


class Malformed:
    """A request message that did not decode."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error

    @property
    def message(self) -> str:
        return f"malformed request: {self.error}"


def lenient(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """`parse` that returns Malformed instead of raising (None: the raw bytes, as grpc)."""

    def deserialize(data: bytes) -> Any:
        if parse is None:
            return data
        try:
            return parse(data)
        except (PbDecodeError, ValueError, TypeError):
            # the library's text names its internals; the caller needs only this
            return Malformed(f"{len(data)} bytes that are not a valid protobuf message")

    return deserialize


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], bad: Malformed) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.message)


def _checked_iterator(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    async def gen() -> AsyncIterator[Any]:
        async for item in requests:
            if isinstance(item, Malformed):
                await _refuse(context, item)  # raises: the call ends with that status
            yield item

    return gen()


def _wrap_behaviour(fn: Callable[..., Any], request_streaming: bool) -> Callable[..., Any]:
    """`fn` with its request (or each request of a stream) checked for Malformed first."""
    if inspect.isasyncgenfunction(fn):

        async def agen(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request_streaming:
                request = _checked_iterator(request, context)
            elif isinstance(request, Malformed):
                await _refuse(context, request)
            async for item in fn(request, context):
                yield item

        return agen

    async def coro(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request_streaming:
            request = _checked_iterator(request, context)
        elif isinstance(request, Malformed):
            await _refuse(context, request)
        result = fn(request, context)
        if isinstance(result, Awaitable):
            result = await result
        return result

    return coro


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # grpc's runtime class is not generic; only its stubs are
    _Interceptor = grpc.aio.ServerInterceptor


class MalformedGuard(_Interceptor):
    """Lenient decoding + INVALID_ARGUMENT for undecodable requests, on every method."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        kind = ("stream_" if handler.request_streaming else "unary_") + (
            "stream" if handler.response_streaming else "unary"
        )
        fn = getattr(handler, kind)
        if fn is None:
            return handler
        replace: Callable[..., grpc.RpcMethodHandler[Any, Any]] = handler._replace  # type: ignore[attr-defined]  # a NamedTuple
        return replace(
            request_deserializer=lenient(handler.request_deserializer),
            **{kind: _wrap_behaviour(fn, handler.request_streaming)},
        )
