"""Operator side of issue 7: per-organisation CA and node certificates (pki.py, pure given
clock/keys/serials), rotation lead time, genesis organisations and membership, the rendered
NetworkPolicy and pod hardening, and no secret material in what the operator renders into
ConfigMaps or genesis."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any

import pytest
import yaml
from consortium_node import pki as x509pki
from consortium_node.ledger.genesis import Genesis
from consortium_node.provision.pki import ClientCert, NodeCert
from consortium_operator import genesis, pki
from consortium_operator.model import (
    CLIENT_PORT,
    PEER_PORT,
    ConsortiumSpec,
    Names,
    Owner,
    SpecError,
)
from consortium_operator.plan import OrgTarget
from consortium_operator.render import PUBLIC_PORT, Renderer
from consortium_operator.settings import Settings
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.unit

NOW = dt.datetime(2031, 5, 1, tzinfo=dt.UTC)
N = Names("demo")
OWNER = Owner("demo", "chains", "0b5c2b8e-0000-4000-8000-000000000001")


def spec(**extra: Any) -> ConsortiumSpec:
    return ConsortiumSpec.parse(
        {
            "chainId": "demo-chain",
            "organizations": [
                {"name": "acme", "validators": 2},
                {"name": "globex", "validators": 2},
            ],
            **extra,
        }
    )


def seeded(seed: int) -> Any:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def test_node_certificate_for_a_pod() -> None:
    ca = pki.org_ca("acme", NOW, ec.derive_private_key(11, ec.SECP256R1()), 1)
    node_id = pki.new_key(seeded(1)).public
    names = Renderer(Settings(), N, OWNER).node_dns_names("demo-acme-0")
    issued = pki.node_tls(
        ca, NodeCert("acme", "demo-acme-0", node_id, tuple(names)),
        pki.Issue(NOW, ec.derive_private_key(12, ec.SECP256R1()), pki.serial_from(seeded(2)), 90),
    )  # fmt: skip
    cert = x509pki.load_cert(issued.cert_pem)
    assert x509pki.node_id_of(cert) == node_id
    assert x509pki.issuer_org(cert, {"acme": x509pki.load_cert(ca.cert_pem)}, NOW) == "acme"
    assert pki.serial_from(seeded(2)) == cert.serial_number  # injected, reproducible


def test_renewal_lead_time() -> None:
    ca = pki.org_ca("acme", NOW, ec.derive_private_key(11, ec.SECP256R1()), 1)
    cert = pki.node_tls(
        ca, NodeCert("acme", "p", b"\x01" * 32, ("localhost",)),
        pki.Issue(NOW, ec.derive_private_key(12, ec.SECP256R1()), 5, 90),
    ).cert_pem  # fmt: skip
    lead = dt.timedelta(days=30)
    assert not pki.needs_renewal(cert, NOW + dt.timedelta(days=59), lead)
    assert pki.needs_renewal(cert, NOW + dt.timedelta(days=60), lead)
    assert pki.needs_renewal(b"garbage", NOW, lead)


def test_genesis_lists_organisations_cas_and_members() -> None:
    member = "ab" * 32
    s = spec(genesis={"members": [{"organization": "globex", "key": member}]})
    keys = {
        pod: pki.new_key(seeded(i)).public
        for i, (pod, _) in enumerate(genesis.initial_members(s, N))
    }
    ca = pki.org_ca("acme", NOW, ec.derive_private_key(11, ec.SECP256R1()), 1)
    g = genesis.build(s, N, keys, b"\x09" * 32, 1, ca_certs={"acme": ca.cert_pem})
    assert g.permissioned
    assert [o.name for o in g.organizations] == ["acme", "globex"]
    assert g.ca_certs() == {"acme": ca.cert_pem}
    assert g.organizations[1].members == (bytes.fromhex(member),)
    assert Genesis.from_json(g.canonical()).canonical() == g.canonical()
    assert b"PRIVATE" not in g.canonical()
    open_g = genesis.build(spec(genesis={"membership": "open"}), N, keys, b"\x09" * 32, 1)
    assert not open_g.permissioned


@pytest.mark.parametrize(
    "bad",
    [
        {"genesis": {"membership": "anyone"}},
        {"genesis": {"members": [{"organization": "nobody", "key": "ab" * 32}]}},
        {"genesis": {"members": [{"organization": "acme", "key": "xyz"}]}},
        {"security": {"certValidityDays": 30, "certRenewBeforeDays": 30}},
        {"security": {"clientCidrs": ["not a cidr"]}},
    ],
)
def test_invalid_security_specs(bad: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        spec(**bad)


def test_network_policy_admits_peers_only_from_the_consortium() -> None:
    r = Renderer(Settings(), N, OWNER)
    np = r.network_policy(spec(), "operators")
    assert np["kind"] == "NetworkPolicy" and np["spec"]["policyTypes"] == ["Ingress"]
    rules = np["spec"]["ingress"]
    peer = next(x for x in rules if {"port": PEER_PORT, "protocol": "TCP"} in x.get("ports", []))
    assert peer["from"] == [{"podSelector": {"matchLabels": N.selector()}}]
    client = next(x for x in rules if {"port": CLIENT_PORT, "protocol": "TCP"} in x["ports"])
    assert client["from"] == []  # default: every source (mutual TLS still applies)
    restricted = r.network_policy(
        spec(security={"clientCidrs": ["10.1.0.0/16"], "publicReads": True}), "operators"
    )
    client = next(
        x
        for x in restricted["spec"]["ingress"]
        if {"port": CLIENT_PORT, "protocol": "TCP"} in x["ports"]
    )
    assert {"ipBlock": {"cidr": "10.1.0.0/16"}} in client["from"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0"}} not in client["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "operators"}}
    } in client["from"]
    assert {"port": PUBLIC_PORT, "protocol": "TCP"} in client["ports"]


def _workloads() -> list[dict[str, Any]]:
    s = spec()
    keys = {N.pod(o, i): bytes([ord(o[0]), i]) * 16 for o in ("acme", "globex") for i in range(2)}
    return Renderer(Settings(), N, OWNER).workloads(
        s, {"acme": OrgTarget(2, 0), "globex": OrgTarget(2, 0)}, keys, "ab" * 32
    )


def test_pods_are_hardened() -> None:
    for sts in [m for m in _workloads() if m["kind"] == "StatefulSet"]:
        pod = sts["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert not sc.get("privileged", False)
        keys_volume = next(v for v in pod["volumes"] if v["name"] == "keys")
        assert keys_volume["secret"]["defaultMode"] & 0o007 == 0  # not world-readable


_SECRET = re.compile(r"PRIVATE KEY|private_key")


def test_no_secret_material_in_rendered_configmaps_or_genesis() -> None:
    r = Renderer(Settings(), N, OWNER)
    node_keys = {f"demo-acme-{i}": pki.new_key(seeded(10 + i)) for i in range(2)}
    secret = r.keys_secret("acme", {p: pki.key_file(k) for p, k in node_keys.items()})
    seeds = [k.seed.hex() for k in node_keys.values()]
    s = spec()
    keys = {
        pod: pki.new_key(seeded(i)).public
        for i, (pod, _) in enumerate(genesis.initial_members(s, N))
    }
    g = genesis.build(s, N, keys, b"\x09" * 32, 1)
    cm = r.genesis_configmap(genesis.canonical_json(g), g.hash.hex())
    rendered = [m for m in _workloads() if m["kind"] == "ConfigMap"] + [cm]
    for m in rendered:
        text = yaml.safe_dump(m) + json.dumps(m)
        assert not _SECRET.search(text), m["metadata"]["name"]
        for sd in seeds:
            assert sd not in text
    assert secret["kind"] == "Secret"  # ... they live in Secrets only


def test_certs_to_issue_missing_expiring_or_rebound() -> None:
    ca = pki.org_ca("acme", NOW, ec.derive_private_key(11, ec.SECP256R1()), 1)
    a, b = b"\x01" * 32, b"\x02" * 32

    def cert(node_id: bytes, days: int) -> bytes:
        return pki.node_tls(
            ca, NodeCert("acme", "p", node_id, ("localhost",)),
            pki.Issue(NOW, ec.derive_private_key(12, ec.SECP256R1()), 5, days),
        ).cert_pem  # fmt: skip

    lead = dt.timedelta(days=30)
    keys = {"demo-acme-0": a, "demo-acme-1": b, "demo-acme-2": a}
    existing = {
        "demo-acme-0.pem": cert(a, 90),
        "demo-acme-0.key": b"k",
        "demo-acme-1.pem": cert(b, 10),  # inside the lead time
        "demo-acme-1.key": b"k",
        "demo-acme-2.pem": cert(b, 90),  # binds another node id
        "demo-acme-2.key": b"k",
    }
    assert pki.certs_to_issue(existing, keys, NOW, lead) == ["demo-acme-1", "demo-acme-2"]
    assert pki.certs_to_issue({}, {"demo-acme-0": a}, NOW, lead) == ["demo-acme-0"]
    assert pki.certs_to_issue(existing, {"demo-acme-0": a}, NOW, lead) == []
    renderer = Renderer(Settings(), N, OWNER)
    secret = renderer.tls_secret("acme", {"demo-acme-0": pki.Issued(b"C", b"K")})
    assert secret["metadata"]["name"] == N.tls_secret("acme") and secret["type"] == "Opaque"
    assert sorted(secret["data"]) == ["demo-acme-0.key", "demo-acme-0.pem"]
    assert f"demo-acme-0.{N.peers_service}.chains.svc" in renderer.node_dns_names("demo-acme-0")


def test_client_tls_directory_is_rewritten_when_due() -> None:
    acme = pki.org_ca("acme", NOW, ec.derive_private_key(11, ec.SECP256R1()), 1)
    globex = pki.org_ca("globex", NOW, ec.derive_private_key(13, ec.SECP256R1()), 2)
    bundle = pki.trust_bundle({"globex": globex.cert_pem, "acme": acme.cert_pem})
    # both CAs, in organisation order, each ending in a newline
    assert bundle == acme.cert_pem + globex.cert_pem
    assert [x509pki.organization_of(c) for c in x509pki.load_certs(bundle)] == ["acme", "globex"]

    def client(ca: pki.Issued, days: int) -> pki.Issued:
        return pki.client_tls(
            ca, ClientCert("", "acme", "acme-client"),
            pki.Issue(NOW, ec.derive_private_key(14, ec.SECP256R1()), 7, days),
        )  # fmt: skip

    lead = dt.timedelta(days=30)
    good = client(acme, 90)
    current = {"ca.pem": bundle, "client.pem": good.cert_pem, "client.key": good.key_pem}
    assert not pki.client_dir_due(current, bundle, acme.cert_pem, NOW, lead)
    assert pki.client_dir_due(None, bundle, acme.cert_pem, NOW, lead)  # absent
    partial = {k: v for k, v in current.items() if k != "client.key"}
    assert pki.client_dir_due(partial, bundle, acme.cert_pem, NOW, lead)  # entry missing
    assert pki.client_dir_due(current, acme.cert_pem, acme.cert_pem, NOW, lead)  # bundle changed
    expiring = client(acme, 10)
    assert pki.client_dir_due(
        {**current, "client.pem": expiring.cert_pem}, bundle, acme.cert_pem, NOW, lead
    )
    # issued by another CA than the organisation's (its CA was replaced): reissue
    assert pki.client_dir_due(current, bundle, globex.cert_pem, NOW, lead)
    cert = x509pki.load_cert(good.cert_pem)
    assert x509pki.issuer_org(cert, {"acme": x509pki.load_cert(acme.cert_pem)}, NOW) == "acme"
    assert "consortium:client:acme-client" in x509pki._uris(cert)


def test_client_secrets_hold_no_material_outside_secrets() -> None:
    r = Renderer(Settings(), N, OWNER)
    issued = pki.Issued(b"CERT", b"-----BEGIN PRIVATE KEY-----")
    s = r.client_secret(N.client_secret("acme"), "acme", b"CA", issued)
    assert s["kind"] == "Secret" and s["metadata"]["name"] == "demo-acme-client"
    assert N.operator_client_secret == "demo-operator-client"
    for m in _workloads():  # no workload mentions the client key material
        assert "PRIVATE KEY" not in json.dumps(m)
