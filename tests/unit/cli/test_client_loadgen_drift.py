"""loadgen's drift figures (client/loadgen.py `_drift`): the p50 latency of the txs sent in
the first and in the last quarter of a run, which tell a paced load the nodes keep up with
(equal) from one whose backlog grows over the run (the last far above the first)."""

from __future__ import annotations

import random

import pytest
from consortium_node.client.loadgen import _drift

pytestmark = pytest.mark.unit

MS = 1_000_000  # ns


def _run(latency_ms: list[float]) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """tx i sent at i ms and committed latency_ms[i] later."""
    sent = {b"%d" % i: i * MS for i in range(len(latency_ms))}
    done = {b"%d" % i: i * MS + int(lat * MS) for i, lat in enumerate(latency_ms)}
    return sent, done


def test_a_load_the_nodes_keep_up_with_has_equal_quarters() -> None:
    rng = random.Random(3)
    sent, done = _run([20 + rng.random() for _ in range(1000)])
    d = _drift(sent, done, 0, 999 * MS)
    assert 20 <= d["p50_first_quarter"] <= 21 and 20 <= d["p50_last_quarter"] <= 21


def test_a_growing_backlog_shows_in_the_last_quarter() -> None:
    # served at 0.8 of the offered rate: tx i waits i * 0.25 ms more than tx 0
    sent, done = _run([10 + 0.25 * i for i in range(1000)])
    d = _drift(sent, done, 0, 999 * MS)
    assert d["p50_first_quarter"] == pytest.approx(10 + 0.25 * 125, abs=1)
    assert d["p50_last_quarter"] == pytest.approx(10 + 0.25 * 875, abs=1)


def test_uncommitted_txs_are_left_out_and_a_run_without_span_has_none() -> None:
    sent, done = _run([5.0] * 100)
    for i in range(75, 100):  # the whole last quarter never committed
        del done[b"%d" % i]
    assert _drift(sent, done, 0, 99 * MS) == {}
    assert _drift(sent, done, 7 * MS, 7 * MS) == {}
