"""Prometheus metrics of a node (prometheus-client), exported on `metrics_listen`.

Each Node owns a private CollectorRegistry so several nodes can live in one process (tests,
simulations). Updated by runtime (node.py); served by __main__ via start_http_server."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


_NUMBER = re.compile(r"\d+")


def rejection_label(reason: str) -> str:
    """The `reason` label of a discarded consensus message: the text before the reason's
    first colon, with every number (heights, rounds, sizes) as '#', so the label set stays
    bounded ("double prevote at 3/2: 1a2b.. and 3c4d.." -> "double prevote at #/#")."""
    return _NUMBER.sub("#", reason.split(":")[0])


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("consortium_height", "Committed block height", registry=r)
        self.txs = Counter("consortium_txs_committed", "Transactions committed", registry=r)
        self.blocks = Counter("consortium_blocks_committed", "Blocks committed", registry=r)
        self.mempool = Gauge("consortium_mempool_size", "Transactions in the mempool", registry=r)
        self.peers_connected = Gauge(
            "consortium_peers_connected", "Peer links currently up", registry=r
        )
        self.rejected = Counter(
            "consortium_tx_rejected", "Transactions refused at admission", ["reason"], registry=r
        )
        self.block_interval = Histogram(
            "consortium_block_interval_seconds",
            "Time between consecutive committed blocks",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "consortium_commit_latency_seconds",
            "Admission to commit of transactions admitted by this node",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "consortium_block_apply_seconds",
            "Time to persist and execute one block",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consensus_rejections = Counter(
            "consortium_consensus_rejections",
            "Peer consensus messages discarded, by reason",
            ["reason"],
            registry=r,
        )
        self.compact_txs = Counter(
            "consortium_compact_proposal_txs",
            "Txs of compact BFT proposals rebuilt here (a re-sent copy is rebuilt again), "
            "by where this node found them "
            "(pool: its mempool; fetched: asked from the proposer)",
            ["source"],
            registry=r,
        )
        self.tx_rate = Gauge(
            "consortium_tx_per_second", "Committed tx/s over the last 10 s", registry=r
        )
