"""The printed table of a results document (bench/results/latest.json): bench/run.py prints
it at the end of a run, `make bench-table` again from the file."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .stats import median_of


def fmt_summary(s: Any, unit: str = "", digits: int = 0) -> str:
    """'median [min-max]' of a summarize() dict; '-' when absent."""
    if not isinstance(s, Mapping) or s.get("median") is None:
        return "-"
    med, lo, hi = float(s["median"]), float(s["min"]), float(s["max"])
    body = f"{med:,.{digits}f}{unit}"
    if s.get("n", 1) > 1:
        body += f" [{lo:,.{digits}f}-{hi:,.{digits}f}]"
    return body


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(p)
    return d


def _status(d: Any) -> str | None:
    if isinstance(d, Mapping):
        if "skipped" in d:
            return f"skipped: {d['skipped']}"
        if "error" in d:
            return f"error: {d['error']}"
    return None


def main_rows(doc: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(system, tx/s, p50 ms, p99 ms, CPU s / 1000 tx) per main figure."""
    res = doc.get("results") or {}
    rows: list[tuple[str, str, str, str, str]] = []

    def add(label: str, fig: Any, kind: str) -> None:
        part = _get(fig, kind)
        if part is None or (isinstance(part, Mapping) and not part):
            return
        rows.append(
            (
                label,
                fmt_summary(_get(part, "tx_per_s")),
                fmt_summary(_get(part, "latency_ms", "p50"), digits=1),
                fmt_summary(_get(part, "latency_ms", "p99"), digits=1),
                fmt_summary(_get(part, "cpu_s_per_1000_tx"), digits=2),
            )
        )

    def add_model(shape: str, name: str) -> None:
        fig = model_of(res, shape)
        if not isinstance(fig, Mapping):
            return
        if (st := _status(fig)) is not None:
            rows.append((name, st, "", "", ""))
            return
        add(f"{name}, one block in flight", fig, "saturation")
        add(f"{name}, txs admitted ahead (gossip)", fig, "gossip")
        txs = _get(fig, "light", "block_txs", "median")
        add(f"{name}, {txs:.0f}-tx blocks" if txs else f"{name}, light", fig, "light")
        if (note := fig.get("note")) and not _get(fig, "saturation", "tx_per_s"):
            rows.append((name, str(note), "", "", ""))

    for key, name in (("bft", "ours BFT 4"), ("raft", "ours Raft 3")):
        fig = res.get(key)
        if (st := _status(fig)) is not None:
            rows.append((name, st, "", "", ""))
        else:
            add(f"{name}, light", fig, "light")
            add(f"{name}, saturation", fig, "saturation")
            add(f"{name}, paced 80%", fig, "paced")
            add(f"{name}, contract invocations", _get(fig, "contract"), "saturation")
        if key == "bft":  # beside ours, or alone (`--only model`)
            add_model("bft", "model BFT 4")
    raft = res.get("raft")
    if isinstance(raft, Mapping):
        for key, name in (("etcd", "etcd 3 members"), ("pysyncobj", "PySyncObj 3 nodes")):
            fig = raft.get(key) or {}
            if note := fig.get("note"):
                rows.append((name, str(note), "", "", ""))
            else:
                add(f"{name}, saturation", fig, "saturation")
    add_model("raft", "model Raft 3 (CFT)")
    if (st := _status(res.get("model"))) is not None:
        rows.append(("model peer", st, "", "", ""))
    return rows


def model_of(res: Mapping[str, Any], shape: str) -> Any:
    """The model peer's figures of `shape` ("bft" or "raft"): inside our section of that
    shape when it ran (interleaved with ours), else from a `--only model` section."""
    inside = _get(res, shape, "model")
    return inside if isinstance(inside, Mapping) else _get(res, "model", shape)


def print_report(doc: Mapping[str, Any], console: Console | None = None) -> None:
    """The main table, then each section the document holds: ratios, BFT scale, operator,
    targets."""
    con = console or Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    res = doc.get("results") or {}
    t = Table(
        title=escape("consortium bench: median [min-max] over repetitions"), title_justify="left"
    )
    for col in ("figure", "tx/s", "p50 ms", "p99 ms", "CPU s / 1000 tx"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for row in main_rows(doc):
        t.add_row(*(escape(c) for c in row))
    con.print(t)
    if parts := drift_parts(res):
        con.print(
            "paced 80%, p50 of the txs sent in the first / last quarter of the run (medians): "
            + "; ".join(parts)
            + " (a last quarter well above the first: a backlog grew over the run, so the "
            "offered rate was above what the nodes sustain in that shape)"
        )
    _print_ratios(con, res)
    _print_scale(con, res.get("scale"))
    if isinstance(op := res.get("operator"), Mapping):
        _print_operator(con, op, op_count(doc))
    if isinstance(bk := res.get("backup"), Mapping):
        _print_backup(con, bk)
    _print_targets(con, doc.get("targets") or [])


def drift_parts(res: Mapping[str, Any]) -> list[str]:
    """'name first / last ms' of each section's paced runs (loadgen's p50_first_quarter and
    p50_last_quarter, medians over repetitions)."""
    parts = []
    for key, name in (("bft", "ours BFT 4"), ("raft", "ours Raft 3")):
        first = median_of(res, key, "paced", "latency_ms", "p50_first_quarter")
        last = median_of(res, key, "paced", "latency_ms", "p50_last_quarter")
        if first is not None and last is not None:
            parts.append(f"{name} {first:,.0f} / {last:,.0f} ms")
    return parts


def ratio_parts(res: Mapping[str, Any]) -> list[str]:
    """'name = value' of every ratio the sections hold (None: a side was not measured)."""
    raft = _get(res, "raft", "ratios") or {}
    bft = _get(res, "bft", "ratios") or {}
    parts = []
    if raft:
        parts.append(f"ours/etcd = {raft.get('ours_over_etcd')}")
        parts.append(f"ours/PySyncObj = {raft.get('ours_over_pysyncobj')}")
    if bft:
        parts.append(f"ours BFT/model = {bft.get('ours_bft_over_model')}")
        if "ours_bft_over_model_gossip" in bft:
            parts.append(f"ours BFT/model gossip = {bft.get('ours_bft_over_model_gossip')}")
    if raft:
        parts.append(f"ours Raft/model = {raft.get('ours_raft_over_model')}")
    return parts


def _print_ratios(con: Console, res: Mapping[str, Any]) -> None:
    if parts := ratio_parts(res):
        con.print("ratios (same run, tx/s medians): " + ", ".join(parts))


def _print_scale(con: Console, scale: Any) -> None:
    if (st := _status(scale)) is not None:
        con.print(f"scale: {st}")
        return
    if not (isinstance(scale, Mapping) and scale.get("points")):
        return
    s = Table(title="BFT scale (one run per point)", title_justify="left")
    for col in (
        "validators",
        "size B",
        "tx/s",
        "vs first N",
        "p50 ms",
        "light p50 ms",
        "CPU s/1000 tx",
    ):
        s.add_column(col, justify="right")
    for q in scale["points"]:
        s.add_row(
            str(q["validators"]),
            str(q["size"]),
            f"{q['tx_per_s']:,.0f}",
            str(q.get("tx_per_s_vs_first_n")),
            f"{q.get('p50_ms') or 0:.1f}",
            "-" if q.get("light_p50_ms") is None else f"{q['light_p50_ms']:.1f}",
            str(q.get("cpu_s_per_1000_tx")),
        )
    con.print(s)
    for q in scale["points"]:
        if q.get("note"):
            con.print(f"  bft{q['validators']}, {q['size']} B: {q['note']}")


def _print_backup(con: Console, bk: Mapping[str, Any]) -> None:
    """Issue 17: export / verify --replay / restore throughput and peak RSS per chain size."""
    if (st := _status(bk)) is not None:
        con.print(f"backup: {st}")
        return
    t = Table(title="backup (issue 17): one Raft node, online export", title_justify="left")
    for col in ("chain", "step", "MiB/s", "blocks/s", "tx/s", "peak RSS MiB", "anon MiB"):
        t.add_column(col, justify="left" if col in ("chain", "step") else "right")
    for name in ("small", "large"):
        stage = bk.get(name)
        if not isinstance(stage, Mapping):
            continue
        label = f"{stage.get('committed_txs')} tx / {stage.get('blocks')} blocks"
        for step in ("export", "verify_replay", "restore"):
            r = stage.get(step) or {}
            t.add_row(
                label,
                step,
                *(str(r.get(k, "-")) for k in ("mib_per_s", "blocks_per_s", "tx_per_s")),
                str(r.get("peak_rss_mib", "-")),
                str(r.get("anon_rss_mib", "-")),
            )
    con.print(t)
    con.print(
        "export memory, large/small chain: peak RSS (with mapped LMDB pages) "
        f"{bk.get('export_peak_rss_mib_growth')}, own heap {bk.get('export_anon_rss_mib_growth')}"
    )


def _print_operator(con: Console, op: Mapping[str, Any], count: Any) -> None:
    if (st := _status(op)) is not None:
        con.print(f"operator: {st}")
    cp = op.get("control_plane")
    if (st := _status(cp)) is not None:
        con.print(f"operator ({count} consortia, kube-apiserver): {st}")
    elif isinstance(cp, Mapping) and cp:
        con.print(
            f"operator, {cp.get('consortia')} consortia on a local kube-apiserver: all "
            f"reconciled in {cp.get('create_all_reconciled_s')} s, spec change on all in "
            f"{cp.get('spec_change_all_reconciled_s')} s, peak RSS {cp.get('peak_rss_mib')} "
            f"MiB, steady CPU {cp.get('steady_cpu_percent')} %"
        )
        steady, change = cp.get("steady_requests_per_s"), cp.get("spec_change_requests")
        if isinstance(steady, Mapping) and isinstance(change, Mapping):
            top = ", ".join(f"{k} {v}" for k, v in list(steady.items())[1:6])
            con.print(
                f"  apiserver requests: steady {steady.get('total')}/s ({top}); "
                f"during the spec change {change.get('total')} in all"
            )
    cl = op.get("cluster")
    if (st := _status(cl)) is not None:
        con.print(f"apply -> Ready on the test cluster: {st}")
    elif isinstance(cl, Mapping) and cl.get("apply_to_ready_s") is not None:
        con.print(f"apply -> Ready on the test cluster: {cl.get('apply_to_ready_s')} s")
    elif isinstance(cl, Mapping) and cl:
        con.print(
            f"apply -> Ready on the test cluster: not Ready within {cl.get('timeout_s')} s "
            f"(conditions in the JSON)"
        )


def _print_targets(con: Console, targets: list[Any]) -> None:
    if not targets:
        return
    tt = Table(title="targets (issues 8, 16, 19)", title_justify="left")
    for col in ("target", "measured", "goal", "met"):
        tt.add_column(col)
    for x in targets:
        v = x.get("value")
        met = x.get("met")
        tt.add_row(
            x["target"],
            "-" if v is None else f"{v:,.2f}",
            x["goal"],
            "not measured" if met is None else ("yes" if met else "NO"),
        )
    con.print(tt)


def op_count(doc: Mapping[str, Any]) -> Any:
    return _get(doc, "meta", "profile", "operator_consortia")
