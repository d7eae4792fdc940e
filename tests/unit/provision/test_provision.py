"""The provisioning core (consortium_node.provision): one genesis builder, one node-config
writer and one PKI plan for the operator, `consortium up` and `consortium-node dev`."""

from __future__ import annotations

import ast
import datetime as dt
import json
import random
from pathlib import Path

import cryptography.x509
import pytest
import yaml
from consortium_node import pki as x509
from consortium_node.__main__ import init_dev
from consortium_node.config import NodeConfig, Peer
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger.genesis import Genesis
from consortium_node.localnet import Material, init_data_dir, parse_manifest
from consortium_node.provision import local, nodeconfig
from consortium_node.provision import pki as plan
from consortium_node.provision.spec import ConsortiumSpec, SpecError
from consortium_operator import genesis as operator_genesis
from consortium_operator.model import Names
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 3, 1, 12, 0, 0, 750_000, tzinfo=dt.UTC)
MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "demo"},
    "spec": {
        "chainId": "demo-chain",
        "consensus": {"type": "bft"},
        "organizations": [{"name": "acme", "validators": 3}, {"name": "beta", "validators": 1}],
        "genesis": {
            "accounts": [{"asset": "gold", "account": "ab" * 32, "amount": 5}],
            "kv": [{"key": "name", "value": "Demo"}],
            "admins": ["cd" * 32],
            "members": [{"organization": "beta", "key": "ef" * 32}],
        },
    },
}
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def seeded(seed: int) -> Material:
    rng = random.Random(seed)
    return Material(
        ed25519=lambda: Ed25519Key(rng.randbytes(32)),
        tls_key=lambda: ec.derive_private_key(rng.randrange(1, _P256_ORDER), ec.SECP256R1()),
        serial=lambda: rng.getrandbits(127) | 1,
        now=lambda: NOW,
    )


def _public(path: Path) -> bytes:
    return bytes.fromhex(json.loads(path.read_text())["public_key"])


def test_operator_and_up_write_byte_identical_genesis(tmp_path: Path) -> None:
    """The same spec, keys, CA certificates and time give the same genesis bytes whether
    `consortium up` (localnet, the process executor) or the operator (its WriteGenesis
    builder, pods named `<consortium>-<org>-<i>`) makes it."""
    net = parse_manifest(MANIFEST)
    d = tmp_path / "net"
    init_data_dir(net, d, fsync=False, material=seeded(7))
    up_bytes = (d / "genesis.json").read_bytes()

    names = Names("demo")
    node_keys = {
        names.pod(org, int(i)): _public(d / "nodes" / f"{org}-{i}" / "key.json")
        for org, i in (n.rsplit("-", 1) for n, _ in net.node_names)
    }
    cas = {o.name: (d / "ca" / o.name / "ca.pem").read_bytes() for o in net.organizations}
    # `up` runs the manifest's spec plus its client key (funded, vouched): the same spec here
    spec = local.with_client(net.spec, _public(d / "keys" / "client.json"))
    time_ms = int(NOW.timestamp()) * 1000  # the creation time, whole seconds
    g = operator_genesis.build(
        spec, names, node_keys, _public(d / "keys" / "admin.json"), time_ms, cas
    )
    assert operator_genesis.canonical_json(g).encode() == up_bytes
    loaded = Genesis.from_json(up_bytes)
    assert loaded.time_ms == 1_772_366_400_000  # 12:00:00.750 -> whole seconds
    assert [a.asset for a in loaded.accounts] == ["coin", "gold"]
    assert loaded.permissioned and len(loaded.validators) == 4


def test_init_data_dir_is_reproducible_given_material(tmp_path: Path) -> None:
    """Keys and time come from `material`: same material, same chain. (Without TLS: an ECDSA
    signature on a CA certificate takes a fresh nonce from the library, by design.)"""
    doc = {**MANIFEST, "spec": {**MANIFEST["spec"], "security": {"tls": False}}}  # type: ignore[dict-item]
    net = parse_manifest(doc)
    init_data_dir(net, tmp_path / "a", fsync=False, material=seeded(3))
    init_data_dir(net, tmp_path / "b", fsync=False, material=seeded(3))
    init_data_dir(net, tmp_path / "c", fsync=False, material=seeded(4))
    a, b, c = ((tmp_path / x / "genesis.json").read_bytes() for x in "abc")
    assert a == b != c


def test_up_configs_are_node_config_documents(tmp_path: Path) -> None:
    """`up` writes NodeConfig.to_dict() documents: they load, and round-trip unchanged."""
    net = parse_manifest(MANIFEST)
    init_data_dir(net, tmp_path, fsync=False, material=seeded(1))
    path = tmp_path / "nodes" / "acme-0" / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = NodeConfig.from_dict(raw)
    assert cfg.to_dict() == raw
    assert cfg.consensus.election_ticks == 50 and len(cfg.peers) == 3 and cfg.tls is not None
    assert NodeConfig.load(path).genesis_file.resolve() == (tmp_path / "genesis.json").resolve()
    # the node certificate binds the node's key and was issued by its organisation's CA
    cert = x509.load_cert((tmp_path / "nodes" / "acme-0" / "tls" / "node.pem").read_bytes())
    assert x509.node_id_of(cert) == _public(tmp_path / "nodes" / "acme-0" / "key.json")
    san = cert.extensions.get_extension_for_class(cryptography.x509.SubjectAlternativeName)
    assert "localhost" in san.value.get_values_for_type(cryptography.x509.DNSName)


def test_node_config_document_round_trips_and_follows_the_spec() -> None:
    spec = ConsortiumSpec.parse(
        {
            "chainId": "c",
            "consensus": {"type": "raft", "tickMs": 5, "electionTimeoutMs": 100},
            "organizations": [{"name": "a", "validators": 1}],
            "security": {"publicReads": True},
        }
    )
    layout = nodeconfig.Layout(
        data_dir="/data",
        key_file="/keys/x.json",
        genesis_file="/g.json",
        listen="0.0.0.0:1",
        public_listen="0.0.0.0:2",
    )
    cfg = nodeconfig.node_config(spec, ("n", "a"), layout, [Peer(b"\x01" * 32, "p:3")])
    doc = nodeconfig.document(cfg)
    assert NodeConfig.from_dict(doc) == cfg
    assert doc["consensus"]["election_ticks"] == 20 and doc["public_listen"] == "0.0.0.0:2"
    plain = spec.__class__.parse({**_raw(spec), "security": {"tls": False, "publicReads": True}})
    doc = nodeconfig.document(nodeconfig.node_config(plain, ("n", "a"), layout, []))
    assert doc["tls"] is False and doc["public_listen"] is None  # publicReads needs TLS


def _raw(spec: ConsortiumSpec) -> dict[str, object]:
    return {
        "chainId": spec.chain_id,
        "consensus": {"type": "raft"},
        "organizations": [{"name": "a", "validators": 1}],
    }


def test_dev_is_a_one_org_solo_spec(tmp_path: Path) -> None:
    init_dev(tmp_path, "dev-chain")
    g = Genesis.from_json((tmp_path / "genesis.json").read_bytes())
    client = _public(tmp_path / "keys" / "client.json")
    assert g.consensus == "solo" and [v.organization for v in g.validators] == ["dev"]
    assert [(a.asset, a.account, a.amount) for a in g.accounts] == [
        ("coin", client, local.CLIENT_FUNDS)
    ]
    assert not g.permissioned and g.time_ms % 1000 == 0
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    assert cfg.name == "dev-node" and cfg.tls is None and cfg.peers == ()
    with pytest.raises(SpecError, match="chainId"):
        init_dev(tmp_path / "bad", "Not A Chain Id")


def test_solo_is_refused_outside_dev() -> None:
    with pytest.raises(SpecError, match=r"consensus\.type"):
        ConsortiumSpec.parse(
            {
                "chainId": "c",
                "consensus": {"type": "solo"},
                "organizations": [{"name": "a", "validators": 1}],
            }
        )


@pytest.mark.parametrize(
    ("present", "trusted", "want"),
    [
        (True, True, plan.CaDecision.HAVE),
        (True, None, plan.CaDecision.HAVE),
        (False, False, plan.CaDecision.ISSUE),
        (False, None, plan.CaDecision.WAIT),
        (False, True, plan.CaDecision.LOST),  # never replace a CA the chain trusts
    ],
)
def test_ca_decision(present: bool, trusted: bool | None, want: plan.CaDecision) -> None:
    assert plan.ca_decision(present, trusted) is want


def _ca() -> x509.Issued:
    return x509.new_ca("acme", NOW, x509.new_private_key(), 1)


def test_node_certs_due_missing_expiring_or_rebound() -> None:
    ca = _ca()
    ids = {"acme-0": b"\x00" * 32, "acme-1": b"\x01" * 32, "acme-2": b"\x02" * 32}

    def cert(member: str, node_id: bytes, days: int) -> x509.Issued:
        key = x509.new_private_key()
        names = (f"{member}.svc",)
        return x509.issue_node_cert(ca, "acme", member, node_id, NOW, key, 2, names, days=days)

    good, short, other = (
        cert("acme-0", ids["acme-0"], 90),
        cert("acme-1", ids["acme-1"], 10),
        cert("acme-2", b"\x09" * 32, 90),
    )
    existing = {
        "acme-0.pem": good.cert_pem,
        "acme-0.key": good.key_pem,
        "acme-1.pem": short.cert_pem,
        "acme-1.key": short.key_pem,
        "acme-2.pem": other.cert_pem,
        "acme-2.key": other.key_pem,
    }
    window = plan.Window(NOW, dt.timedelta(days=30))
    due = plan.node_certs_due("acme", existing, ids, lambda m: (f"{m}.svc",), window)
    assert [(c.member, c.dns_names) for c in due] == [
        ("acme-1", ("acme-1.svc",)),
        ("acme-2", ("acme-2.svc",)),
    ]
    ids["acme-3"] = b"\x03" * 32  # a new member: no certificate yet
    due = plan.node_certs_due("acme", existing, ids, lambda _: (), window)
    assert [c.member for c in due] == ["acme-1", "acme-2", "acme-3"]


def test_a_node_certificate_lacking_a_name_it_must_carry_now_is_due() -> None:
    # an organisation exposed after its certificates were issued: the external address
    # (and name) its peers in other clusters dial must be in the certificate
    ca = _ca()
    node_id = b"\x05" * 32
    issued = x509.issue_node_cert(
        ca, "acme", "acme-0", node_id, NOW, x509.new_private_key(), 2, ("acme-0.svc",)
    )
    existing = {"acme-0.pem": issued.cert_pem, "acme-0.key": issued.key_pem}
    window = plan.Window(NOW, dt.timedelta(days=30))
    ids = {"acme-0": node_id}
    assert plan.node_certs_due("acme", existing, ids, lambda _: ("acme-0.svc",), window) == ()
    due = plan.node_certs_due(
        "acme", existing, ids, lambda _: ("acme-0.svc",), window, lambda _: ("172.18.0.2",)
    )
    assert [(c.member, c.ips) for c in due] == [("acme-0", ("127.0.0.1", "172.18.0.2"))]
    due = plan.node_certs_due("acme", existing, ids, lambda _: ("acme-0.example.org",), window)
    assert [c.dns_names for c in due] == [("acme-0.example.org",)]
    # reissued with them: not due any more
    again = x509.issue_node_cert(
        ca,
        "acme",
        "acme-0",
        node_id,
        NOW,
        x509.new_private_key(),
        3,
        ("acme-0.svc",),
        ("127.0.0.1", "172.18.0.2"),
    )
    existing = {"acme-0.pem": again.cert_pem, "acme-0.key": again.key_pem}
    assert (
        plan.node_certs_due(
            "acme", existing, ids, lambda _: ("acme-0.svc",), window, lambda _: ("172.18.0.2",)
        )
        == ()
    )


def test_client_certs_due() -> None:
    ca = _ca()
    cas = {"acme": ca.cert_pem}
    issued = x509.issue_client_cert(ca, "acme", "u", NOW, x509.new_private_key(), 3, None, 90)
    stored = {"ca.pem": plan.trust_bundle(cas), "client.pem": issued.cert_pem, "client.key": b"k"}
    wanted = [
        plan.ClientCert("s1", "acme", "u"),
        plan.ClientCert("s2", "acme", "v"),
        plan.ClientCert("s3", "beta", "w"),
    ]  # beta has no CA yet: not due
    window = plan.Window(NOW, dt.timedelta(days=30))
    due = plan.client_certs_due(wanted, {"s1": stored}, cas, window)
    assert [c.holder for c in due] == ["s2"]
    # a changed trust bundle (a second organisation's CA) makes every directory due
    cas2 = {**cas, "beta": _ca().cert_pem}
    assert [c.holder for c in plan.client_certs_due(wanted, {"s1": stored}, cas2, window)] == [
        "s1",
        "s2",
        "s3",
    ]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_the_node_package_does_not_import_the_operator() -> None:
    offenders = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "node" / "consortium_node").rglob("*.py")
        if any(m.split(".")[0] == "consortium_operator" for m in _imports(p))
    )
    assert offenders == []


def test_provision_is_pure() -> None:
    """No I/O, clock or randomness source in provision/ (keys and time are passed in)."""
    banned = {"os", "time", "random", "secrets", "subprocess", "socket", "pathlib.Path.open"}
    for p in (ROOT / "node" / "consortium_node" / "provision").glob("*.py"):
        found = {m for m in _imports(p) if m.split(".")[0] in banned}
        assert not found, f"{p.name} imports {found}"
        assert "datetime.now" not in p.read_text() and "urandom" not in p.read_text()
