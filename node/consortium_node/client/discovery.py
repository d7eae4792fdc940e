"""Where the node is and which TLS material to use, found without flags.

- `ClientTLS`: the CA bundle (every organisation's CA) and this user's client certificate and
  key, from a TLS directory (`ca.pem`, `client.pem`, `client.key`). Found without flags: the
  data dir's `tls/` (local consortium), else $CONSORTIUM_TLS_DIR (`consortium --tls-dir`),
  else the current context's `tls_dir`, else ~/.consortium/tls when it exists; none of these:
  plaintext (a dev node).
- `Context` (kubeconfig-style, for clusters): ~/.consortium/contexts.yaml (or
  $CONSORTIUM_CONTEXTS) holds `current: NAME` and `contexts: {NAME: {endpoint, tls_dir, key}}`
  (paths relative to the file); `consortium --context NAME` or $CONSORTIUM_CONTEXT picks one.
  Explicit flags and the other variables win over the context.
- `DataDir`: `DIR/endpoints.json` as written by `consortium up`.

Pure file reading (no network); `client.rpc.connect` combines it with a `Client`. Used by the
CLI, the operator (`ClientTLS`), `consortium up`, tests and benchmarks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from .errors import ClientError, one_line

DEFAULT_TLS_DIR = Path("~/.consortium/tls")
DEFAULT_CONTEXTS = Path("~/.consortium/contexts.yaml")


@dataclass(frozen=True, slots=True)
class Context:
    """One entry of the contexts file: where a cluster consortium is and how to talk to it."""

    name: str
    endpoint: str | None = None
    tls_dir: Path | None = None
    key: Path | None = None

    @classmethod
    def current(cls) -> Context | None:
        """The selected context ($CONSORTIUM_CONTEXT, else the file's `current`), or None
        when there is no contexts file. A named context that does not exist is an error."""
        import yaml

        path = Path(os.environ.get("CONSORTIUM_CONTEXTS") or DEFAULT_CONTEXTS).expanduser()
        wanted = os.environ.get("CONSORTIUM_CONTEXT")
        if not path.exists():
            if wanted:
                raise ClientError(f"context {wanted!r}: {path} does not exist")
            return None
        try:
            doc = yaml.safe_load(path.read_text()) or {}
            name = wanted or doc.get("current")
            if not name:
                return None
            entry = (doc.get("contexts") or {})[name]
        except KeyError:
            raise ClientError(f"no context {wanted or name!r} in {path}") from None
        except (OSError, yaml.YAMLError, AttributeError, TypeError) as e:
            raise ClientError(f"cannot read contexts file {path}: {one_line(str(e))}") from None

        def rel(v: object) -> Path | None:
            return None if not v else (path.parent / str(v)).expanduser()

        return cls(
            str(name),
            str(entry["endpoint"]) if entry.get("endpoint") else None,
            rel(entry.get("tls_dir")),
            rel(entry.get("key")),
        )


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """TLS material of a client: trusted CAs, and our certificate + key (needed to write).
    `server_name` overrides the name checked against the node's certificate."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> ClientTLS:
        d = Path(directory)
        try:
            ca = (d / "ca.pem").read_bytes()
        except OSError as e:
            raise ClientError(f"TLS directory {d}: cannot read ca.pem ({e.strerror})") from None
        cert, key = d / "client.pem", d / "client.key"
        if cert.exists() != key.exists():
            raise ClientError(f"TLS directory {d}: client.pem and client.key go together")
        try:
            return cls(
                ca,
                cert.read_bytes() if cert.exists() else None,
                key.read_bytes() if key.exists() else None,
            )
        except OSError as e:
            raise ClientError(f"TLS directory {d}: {e.strerror}: {e.filename}") from None

    @classmethod
    def discover(cls, data_dir: str | os.PathLike[str] | None = None) -> ClientTLS | None:
        """The TLS material to use without explicit flags (see the module docstring)."""
        if data_dir is not None:
            return DataDir.load(data_dir).tls
        env = os.environ.get("CONSORTIUM_TLS_DIR")
        if env:
            return cls.from_dir(env)
        ctx = Context.current()
        if ctx is not None and ctx.tls_dir is not None:
            return cls.from_dir(ctx.tls_dir)
        home = DEFAULT_TLS_DIR.expanduser()
        return cls.from_dir(home) if (home / "ca.pem").exists() else None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str
    organization: str
    endpoint: str
    pid: int | None
    node_id: str


@dataclass(frozen=True, slots=True)
class DataDir:
    """`DIR/endpoints.json` as written by `consortium up`."""

    path: Path
    chain_id: str
    consensus: str
    nodes: tuple[NodeEntry, ...]
    client_key: Path | None
    tls: ClientTLS | None = None
    admin_key: Path | None = None

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DataDir:
        d = Path(directory)
        f = d / "endpoints.json"
        try:
            data = json.loads(f.read_text())
        except FileNotFoundError:
            raise ClientError(
                f"{f} not found (is 'consortium up --data-dir {d}' running?)"
            ) from None
        except (OSError, ValueError) as e:
            raise ClientError(f"cannot read {f}: {one_line(str(e))}") from None
        try:
            nodes = tuple(
                NodeEntry(
                    name=str(n["name"]),
                    organization=str(n.get("organization", "")),
                    endpoint=str(n["endpoint"]),
                    pid=int(n["pid"]) if n.get("pid") is not None else None,
                    node_id=str(n.get("node_id", "")),
                )
                for n in data["nodes"]
            )
            key = data.get("client_key")
            tls_dir = data.get("tls_dir")
            tls = ClientTLS.from_dir(d / tls_dir) if tls_dir else None
            return cls(
                path=d,
                chain_id=str(data.get("chain_id", "")),
                consensus=str(data.get("consensus", "")),
                nodes=nodes,
                client_key=(d / key) if key else None,
                tls=tls,
                admin_key=(d / data["admin_key"]) if data.get("admin_key") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ClientError(f"{f} is malformed ({one_line(repr(e))})") from None

    def node(self, name: str) -> NodeEntry:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise ClientError(f"no node named {name!r} in {self.path / 'endpoints.json'} ({known})")
