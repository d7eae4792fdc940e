"""Node configuration: a YAML/JSON file (`consortium-node run --config FILE`) parsed into a typed,
validated `NodeConfig`. Written by `consortium-node dev`, `consortium up` and the operator's
rendered ConfigMap; read by __main__ and runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Peer:
    node_id: bytes
    address: str  # host:port of the peer's gRPC endpoint


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    tick_ms: int = 10
    block_interval_ms: int = 50  # cut a non-full block this long after the last began
    empty_block_ms: int = 2000  # commit an empty block after this long idle (0 = never)
    election_ticks: int = 50  # raft election timeout / bft base round timeout, in ticks
    heartbeat_ticks: int = 5


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The node's TLS certificate (chain) and key, PEM files re-read when they change. Trust
    roots are the genesis organisations' CA certificates, plus `ca_file` if given."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    data_dir: Path
    key_file: Path
    genesis_file: Path
    listen: str = "127.0.0.1:7050"
    peer_listen: str | None = None  # consensus peer gRPC (raft/bft); None in solo mode
    metrics_listen: str | None = None
    organization: str = ""
    name: str = "node"
    peers: tuple[Peer, ...] = ()
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    mempool_size: int = 100_000
    snapshot_sync_blocks: int = 1000  # this far behind a peer, install its state (0 = never)
    fsync: bool = True
    log_format: str = "json"
    log_level: str = "INFO"
    # TLS on every gRPC port (peer: mutual; client: a member organisation's certificate is
    # required). None = plaintext, only for `consortium-node dev` and tests (`tls: false`).
    tls: TlsConfig | None = None
    public_listen: str | None = None  # opt-in read-only client API without client certificate
    health_listen: str | None = None  # plaintext grpc.health.v1 only (kubelet probes)
    # a federated chain's genesis by reference (provision/ceremony.py): the node starts only
    # when the genesis file hashes to this (hex sha256) and, with signature files, every
    # organisation of the genesis signed exactly that hash with one of its own admin keys
    genesis_sha256: str | None = None
    genesis_signatures: tuple[Path, ...] = ()

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a mapping")
        return cls.from_dict(raw, base=path.parent)

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path = Path()) -> NodeConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        try:
            cons = d.get("consensus") or {}
            if not isinstance(cons, dict):
                raise ConfigError("invalid config value: consensus must be a mapping")
            peers = d.get("peers") or []
            if not isinstance(peers, list):
                raise ConfigError("invalid config value: peers must be a list")
            fsync = d.get("fsync", True)
            if not isinstance(fsync, bool):
                raise ConfigError(f"fsync must be true or false, got {fsync!r}")
            for k in ("peer_listen", "metrics_listen", "public_listen", "health_listen"):
                if d.get(k) is not None and not isinstance(d[k], str):
                    raise ConfigError(f"{k} must be a HOST:PORT string")
            cknown = set(ConsensusConfig.__dataclass_fields__)
            if set(cons) - cknown:
                raise ConfigError(
                    f"unknown consensus keys: {', '.join(sorted(set(cons) - cknown))}"
                )
            cfg = cls(
                data_dir=base / str(d["data_dir"]),
                key_file=base / str(d["key_file"]),
                genesis_file=base / str(d["genesis_file"]),
                listen=str(d.get("listen", "127.0.0.1:7050")),
                peer_listen=d.get("peer_listen"),
                metrics_listen=d.get("metrics_listen"),
                organization=str(d.get("organization", "")),
                name=str(d.get("name", "node")),
                peers=tuple(Peer(bytes.fromhex(p["node_id"]), str(p["address"])) for p in peers),
                consensus=ConsensusConfig(**{k: int(v) for k, v in cons.items()}),
                mempool_size=int(d.get("mempool_size", 100_000)),
                snapshot_sync_blocks=int(d.get("snapshot_sync_blocks", 1000)),
                fsync=fsync,
                log_format=str(d.get("log_format", "json")),
                log_level=str(d.get("log_level", "INFO")).upper(),
                tls=_tls(d.get("tls", False), base),
                public_listen=d.get("public_listen"),
                health_listen=d.get("health_listen"),
                genesis_sha256=_sha256(d.get("genesis_sha256")),
                genesis_signatures=_paths(d.get("genesis_signatures"), base),
            )
        except KeyError as e:
            raise ConfigError(f"config lacks required key {e.args[0]!r}") from e
        except (TypeError, ValueError, AttributeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"invalid config value: {e}") from e
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for key, addr in (
            ("listen", self.listen),
            ("peer_listen", self.peer_listen),
            ("metrics_listen", self.metrics_listen),
            ("public_listen", self.public_listen),
            ("health_listen", self.health_listen),
            *(("peers", p.address) for p in self.peers),
        ):
            if addr is not None and not _is_hostport(addr):
                raise ConfigError(f"{key} address {addr!r} must be HOST:PORT")
        if self.consensus.tick_ms <= 0 or self.consensus.block_interval_ms <= 0:
            raise ConfigError("consensus.tick_ms and block_interval_ms must be positive")
        if self.mempool_size <= 0:
            raise ConfigError("mempool_size must be positive")
        if any(len(p.node_id) != 32 for p in self.peers):
            raise ConfigError("peers: node_id must be a 32-byte key in hex")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"log_level {self.log_level!r} is not a logging level")
        if self.log_format not in ("json", "text"):
            raise ConfigError("log_format must be json or text")
        if self.public_listen is not None and self.tls is None:
            raise ConfigError("public_listen is a TLS-only option (without tls, listen is open)")
        if self.genesis_signatures and self.genesis_sha256 is None:
            raise ConfigError("genesis_signatures need genesis_sha256 (the hash they sign)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "key_file": str(self.key_file),
            "genesis_file": str(self.genesis_file),
            "listen": self.listen,
            "peer_listen": self.peer_listen,
            "metrics_listen": self.metrics_listen,
            "organization": self.organization,
            "name": self.name,
            "peers": [{"node_id": p.node_id.hex(), "address": p.address} for p in self.peers],
            "consensus": {
                k: getattr(self.consensus, k) for k in ConsensusConfig.__dataclass_fields__
            },
            "mempool_size": self.mempool_size,
            "snapshot_sync_blocks": self.snapshot_sync_blocks,
            "fsync": self.fsync,
            "log_format": self.log_format,
            "log_level": self.log_level,
            "tls": False
            if self.tls is None
            else {
                "cert_file": str(self.tls.cert_file),
                "key_file": str(self.tls.key_file),
                **({"ca_file": str(self.tls.ca_file)} if self.tls.ca_file else {}),
            },
            "public_listen": self.public_listen,
            "health_listen": self.health_listen,
            **(
                {
                    "genesis_sha256": self.genesis_sha256,
                    "genesis_signatures": [str(p) for p in self.genesis_signatures],
                }
                if self.genesis_sha256 is not None
                else {}
            ),
        }


def _tls(raw: Any, base: Path) -> TlsConfig | None:
    """`tls: false` (plaintext) or {cert_file, key_file[, ca_file]} (paths relative to the
    config file). `tls: true` is not enough: TLS needs to know its files."""
    if raw is False or raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("tls must be false or a mapping {cert_file, key_file, ca_file}")
    unknown = set(raw) - {"cert_file", "key_file", "ca_file"}
    if unknown:
        raise ConfigError(f"unknown tls keys: {', '.join(sorted(unknown))}")
    for k in ("cert_file", "key_file"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise ConfigError(f"tls.{k} must be a file path")
    ca = raw.get("ca_file")
    if ca is not None and not isinstance(ca, str):
        raise ConfigError("tls.ca_file must be a file path")
    return TlsConfig(
        base / raw["cert_file"], base / raw["key_file"], None if ca is None else base / ca
    )


def _sha256(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ConfigError("genesis_sha256 must be 64 lower-case hex characters")
    return raw


def _paths(raw: Any, base: Path) -> tuple[Path, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError("genesis_signatures must be a list of file paths")
    return tuple(base / p for p in raw)


def _is_hostport(addr: str) -> bool:
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit() and 0 <= int(port) < 65536)
