"""bench.run targets and argument checks, and bench.report's table on a synthetic document
(including the model peer's figures and ratios, issue 19)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from bench.report import drift_parts, fmt_summary, main_rows, model_of, print_report, ratio_parts
from bench.run import in_flight, main, ratio_to_model, targets
from bench.stats import summarize, summarize_runs

pytestmark = pytest.mark.unit


def _runs(tps: list[float], p50: list[float]) -> dict[str, Any]:
    return summarize_runs(
        [
            {"tx_per_s": t, "latency_ms": {"p50": p, "p99": 2 * p}, "cpu_s_per_1000_tx": 0.3}
            for t, p in zip(tps, p50, strict=True)
        ]
    )


def _model_runs(tps: list[float], p50: list[float], block_txs: int = 1000) -> dict[str, Any]:
    return summarize_runs(
        [
            {"tx_per_s": t, "latency_ms": {"p50": p, "p99": 2 * p}, "block_txs": block_txs}
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
                "model": {
                    "saturation": _model_runs([3500, 3625, 3700], [280, 276, 270]),
                    "gossip": _model_runs([4400, 4500, 4600], [220, 230, 240]),
                    "light": _model_runs([400, 410, 420], [24, 25, 26], block_txs=10),
                },
                "ratios": {"ours_bft_over_model": 0.8, "ours_bft_over_model_gossip": 0.64},
            },
            "raft": {
                "saturation": _runs([6000, 6500, 7000], [500, 600, 700]),
                "etcd": {"saturation": _runs([9000, 10000, 11000], [20, 25, 30])},
                "pysyncobj": {"note": "skipped: pysyncobj not installed"},
                "model": {"saturation": _model_runs([5000, 5200, 5400], [180, 190, 200])},
                "ratios": {
                    "ours_over_etcd": 0.65,
                    "ours_over_pysyncobj": None,
                    "ours_raft_over_model": 1.25,
                },
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
    assert got["BFT4 p50 ms (light)"]["goal"] == "<= 10"  # issue 19
    assert got["BFT4 p50 ms (light)"]["met"] is False
    assert got["Raft3 tx/s (saturation)"]["met"] is True
    assert got["Raft3 / etcd"]["met"] is True
    assert got["Raft3 / PySyncObj"]["met"] is None
    assert got["apply->Ready s (4 validators)"]["met"] is None
    assert got["operator peak RSS MiB"]["met"] is True
    assert got["BFT4 invocations / kv puts"]["value"] == 0.55
    assert got["BFT4 invocations / kv puts"]["met"] is True
    assert got["BFT4 / model BFT4 (one in flight)"]["value"] == 0.8
    assert got["BFT4 / model BFT4 (one in flight)"]["goal"] == ">= 0.85"
    assert got["BFT4 / model BFT4 (one in flight)"]["met"] is False
    assert targets({})[0]["value"] is None
    assert {t["target"]: t["met"] for t in targets({})}["BFT4 / model BFT4 (one in flight)"] is None


def test_ratio_to_the_model_is_the_medians_of_the_same_section() -> None:
    bft = _doc()["results"]["bft"]
    assert ratio_to_model(bft) == 0.8  # 2,900 / 3,625
    assert ratio_to_model(bft, "gossip") == 0.64  # 2,900 / 4,500
    raft = _doc()["results"]["raft"]
    assert ratio_to_model(raft) == 1.25  # 6,500 / 5,200
    assert ratio_to_model({"saturation": bft["saturation"]}) is None  # the model did not run
    assert ratio_to_model({"model": bft["model"]}) is None  # ours did not run


def test_the_model_rows_sit_beside_ours_and_the_ratios_are_printed() -> None:
    doc = _doc()
    doc["targets"] = targets(doc["results"])
    rows = {r[0]: r for r in main_rows(doc)}
    assert rows["model BFT 4, one block in flight"][1:3] == (
        "3,625 [3,500-3,700]",
        "276.0 [270.0-280.0]",
    )
    assert rows["model BFT 4, txs admitted ahead (gossip)"][1] == "4,500 [4,400-4,600]"
    assert rows["model BFT 4, 10-tx blocks"][2] == "25.0 [24.0-26.0]"
    assert rows["model Raft 3 (CFT), one block in flight"][1] == "5,200 [5,000-5,400]"
    assert ratio_parts(doc["results"]) == [
        "ours/etcd = 0.65",
        "ours/PySyncObj = None",
        "ours BFT/model = 0.8",
        "ours BFT/model gossip = 0.64",
        "ours Raft/model = 1.25",
    ]
    con = Console(record=True, width=200)
    print_report(doc, con)
    text = con.export_text()
    assert "ours BFT/model = 0.8, ours BFT/model gossip = 0.64, ours Raft/model = 1.25" in text
    assert "BFT4 / model BFT4 (one in flight)" in text


def test_only_model_prints_the_model_once_and_no_ratio() -> None:
    """`--only model`: the model's figures sit in their own section, without ours."""
    full = _doc()["results"]
    res = {"model": {"bft": full["bft"]["model"], "raft": full["raft"]["model"]}}
    assert model_of(res, "bft") is res["model"]["bft"]
    assert model_of(full, "bft") is full["bft"]["model"]
    labels = [r[0] for r in main_rows({"results": res})]
    assert labels == [
        "model BFT 4, one block in flight",
        "model BFT 4, txs admitted ahead (gossip)",
        "model BFT 4, 10-tx blocks",
        "model Raft 3 (CFT), one block in flight",
    ]
    assert ratio_parts(res) == []
    failed = main_rows({"results": {"model": {"error": "ModelFailed: x"}}})
    assert ("model peer", "error: ModelFailed: x", "", "", "") in failed


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


def test_a_scale_point_whose_light_load_failed_keeps_its_row_and_shows_why() -> None:
    doc = _doc()
    doc["results"]["scale"]["points"][0].update(
        light_p50_ms=None, note="light load: tx 4c7a not committed within 30s"
    )
    con = Console(record=True, width=200)
    print_report(doc, con)
    text = con.export_text()
    assert "3,000" in text  # its saturation figure stands
    assert "bft4, 100 B: light load: tx 4c7a not committed within 30s" in text


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


def test_paced_drift_is_printed_from_the_quarters_medians() -> None:
    doc = _doc()
    doc["results"]["bft"]["paced"] = summarize_runs(
        [
            {
                "tx_per_s": 2000,
                "latency_ms": {"p50": 250, "p50_first_quarter": f, "p50_last_quarter": la},
            }
            for f, la in ((90, 400), (100, 500), (110, 450))
        ]
    )
    assert drift_parts(doc["results"]) == ["ours BFT 4 100 / 450 ms"]  # raft has no paced run
    del doc["results"]["bft"]["paced"]["latency_ms"]["p50_last_quarter"]
    assert drift_parts(doc["results"]) == []
