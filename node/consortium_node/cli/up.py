"""`consortium up` and `consortium demo`: a whole consortium as local processes, no cluster.

`up` reads a Consortium manifest (the one the operator takes), creates keys and genesis once
in --data-dir, starts every node, writes DIR/endpoints.json, prints each node's endpoint and a
live line (height / leader / tx/s) until Ctrl-C or SIGTERM, then stops all nodes cleanly.
`demo` does the same on the 4-validator BFT example and submits transactions so blocks visibly
commit, for --duration seconds. Process management lives in consortium_node.localnet."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from consortium_api.v1 import types_pb2
from rich.console import Console
from rich.table import Table

from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.localnet import (
    DEFAULT_MANIFEST,
    DataDirBusy,
    LocalNet,
    ManifestError,
    NetPlan,
    NodeStartError,
    init_data_dir,
    init_org_dir,
    install_genesis,
    load_manifest,
    org_meta,
    parse_manifest,
)
from consortium_node.provision.ceremony import CeremonyError

from .backup import restore_local
from .common import console, fail

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="Consortium manifest (default: the 4-validator BFT example)."
    ),
]
DirOpt = Annotated[
    Path, typer.Option("--data-dir", "-d", help="Where keys, genesis, ledgers and logs live.")
]


def _plan(file: Path | None) -> NetPlan:
    try:
        return load_manifest(file) if file is not None else parse_manifest(DEFAULT_MANIFEST)
    except ManifestError as e:
        raise fail(str(e)) from None


class _Monitor:
    """Follows one node's committed blocks (ids only) to count tx/s; polls status for the line."""

    def __init__(self, net: LocalNet) -> None:
        self.net = net
        self.txs: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        while not self.stop.is_set():
            for n in self.net.nodes:
                if n.proc is None or n.proc.poll() is not None:
                    continue
                try:
                    with self.net.client(n, 5.0) as c:
                        start = c.status().height + 1
                        for b in c.stream_blocks(start, follow=True, ids_only=True):
                            self.txs.append((time.monotonic(), len(b.tx_ids)))
                            if self.stop.is_set():
                                return
                except ClientError:
                    continue
            self.stop.wait(0.5)

    def tx_rate(self, window: float = 5.0) -> float:
        now = time.monotonic()
        recent = [n for t, n in self.txs if now - t <= window]
        return sum(recent) / window

    def line(self) -> str:
        heights, leader = [], "-"
        for n in self.net.nodes:
            try:
                with self.net.client(n, 1.0) as c:
                    st = c.status()
            except ClientError:
                continue
            heights.append(st.height)
            for m in self.net.nodes:
                if st.leader and m.node_id == st.leader.hex():
                    leader = m.name
        up = f"{len(heights)}/{len(self.net.nodes)} up"
        h = max(heights) if heights else 0
        return f"height {h:>6}  leader {leader:<10} {self.tx_rate():>8.0f} tx/s  {up}"


def _print_endpoints(net: LocalNet) -> None:
    t = Table(title=f"consortium {net.chain_id} ({net.consensus})", title_justify="left")
    for col in ("node", "organization", "endpoint", "pid"):
        t.add_column(col)
    for n in net.nodes:
        t.add_row(n.name, n.organization, n.endpoint, str(n.pid))
    console.print(t)
    console.print(
        f"endpoints: {net.data_dir / 'endpoints.json'}   "
        f"try: consortium status --all --data-dir {net.data_dir}"
    )


def _run(net: LocalNet, duration: float | None, load: bool) -> None:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # handlers first: a Ctrl-C while nodes start stops them below instead of orphaning them
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _start(net)  # on failure nothing runs (start stops what it started)
    except BaseException:
        for s, h in old.items():
            signal.signal(s, h)
        raise
    mon = _Monitor(net)
    loader = threading.Thread(target=_load, args=(net, stop), daemon=True) if load else None
    try:
        _print_endpoints(net)
        mon.thread.start()
        if loader is not None:
            loader.start()
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            console.print(mon.line())
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(1.0)
    finally:
        stop.set()
        mon.stop.set()
        console.print("stopping nodes ...")
        net.stop()
        for s, h in old.items():
            signal.signal(s, h)
    console.print(
        f"stopped; data kept in {net.data_dir} (run 'consortium up -d {net.data_dir}' to resume)"
    )


def _start(net: LocalNet) -> None:
    """Starts the nodes; a busy directory is one error line, a node that cannot start is an
    error line naming it followed by the last lines of its log, as the node wrote them."""
    try:
        net.start()
    except DataDirBusy as e:
        raise fail(str(e)) from None
    except NodeStartError as e:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"error: {e}; the last lines of {e.log}:", markup=False)
        for line in e.tail or ["(the log is empty)"]:
            err.print(f"  {line}", markup=False)
        raise typer.Exit(1) from None


def _load(net: LocalNet, stop: threading.Event) -> None:
    """Demo traffic: kv puts and coin transfers from the genesis-funded client key, ~200 tx/s."""
    signer = Signer.load(net.data_dir / "keys" / "client.json")
    friend = Signer.generate().public_key
    i = 0
    while not stop.is_set():
        node = net.nodes[0]
        try:
            with net.client(node, 5.0) as c:
                nonce = c.next_nonce(signer.public_key)
                batch = []
                for k in range(20):
                    if k % 2:
                        payload: object = types_pb2.AssetTransfer(asset="coin", to=friend, amount=1)
                    else:
                        payload = types_pb2.KvPut(key=b"demo/%d" % (i + k), value=b"hello")
                    batch.append(signer.build_tx(net.chain_id, nonce + k, payload))  # type: ignore[arg-type]
                c.submit([t for _, t in batch])
                c.wait_tx(batch[-1][0], timeout=10)
                i += 20
        except ClientError:
            stop.wait(0.5)
        stop.wait(0.1)


def up(
    file: FileOpt = None,
    data_dir: DirOpt = Path("consortium-data"),
    no_fsync: Annotated[bool, typer.Option(help="Skip fsync (faster, unsafe).")] = False,
    org_governance: Annotated[
        bool,
        typer.Option(
            "--org-governance",
            help="Governance by organisations: an admin key per organisation "
            "(DIR/keys/admin-ORG.json), changes by 'consortium gov' proposals and votes.",
        ),
    ] = False,
    restore: Annotated[
        Path | None,
        typer.Option(
            "--restore",
            help="Before starting, restore every node's ledger from this verified backup "
            "(disaster recovery: DIR keeps its keys and genesis; see 'consortium backup').",
            show_default=False,
        ),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="Federated: run only this organisation of a ceremony's consortium in DIR "
            "(its own keys and nodes; see 'consortium ceremony').",
            show_default=False,
        ),
    ] = None,
    ceremony_init: Annotated[
        Path | None,
        typer.Option(
            "--ceremony-init",
            help="With --org: create the organisation's directory for this ceremony.json "
            "(CA, admin key, node keys and addresses), then exit.",
            show_default=False,
        ),
    ] = None,
    validators: Annotated[
        int, typer.Option("--validators", help="With --ceremony-init: the number of nodes.")
    ] = 1,
    host: Annotated[
        str,
        typer.Option("--host", help="With --ceremony-init: the address the nodes listen on."),
    ] = "127.0.0.1",
    genesis: Annotated[
        Path | None,
        typer.Option(
            "--genesis",
            help="With --org: install this genesis.json, checked against the genesis-*.sig "
            "and contribution-*.json beside it, then start.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a whole consortium locally as processes (no cluster) until Ctrl-C."""
    if org is not None or ceremony_init is not None or genesis is not None:
        if _federated(org, data_dir, ceremony_init, validators, host, genesis, not no_fsync):
            return
    elif org_meta(data_dir) is not None and not (data_dir / "genesis.json").exists():
        raise fail(f"{data_dir} is an organisation directory without genesis: give --genesis")
    else:
        try:
            init_data_dir(_plan(file), data_dir, fsync=not no_fsync, org_governance=org_governance)
        except ManifestError as e:
            raise fail(str(e)) from None
    if restore is not None:
        for r in restore_local(data_dir, restore):
            console.print(f"restored {r.data_dir} to height {r.manifest.height}", markup=False)
    _run(LocalNet(data_dir), None, load=False)


def _federated(
    org: str | None,
    data_dir: Path,
    ceremony_init: Path | None,
    validators: int,
    host: str,
    genesis: Path | None,
    fsync: bool,
) -> bool:
    """`up --org`: initialise (returns True: nothing to start), install a genesis, or just
    check that DIR is ORG's directory before it starts."""
    if org is None:
        raise fail("--ceremony-init and --genesis need --org NAME")
    try:
        if ceremony_init is not None:
            try:
                raw = ceremony_init.read_bytes()
            except OSError as e:
                raise fail(f"cannot read {ceremony_init}: {e.strerror}") from None
            created = init_org_dir(raw, org, data_dir, validators, host, fsync=fsync)
            state = "created" if created else "already initialised"
            console.print(
                f"{org}: {data_dir} {state}; next: consortium ceremony contribute -d {data_dir}",
                markup=False,
            )
            return True
        meta = org_meta(data_dir)
        if meta is None or meta["organization"] != org:
            raise fail(f"{data_dir} is not organisation {org}'s directory (see --ceremony-init)")
        if genesis is not None:
            signed = install_genesis(data_dir, genesis)
            console.print(f"genesis verified: signed by {', '.join(signed)}", markup=False)
        elif not (data_dir / "genesis.json").exists():
            raise fail(f"{data_dir} has no genesis yet: give --genesis genesis.json")
    except (CeremonyError, ManifestError) as e:
        raise fail(str(e)) from None
    return False


def demo(
    file: FileOpt = None,
    data_dir: DirOpt = Path("consortium-demo"),
    duration: Annotated[float, typer.Option(help="Seconds to run (0 = until Ctrl-C).")] = 30.0,
) -> None:
    """Start the 4-validator BFT example, submit transactions, show blocks committing."""
    init_data_dir(_plan(file), data_dir)
    _run(LocalNet(data_dir), duration or None, load=True)
