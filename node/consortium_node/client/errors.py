"""Errors of the client SDK and the translation of gRPC failures into them.

`ClientError` is the one error class a user can act on: `str(err)` is one line naming the node
and the problem; the `consortium` CLI prints it as `error: ...`. `NodeUnavailable` (a
subclass) means the node could not be reached. Key-file problems are
`consortium_node.crypto.KeyFileError` (one class for every key-file user).

Used by every module of `consortium_node.client` and by callers that catch client failures."""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """A failure a user can act on; `str(err)` is one line. `code` is the gRPC status code
    when the node answered with one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class NodeUnavailable(ClientError):
    """The node could not be reached (connection refused, DNS, no answer in time)."""


_STATUS_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def status_name(code: int) -> str:
    """The gRPC status name of a numeric code (a `TxResult.code`), e.g. 3 -> INVALID_ARGUMENT."""
    return _STATUS_NAMES.get(code, f"CODE_{code}")


def one_line(text: str) -> str:
    return " ".join(text.split())


# Markers of gRPC/BoringSSL failure texts, checked in this order (first match wins). A
# certificate verdict needs an explicit certificate error from the TLS library: a connection
# reset or closed DURING the handshake ("Handshake read failed (Socket closed)") is a
# transport failure — a busy or restarting node — and must not be blamed on the CA.
_CERT_MARKERS = (
    "certificate_verify_failed",
    "certificate verify failed",
    "unknown_ca",
    "bad_certificate",
    "certificate_required",
    "peer_did_not_return_a_certificate",
    "certificate_expired",
    "certificate has expired",
    "unsupported_certificate",
    "alert_handshake_failure",
)
_RESET_MARKERS = ("connection reset", "broken pipe")
_CLOSED_MARKERS = ("socket closed", "end of tcp stream", "goaway", "cancelling all")


def _unreachable_reason(details: str, timeout: float | None) -> str:
    low = details.lower()
    if "connection refused" in low:
        return "connection refused"
    if any(
        m in low for m in ("dns resolution failed", "errors resolving", "name or service not known")
    ):
        return "cannot resolve host"
    if "deadline" in low or "timeout" in low or "timed out" in low:
        return f"no answer within {timeout:g}s" if timeout else "timed out"
    if "hostname verification" in low:
        return (
            "TLS handshake failed: the node's certificate does not name the host we dialled "
            "(use the name it was issued for, or set the server name)"
        )
    if "wrong_version_number" in low:
        return (
            "TLS handshake failed: the node does not speak TLS on this port (a plaintext "
            "node? then give no TLS directory)"
        )
    if any(m in low for m in _CERT_MARKERS):
        return (
            "TLS handshake failed: the node's certificate is not from a consortium CA we trust, "
            "or it refused ours; check the TLS directory (--tls-dir, $CONSORTIUM_TLS_DIR)"
        )
    during = " during the TLS handshake" if "handshake" in low else ""
    if any(m in low for m in _RESET_MARKERS):
        return f"connection reset{during}; the node may be busy or restarting, try again"
    if any(m in low for m in _CLOSED_MARKERS):
        return f"connection closed by the node{during}"
    if any(m in low for m in ("handshake", "ssl", "tls")):
        return f"TLS handshake failed: {_last_error(details)}"
    return one_line(details)[:200] or "unavailable"


def _last_error(details: str) -> str:
    """The innermost cause of a gRPC connect failure text, shortened to one line."""
    text = one_line(details)
    tail = text.rsplit("last error:", 1)[-1].strip()
    return tail[:200] or "unavailable"


def status_code_of(err: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call (RpcError raised by a call is also a grpc.Call)."""
    fn = getattr(err, "code", None)
    code = fn() if callable(fn) else None
    return code if isinstance(code, grpc.StatusCode) else None


def translate_rpc_error(err: grpc.RpcError, endpoint: str, timeout: float | None) -> ClientError:
    """Turn a grpc.RpcError into a one-line `ClientError` naming the node."""
    code = status_code_of(err)
    details_fn = getattr(err, "details", None)
    details = str(details_fn() or "") if callable(details_fn) else ""
    if code is grpc.StatusCode.UNAVAILABLE:
        reason = _unreachable_reason(details, timeout)
        return NodeUnavailable(f"node {endpoint} unreachable ({reason})", code)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeUnavailable(
            f"node {endpoint} did not answer within {timeout:g}s"
            if timeout
            else f"node {endpoint} did not answer in time",
            code,
        )
    name = code.name if code is not None else "UNKNOWN"
    msg = one_line(details) or name.lower().replace("_", " ")
    return ClientError(f"node {endpoint}: {name}: {msg}", code)
