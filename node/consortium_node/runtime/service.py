"""Runs one node: the Node, its client and peer gRPC servers, metrics, the tick loop and block
sync, all in one asyncio event loop, until `stop` is set (SIGTERM/SIGINT in __main__).

Called by __main__ (`consortium-node run|dev`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge, start_http_server

from ..config import ConfigError, NodeConfig
from ..crypto import Ed25519Key, verify
from ..ledger.errors import DecodeError, TxRejected
from ..provision.ceremony import CeremonyError
from ..provision.ceremony import verify as verify_genesis
from ..transport import codec
from ..transport.peers import PeerHub, PeerServer
from ..transport.server import BackupExports, ClientServer, Exporter
from ..transport.tls import CertStore
from .node import Node, load_genesis
from .repair import repair_block_store

log = logging.getLogger("consortium_node")


PEER_RELOAD_S = 5.0
CERT_RELOAD_S = 5.0
OBSERVER_POLL_S = 0.5


def check_genesis_reference(cfg: NodeConfig) -> None:
    """A federated node's genesis by reference: the file must hash to `genesis_sha256` and,
    with signature files, carry every organisation's signature (provision.ceremony.verify).
    Raises ConfigError (one line; the node exits before it opens or writes any state)."""
    if cfg.genesis_sha256 is None:
        return
    try:
        data = cfg.genesis_file.read_bytes()
        sigs = [p.read_bytes() for p in cfg.genesis_signatures]
    except OSError as e:
        raise ConfigError(f"genesis refused: cannot read {e.filename}: {e.strerror}") from None
    try:
        if cfg.genesis_signatures:
            verify_genesis(data, sigs, cfg.genesis_sha256)
        elif hashlib.sha256(data).hexdigest() != cfg.genesis_sha256:
            raise CeremonyError(
                f"genesis sha256 is {hashlib.sha256(data).hexdigest()}, the configuration "
                f"expects {cfg.genesis_sha256}"
            )
    except CeremonyError as e:
        raise ConfigError(f"genesis refused: {e}") from None


async def serve(  # noqa: C901 -- the process wiring, in start-up order
    cfg: NodeConfig,
    stop: asyncio.Event,
    ready_file: Path | None = None,
    config_path: Path | None = None,
    exporter: Callable[[Node], Exporter] | None = None,
) -> None:
    """`config_path`: re-read every few seconds for peer list changes (the operator updates
    the mounted ConfigMap when membership changes; no restart needed). `exporter`: serves
    ExportBackup for the node it is given (a tar made in <data_dir>/exports, one at a time)."""
    key = Ed25519Key.load(cfg.key_file)
    check_genesis_reference(cfg)  # before anything is opened or written
    genesis = load_genesis(cfg.genesis_file)
    node = Node(cfg, key, genesis, codec.decode_tx)
    tls: CertStore | None = None
    cert_expiry: Gauge | None = None
    if cfg.tls is not None:
        extra = cfg.tls.ca_file.read_bytes() if cfg.tls.ca_file else b""
        # trust roots: every organisation on chain (genesis + AddOrganization), kept current
        tls = CertStore(cfg.tls.cert_file, cfg.tls.key_file, node.organizations, extra)
        cert_expiry = Gauge(
            "consortium_cert_expiry_timestamp_seconds",
            "Expiry (notAfter, unix seconds) of each certificate the node uses",
            ["cert"],
            registry=node.metrics.registry,
        )
        _export_expiry(tls, cert_expiry)
    else:
        log.warning("TLS is off: every gRPC port is plaintext and unauthenticated (dev only)")
    exports = None if exporter is None else BackupExports(exporter(node), cfg.data_dir / "exports")
    server = ClientServer(node, cfg.listen, tls, cfg.public_listen, cfg.health_listen, exports)
    hub: PeerHub | None = None
    peer_server: PeerServer | None = None
    if genesis.consensus != "solo":
        if cfg.peer_listen is None:
            raise DecodeError(f"{genesis.consensus} consensus needs peer_listen in the config")
        hub = PeerHub(
            node.node_id,
            genesis.chain_id,
            genesis.hash,
            node.sign,
            verify,
            {p.node_id: p.address for p in cfg.peers},
            node,
            tls=tls,
        )
        peer_server = PeerServer(hub, node, cfg.peer_listen, tls)
        if node.repair_from is not None and not await repair_block_store(node, hub, stop):
            await hub.stop()  # told to stop before the block store was whole
            node.close()
            return
        node.network = hub
        node.peer_links = hub.link_states  # GetStatus.peers
        await peer_server.start()
        hub.start()
    await server.start()
    if cfg.metrics_listen:
        host, _, port = cfg.metrics_listen.rpartition(":")
        start_http_server(int(port), host, registry=node.metrics.registry)
    log.info(
        "node serving",
        extra={
            "fields": {
                "chain": genesis.chain_id,
                "node": cfg.name,
                "node_id": node.node_id.hex(),
                "listen": cfg.listen,
                "port": server.port,
                "tls": tls is not None,
                "peer_port": peer_server.port if peer_server else None,
                "height": node.height,
                "consensus": genesis.consensus,
            }
        },
    )
    if ready_file is not None:
        info: dict[str, object] = {
            "port": server.port,
            "pid": os.getpid(),
            "node_id": node.node_id.hex(),
            "tls": tls is not None,
        }
        if peer_server is not None:
            info["peer_port"] = peer_server.port
        if server.public_port is not None:
            info["public_port"] = server.public_port
        if server.health_port is not None:
            info["health_port"] = server.health_port
        # atomically: a watcher polling for the file must never read half of it
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(ready_file)
    sync_task: asyncio.Task[None] | None = None
    tick = cfg.consensus.tick_ms / 1000
    next_reload = time.monotonic() + PEER_RELOAD_S
    next_cert = time.monotonic() + CERT_RELOAD_S
    orgs_seen = node.orgs_version
    next_observe, observe_turn = 0.0, 0
    try:
        node.process_ready()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            node.tick()
            if hub is not None:
                node.metrics.peers_connected.set(len(hub.connected()))
            if hub is not None and config_path is not None and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + PEER_RELOAD_S
                _reload_peers(hub, config_path)
            if tls is not None and node.orgs_version != orgs_seen:
                orgs_seen = node.orgs_version  # an organisation was admitted on chain
                if tls.set_cas(node.organizations):
                    if hub is not None:
                        hub.refresh_credentials()
                    if cert_expiry is not None:
                        _export_expiry(tls, cert_expiry)
            if tls is not None and time.monotonic() >= next_cert:
                next_cert = time.monotonic() + CERT_RELOAD_S
                if tls.poll():  # servers pick it up at the next handshake by themselves
                    if hub is not None:
                        hub.refresh_credentials()
                    if cert_expiry is not None:
                        _export_expiry(tls, cert_expiry)
            idle = sync_task is None or sync_task.done()
            if hub is not None and node.sync_requests and idle:
                req = node.sync_requests.pop(0)
                node.sync_requests.clear()
                sync_task = asyncio.create_task(_sync(node, hub, req.peer, req.from_height))
            elif hub is not None and idle and time.monotonic() >= next_observe:
                # A node outside the validator set (or one removed from it above its own
                # height: stalled) gets no consensus traffic: it follows the chain by polling
                # a connected peer for committed blocks.
                next_observe = time.monotonic() + OBSERVER_POLL_S
                peers = hub.connected()
                if peers and node.wants_blocks():
                    peer = peers[observe_turn % len(peers)]
                    observe_turn += 1
                    sync_task = asyncio.create_task(_sync(node, hub, peer, node.height + 1))
    finally:
        log.info("node stopping", extra={"fields": {"height": node.height}})
        if sync_task is not None:
            sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sync_task
        await server.stop(0.5)
        if hub is not None and peer_server is not None:
            await hub.stop()
            await peer_server.stop(0.2)
        node.close()


def _export_expiry(tls: CertStore, gauge: Gauge) -> None:
    gauge.labels(cert="node").set(tls.material.not_after.timestamp())
    for org, when in tls.ca_expiry().items():
        gauge.labels(cert=f"ca/{org}").set(when.timestamp())


def _reload_peers(hub: PeerHub, config_path: Path) -> None:
    try:
        fresh = NodeConfig.load(config_path)
    except ConfigError as e:
        log.warning("config reload failed; keeping peers", extra={"fields": {"error": str(e)}})
        return
    peers = {p.node_id: p.address for p in fresh.peers}
    current = {pid: link.address for pid, link in hub.links.items()}
    peers.pop(hub.node_id, None)
    if peers != current:
        log.info("peer list changed", extra={"fields": {"peers": len(peers)}})
        hub.update_peers(peers)


SNAPSHOT_NEXT_BLOCK_TRIES = 40  # x 0.25 s: wait for the block that certifies the snapshot


async def _maybe_snapshot(node: Node, hub: PeerHub, peer: bytes) -> None:
    """Far behind `peer` (more than snapshot_sync_blocks): install its state snapshot instead
    of replaying every block, then continue with block sync from there."""
    # the peer streams entries only if it is more than snapshot_sync_blocks ahead (the usual
    # case, a node a few blocks behind, costs the peer a header); aclosing ends its stream
    want = node.height + node.cfg.snapshot_sync_blocks + 1
    async with contextlib.aclosing(hub.fetch_state(peer, want)) as chunks:
        header = await anext(chunks, None)
        if header is None or header.height < want:
            return
        entries: list[tuple[bytes, bytes]] = []
        async for chunk in chunks:
            entries.extend(zip(chunk.keys, chunk.values, strict=True))
            if chunk.last:
                break
    for _ in range(SNAPSHOT_NEXT_BLOCK_TRIES):
        nxt = None
        async with contextlib.aclosing(hub.fetch_blocks(peer, header.height + 1)) as blocks:
            async for block in blocks:
                nxt = block
                break
        if nxt is not None and nxt.height == header.height + 1:
            node.install_snapshot(header.height, header.block_hash, header.lthash, entries, nxt)
            node.process_ready()
            return
        await asyncio.sleep(0.25)
    log.warning("state snapshot not installed: the certifying block never arrived")


async def _sync(node: Node, hub: PeerHub, peer: bytes, from_height: int) -> None:
    """Fetches committed blocks from `peer` batch by batch, verifying each certificate."""
    node.syncing = True
    try:
        if node.cfg.snapshot_sync_blocks > 0:
            await _maybe_snapshot(node, hub, peer)
        h = max(from_height, node.height + 1)
        while True:
            got = 0
            async with contextlib.aclosing(hub.fetch_blocks(peer, h)) as blocks:
                async for block in blocks:  # a refused block closes the peer's stream at once
                    node.apply_synced(block)
                    node.process_ready()
                    got += 1
            if got == 0:
                return
            h = node.height + 1
    except TxRejected as e:
        log.warning(
            "block sync refused a block",
            extra={"fields": {"peer": peer.hex()[:16], "reason": e.message}},
        )
    except Exception as e:  # a peer failure must not kill the node; the engine will ask again
        log.warning(
            "block sync failed", extra={"fields": {"peer": peer.hex()[:16], "error": repr(e)[:300]}}
        )
    finally:
        node.syncing = False
