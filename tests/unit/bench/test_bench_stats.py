"""bench.stats: percentiles, repeated-run summaries, ratios, PySyncObj result merging."""

from __future__ import annotations

import pytest

from bench.stats import (
    latency_summary,
    median_of,
    merge_node_results,
    percentile,
    ratio,
    summarize,
    summarize_runs,
)

pytestmark = pytest.mark.unit


def test_percentile_is_nearest_rank() -> None:
    vals = [float(i) for i in range(1, 101)]
    assert percentile(vals, 0.50) == 50.0
    assert percentile(vals, 0.99) == 99.0
    assert percentile(vals, 1.0) == 100.0
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([], 0.5) == 0.0


def test_latency_summary_sorts_its_input() -> None:
    s = latency_summary([3.0, 1.0, 2.0, 4.0])
    assert s["p50"] == 2.0 and s["max"] == 4.0 and s["mean"] == 2.5
    assert latency_summary([]) == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}


def test_summarize_keeps_median_min_max_and_samples() -> None:
    s = summarize([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "samples": [3.0, 1.0, 2.0]}
    assert summarize([1.0, 2.0])["median"] == 1.5
    assert summarize([])["median"] is None


def test_summarize_runs_nests_and_skips_non_numbers() -> None:
    runs = [
        {"tx_per_s": 100.0, "latency_ms": {"p50": 5.0}, "rejections": "x", "ok": True},
        {"tx_per_s": 300.0, "latency_ms": {"p50": 7.0}},
        {"tx_per_s": 200, "latency_ms": {"p50": 6.0, "p99": 9.0}},
    ]
    s = summarize_runs(runs)
    assert s["tx_per_s"]["median"] == 200.0
    assert s["tx_per_s"]["min"] == 100.0 and s["tx_per_s"]["max"] == 300.0
    assert s["latency_ms"]["p50"]["median"] == 6.0
    assert s["latency_ms"]["p99"]["n"] == 1
    assert "rejections" not in s and "ok" not in s
    assert median_of(s, "latency_ms", "p50") == 6.0
    assert median_of(s, "latency_ms", "p999") is None
    assert median_of({}, "x") is None


def test_ratio() -> None:
    assert ratio(3000.0, 6000.0) == 0.5
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_merge_node_results_uses_the_global_window() -> None:
    s = 1_000_000_000
    nodes = [
        {
            "writes": 2,
            "committed": 2,
            "errors": {},
            "first_send_ns": s,
            "last_commit_ns": s + 500_000_000,
            "latencies_ms": [1.0, 3.0],
        },
        {
            "writes": 2,
            "committed": 1,
            "errors": {"3": 1},
            "first_send_ns": s + 100_000_000,
            "last_commit_ns": s + 1_000_000_000,
            "latencies_ms": [2.0],
        },
    ]
    m = merge_node_results(nodes)
    assert m["writes"] == 4 and m["committed"] == 3
    assert m["duration_s"] == 1.0 and m["tx_per_s"] == 3.0
    assert m["errors"] == {"3": 1}
    assert m["latency_ms"]["p50"] == 2.0 and m["latency_ms"]["max"] == 3.0


def test_merge_node_results_with_nothing_committed() -> None:
    m = merge_node_results(
        [
            {
                "writes": 5,
                "committed": 0,
                "first_send_ns": 0,
                "last_commit_ns": 0,
                "latencies_ms": [],
            }
        ]
    )
    assert m["tx_per_s"] == 0.0 and m["duration_s"] == 0.0
