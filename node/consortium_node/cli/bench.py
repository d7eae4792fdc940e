"""`consortium bench`: the command over `consortium_node.client.loadgen` (how it measures is
documented there): parses the options, picks the node(s), runs `run_bench`, prints a table or,
with `--json`, one JSON object."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consortium_node.client.discovery import ClientTLS, DataDir
from consortium_node.client.errors import ClientError
from consortium_node.client.loadgen import BenchConfig, BenchReport, answering, run_bench

from .common import (
    DEFAULT_TIMEOUT,
    DataDirOpt,
    EndpointOpt,
    JsonOpt,
    NodeOpt,
    TimeoutOpt,
    console,
    open_client,
    print_json,
)

_stderr = Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- command


def bench(
    txs: Annotated[int, typer.Option("--txs", "-n", min=1, help="Transactions to send.")] = 10_000,
    streams: Annotated[
        int, typer.Option("--streams", "-m", min=1, help="Concurrent SubmitStream streams.")
    ] = 4,
    size: Annotated[int, typer.Option("--size", min=0, help="Value bytes per put.")] = 100,
    keys: Annotated[
        int | None,
        typer.Option(
            "--keys", min=1, help="Sender keys (default: = --streams).", show_default=False
        ),
    ] = None,
    procs: Annotated[
        int, typer.Option("--procs", "-p", min=1, help="Sender processes (<= streams).")
    ] = 1,
    rate: Annotated[
        float, typer.Option("--rate", min=0.0, help="Target total tx/s (0 = unlimited).")
    ] = 0.0,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            "-b",
            min=0,
            help="0: send over SubmitStream (one message per tx); N: SubmitBatch RPCs of N "
            "txs per stream (far less client CPU per tx).",
        ),
    ] = 0,
    commit_timeout: Annotated[
        float,
        typer.Option(
            "--commit-timeout", min=0.1, help="Stop waiting after this long without a commit."
        ),
    ] = 30.0,
    spread: Annotated[
        bool,
        typer.Option(
            "--spread",
            help="With --data-dir: spread the streams over every node that answers "
            "(commits are still followed on one node).",
        ),
    ] = False,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Load generator: N signed kv puts over M streams; reports tx/s and commit latency."""
    if keys is not None and keys < streams:
        raise typer.BadParameter(
            f"must be >= --streams ({streams}) so each sender stays on one stream",
            param_hint="--keys",
        )
    with open_client(endpoint, data_dir, node, timeout) as c:
        ep = c.endpoint
    submit_to: tuple[str, ...] = ()
    if spread:
        if data_dir is None:
            raise typer.BadParameter("--spread needs --data-dir", param_hint="--spread")
        submit_to = tuple(answering(DataDir.load(data_dir), timeout))
    dd = DataDir.load(data_dir) if data_dir is not None else None
    cfg = BenchConfig(
        tls=ClientTLS.discover(data_dir),
        admin_key=dd.admin_key if dd is not None else None,
        member_org=dd.nodes[0].organization if dd is not None and dd.nodes else "",
        endpoint=ep,
        txs=txs,
        streams=streams,
        keys=keys or streams,
        size=size,
        procs=procs,
        rate=rate,
        batch=batch,
        commit_timeout=commit_timeout,
        submit_to=submit_to,
        timeout=timeout,
    )
    report = run_bench(cfg, None if json_ else (lambda m: _stderr.print(f"[dim]{m}[/]")))
    if json_:
        print_json(report.to_json())
    else:
        _print_report(report)
    if report.committed == 0:
        raise ClientError(
            f"no transaction committed ({report.rejected} rejected, "
            f"{report.uncommitted} not committed)"
        )


def _print_report(r: BenchReport) -> None:
    t = Table(title=f"consortium bench → {r.endpoint}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("txs / streams / keys / procs", f"{r.txs} / {r.streams} / {r.keys} / {r.procs}")
    t.add_row("value size", f"{r.size} B")
    t.add_row("submission", f"SubmitBatch of {r.batch}" if r.batch else "SubmitStream")
    if r.submit_to:
        t.add_row("submitting to", ", ".join(r.submit_to))
    t.add_row("committed", f"{r.committed} of {r.sent}")
    t.add_row("rejected", str(r.rejected))
    t.add_row("not committed", str(r.uncommitted))
    t.add_row("throughput", f"[green]{r.tx_per_s:,.0f} tx/s[/]")
    t.add_row("wall time", f"{r.duration_s:.3f} s (sending {r.send_s:.3f} s)")
    lm = r.latency_ms
    t.add_row(
        "commit latency",
        f"p50 {lm.get('p50', 0):.1f} ms  p90 {lm.get('p90', 0):.1f} ms  "
        f"p99 {lm.get('p99', 0):.1f} ms  max {lm.get('max', 0):.1f} ms",
    )
    if "p50_last_quarter" in lm:
        t.add_row(
            "p50, first / last quarter sent",
            f"{lm['p50_first_quarter']:.1f} / {lm['p50_last_quarter']:.1f} ms",
        )
    t.add_row("blocks", f"{r.blocks} (height {r.start_height} → {r.end_height})")
    console.print(t)
    for reason, n in r.rejections.items():
        console.print(f"[yellow]rejected {n} tx[/]: {reason}", markup=True)
