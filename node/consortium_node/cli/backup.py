"""`consortium backup create|verify|list|restore`: thin commands over consortium_node.backup.

The node to export from or restore into is named by its config (`--config node.yaml`: its
data_dir and genesis_file) or, for a local consortium, by `--data-dir DIR [--node NAME]`
(create: the named node, default the first; restore: the named node, default every node).
`create --from-node ADDRESS` asks a running node over gRPC instead (ExportBackup: no access
to its volume needed), checks the stream and verifies the backup before it takes its name;
with OUT a directory (not ending in .tar; created if absent) it names the file `<chain>-<UTC time>-h<height>.tar`, and
`--keep N` then deletes that chain's older backups there (backup/retention.py), `--report
FILE` writes one JSON line of the outcome (the operator's CronJob: /dev/termination-log).
`--from-node` takes several addresses, comma-separated: tried in order until one exports.
`restore --once --config` is a pod's init step: it restores once (RESTORED.json in the data
dir names the backup) and does nothing on later starts.
`restore_local` is also what `consortium up --restore` calls. Every refusal is one line."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from consortium_node.backup.archive import list_backups, verify_backup
from consortium_node.backup.export import export_backup
from consortium_node.backup.format import BackupError, Manifest
from consortium_node.backup.restore import RestoreResult, restore_backup, restore_many
from consortium_node.backup.retention import Held, to_prune
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.config import NodeConfig
from consortium_node.localnet import LocalNet

from .common import JsonOpt, console, fail

app = typer.Typer(
    no_args_is_help=True, help="Back up, verify and restore a chain (offline-verifiable files)."
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The node's config file (its data_dir and genesis).",
        show_default=False,
    ),
]
LocalOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Directory of a local consortium ('consortium up').",
        show_default=False,
    ),
]
NodeOpt = Annotated[
    str | None,
    typer.Option("--node", help="With --data-dir: the node, by name.", show_default=False),
]


def _node_config(config: Path | None, local: Path | None, node: str | None) -> NodeConfig:
    if (config is None) == (local is None):
        raise typer.BadParameter("give either --config or --data-dir")
    if config is None:
        assert local is not None
        names = (
            sorted(p.name for p in (local / "nodes").iterdir())
            if (local / "nodes").is_dir()
            else []
        )
        if not names:
            raise fail(f"{local} is not a local consortium (no nodes/)")
        config = local / "nodes" / (node or names[0]) / "config.yaml"
    if not config.exists():
        raise fail(f"{config}: no such node config")
    return NodeConfig.load(config)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _describe(m: Manifest) -> str:
    size = sum(f.bytes for f in m.files.values())
    return (
        f"chain {m.chain_id!r} ({m.consensus}) at height {m.height}, block "
        f"{m.block_hash.hex()[:16]}, state root {m.state_root.hex()[:16]}, "
        f"{m.state_entries} state entries, {_mib(size)}"
    )


def create(
    out: Annotated[
        Path,
        typer.Argument(
            help="Backup to write: a directory, or FILE.tar (with --from-node: FILE.tar, or a "
            "directory, created if absent, to name a file in)."
        ),
    ],
    config: ConfigOpt = None,
    data_dir: LocalOpt = None,
    node: NodeOpt = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the block that certifies the state.")
    ] = 30.0,
    from_node: Annotated[
        str | None,
        typer.Option(
            "--from-node",
            help="Export from this running node over gRPC (HOST:PORT) instead of a data dir.",
            show_default=False,
        ),
    ] = None,
    tls_dir: Annotated[
        Path | None,
        typer.Option(
            "--tls-dir",
            help="With --from-node: client TLS directory (default: $CONSORTIUM_TLS_DIR).",
            show_default=False,
        ),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option(
            "--server-name", help="With --from-node: the name the node's certificate shows."
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            min=1,
            help="With --from-node into a directory: keep this chain's newest N backups there.",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Write the outcome as one JSON line here.", show_default=False
        ),
    ] = None,
) -> None:
    """Back up a running (or stopped) node's chain at its committed height; no key is read."""
    if from_node is None:
        if keep is not None:
            raise typer.BadParameter("--keep goes with --from-node")
        cfg = _node_config(config, data_dir, node)
        try:
            r = export_backup(cfg.data_dir, cfg.genesis_file, out, certifier_timeout=timeout)
        except BackupError as e:
            raise _reported(report, str(e)) from None
        rate = r.bytes / 2**20 / max(r.seconds, 1e-9)
        _report(report, {"name": out.name, "height": r.manifest.height, "bytes": r.bytes})
        console.print(
            f"backup {out}: {_describe(r.manifest)}; {r.seconds:.1f}s ({rate:.1f} MiB/s)",
            markup=False,
        )
        return
    if config is not None or data_dir is not None:
        raise typer.BadParameter("--from-node goes without --config/--data-dir")
    into_dir = not out.name.endswith(".tar")  # else: a directory, created if absent
    if keep is not None and not into_dir:
        raise typer.BadParameter("--keep needs OUT to be a directory")
    if into_dir:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _reported(report, f"cannot make directory {out}: {e.strerror}") from None
    t0 = time.monotonic()
    tried: list[str] = []
    doc: dict[str, object] | None = None
    for address in [a.strip() for a in from_node.split(",") if a.strip()]:
        try:
            doc = pull(address, out, tls_dir, server_name, keep, timeout)
            break
        except (BackupError, ClientError) as e:
            tried.append(str(e))
    if doc is None:
        raise _reported(report, "; ".join(tried) or "--from-node names no address")
    _report(report, doc)
    secs = time.monotonic() - t0
    console.print(
        f"backup {doc['path']} from {doc['source']}: height {doc['height']}, "
        f"{_mib(int(str(doc['bytes'])))}; {secs:.1f}s"
        + (f"; pruned {len(list(doc['pruned']))} older" if doc.get("pruned") else ""),  # type: ignore[call-overload]
        markup=False,
    )


def pull(
    address: str,
    out: Path,
    tls_dir: Path | None,
    server_name: str | None,
    keep: int | None,
    timeout: float,
) -> dict[str, object]:
    """Streams the node's backup into OUT (a .tar path, or a new name in directory OUT),
    verifies it (checksums, hash chain, every certificate, the state root) before renaming it
    into place, then prunes to `keep`. Raises BackupError/ClientError (one line)."""
    tls = ClientTLS.from_dir(tls_dir) if tls_dir is not None else ClientTLS.discover()
    if tls is not None and server_name:
        tls = ClientTLS(tls.ca_pem, tls.cert_pem, tls.key_pem, server_name)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    partial = (
        (out / f".incoming-{stamp}.tar") if out.is_dir() else out.with_name(out.name + ".partial")
    )
    if not out.is_dir() and out.exists():
        raise BackupError(f"{out} already exists (nothing overwritten)")
    try:
        # the certifying block H+1 may be a couple of seconds away on an idle chain
        with Client(address, timeout, tls=tls) as c, partial.open("wb") as f:
            got = c.export_backup(f, timeout=max(timeout, 30.0) + 600.0)
            f.flush()
            os.fsync(f.fileno())
        m = verify_backup(partial)
        if m.height != got.height:
            raise BackupError(
                f"the node announced height {got.height}, the backup holds {m.height}"
            )
        final = out / f"{m.chain_id}-{stamp}-h{m.height}.tar" if out.is_dir() else out
        if final.exists():
            raise BackupError(f"{final} already exists (nothing overwritten)")
        os.rename(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    pruned: list[str] = []
    if keep is not None:
        held = [
            Held(p.name, hm.genesis_hash, hm.height, hm.created_unix)
            for p, hm, _ in list_backups(out)
            if hm is not None
        ]
        for name in to_prune(held, m.genesis_hash, keep, protect=final.name):
            victim = out / name
            shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
            pruned.append(name)
    return {
        "path": str(final),
        "name": final.name,
        "chain_id": m.chain_id,
        "height": m.height,
        "bytes": got.bytes,
        "created": m.created_unix,
        "source": address,
        "pruned": pruned,
    }


def _report(report: Path | None, doc: dict[str, object]) -> None:
    if report is not None:
        report.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")


def _reported(report: Path | None, message: str) -> ClientError:
    """The CLI's one-line failure, also written to the report (where the operator reads it)."""
    _report(report, {"error": message[:1500]})
    return fail(message)


def verify(
    path: Annotated[Path, typer.Argument(help="Backup directory or tar file.")],
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Also re-execute every block from the genesis and check each header's state "
            "root (what restore does; slower).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify a backup offline: checksums, hash chain, every commit certificate, state root."""
    try:
        m = verify_backup(path, deep=replay)
    except BackupError as e:
        raise fail(f"{path}: {e}") from None
    if json_out:
        console.print_json(json.dumps(_summary(path, m)))
    else:
        console.print(f"ok: {path}: {_describe(m)}", markup=False)


def _summary(path: Path, m: Manifest) -> dict[str, object]:
    return {
        "path": str(path),
        "chain_id": m.chain_id,
        "consensus": m.consensus,
        "height": m.height,
        "block_hash": m.block_hash.hex(),
        "state_root": m.state_root.hex(),
        "created": dt.datetime.fromtimestamp(m.created_unix, dt.UTC).isoformat(),
        "bytes": sum(f.bytes for f in m.files.values()),
    }


def list_(
    directory: Annotated[Path, typer.Argument(help="Directory holding backups.")],
    json_out: JsonOpt = False,
) -> None:
    """List the backups in a directory, newest height first (manifests only: see 'verify')."""
    if not directory.is_dir():
        raise fail(f"{directory}: not a directory")
    found = list_backups(directory)
    found.sort(key=lambda t: -(t[1].height if t[1] is not None else -1))
    if json_out:
        docs = [_summary(p, m) if m else {"path": str(p), "error": why} for p, m, why in found]
        console.print_json(json.dumps(docs))
        return
    if not found:
        console.print(f"no backups in {directory}")
    for p, m, why in found:
        if m is None:
            console.print(f"{p.name}  unreadable: {why}", markup=False)
            continue
        s = _summary(p, m)
        console.print(
            f"{p.name}  {m.chain_id}  height {m.height}  {s['created']}  "
            f"{_mib(int(str(s['bytes'])))}",
            markup=False,
        )


RESTORED_MARK = "RESTORED.json"  # in a data dir: which backup `restore --once` restored


def restore(
    path: Annotated[Path, typer.Argument(help="Backup directory or tar file.")],
    config: ConfigOpt = None,
    data_dir: LocalOpt = None,
    node: NodeOpt = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="With --config: do nothing if this backup was restored here already (the "
            "data dir's RESTORED.json names it): what a pod's init step runs on every start.",
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Write the outcome as one JSON line here.", show_default=False
        ),
    ] = None,
) -> None:
    """Restore a stopped node (or every node of a local consortium) from a verified backup."""
    if data_dir is not None and config is None:
        if once:
            raise typer.BadParameter("--once goes with --config")
        results = restore_local(data_dir, path, node)
    else:
        cfg = _node_config(config, data_dir, node)
        mark = cfg.data_dir / RESTORED_MARK
        if once and mark.exists():
            try:
                done = json.loads(mark.read_text())
            except (OSError, ValueError) as e:
                raise _reported(report, f"{mark} is unreadable ({e}): move it aside") from None
            if done.get("backup") == path.name:
                msg = f"already restored from {path.name} at height {done.get('height')}"
                _report(report, {"restored": path.name, "height": done.get("height"), "skip": True})
                console.print(f"{msg}: nothing to do", markup=False)
                return
        try:
            results = [restore_backup(path, cfg.data_dir, cfg.genesis_file)]
        except BackupError as e:
            raise _reported(report, f"restore refused: {e}") from None
        if once:
            m = results[0].manifest
            doc = {"backup": path.name, "height": m.height, "genesis": m.genesis_hash.hex()}
            tmp = mark.with_name(mark.name + ".tmp")
            tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
            os.replace(tmp, mark)
        _report(report, {"restored": path.name, "height": results[0].manifest.height})
    for r in results:
        kept = f"; older data kept in {r.moved_aside}" if r.moved_aside else ""
        console.print(
            f"restored {r.data_dir} to height {r.manifest.height} "
            f"(state root {r.manifest.state_root.hex()[:16]}, replayed from the genesis){kept}",
            markup=False,
        )


@contextmanager
def _stopped(local: Path) -> Iterator[LocalNet]:
    """The local consortium, held (its up.lock) so that no 'consortium up' starts meanwhile;
    refused if it or any of its nodes runs."""
    if not (local / "consortium.json").exists():
        raise fail(f"{local} is not a local consortium (no consortium.json)")
    net = LocalNet(local)
    with (local / "up.lock").open("ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise fail(f"{local} is in use: 'consortium up' runs on it; stop it first") from None
        why = net.busy_nodes()
        if why is not None:
            raise fail(f"{local} is in use: {why}")
        yield net


def restore_local(local: Path, backup: Path, node: str | None = None) -> list[RestoreResult]:
    """Restores `node` (default: every node) of the local consortium in `local` from `backup`,
    with the directory's existing keys and genesis. Every node's data is checked before any
    is changed, so a refusal leaves all of them as they were."""
    with _stopped(local) as net:
        nodes = [n for n in net.nodes if node is None or n.name == node]
        if not nodes:
            raise fail(f"no node {node!r} in {local}")
        cfgs = [NodeConfig.load(n.directory / "config.yaml") for n in nodes]
        try:
            return restore_many(backup, [(c.data_dir, c.genesis_file) for c in cfgs])
        except BackupError as e:
            raise fail(str(e)) from None


app.command("create")(create)
app.command("verify")(verify)
app.command("list")(list_)
app.command("restore")(restore)
