"""A minimal raw HTTP/2 client for the integration tests that send what a well-behaved gRPC
client never does: calls whose headers end the stream with no message, or messages shorter
than their length prefix. Plaintext (h2c) only; HPACK literals without indexing only.
Used by tests/integration/test_bad_input.py; `python -m tests.integration.rawh2` measures
what many such calls cost a node (see main)."""

from __future__ import annotations

import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING = 0, 1, 3, 4, 6
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
REFUSED_STREAM = 0x7


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes


def frame(typ: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([typ, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def grpc_headers(path: str) -> bytes:
    return b"".join(
        _literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "node"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )


class Connection:
    """One plaintext HTTP/2 connection to 127.0.0.1:`port`."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self._buf = b""
        self._next_stream = 1

    def headers_only(self, path: str) -> int:
        """A call whose HEADERS end the stream: no request message ever follows."""
        sid = self._next_stream
        self._next_stream += 2
        self.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, grpc_headers(path)))
        return sid

    def short_message(self, path: str) -> int:
        """A call whose one message claims 100 bytes but carries 5, then ends the stream."""
        sid = self._next_stream
        self._next_stream += 2
        body = b"\x00" + struct.pack(">I", 100) + b"short"
        self.sock.sendall(
            frame(HEADERS, END_HEADERS, sid, grpc_headers(path))
            + frame(DATA, END_STREAM, sid, body)
        )
        return sid

    def frames(self, within: float) -> list[Frame]:
        """Every frame the server sends in the next `within` seconds (acks its SETTINGS and
        PINGs); stops early when the server closes the connection."""
        out: list[Frame] = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self._buf += data
            while len(self._buf) >= 9:
                length = int.from_bytes(self._buf[:3], "big")
                if len(self._buf) < 9 + length:
                    break
                f = Frame(
                    self._buf[3],
                    self._buf[4],
                    int.from_bytes(self._buf[5:9], "big") & 0x7FFFFFFF,
                    self._buf[9 : 9 + length],
                )
                self._buf = self._buf[9 + length :]
                out.append(f)
                if f.type == SETTINGS and not f.flags & ACK:
                    self.sock.sendall(frame(SETTINGS, ACK, 0))
                if f.type == PING and not f.flags & ACK:
                    self.sock.sendall(frame(PING, ACK, 0, f.payload))
        return out

    def close(self) -> None:
        self.sock.close()


def settings(frames: list[Frame]) -> dict[int, int]:
    """The server's SETTINGS values (id -> value) among `frames`."""
    out: dict[int, int] = {}
    for f in frames:
        if f.type == SETTINGS and not f.flags & ACK:
            for i in range(0, len(f.payload), 6):
                key, value = struct.unpack(">HI", f.payload[i : i + 6])
                out[key] = value
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def main() -> None:
    """`python -m tests.integration.rawh2 PORT N PID`: sends N half-sent calls (alternating
    the two kinds) over one connection to the node PID listens with on PORT, and prints how
    many it refused and its resident memory before and after (the connection held open)."""
    port, n, pid = (int(a) for a in sys.argv[1:4])
    before = _rss_mb(pid)
    conn = Connection(port)
    conn.frames(0.5)
    refused = sent = 0
    path = "/consortium.v1.Ledger/GetStatus"
    try:
        for i in range(n):
            # headers-only calls mostly: the short messages' bytes also fill the HTTP/2
            # connection window, after which the server stops reading the connection
            if i % 100:
                conn.headers_only(path)
            else:
                conn.short_message(path)
            sent += 1
            if i % 1000 == 999:
                refused += sum(1 for f in conn.frames(0.01) if f.type == RST_STREAM)
    except TimeoutError:
        print(f"the server stopped reading after {sent} calls")
    refused += sum(1 for f in conn.frames(3.0) if f.type == RST_STREAM)
    after = _rss_mb(pid)
    print(
        f"sent {sent} half-sent calls: {refused} refused; node RSS {before:.0f} -> {after:.0f} MB"
    )
    conn.close()


if __name__ == "__main__":
    main()
