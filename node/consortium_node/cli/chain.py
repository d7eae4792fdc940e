"""`consortium status` (one node's view of the chain, its peer links included) and `consortium
blocks` (block list, live with `--follow`, from the StreamBlocks RPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from consortium_api.v1 import ledger_pb2
from rich.markup import escape
from rich.table import Table

from consortium_node.client.discovery import DataDir
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.client.tx import MAX_UINT64

from .common import (
    DEFAULT_TIMEOUT,
    DataDirOpt,
    EndpointOpt,
    JsonOpt,
    NodeOpt,
    TimeoutOpt,
    console,
    fmt_time_ms,
    open_client,
    print_json,
)


def status_json(s: ledger_pb2.GetStatusResponse, endpoint: str) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "chain_id": s.chain_id,
        "height": s.height,
        "last_block_hash": s.last_block_hash.hex(),
        "state_root": s.state_root.hex(),
        "node_id": s.node_id.hex(),
        "organization": s.organization,
        "role": s.role,
        "leader": s.leader.hex(),
        "consensus": s.consensus,
        "sync_state": s.sync_state,
        "mempool_size": s.mempool_size,
        "validators": [
            {"node_id": v.node_id.hex(), "organization": v.organization} for v in s.validators
        ],
        "organizations": list(s.organizations),
        "halted": s.halted,
        "peers": [
            {
                "node_id": p.node_id.hex(),
                "address": p.address,
                "connected": p.connected,
                "error": p.error,
                "since_seconds": round(p.since_seconds, 1),
            }
            for p in s.peers
        ],
    }


def status(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="With --data-dir: one row per node.")
    ] = False,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Chain id, height, last block, role/leader, validators, sync state, mempool size."""
    if all_:
        if data_dir is None:
            raise typer.BadParameter("--all needs --data-dir", param_hint="--all")
        _status_all(data_dir, timeout, json_)
        return
    with open_client(endpoint, data_dir, node, timeout) as client:
        s = client.status()
        ep = client.endpoint
    if json_:
        print_json(status_json(s, ep))
        return
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("endpoint", ep)
    t.add_row("chain", s.chain_id)
    t.add_row("height", str(s.height))
    t.add_row("last block", s.last_block_hash.hex() or "-")
    t.add_row("state root", s.state_root.hex() or "-")
    t.add_row("node", s.node_id.hex() + (f"  ({s.organization})" if s.organization else ""))
    t.add_row("consensus", s.consensus or "-")
    t.add_row("role", s.role or "-")
    t.add_row("leader", s.leader.hex() or "-")
    colour = "green" if s.sync_state in ("synced", "") else "yellow"
    t.add_row("sync", f"[{colour}]{s.sync_state or '-'}[/]")
    t.add_row("mempool", str(s.mempool_size))
    if s.halted:
        t.add_row("halted", f"[red]{escape(s.halted)}[/]")
    if s.organizations:
        t.add_row("organizations", ", ".join(s.organizations))
    t.add_row("validators", str(len(s.validators)))
    for v in s.validators:
        me = "  [dim](this node)[/]" if v.node_id == s.node_id else ""
        t.add_row("", f"{v.node_id.hex()}  {v.organization}{me}")
    if s.peers:
        up = sum(p.connected for p in s.peers)
        t.add_row("peers", f"{up}/{len(s.peers)} connected")
        for p in s.peers:
            state = "[green]up[/]" if p.connected else f"[red]down[/] {escape(p.error)}"
            t.add_row("", f"{p.node_id.hex()[:16]}  {p.address}  {state} ({p.since_seconds:.0f} s)")
    console.print(t)


def _status_all(data_dir: Path, timeout: float, json_: bool) -> None:
    dd = DataDir.load(data_dir)
    rows: list[dict[str, Any]] = []
    for n in dd.nodes:
        row: dict[str, Any] = {"name": n.name, "organization": n.organization, "pid": n.pid}
        with Client(n.endpoint, timeout, tls=dd.tls) as c:
            try:
                row |= status_json(c.status(), n.endpoint)
                row["up"] = True
            except ClientError as e:
                row |= {"endpoint": n.endpoint, "up": False, "error": str(e)}
        rows.append(row)
    if json_:
        print_json({"chain_id": dd.chain_id, "consensus": dd.consensus, "nodes": rows})
        return
    t = Table(title=f"{dd.chain_id} ({dd.consensus})", title_justify="left")
    for col in ("node", "org", "endpoint", "height", "last block", "role", "sync", "mempool"):
        t.add_column(col, justify="right" if col in ("height", "mempool") else "left")
    for r in rows:
        if not r["up"]:
            t.add_row(
                r["name"], r["organization"], r["endpoint"], "-", "-", "[red]down[/]", "-", "-"
            )
            continue
        t.add_row(
            r["name"],
            r["organization"],
            r["endpoint"],
            str(r["height"]),
            r["last_block_hash"][:16],
            r["role"],
            "[red]halted[/]" if r["halted"] else r["sync_state"],
            str(r["mempool_size"]),
        )
    console.print(t)
    for r in rows:
        if r.get("halted"):
            console.print(f"[red]{r['name']} halted:[/] {escape(r['halted'])}")
    if not any(r["up"] for r in rows):
        raise ClientError(f"no node of {dd.path} answers")


def blocks(
    from_height: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=0,
            max=MAX_UINT64,
            help="First height (default: 1, or the current height with --follow).",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing blocks as they commit.")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Blocks: height, hash, tx count, time (Ctrl-C stops --follow)."""
    with open_client(endpoint, data_dir, node, timeout) as client:
        start = from_height
        if start is None:
            start = max(1, int(client.status().height)) if follow else 1
        try:
            for b in client.stream_blocks(start, follow=follow, ids_only=True):
                h = b.header_view
                n = len(b.tx_ids) or len(b.txs)
                if json_:
                    print_json(
                        {
                            "height": h.height,
                            "hash": h.hash.hex(),
                            "txs": n,
                            "time_ms": h.time_ms,
                            "proposer": h.proposer.hex(),
                        }
                    )
                else:
                    console.print(
                        f"[bold]#{h.height:<8}[/] [cyan]{h.hash.hex()[:16]}[/]  "
                        f"{n:>6} txs  [dim]{fmt_time_ms(h.time_ms)}[/]"
                    )
        except KeyboardInterrupt:
            return
