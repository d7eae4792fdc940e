"""Pure helpers: percentiles, repeated-run summaries (median, min, max) and ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as `consortium bench`); 0 for no samples."""
    if not sorted_vals:
        return 0.0
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return float(sorted_vals[k])


def latency_summary(samples_ms: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of raw latency samples (ms)."""
    vals = sorted(samples_ms)
    return {
        "p50": percentile(vals, 0.50),
        "p90": percentile(vals, 0.90),
        "p99": percentile(vals, 0.99),
        "max": vals[-1] if vals else 0.0,
        "mean": sum(vals) / len(vals) if vals else 0.0,
    }


def summarize(values: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """Median, min and max over repeated runs, with the samples themselves."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "samples": [round(v, digits) for v in values],
    }


def summarize_runs(runs: Sequence[Mapping[str, Any]], digits: int = 2) -> dict[str, Any]:
    """Per-metric `summarize` over runs of flat {metric: number} dicts (nested dicts, such as
    `latency_ms`, are summarised per key). Metrics missing from a run are left out of it."""
    out: dict[str, Any] = {}
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k in r if k not in keys)
    for k in keys:
        vals = [r[k] for r in runs if k in r]
        if vals and all(isinstance(v, Mapping) for v in vals):
            out[k] = summarize_runs(vals, digits)
        elif vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            out[k] = summarize([float(v) for v in vals], digits)
    return out


def median_of(summary: Mapping[str, Any], *path: str) -> float | None:
    """summary[path...]['median'], or None when absent."""
    node: Any = summary
    for p in path:
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    if not isinstance(node, Mapping):
        return None
    m = node.get("median")
    return float(m) if isinstance(m, int | float) else None


def ratio(ours: float | None, theirs: float | None, digits: int = 2) -> float | None:
    """ours / theirs, None when either is unknown or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, digits)


def merge_node_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-node PySyncObj results into one run: committed writes, throughput over
    (last commit anywhere - first send anywhere), and latency percentiles of all samples."""
    committed = sum(int(r["committed"]) for r in results)
    firsts = [int(r["first_send_ns"]) for r in results if r.get("first_send_ns")]
    lasts = [int(r["last_commit_ns"]) for r in results if r.get("last_commit_ns")]
    duration = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
    errors: dict[str, int] = {}
    for r in results:
        for k, v in (r.get("errors") or {}).items():
            errors[k] = errors.get(k, 0) + int(v)
    lat: list[float] = []
    for r in results:
        lat.extend(float(x) for x in r.get("latencies_ms") or [])
    return {
        "writes": sum(int(r["writes"]) for r in results),
        "committed": committed,
        "errors": errors,
        "duration_s": round(duration, 4),
        "tx_per_s": round(committed / duration, 1) if duration > 0 else 0.0,
        "latency_ms": {k: round(v, 2) for k, v in latency_summary(lat).items()},
    }
