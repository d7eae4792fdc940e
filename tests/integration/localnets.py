"""Helpers of the integration tests that run local consortia (`consortium up`'s layout, real
node processes): a started-then-stopped LocalNet, and what a node answers (gRPC reachability
with given TLS material, Prometheus gauges). The bounded wait is tests.support.wait."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, LocalNode


@contextmanager
def running(data_dir: Path) -> Iterator[LocalNet]:
    """The initialised local consortium in `data_dir`, started; stopped on exit."""
    n = LocalNet(data_dir)
    n.start()
    try:
        yield n
    finally:
        n.stop()


def answers(endpoint: str, tls: ClientTLS) -> bool:
    """Whether the node at `endpoint` answers GetStatus over TLS with `tls`."""
    try:
        with Client(endpoint, 2.0, tls=tls) as c:
            c.status()
        return True
    except ClientError:
        return False


def metrics(node: LocalNode) -> str:
    """The node's Prometheus exposition text."""
    cfg = yaml.safe_load((node.directory / "config.yaml").read_text())
    body = urllib.request.urlopen(f"http://{cfg['metrics_listen']}/metrics", timeout=5).read()
    return str(body.decode())


def gauge(node: LocalNode, series: str) -> float:
    """The value of the sample line starting with `series` (a regex: name and labels)."""
    m = re.search("^" + series + r" (\S+)$", metrics(node), re.MULTILINE)
    assert m, f"no metric {series}"
    return float(m.group(1))


def fast_raft_manifest(name: str) -> dict[str, object]:
    """A 3-validator Raft consortium (two organisations) on 5 ms ticks and blocks: the shape
    the crash and repair tests run, named `name` (also its chain id)."""
    return {
        "kind": "Consortium",
        "metadata": {"name": name},
        "spec": {
            "chainId": name,
            "consensus": {
                "type": "raft",
                "tickMs": 5,
                "blockIntervalMs": 5,
                "emptyBlockIntervalMs": 20,
            },
            "organizations": [
                {"name": "org1", "validators": 2},
                {"name": "org2", "validators": 1},
            ],
        },
    }
