"""A whole consortium as local processes, no cluster: `consortium up` — the process executor of
the provisioning core (consortium_node.provision).

The manifest is validated by the core's `ConsortiumSpec` (the same model the operator uses), so
a file `consortium up` accepts is one the operator accepts, with the same defaults. The core
decides the genesis, the node configs and which certificates are due; this module generates
keys, issues the certificates it is told to, writes files and runs processes:
per-node keys, a genesis, per-node configs and running `consortium-node run` processes on
127.0.0.1; DIR/endpoints.json for scripts and the `consortium --data-dir` client commands.
Keys and genesis are created once: re-running `up` on the same DIR restarts the same chain,
and a DIR whose nodes are running is refused (`DataDirBusy`).

The chain `up` runs is the manifest's spec plus a generated client key, funded with `coin` and
vouched for by the first organisation (provision.local.with_client); the genesis time is the
moment DIR is initialised, in whole seconds (provision.genesis.creation_time_ms).

TLS by default: one CA per organisation (DIR/ca/<org>/, the CA key mode 0600), a node
certificate per node (nodes/<n>/tls/), and a client certificate of the first organisation for
the generated client key (DIR/tls/: ca.pem = every organisation's CA, client.pem, client.key),
which `consortium --data-dir DIR` finds through endpoints.json. The genesis lists each
organisation's CA; the chain is permissioned unless the manifest asks for open membership.

Called by the CLI (`consortium up`, `consortium demo`) and by integration tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from . import pki
from .client.discovery import ClientTLS
from .client.rpc import Client
from .client.tx import Payload
from .config import NodeConfig, Peer
from .crypto import Ed25519Key
from .provision import ceremony, local, nodeconfig
from .provision import genesis as provision_genesis
from .provision import pki as pki_plan
from .provision.spec import ConsortiumSpec, OrganizationSpec, SpecError

START_TIMEOUT = 60.0
LOCAL_NAMES = ("localhost",)  # the DNS names of a local node's certificate
LOG_TAIL_LINES = 20  # of a node's log, shown when it fails to start

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
CLIENT_FUNDS = local.CLIENT_FUNDS


class ManifestError(ValueError):
    pass


class DataDirBusy(RuntimeError):
    """The data directory's consortium is running (another `consortium up`, or its nodes)."""


class NodeStartError(RuntimeError):
    """A node exited (or hung) before serving; carries the last lines of its log."""

    def __init__(self, node: str, why: str, log: Path, tail: Sequence[str]) -> None:
        super().__init__(f"node {node} {why}")
        self.node, self.why, self.log, self.tail = node, why, log, tuple(tail)
        # shown by tracebacks (pytest's too), not by str(): the CLI prints the tail itself
        self.add_note(f"last lines of {log}:\n" + "\n".join(self.tail))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last `lines` lines of a log file (none if it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


@dataclass(frozen=True, slots=True)
class NetPlan:
    """A validated manifest: the consortium's name and its spec."""

    name: str
    spec: ConsortiumSpec

    @property
    def chain_id(self) -> str:
        return self.spec.chain_id

    @property
    def consensus(self) -> str:
        return self.spec.consensus.type

    @property
    def organizations(self) -> tuple[OrganizationSpec, ...]:
        return self.spec.organizations

    @property
    def tls(self) -> bool:
        return self.spec.security.tls

    @property
    def node_names(self) -> list[tuple[str, str]]:
        """(node name, organisation) of every initial node: `<org>-<ordinal>`."""
        return provision_genesis.initial_members(self.spec, node_name)


def node_name(org: str, ordinal: int) -> str:
    return f"{org}-{ordinal}"


def parse_manifest(doc: dict[str, Any]) -> NetPlan:
    """Validates a Consortium manifest exactly as the operator does (the core's
    `ConsortiumSpec`, which mirrors the CRD's rules and defaults)."""
    if doc.get("kind") != "Consortium":
        raise ManifestError(f"expected kind Consortium, got {doc.get('kind')!r}")
    name = str((doc.get("metadata") or {}).get("name", "consortium"))
    try:
        spec = ConsortiumSpec.parse(doc.get("spec") or {})
    except SpecError as e:
        raise ManifestError(str(e)) from None
    return NetPlan(name=name, spec=spec)


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


@dataclass(frozen=True)
class Material:
    """Where new key material and the time come from: the system by default; tests pass
    seeded sources so a data directory is reproducible."""

    ed25519: Callable[[], Ed25519Key] = Ed25519Key.generate
    tls_key: Callable[[], ec.EllipticCurvePrivateKey] = pki.new_private_key
    serial: Callable[[], int] = field(default=lambda: int.from_bytes(os.urandom(16), "big") >> 1)
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


SYSTEM = Material()


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


def _write_node_tls(node_dir: Path, issued: pki.Issued) -> None:
    # key first, then the certificate, each replaced atomically: a running node reloads the pair
    _write_atomic(node_dir / "tls" / "node.key", issued.key_pem, secret=True)
    _write_atomic(node_dir / "tls" / "node.pem", issued.cert_pem)


def issue_node_tls(
    data_dir: Path, node_dir: Path, org: str, name: str, node_id: bytes, days: int = pki.LEAF_DAYS
) -> None:
    """(Re)issues a node's TLS certificate from its organisation's CA into node_dir/tls/."""
    issued = pki.issue_node_cert(
        load_ca(data_dir, org),
        org,
        name,
        node_id,
        SYSTEM.now(),
        SYSTEM.tls_key(),
        SYSTEM.serial(),
        days=days,
    )
    _write_node_tls(node_dir, issued)


def issue_client_tls(
    data_dir: Path, out_dir: Path, org: str, name: str, sender: bytes | None, days: int = 365
) -> None:
    cert = pki_plan.ClientCert(str(out_dir), org, name, sender)
    _write_client_tls(out_dir, _issue_client(load_ca(data_dir, org), cert, SYSTEM, days))


def _issue_client(ca: pki.Issued, cert: pki_plan.ClientCert, m: Material, days: int) -> pki.Issued:
    return pki.issue_client_cert(
        ca, cert.org, cert.name, m.now(), m.tls_key(), m.serial(), cert.sender, days
    )


def _write_client_tls(out_dir: Path, issued: pki.Issued) -> None:
    _write_atomic(out_dir / "client.key", issued.key_pem, secret=True)
    _write_atomic(out_dir / "client.pem", issued.cert_pem)


def new_org_ca(data_dir: Path, org: str) -> bytes:
    """The CA of organisation `org` in DIR/ca/<org>/ (created once; its key 0600), also in the
    clients' trust bundle DIR/tls/ca.pem. Returns the CA certificate PEM."""
    d = data_dir / "ca" / org
    if (d / "ca.pem").exists():
        return (d / "ca.pem").read_bytes()
    ca = pki.new_ca(org, SYSTEM.now(), SYSTEM.tls_key(), SYSTEM.serial())
    _write_secret(d / "ca.key", ca.key_pem)
    (d / "ca.pem").write_bytes(ca.cert_pem)
    bundle = data_dir / "tls" / "ca.pem"
    old = bundle.read_bytes() if bundle.exists() else b""
    _write_atomic(bundle, old + ca.cert_pem)
    return ca.cert_pem


def _init_pki(
    plan: NetPlan, data_dir: Path, keys: dict[str, Ed25519Key], client: bytes, m: Material
) -> dict[str, bytes]:
    """Issues what the core's PKI plan says is due for a new directory: one CA per
    organisation, every node's certificate, the client directory DIR/tls. Returns
    organisation -> CA certificate PEM."""
    cas: dict[str, pki.Issued] = {}
    for o in plan.organizations:
        d = data_dir / "ca" / o.name
        # a new chain trusts no CA yet; a CA left by an interrupted initialisation is reused
        decision = pki_plan.ca_decision((d / "ca.pem").exists(), trusted_on_chain=False)
        if decision is pki_plan.CaDecision.HAVE:
            cas[o.name] = load_ca(data_dir, o.name)
            continue
        cas[o.name] = pki.new_ca(o.name, m.now(), m.tls_key(), m.serial())
        _write_secret(d / "ca.key", cas[o.name].key_pem)
        (d / "ca.pem").write_bytes(cas[o.name].cert_pem)
    pems = {org: ca.cert_pem for org, ca in cas.items()}
    window = pki_plan.Window(m.now(), dt.timedelta(0))
    for o in plan.organizations:
        members = {n: keys[n].public for n, org in plan.node_names if org == o.name}
        # local nodes are reached on 127.0.0.1 (the NodeCert's IP) or as localhost
        for c in pki_plan.node_certs_due(o.name, {}, members, lambda _: LOCAL_NAMES, window):
            issued = pki.issue_node_cert(
                cas[o.name],
                o.name,
                c.member,
                c.node_id,
                m.now(),
                m.tls_key(),
                m.serial(),
                dns_names=c.dns_names,
                ips=c.ips,
            )
            _write_node_tls(data_dir / "nodes" / c.member, issued)
    tls_dir = data_dir / "tls"
    wanted = [pki_plan.ClientCert(str(tls_dir), plan.organizations[0].name, "client", client)]
    for cc in pki_plan.client_certs_due(wanted, {}, pems, window):
        _write_client_tls(tls_dir, _issue_client(cas[cc.org], cc, m, 365))
    # the trust bundle, in the core's order (the directory's ca.pem)
    _write_atomic(tls_dir / "ca.pem", pki_plan.trust_bundle(pems))
    return pems


# Local nodes' ports come from [PORTS_LOW, the kernel's ephemeral range): a node keeps its
# ports across restarts, and a port of the ephemeral range may meanwhile become the source
# port of some outgoing connection on this machine, which the restart then cannot bind (a
# fresh-clone CI lost a restarted node so). Below the range, only a listener takes a port.
PORTS_LOW = 20_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ports_high() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return low if low > PORTS_LOW + 1_000 else 32_768


def _free_ports(n: int) -> list[int]:
    """n distinct ports of 127.0.0.1 free now, below the ephemeral range (see PORTS_LOW).
    Which ports is not part of any chain state: the OS's randomness picks them."""
    rng = random.SystemRandom()
    high = _ports_high()
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(PORTS_LOW, high)))
            except OSError:  # taken: draw again (the range has thousands of free ports)
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _layout(ports: Sequence[int], fsync: bool) -> nodeconfig.Layout:
    client_port, peer_port, metrics_port = ports
    return nodeconfig.Layout(
        data_dir="ledger",
        key_file="key.json",
        genesis_file="../../genesis.json",
        listen=f"127.0.0.1:{client_port}",
        peer_listen=f"127.0.0.1:{peer_port}",
        metrics_listen=f"127.0.0.1:{metrics_port}",
        fsync=fsync,
    )


def init_data_dir(
    plan: NetPlan,
    data_dir: Path,
    fsync: bool = True,
    material: Material = SYSTEM,
    org_governance: bool = False,
) -> None:
    """Creates keys, genesis and node configs once; an initialised DIR is left as it is.
    `org_governance`: each organisation gets its own admin key (DIR/keys/admin-<org>.json,
    genesis organizations[].admins) and there is no consortium-wide admin: every change
    passes its policy counted by organisation (`consortium gov`)."""
    if (data_dir / "genesis.json").exists():
        return
    if org_governance and plan.spec.genesis.admins:
        raise ManifestError("spec.genesis.admins are single-admin governance: drop them")
    data_dir.mkdir(parents=True, exist_ok=True)
    names = plan.node_names
    keys = {n: material.ed25519() for n, _ in names}
    for n, k in keys.items():
        k.save(data_dir / "nodes" / n / "key.json")
    admin, client = material.ed25519(), material.ed25519()
    if not org_governance:
        admin.save(data_dir / "keys" / "admin.json")
    client.save(data_dir / "keys" / "client.json")
    org_admins: dict[str, tuple[bytes, ...]] = {}
    for o in plan.organizations if org_governance else ():
        org_admin = material.ed25519()
        org_admin.save(data_dir / "keys" / f"admin-{o.name}.json")
        org_admins[o.name] = (org_admin.public,)
    spec = local.with_client(plan.spec, client.public)
    cas = _init_pki(plan, data_dir, keys, client.public, material) if plan.tls else {}
    genesis = provision_genesis.build(
        spec,
        node_name,
        provision_genesis.GenesisKeys(
            {n: k.public for n, k in keys.items()}, admin.public, cas, org_admins
        ),
        provision_genesis.creation_time_ms(material.now().timestamp()),
    )
    ports = _free_ports(3 * len(names))
    layouts = {n: _layout(ports[3 * i : 3 * i + 3], fsync) for i, (n, _) in enumerate(names)}
    for n, org in names:
        peers = [Peer(keys[m].public, str(layouts[m].peer_listen)) for m, _ in names if m != n]
        _write_config(
            data_dir / "nodes" / n, nodeconfig.node_config(spec, (n, org), layouts[n], peers)
        )
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
    # last: an existing genesis.json marks the directory as initialised
    (data_dir / "genesis.json").write_bytes(genesis.canonical())


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
        log = self.directory / "node.log"
        while not ready.exists():
            if self.proc is not None and self.proc.poll() is not None:
                why = f"exited with code {self.proc.returncode} before serving"
                raise NodeStartError(self.name, why, log, log_tail(log))
            if time.monotonic() > deadline:
                why = f"did not start within {START_TIMEOUT:.0f}s"
                raise NodeStartError(self.name, why, log, log_tail(log))
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
        self._lock: IO[bytes] | None = None
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
    def admin_key(self) -> str:
        """The admin key file, relative to DIR: an organisation directory's own admin key."""
        org = (org_meta(self.data_dir) or {}).get("organization")
        return f"keys/admin-{org}.json" if org else "keys/admin.json"

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
        from .client.keys import Signer

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
        # the new node's config is the first node's (same spec-derived consensus, TLS and
        # storage settings) with its own name, organisation and addresses
        client_port, peer_port, metrics_port = _free_ports(3)
        new_cfg = dataclasses.replace(
            _read_config(self.nodes[0].directory),
            name=name,
            organization=organization,
            listen=f"127.0.0.1:{client_port}",
            peer_listen=f"127.0.0.1:{peer_port}",
            metrics_listen=f"127.0.0.1:{metrics_port}",
        )
        node = LocalNode(name, organization, d, new_cfg.listen, key.public.hex(), tls=self.tls)
        configs = {n.node_id: _read_config(n.directory) for n in self.nodes}
        configs[node.node_id] = new_cfg
        everyone = [*self.nodes, node]
        for n in everyone:
            peers = tuple(
                Peer(bytes.fromhex(m.node_id), str(configs[m.node_id].peer_listen))
                for m in everyone
                if m is not n
            )
            cfg = dataclasses.replace(configs[n.node_id], peers=peers)
            cfg.validate()
            _write_config(n.directory, cfg)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        """Starts every node and waits until each serves. Raises DataDirBusy (touching
        nothing) if the directory's consortium runs already, NodeStartError if a node fails."""
        lock = (self.data_dir / "up.lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise DataDirBusy(
                f"{self.data_dir} is in use: another 'consortium up' runs on it"
            ) from None
        why = self.busy_nodes()
        if why is not None:
            lock.close()
            raise DataDirBusy(f"{self.data_dir} is in use: {why}")
        self._lock = lock  # held (flock) until stop(), released by the kernel if we die
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

    def busy_nodes(self) -> str | None:
        """A node of this directory that runs outside this LocalNet (its ready file names a
        live process we did not start), or None."""
        ours = {n.pid for n in self.nodes if n.proc is not None and n.proc.poll() is None}
        for n in self.nodes:
            pid = _ready_pid(n.directory / "ready.json")
            if pid is not None and pid not in ours and _alive(pid):
                return f"node {n.name} runs as pid {pid}; stop it first"
        return None

    def write_endpoints(self) -> None:
        doc = {
            "chain_id": self.chain_id,
            "consensus": self.consensus,
            "client_key": "keys/client.json",
            "admin_key": self.admin_key,
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
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _read_config(node_dir: Path) -> NodeConfig:
    """A node's config as written (paths relative to its directory, as in the file)."""
    raw = yaml.safe_load((node_dir / "config.yaml").read_text())
    return NodeConfig.from_dict(raw)


def _write_config(node_dir: Path, cfg: NodeConfig) -> None:
    """Replaces a node's config atomically (a running node re-reads its peers)."""
    path = node_dir / "config.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(nodeconfig.document(cfg), sort_keys=False))
    tmp.rename(path)


def _ready_pid(path: Path) -> int | None:
    """The pid a node's ready file names (None: no file, or not one we can read)."""
    try:
        pid = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- federated: one organisation
# `consortium up --org ORG` runs one organisation of a federated consortium in its own data
# directory: only that organisation's keys (its CA, its admin key, its nodes' keys, a client
# key it vouches for) ever exist there; the other organisations are known by their ceremony
# contributions (provision/ceremony.py) and dialled at the addresses those list. The steps:
#   init_org_dir (`up --org ORG --ceremony-init ceremony.json`)
#   -> org_contribution (`ceremony contribute -d DIR`) -> assemble and sign (`ceremony ...`)
#   -> install_genesis (`up --org ORG --genesis genesis.json`: verified, then the node configs)
# Layout of DIR (besides what LocalNet reads): ceremony.json (the ceremony's exact bytes),
# nodes/<n>/addresses.json (the ports chosen at init), signatures/genesis-<org>.sig.

CEREMONY_FILE = "ceremony.json"
ADDRESSES_FILE = "addresses.json"


def org_meta(data_dir: Path) -> dict[str, Any] | None:
    """DIR/consortium.json of an organisation directory (None: not one, or not initialised)."""
    try:
        meta = json.loads((data_dir / "consortium.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("organization") else None


def init_org_dir(
    ceremony_bytes: bytes,
    org: str,
    data_dir: Path,
    validators: int = 1,
    host: str = "127.0.0.1",
    fsync: bool = True,
    material: Material = SYSTEM,
) -> bool:
    """Creates organisation `org`'s directory for the ceremony once: its CA, admin key
    (keys/admin-<org>.json), client key and client TLS directory, `validators` node keys,
    certificates and addresses on `host`. Returns False if DIR was initialised already for
    this ceremony and organisation (nothing changed); ManifestError if for another one."""
    c = ceremony.parse_ceremony(ceremony_bytes)
    if org not in c.organizations:
        raise ManifestError(
            f"{org} is not an organisation of the ceremony ({', '.join(c.organizations)})"
        )
    meta = org_meta(data_dir)
    if meta is not None:
        if meta["organization"] != org or meta.get("ceremony") != c.id:
            raise ManifestError(
                f"{data_dir} holds organisation {meta['organization']} of ceremony "
                f"{str(meta.get('ceremony'))[:16]}…: use another directory"
            )
        return False
    if (data_dir / "consortium.json").exists() or (data_dir / "genesis.json").exists():
        raise ManifestError(f"{data_dir} holds a whole local consortium: use another directory")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        # keys are never overwritten: an interrupted initialisation is removed by hand
        raise ManifestError(f"{data_dir} is not empty: give a new directory for {org}")
    if not 1 <= validators <= ceremony.MAX_VALIDATORS:
        raise ManifestError(f"--validators must be 1..{ceremony.MAX_VALIDATORS}")
    data_dir.mkdir(parents=True, exist_ok=True)
    names = [node_name(org, i) for i in range(validators)]
    keys = {n: material.ed25519() for n in names}
    for n, k in keys.items():
        k.save(data_dir / "nodes" / n / "key.json")
    material.ed25519().save(data_dir / "keys" / f"admin-{org}.json")
    client = material.ed25519()
    client.save(data_dir / "keys" / "client.json")
    ca = pki.new_ca(org, material.now(), material.tls_key(), material.serial())
    _write_secret(data_dir / "ca" / org / "ca.key", ca.key_pem)
    (data_dir / "ca" / org / "ca.pem").write_bytes(ca.cert_pem)
    window = pki_plan.Window(material.now(), dt.timedelta(0))
    members = {n: k.public for n, k in keys.items()}
    dns = tuple(dict.fromkeys((*LOCAL_NAMES, *([] if _is_ip(host) else [host]))))
    ips = tuple(dict.fromkeys(("127.0.0.1", *([host] if _is_ip(host) else []))))
    for due in pki_plan.node_certs_due(org, {}, members, lambda _: dns, window):
        issued = pki.issue_node_cert(
            ca,
            org,
            due.member,
            due.node_id,
            material.now(),
            material.tls_key(),
            material.serial(),
            dns_names=due.dns_names,
            ips=ips,
        )
        _write_node_tls(data_dir / "nodes" / due.member, issued)
    tls_dir = data_dir / "tls"
    wanted = [pki_plan.ClientCert(str(tls_dir), org, "client", client.public)]
    for cc in pki_plan.client_certs_due(wanted, {}, {org: ca.cert_pem}, window):
        _write_client_tls(tls_dir, _issue_client(ca, cc, material, 365))
    _write_atomic(tls_dir / "ca.pem", pki_plan.trust_bundle({org: ca.cert_pem}))
    ports = _free_ports(3 * len(names))
    for i, n in enumerate(names):
        client_port, peer_port, metrics_port = ports[3 * i : 3 * i + 3]
        addresses = {
            "listen": f"{host}:{client_port}",
            "peer_listen": f"{host}:{peer_port}",
            "metrics_listen": f"{host}:{metrics_port}",
        }
        (data_dir / "nodes" / n / ADDRESSES_FILE).write_text(json.dumps(addresses))
    (data_dir / CEREMONY_FILE).write_bytes(ceremony_bytes)
    # last: consortium.json marks the organisation directory as initialised
    (data_dir / "consortium.json").write_text(
        json.dumps(
            {
                "name": c.chain_id,
                "chain_id": c.chain_id,
                "consensus": str(c.consensus.get("type", "bft")),
                "tls": True,
                "organization": org,
                "ceremony": c.id,
                "fsync": fsync,
            }
        )
    )
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _org_dir(data_dir: Path) -> tuple[dict[str, Any], bytes]:
    meta = org_meta(data_dir)
    if meta is None:
        raise ManifestError(
            f"{data_dir} is not an organisation directory (create it with "
            "'consortium up --org ORG --ceremony-init ceremony.json -d DIR')"
        )
    return meta, (data_dir / CEREMONY_FILE).read_bytes()


def _org_nodes(data_dir: Path) -> list[tuple[str, Ed25519Key, dict[str, str]]]:
    out = []
    for d in sorted((data_dir / "nodes").iterdir()):
        addresses = json.loads((d / ADDRESSES_FILE).read_text())
        out.append((d.name, Ed25519Key.load(d / "key.json"), addresses))
    return out


def org_contribution(data_dir: Path) -> bytes:
    """The organisation directory's contribution to its ceremony, signed by its admin key:
    its CA, admin key, client key (as its one member) and every node with its peer address.
    Deterministic (Ed25519 signatures are): the same directory gives the same bytes."""
    meta, cer = _org_dir(data_dir)
    org = str(meta["organization"])
    admin = Ed25519Key.load(data_dir / "keys" / f"admin-{org}.json")
    client = Ed25519Key.load(data_dir / "keys" / "client.json")
    return ceremony.contribute(
        cer,
        org,
        (data_dir / "ca" / org / "ca.pem").read_bytes(),
        [admin.public],
        [client.public],
        [ceremony.Validator(n, k.public, a["peer_listen"]) for n, k, a in _org_nodes(data_dir)],
        admin,
    )


def install_genesis(data_dir: Path, genesis_file: Path) -> list[str]:
    """Checks the genesis `genesis_file` against the ceremony files beside it and installs
    it in organisation directory DIR: every organisation's signature (genesis-*.sig) must
    verify, this organisation's part must be exactly its contribution, and every validator
    must have an address in a contribution (contribution-*.json) of this ceremony. Then the
    genesis and signatures are copied into DIR and each node's config is written, pinning the
    genesis sha256 and listing the signature files (the node checks them again at every
    start). Returns the organisations that signed. Raises CeremonyError or ManifestError."""
    meta, cer = _org_dir(data_dir)
    org = str(meta["organization"])
    folder = genesis_file.parent
    try:
        genesis_bytes = genesis_file.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read {genesis_file}: {e.strerror}") from None
    sigs = {p.name: p.read_bytes() for p in sorted(folder.glob("genesis-*.sig"))}
    g = ceremony.verify(genesis_bytes, list(sigs.values()))
    mine = org_contribution(data_dir)
    if (why := ceremony.own_part_problem(genesis_bytes, mine)) is not None:
        raise ceremony.CeremonyError(f"refusing the genesis: {why}")
    contributions = [
        ceremony.parse_contribution(p.read_bytes(), cer)
        for p in sorted(folder.glob("contribution-*.json"))
    ]
    contributions = [ceremony.parse_contribution(mine, cer)] + [
        c for c in contributions if c.organization != org
    ]
    # the genesis must be exactly what the ceremony and these contributions assemble to
    if ceremony.assemble(cer, contributions) != genesis_bytes:
        raise ceremony.CeremonyError(
            f"refusing the genesis: it is not what {CEREMONY_FILE} and the contributions "
            f"beside {genesis_file} assemble to"
        )
    spec = ceremony.spec(cer, contributions)
    where = ceremony.peers(contributions)
    missing = [v.node_id.hex()[:16] for v in g.validators if v.node_id not in where]
    if missing:
        raise ManifestError(f"no contribution beside {genesis_file} gives an address of {missing}")
    existing = data_dir / "genesis.json"
    if existing.exists() and existing.read_bytes() != genesis_bytes:
        raise ManifestError(f"{data_dir} already runs another genesis; refusing to replace it")
    sig_dir = data_dir / "signatures"
    sig_dir.mkdir(exist_ok=True)
    for name, raw in sigs.items():
        _write_atomic(sig_dir / name, raw)
    digest = ceremony.sha256hex(genesis_bytes)
    fsync = bool(meta.get("fsync", True))
    for n, k, addresses in _org_nodes(data_dir):
        layout = nodeconfig.Layout(
            data_dir="ledger",
            key_file="key.json",
            genesis_file="../../genesis.json",
            listen=addresses["listen"],
            peer_listen=addresses["peer_listen"],
            metrics_listen=addresses["metrics_listen"],
            fsync=fsync,
            genesis_signature_files=tuple(f"../../signatures/{s}" for s in sigs),
        )
        peers = [
            Peer(v.node_id, where[v.node_id][1]) for v in g.validators if v.node_id != k.public
        ]
        cfg = nodeconfig.node_config(spec, (n, org), layout, peers, genesis_sha256=digest)
        _write_config(data_dir / "nodes" / n, cfg)
    _write_atomic(data_dir / "tls" / "ca.pem", pki_plan.trust_bundle(g.ca_certs()))
    _write_atomic(existing, genesis_bytes)  # last: the directory can start now
    return sorted({ceremony.parse_signature(s).organization for s in sigs.values()})
