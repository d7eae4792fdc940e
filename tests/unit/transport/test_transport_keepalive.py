"""Issue 13 defect 10 (first half): the peer dialler's keepalive and the servers' ping
policy must agree, or gRPC drops idle peer links with GOAWAY "too_many_pings".

The rule (gRPC A8, "Client-side keepalive"): a server counts a ping that arrives sooner than
grpc.http2.min_ping_interval_without_data_ms (default 5 min) as a strike and closes the
connection after max_ping_strikes; it refuses pings with no call in flight unless
grpc.keepalive_permit_without_calls. The dialler pings every CLIENT_KEEPALIVE_MS."""

from __future__ import annotations

import pytest
from consortium_node.transport import guard, peers, server

pytestmark = pytest.mark.unit

GRPC_DEFAULT_MIN_PING_MS = 5 * 60 * 1000


def _opts(options: list[tuple[str, object]]) -> dict[str, object]:
    return dict(options)


@pytest.mark.parametrize(
    "server_opts",
    [guard.server_options(1 << 20, None), server._OPTIONS],
    ids=["peer-port", "client-port"],
)
def test_dialler_keepalive_is_within_every_servers_ping_policy(
    server_opts: list[tuple[str, object]],
) -> None:
    client = _opts(peers.channel_options())
    srv = _opts(server_opts)
    interval = client["grpc.keepalive_time_ms"]
    min_ping = srv.get("grpc.http2.min_ping_interval_without_data_ms", GRPC_DEFAULT_MIN_PING_MS)
    assert isinstance(interval, int) and isinstance(min_ping, int)
    assert interval >= min_ping, f"client pings every {interval} ms, server allows {min_ping}"
    if client.get("grpc.keepalive_permit_without_calls"):
        assert srv.get("grpc.keepalive_permit_without_calls") == 1


def test_servers_bound_streams_per_connection() -> None:
    """Defect 8: every server advertises a concurrent-stream limit and an idle timeout."""
    for opts in (guard.server_options(1 << 20, None), server._OPTIONS):
        o = _opts(opts)
        assert 0 < int(str(o["grpc.max_concurrent_streams"])) <= 128
        assert "grpc.max_connection_idle_ms" in o
    assert "grpc.max_connection_age_ms" in _opts(server._OPTIONS)
