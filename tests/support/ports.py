"""Free TCP ports on 127.0.0.1 for processes the tests and benchmarks start.

`free_ports(n)` binds `n` sockets at once (so the n ports are distinct), reads their ports
and closes them; `free_port()` is one of them. A port is free when handed out; nothing stops
another process from taking it before ours binds, which is why the node and kube-apiserver
harnesses take theirs right before starting. A closed port is also "a port nothing listens
on" for tests of unreachable nodes.

Used by the kube-apiserver harness, bench/ (etcd clusters) and the CLI unit tests."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (held open together while picking)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One free TCP port on 127.0.0.1."""
    return free_ports(1)[0]
