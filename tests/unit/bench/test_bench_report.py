"""bench.run targets and argument checks, and bench.report's table on a synthetic document."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from bench.report import fmt_summary, main_rows, print_report
from bench.run import in_flight, main, targets
from bench.stats import summarize, summarize_runs

pytestmark = pytest.mark.unit


def _runs(tps: list[float], p50: list[float]) -> dict[str, Any]:
    return summarize_runs(
        [
            {"tx_per_s": t, "latency_ms": {"p50": p, "p99": 2 * p}, "cpu_s_per_1000_tx": 0.3}
            for t, p in zip(tps, p50, strict=True)
        ]
    )


def _doc() -> dict[str, Any]:
    return {
        "meta": {"profile": {"operator_consortia": 100}},
        "results": {
            "bft": {
                "light": _runs([200, 199, 201], [12, 15, 30]),
                "saturation": _runs([2500, 3100, 2900], [900, 1000, 1100]),
                "paced": _runs([2000, 2100, 2200], [200, 250, 400]),
                "contract": {
                    "saturation": _runs([1500, 1600, 1400], [900, 950, 1000]),
                    "ratio_to_kv": 0.55,
                },
            },
            "raft": {
                "saturation": _runs([6000, 6500, 7000], [500, 600, 700]),
                "etcd": {"saturation": _runs([9000, 10000, 11000], [20, 25, 30])},
                "pysyncobj": {"note": "skipped: pysyncobj not installed"},
                "ratios": {"ours_over_etcd": 0.65, "ours_over_pysyncobj": None},
            },
            "scale": {
                "points": [
                    {
                        "validators": 4,
                        "size": 100,
                        "tx_per_s": 3000.0,
                        "tx_per_s_vs_first_n": 1.0,
                        "p50_ms": 900.0,
                        "light_p50_ms": 14.0,
                        "cpu_s_per_1000_tx": 0.5,
                    }
                ]
            },
            "operator": {
                "control_plane": {"consortia": 100, "peak_rss_mib": 130.0},
                "cluster": {"skipped": "no cluster"},
            },
        },
    }


def test_fmt_summary() -> None:
    assert fmt_summary(summarize([1000.0, 2000.0, 3000.0])) == "2,000 [1,000-3,000]"
    assert fmt_summary(summarize([12.34]), " ms", 1) == "12.3 ms"
    assert fmt_summary(None) == "-"
    assert fmt_summary(summarize([])) == "-"


def test_targets_use_medians_and_mark_the_unmeasured() -> None:
    got = {t["target"]: t for t in targets(_doc()["results"])}
    assert got["BFT4 tx/s (saturation)"]["value"] == 2900.0
    assert got["BFT4 tx/s (saturation)"]["met"] is False
    assert got["BFT4 p50 ms (light)"]["value"] == 15.0
    assert got["BFT4 p50 ms (light)"]["met"] is True
    assert got["Raft3 tx/s (saturation)"]["met"] is True
    assert got["Raft3 / etcd"]["met"] is True
    assert got["Raft3 / PySyncObj"]["met"] is None
    assert got["apply->Ready s (4 validators)"]["met"] is None
    assert got["operator peak RSS MiB"]["met"] is True
    assert got["BFT4 invocations / kv puts"]["value"] == 0.55
    assert got["BFT4 invocations / kv puts"]["met"] is True
    assert targets({})[0]["value"] is None


def test_table_shows_every_figure_and_skips() -> None:
    rows = main_rows(_doc())
    labels = [r[0] for r in rows]
    assert "ours BFT 4, light" in labels and "etcd 3 members, saturation" in labels
    assert next(r[:2] for r in rows if r[0] == "ours BFT 4, contract invocations") == (
        "ours BFT 4, contract invocations",
        "1,500 [1,400-1,600]",
    )
    assert ("PySyncObj 3 nodes", "skipped: pysyncobj not installed", "", "", "") in rows
    doc = _doc()
    doc["targets"] = targets(doc["results"])
    con = Console(record=True, width=200)
    print_report(doc, con)
    text = con.export_text()
    assert "ours/etcd = 0.65" in text
    assert "BFT scale" in text
    assert "no cluster" in text
    assert "not measured" in text


def test_table_of_failed_sections() -> None:
    doc = {"results": {"bft": {"error": "TimeoutError: x"}, "operator": {"skipped": "why"}}}
    con = Console(record=True, width=200)
    print_report(doc, con)
    text = con.export_text()
    assert "error: TimeoutError: x" in text and "skipped: why" in text


def test_unknown_section_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--only", "nope"])
    assert e.value.code == 2
    assert "unknown section" in capsys.readouterr().err


def test_in_flight_is_littles_law_rounded_and_clamped() -> None:
    assert in_flight(5000.0, 1000.0) == 4992  # 5,000 in flight -> nearest multiple of 64
    assert in_flight(100.0, 10.0) == 64  # 1 -> floor of 64
    assert in_flight(50_000.0, 1000.0) == 8192  # capped
    assert in_flight(0.0, 0.0) == 64
