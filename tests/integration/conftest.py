"""Fixtures for the integration tier: a real solo node process on 127.0.0.1 and a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client

from .nodeproc import NodeProcess


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path / "node").start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def client(node: NodeProcess) -> Iterator[Client]:
    c = Client(node.endpoint, 10.0)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def funded(node: NodeProcess) -> Signer:
    """The dev chain's client key, which genesis funds with 1e9 `coin`."""
    return Signer.load(node.data_dir / "keys" / "client.json")
