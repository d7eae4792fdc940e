"""What every gRPC server of a node shares: request decoding that never raises through grpc
(an undecodable message is answered INVALID_ARGUMENT with a plain message, not UNKNOWN with
an exception text).

`MalformedGuard` is a server interceptor applied to every method of a server (the Ledger,
Peer, health and reflection services alike): it swaps each method's request deserializer for
a lenient one that returns a `Malformed` marker instead of raising, and wraps the method so
the marker is refused before the servicer sees it. Handlers that read requests with
`context.read()` (peer `Exchange`) see the marker themselves and refuse it.

Used by transport.server and transport.peers."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError as PbDecodeError

log = logging.getLogger(__name__)


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
