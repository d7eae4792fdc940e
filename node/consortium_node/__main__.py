"""`consortium-node`: the node process.

  consortium-node run --config FILE        run a node from its config file
  consortium-node dev --data-dir DIR       a single-node (solo) chain; creates keys, genesis and
                                           config in DIR on first start
  consortium-node keygen --out FILE        write a new Ed25519 key file

Wires the pieces: config -> Node (runtime) -> gRPC ClientServer (transport) -> metrics; runs
the tick loop; stops cleanly on SIGTERM/SIGINT. Errors a user can act on are one line on
stderr with a non-zero exit code."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from .backup.export import node_exporter
from .config import ConfigError, NodeConfig
from .crypto import Ed25519Key, KeyFileError
from .ledger.errors import DecodeError, InvariantError
from .logs import configure
from .provision import genesis as provision_genesis
from .provision import local, nodeconfig
from .provision.spec import SpecError
from .runtime.service import serve
from .transport.tls import TlsError

log = logging.getLogger("consortium_node")
DEV_LISTEN = "127.0.0.1:7050"
app = typer.Typer(add_completion=False, no_args_is_help=True, help="consortium ledger node")


async def _serve_until_signal(
    cfg: NodeConfig, ready_file: Path | None, config_path: Path | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(
        cfg,
        stop,
        ready_file,
        config_path,
        lambda node: node_exporter(cfg.data_dir, cfg.genesis_file, node.state),
    )


def _run(cfg: NodeConfig, ready_file: Path | None, config_path: Path | None = None) -> None:
    try:
        asyncio.run(_serve_until_signal(cfg, ready_file, config_path))
    except (KeyFileError, DecodeError, ConfigError, TlsError) as e:
        _fail(str(e))
    except InvariantError as e:
        log.critical("stopping: %s", e)
        _fail(f"invariant broken, node stopped: {e}", code=3)
    except OSError as e:
        _fail(f"{e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "))


def _fail(msg: str, code: int = 2) -> None:
    print(f"consortium-node: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="node config file (YAML)")],
    key_file: Annotated[
        Path | None, typer.Option(help="override key_file (e.g. /keys/$(POD_NAME).json)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="override the node name")] = None,
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="override tls.cert_file (e.g. /tls/$(POD_NAME).pem)")
    ] = None,
    tls_key_file: Annotated[
        Path | None, typer.Option(help="override tls.key_file (e.g. /tls/$(POD_NAME).key)")
    ] = None,
    ready_file: Annotated[
        Path | None, typer.Option(help="write {port,pid} JSON here once serving")
    ] = None,
) -> None:
    """Run a node from its config file."""
    try:
        cfg = NodeConfig.load(config)
        if key_file is not None or name is not None or tls_cert_file or tls_key_file:
            d = cfg.to_dict()
            d["key_file"] = str(key_file or cfg.key_file)
            d["name"] = name or cfg.name
            if tls_cert_file or tls_key_file:
                if not isinstance(d["tls"], dict):
                    raise ConfigError("--tls-cert-file/--tls-key-file need a tls section")
                d["tls"]["cert_file"] = str(tls_cert_file or d["tls"]["cert_file"])
                d["tls"]["key_file"] = str(tls_key_file or d["tls"]["key_file"])
            cfg = NodeConfig.from_dict(d)
    except ConfigError as e:
        _fail(str(e))
    configure(cfg.log_format, cfg.log_level, cfg.name)
    _run(cfg, ready_file, config)


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="where keys, genesis, config and the ledger live")],
    listen: Annotated[str, typer.Option(help="client gRPC HOST:PORT (port 0 = any)")] = DEV_LISTEN,
    metrics_listen: Annotated[str | None, typer.Option(help="Prometheus HOST:PORT")] = None,
    chain_id: Annotated[str, typer.Option(help="chain id for a new chain")] = "dev-chain",
    log_format: Annotated[str, typer.Option(help="json or text")] = "text",
    no_fsync: Annotated[bool, typer.Option(help="skip LMDB fsync (unsafe, tests only)")] = False,
    ready_file: Annotated[
        Path | None, typer.Option(help="write {port,pid} JSON here once serving")
    ] = None,
) -> None:
    """Run a single-node (solo) chain; initialises DATA_DIR on first use."""
    cfg_path = data_dir / "config.yaml"
    if not cfg_path.exists():
        try:
            init_dev(data_dir, chain_id)
        except SpecError as e:
            _fail(str(e))
    try:
        cfg = NodeConfig.load(cfg_path)
    except ConfigError as e:
        _fail(str(e))
    d = cfg.to_dict()
    d.update(
        listen=listen, metrics_listen=metrics_listen, log_format=log_format, fsync=not no_fsync
    )
    cfg = NodeConfig.from_dict(d)
    configure(cfg.log_format, cfg.log_level, cfg.name)
    _run(cfg, ready_file)


def init_dev(data_dir: Path, chain_id: str) -> None:
    """Creates node, admin and client keys, a solo genesis and config.yaml in `data_dir`: the
    provisioning core's one-organisation solo spec (provision.local.dev_spec: the client key
    starts with 1,000,000,000 units of asset `coin`), its genesis builder (time: now, whole
    seconds) and its node-config writer. Raises SpecError for an invalid chain id."""
    keys = {name: Ed25519Key.generate() for name in ("node", "admin", "client")}
    spec = local.dev_spec(chain_id, keys["client"].public)
    genesis = provision_genesis.build(
        spec,
        lambda _org, _i: local.DEV_NODE,
        provision_genesis.GenesisKeys({local.DEV_NODE: keys["node"].public}, keys["admin"].public),
        provision_genesis.creation_time_ms(time.time()),
    )
    layout = nodeconfig.Layout(
        data_dir="ledger", key_file="keys/node.json", genesis_file="genesis.json", listen=DEV_LISTEN
    )
    cfg = nodeconfig.node_config(spec, (local.DEV_NODE, local.DEV_ORG), layout, ())
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, k in keys.items():
        k.save(data_dir / "keys" / f"{name}.json")
    (data_dir / "genesis.json").write_bytes(genesis.canonical())
    (data_dir / "config.yaml").write_text(yaml.safe_dump(nodeconfig.document(cfg), sort_keys=False))


@app.command()
def keygen(out: Annotated[Path, typer.Option(help="key file to create")]) -> None:
    """Write a new Ed25519 key file (mode 0600) and print its public key."""
    key = Ed25519Key.generate()
    try:
        key.save(out)
    except FileExistsError:
        _fail(f"{out} exists; refusing to overwrite a key")
    print(key.public.hex())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
