"""NodeConfig documents from a spec: the one node-config writer (operator ConfigMap, `consortium
up`'s per-node config.yaml, `consortium-node dev`). A document is `NodeConfig.to_dict()` of a
validated `NodeConfig`, so what an executor writes is exactly what `NodeConfig.from_dict`
reads back (tests/unit/provision checks the round trip).

The spec decides the consensus timings (in ticks), TLS and the public read-only port; the
executor decides where things live (`Layout`: paths and listen addresses) and who the peers
are. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConsensusConfig, NodeConfig, Peer, TlsConfig
from .spec import ConsensusSpec, ConsortiumSpec


@dataclass(frozen=True, slots=True)
class Layout:
    """Where an executor puts one node's files (paths as the node should read them: relative
    paths are relative to the config file) and on which addresses it listens."""

    data_dir: str
    key_file: str
    genesis_file: str
    listen: str
    peer_listen: str | None = None
    metrics_listen: str | None = None
    health_listen: str | None = None
    public_listen: str | None = None  # used only when the spec serves public reads
    tls_cert_file: str = "tls/node.pem"
    tls_key_file: str = "tls/node.key"
    tls_ca_file: str | None = None  # extra trust roots besides the chain's CAs
    fsync: bool = True
    log_format: str = "json"
    # a federated genesis by reference: its organisations' signature files (provision.ceremony)
    genesis_signature_files: tuple[str, ...] = ()


def consensus_config(c: ConsensusSpec) -> ConsensusConfig:
    """The node's consensus section: the spec's milliseconds, election/heartbeat in ticks."""
    return ConsensusConfig(
        tick_ms=c.tick_ms,
        block_interval_ms=c.block_interval_ms,
        empty_block_ms=c.empty_block_interval_ms,
        election_ticks=c.election_ticks,
        heartbeat_ticks=c.heartbeat_ticks,
    )


def serves_public_reads(spec: ConsortiumSpec) -> bool:
    """publicReads is a TLS option: without TLS the client port is open anyway."""
    return spec.security.tls and spec.security.public_reads


def node_config(
    spec: ConsortiumSpec,
    member: tuple[str, str],
    layout: Layout,
    peers: Sequence[Peer],
    genesis_sha256: str | None = None,
) -> NodeConfig:
    """The validated config of node `member` = (name, organisation). `genesis_sha256` (with
    the layout's signature files): the node starts only on exactly that, signed, genesis."""
    name, org = member
    cfg = NodeConfig(
        data_dir=Path(layout.data_dir),
        key_file=Path(layout.key_file),
        genesis_file=Path(layout.genesis_file),
        listen=layout.listen,
        peer_listen=layout.peer_listen,
        metrics_listen=layout.metrics_listen,
        organization=org,
        name=name,
        peers=tuple(peers),
        consensus=consensus_config(spec.consensus),
        fsync=layout.fsync,
        log_format=layout.log_format,
        tls=TlsConfig(
            Path(layout.tls_cert_file),
            Path(layout.tls_key_file),
            Path(layout.tls_ca_file) if layout.tls_ca_file else None,
        )
        if spec.security.tls
        else None,
        public_listen=layout.public_listen if serves_public_reads(spec) else None,
        health_listen=layout.health_listen,
        genesis_sha256=genesis_sha256,
        genesis_signatures=tuple(Path(p) for p in layout.genesis_signature_files),
    )
    cfg.validate()
    return cfg


def document(cfg: NodeConfig) -> dict[str, Any]:
    """The config file's content (YAML or JSON): `NodeConfig.to_dict()`."""
    return cfg.to_dict()
