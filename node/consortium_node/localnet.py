"""A whole consortium as local processes, no cluster: `consortium up`.

The manifest is validated by the operator's own `ConsortiumSpec` (consortium_operator.model, pure),
so a file `consortium up` accepts is one the operator accepts, with the same defaults.

Turns a Consortium manifest (the same YAML the operator takes) into per-node keys, a genesis,
per-node configs and running `consortium-node run` processes on 127.0.0.1; writes
DIR/endpoints.json for scripts and the `consortium --data-dir` client commands. Keys and
genesis are created once: re-running `up` on the same DIR restarts the same chain.

TLS by default: one CA per organisation (DIR/ca/<org>/, the CA key mode 0600), a node
certificate per node (nodes/<n>/tls/), and a client certificate of the first organisation for
the generated client key (DIR/tls/: ca.pem = every organisation's CA, client.pem, client.key),
which `consortium --data-dir DIR` finds through endpoints.json. The genesis lists each
organisation's CA; the chain is permissioned (the client key is vouched for by the first
organisation, the admin key is an admin) unless the manifest asks for open membership.

Called by the CLI (`consortium up`, `consortium demo`) and by integration tests."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import pki
from .client import Client, ClientTLS, Payload
from .crypto import Ed25519Key
from .ledger.genesis import Account, Genesis, Organization
from .ledger.state import Validator

START_TIMEOUT = 60.0

# The 4-validator BFT consortium `consortium demo` (and `up` without -f) runs: two
# organisations that don't fully trust each other, two validators each (f = 1).
DEFAULT_MANIFEST: dict[str, Any] = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "demo"},
    "spec": {
        "chainId": "demo-chain",
        "consensus": {"type": "bft", "blockIntervalMs": 5, "tickMs": 5},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
    },
}
CLIENT_FUNDS = 1_000_000_000  # units of `coin` genesis gives the generated client key


class ManifestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class OrgPlan:
    name: str
    validators: int


@dataclass(frozen=True, slots=True)
class NetPlan:
    name: str
    chain_id: str
    consensus: str
    organizations: tuple[OrgPlan, ...]
    accounts: tuple[tuple[str, str, int], ...]  # (asset, "client" | hex account, amount)
    kv: tuple[tuple[str, str], ...]
    params: dict[str, int]
    admins: tuple[str, ...]
    node_consensus: dict[str, int]  # the node config's `consensus` section (ticks)
    tls: bool = True
    permissioned: bool = True
    members: tuple[tuple[str, str], ...] = ()  # (organisation, hex sender key) from the spec

    @property
    def node_names(self) -> list[tuple[str, str]]:
        return [(f"{o.name}-{i}", o.name) for o in self.organizations for i in range(o.validators)]


def parse_manifest(doc: dict[str, Any]) -> NetPlan:
    """Validates a Consortium manifest exactly as the operator does (its `ConsortiumSpec`,
    which mirrors the CRD's rules and defaults) and keeps what local processes need."""
    from consortium_operator.model import ConsortiumSpec, SpecError

    if doc.get("kind") != "Consortium":
        raise ManifestError(f"expected kind Consortium, got {doc.get('kind')!r}")
    name = str((doc.get("metadata") or {}).get("name", "consortium"))
    try:
        spec = ConsortiumSpec.parse(doc.get("spec") or {})
    except SpecError as e:
        raise ManifestError(str(e)) from None
    c = spec.consensus
    return NetPlan(
        name=name,
        chain_id=spec.chain_id,
        consensus=c.type,
        organizations=tuple(OrgPlan(o.name, o.validators) for o in spec.organizations),
        accounts=(
            ("coin", "client", CLIENT_FUNDS),
            *((a.asset, a.account, a.amount) for a in spec.genesis.accounts),
        ),
        kv=tuple((e.key, e.value) for e in spec.genesis.kv),
        params={"max_block_txs": c.max_block_txs, "max_tx_bytes": spec.genesis.max_tx_bytes},
        admins=spec.genesis.admins,
        tls=spec.security.tls,
        permissioned=spec.genesis.membership == "permissioned",
        members=tuple((m.organization, m.key) for m in spec.genesis.members),
        node_consensus={
            "tick_ms": c.tick_ms,
            "block_interval_ms": c.block_interval_ms,
            "empty_block_ms": c.empty_block_interval_ms,
            "election_ticks": c.election_ticks,
            "heartbeat_ticks": c.heartbeat_ticks,
        },
    )


def load_manifest(path: Path) -> NetPlan:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ManifestError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ManifestError(f"{path} must hold one Consortium object")
    return parse_manifest(doc)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_atomic(path: Path, data: bytes, secret: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if secret:
        _write_secret(tmp, data)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
    tmp.rename(path)


def load_ca(data_dir: Path, org: str) -> pki.Issued:
    d = data_dir / "ca" / org
    return pki.Issued((d / "ca.pem").read_bytes(), (d / "ca.key").read_bytes())


def issue_node_tls(
    data_dir: Path, node_dir: Path, org: str, name: str, node_id: bytes, days: int = pki.LEAF_DAYS
) -> None:
    """(Re)issues a node's TLS certificate from its organisation's CA into node_dir/tls/ (key
    first, then the certificate, each replaced atomically: a running node reloads the pair)."""
    now = _now()
    issued = pki.issue_node_cert(
        load_ca(data_dir, org),
        org,
        name,
        node_id,
        now,
        pki.new_private_key(),
        x509_serial(),
        days=days,
    )
    _write_atomic(node_dir / "tls" / "node.key", issued.key_pem, secret=True)
    _write_atomic(node_dir / "tls" / "node.pem", issued.cert_pem)


def issue_client_tls(
    data_dir: Path, out_dir: Path, org: str, name: str, sender: bytes | None, days: int = 365
) -> None:
    issued = pki.issue_client_cert(
        load_ca(data_dir, org),
        org,
        name,
        _now(),
        pki.new_private_key(),
        x509_serial(),
        sender,
        days,
    )
    _write_atomic(out_dir / "client.key", issued.key_pem, secret=True)
    _write_atomic(out_dir / "client.pem", issued.cert_pem)


def x509_serial() -> int:
    return int.from_bytes(os.urandom(16), "big") >> 1


def new_org_ca(data_dir: Path, org: str) -> bytes:
    """The CA of organisation `org` in DIR/ca/<org>/ (created once; its key 0600), also in the
    clients' trust bundle DIR/tls/ca.pem. Returns the CA certificate PEM."""
    d = data_dir / "ca" / org
    if (d / "ca.pem").exists():
        return (d / "ca.pem").read_bytes()
    ca = pki.new_ca(org, _now(), pki.new_private_key(), x509_serial())
    _write_secret(d / "ca.key", ca.key_pem)
    (d / "ca.pem").write_bytes(ca.cert_pem)
    bundle = data_dir / "tls" / "ca.pem"
    old = bundle.read_bytes() if bundle.exists() else b""
    _write_atomic(bundle, old + ca.cert_pem)
    return ca.cert_pem


def _init_pki(plan: NetPlan, data_dir: Path) -> dict[str, bytes]:
    """One CA per organisation; returns organisation -> CA certificate PEM."""
    cas = {}
    for o in plan.organizations:
        ca = pki.new_ca(o.name, _now(), pki.new_private_key(), x509_serial())
        _write_secret(data_dir / "ca" / o.name / "ca.key", ca.key_pem)
        (data_dir / "ca" / o.name / "ca.pem").write_bytes(ca.cert_pem)
        cas[o.name] = ca.cert_pem
    (data_dir / "tls").mkdir(parents=True, exist_ok=True)
    (data_dir / "tls" / "ca.pem").write_bytes(b"".join(cas.values()))
    return cas


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def init_data_dir(
    plan: NetPlan, data_dir: Path, fsync: bool = True, org_governance: bool = False
) -> None:
    """Creates keys, genesis and node configs once; an initialised DIR is left as it is.
    `org_governance`: each organisation gets its own admin key (DIR/keys/admin-<org>.json,
    genesis organizations[].admins) and there is no consortium-wide admin: every change
    passes its policy counted by organisation (`consortium gov`)."""
    if (data_dir / "genesis.json").exists():
        return
    if org_governance and plan.admins:
        raise ManifestError("spec.genesis.admins are single-admin governance: drop them")
    data_dir.mkdir(parents=True, exist_ok=True)
    names = plan.node_names
    keys = {n: Ed25519Key.generate() for n, _ in names}
    for n, k in keys.items():
        k.save(data_dir / "nodes" / n / "key.json")
    admin, client = Ed25519Key.generate(), Ed25519Key.generate()
    if not org_governance:
        admin.save(data_dir / "keys" / "admin.json")
    client.save(data_dir / "keys" / "client.json")
    org_admins: dict[str, tuple[bytes, ...]] = {}
    for o in plan.organizations if org_governance else ():
        org_admin = Ed25519Key.generate()
        org_admin.save(data_dir / "keys" / f"admin-{o.name}.json")
        org_admins[o.name] = (org_admin.public,)
    accounts = tuple(
        Account(asset, client.public if acct == "client" else bytes.fromhex(acct), amount)
        for asset, acct, amount in plan.accounts
    )
    cas = _init_pki(plan, data_dir) if plan.tls else {}
    first = plan.organizations[0].name
    members: dict[str, list[bytes]] = {o.name: [] for o in plan.organizations}
    members[first].append(client.public)
    for org, key in plan.members:
        if bytes.fromhex(key) != client.public:
            members[org].append(bytes.fromhex(key))
    genesis = Genesis(
        chain_id=plan.chain_id,
        time_ms=int(time.time() * 1000),
        validators=tuple(Validator(keys[n].public, org) for n, org in names),
        admins=() if org_governance else (admin.public, *(bytes.fromhex(a) for a in plan.admins)),
        accounts=accounts,
        kv=tuple((k.encode(), v.encode()) for k, v in plan.kv),
        params=plan.params,
        consensus=plan.consensus,
        organizations=tuple(
            Organization(
                o.name, cas.get(o.name, b""), tuple(members[o.name]), org_admins.get(o.name, ())
            )
            for o in plan.organizations
        ),
        permissioned=plan.permissioned,
    )
    genesis.validate()
    if plan.tls:
        issue_client_tls(data_dir, data_dir / "tls", first, "client", client.public)
        for n, org in names:
            issue_node_tls(data_dir, data_dir / "nodes" / n, org, n, keys[n].public)
    (data_dir / "genesis.json").write_bytes(genesis.canonical())
    ports = _free_ports(3 * len(names))
    for i, (n, org) in enumerate(names):
        client_port, peer_port, metrics_port = ports[3 * i : 3 * i + 3]
        cfg = {
            "name": n,
            "organization": org,
            "data_dir": "ledger",
            "key_file": "key.json",
            "genesis_file": "../../genesis.json",
            "listen": f"127.0.0.1:{client_port}",
            "peer_listen": f"127.0.0.1:{peer_port}",
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "fsync": fsync,
            "log_format": "json",
            "consensus": dict(plan.node_consensus),
            "peers": [],
            "tls": {"cert_file": "tls/node.pem", "key_file": "tls/node.key"} if plan.tls else False,
        }
        (data_dir / "nodes" / n / "config.yaml").write_text(yaml.safe_dump(cfg))
    for n, _ in names:
        path = data_dir / "nodes" / n / "config.yaml"
        cfg = yaml.safe_load(path.read_text())
        cfg["peers"] = [
            {
                "node_id": keys[m].public.hex(),
                "address": yaml.safe_load((data_dir / "nodes" / m / "config.yaml").read_text())[
                    "peer_listen"
                ],
            }
            for m, _ in names
            if m != n
        ]
        path.write_text(yaml.safe_dump(cfg))
    (data_dir / "consortium.json").write_text(
        json.dumps(
            {
                "name": plan.name,
                "chain_id": plan.chain_id,
                "consensus": plan.consensus,
                "tls": plan.tls,
            }
        )
    )


@dataclass
class LocalNode:
    name: str
    organization: str
    directory: Path
    endpoint: str
    node_id: str
    proc: subprocess.Popen[bytes] | None = None
    tls: ClientTLS | None = None  # the consortium's client TLS material, to talk to this node

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> None:
        ready = self.directory / "ready.json"
        ready.unlink(missing_ok=True)
        log = (self.directory / "node.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consortium_node",
                "run",
                "--config",
                str(self.directory / "config.yaml"),
                "--ready-file",
                str(ready),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, deadline: float) -> None:
        ready = self.directory / "ready.json"
        # Polls for a condition the node creates once serving, bounded by `deadline`.
        while not ready.exists():
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.directory / "node.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} did not start within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class LocalNet:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        meta = json.loads((data_dir / "consortium.json").read_text())
        self.chain_id: str = meta["chain_id"]
        self.consensus: str = meta["consensus"]
        self.tls_enabled: bool = bool(meta.get("tls", False))
        self.nodes: list[LocalNode] = []
        for d in sorted((data_dir / "nodes").iterdir()):
            cfg = yaml.safe_load((d / "config.yaml").read_text())
            key = json.loads((d / "key.json").read_text())
            self.nodes.append(
                LocalNode(
                    cfg["name"],
                    cfg["organization"],
                    d,
                    cfg["listen"],
                    key["public_key"],
                    tls=self.tls,
                )
            )

    @property
    def tls(self) -> ClientTLS | None:
        """The client TLS material (CA bundle, client certificate) of this consortium."""
        return ClientTLS.from_dir(self.data_dir / "tls") if self.tls_enabled else None

    def client(self, node: LocalNode | int = 0, timeout: float = 5.0) -> Client:
        """A client of `node` (a node or its index) with this consortium's TLS material, as
        DIR/tls holds it now (a rotation may have replaced it)."""
        n = self.nodes[node] if isinstance(node, int) else node
        return Client(n.endpoint, timeout, tls=self.tls)

    def governance(self, payloads: Sequence[Payload]) -> int:
        """Signs `payloads` (types_pb2 governance messages) with the admin key, submits them
        in one batch and returns, once every running node has applied the last one (any node
        may be asked next), the height that committed it. RuntimeError names a refusal or a
        failed receipt."""
        from .client import Signer

        admin = Signer.load(self.data_dir / "keys" / "admin.json")
        with self.client(0, 10.0) as c:
            nonce = c.next_nonce(admin.public_key)
            txs = [admin.build_tx(self.chain_id, nonce + i, p) for i, p in enumerate(payloads)]
            for res in c.submit([t for _, t in txs]):
                if res.code:
                    raise RuntimeError(f"governance tx refused: {res.message}")
            for tx_id, _ in txs:
                got = c.wait_tx(tx_id, timeout=30)
                if got.receipt.code:
                    raise RuntimeError(f"governance tx failed: {got.receipt.message}")
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                with self.client(n, 10.0) as cn:
                    cn.wait_tx(txs[-1][0], timeout=30)
        return int(got.receipt.height)

    def vouch(self, keys: list[bytes], organization: str | None = None) -> None:
        """Governance: the admin key vouches for sender `keys` (AddMember), so they may
        transact on a permissioned chain."""
        from consortium_api.v1 import types_pb2

        org = organization or self.nodes[0].organization
        self.governance([types_pb2.AddMember(key=k, organization=org) for k in keys])

    def admit_organization(self, name: str) -> None:
        """Governance: organisation `name` joins the running consortium (AddOrganization with
        its CA, created in DIR/ca/<name>/ if absent and added to the client bundle DIR/tls/ca.pem);
        then `add_node(name)` can create its nodes."""
        from consortium_api.v1 import types_pb2

        ca = new_org_ca(self.data_dir, name) if self.tls_enabled else b""
        self.governance([types_pb2.AddOrganization(name=name, ca_cert=ca)])

    def node(self, name: str) -> LocalNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def add_node(self, organization: str) -> LocalNode:
        """Creates (does not start) one more node: key, config listing every node as a peer,
        and every existing node's config updated to list it (running nodes re-read their
        peers). It joins as an observer until a governance tx makes it a validator."""
        if self.tls_enabled and not (self.data_dir / "ca" / organization / "ca.pem").exists():
            raise ValueError(
                f"organisation {organization!r} has no CA in this consortium "
                "(organisations are fixed at genesis)"
            )
        taken = {n.name for n in self.nodes}
        i = 0
        while f"{organization}-{i}" in taken:
            i += 1
        name = f"{organization}-{i}"
        d = self.data_dir / "nodes" / name
        key = Ed25519Key.generate()
        key.save(d / "key.json")
        if self.tls_enabled:
            issue_node_tls(self.data_dir, d, organization, name, key.public)
        template = yaml.safe_load((self.nodes[0].directory / "config.yaml").read_text())
        client_port, peer_port, metrics_port = _free_ports(3)
        template.update(
            name=name,
            organization=organization,
            listen=f"127.0.0.1:{client_port}",
            peer_listen=f"127.0.0.1:{peer_port}",
            metrics_listen=f"127.0.0.1:{metrics_port}",
        )
        node = LocalNode(name, organization, d, template["listen"], key.public.hex(), tls=self.tls)
        everyone = [*self.nodes, node]
        addresses = {
            n.node_id: yaml.safe_load((n.directory / "config.yaml").read_text())["peer_listen"]
            for n in self.nodes
        }
        addresses[node.node_id] = template["peer_listen"]
        (d / "config.yaml").write_text(yaml.safe_dump(template))
        for n in everyone:
            path = n.directory / "config.yaml"
            cfg = yaml.safe_load(path.read_text())
            cfg["peers"] = [
                {"node_id": m.node_id, "address": addresses[m.node_id]}
                for m in everyone
                if m is not n
            ]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(cfg))
            tmp.rename(path)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            for n in self.nodes:
                n.wait_ready(deadline)
        except Exception:
            self.stop()
            raise
        self.write_endpoints()

    def write_endpoints(self) -> None:
        doc = {
            "chain_id": self.chain_id,
            "consensus": self.consensus,
            "client_key": "keys/client.json",
            "admin_key": "keys/admin.json",
            **({"tls_dir": "tls"} if self.tls_enabled else {}),
            "nodes": [
                {
                    "name": n.name,
                    "organization": n.organization,
                    "endpoint": n.endpoint,
                    "pid": n.pid,
                    "node_id": n.node_id,
                    "log": str(n.directory / "node.log"),
                }
                for n in self.nodes
            ],
        }
        tmp = self.data_dir / "endpoints.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.rename(self.data_dir / "endpoints.json")

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGTERM)
        for n in self.nodes:
            n.stop()
