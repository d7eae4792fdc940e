"""A federated Consortium against a real kube-apiserver and the real operator process (issue
15): organisation acme runs here, beta and gamma elsewhere (their keys made in the test, as
their own clusters would). The ceremony as a person runs it with the CLI and kubectl:

  ceremony.json in a ConfigMap -> the operator makes acme's keys and CA and publishes acme's
  contribution in status -> `consortium ceremony contribute-from-cluster` exports it signed
  with acme's admin key from acme's Secret -> assemble with beta's and gamma's -> each signs
  (acme with `consortium ceremony sign` and its admin key from its Secret) -> ConfigMaps with
  genesis.json and the signatures, spec.genesisFrom pins the sha256.

A missing signature keeps the Consortium Degraded (BadSignature) with no genesis ConfigMap and
no StatefulSet; once the signature is added, the genesis is adopted byte for byte and only
acme's StatefulSet and per-pod NodePort Service exist. No Secret of beta or gamma exists here."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from consortium_node import pki
from consortium_node.crypto import Ed25519Key
from consortium_node.provision import ceremony as cer

from .conftest import Kubectl, OperatorProcess, eventually

pytestmark = pytest.mark.integration

SEED = 1516
NOW = dt.datetime.now(dt.UTC)
CLI = str(Path(sys.executable).parent / "consortium")


class Remote:
    """An organisation of another cluster: its keys exist only in this object."""

    def __init__(self, name: str, rng: random.Random, address: str) -> None:
        self.name = name
        self.admin = Ed25519Key(rng.randbytes(32))
        self.ca = pki.new_ca(name, NOW, pki.new_private_key(), rng.getrandbits(62) + 1).cert_pem
        self.validator = cer.Validator(
            f"fed-{name}-0", Ed25519Key(rng.randbytes(32)).public, address
        )

    def spec(self) -> dict[str, Any]:
        v = self.validator
        return {
            "name": self.name,
            "validators": 1,
            "remote": {
                "caCert": self.ca.decode(),
                "admins": [self.admin.public.hex()],
                "validators": [{"name": v.name, "nodeId": v.node_id.hex(), "address": v.address}],
            },
        }

    def contribution(self, ceremony: bytes) -> bytes:
        return cer.contribute(
            ceremony, self.name, self.ca, [self.admin.public], [], [self.validator], self.admin
        )


def configmap(kubectl: Kubectl, ns: str, name: str, files: dict[str, bytes]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {k: v.decode() for k, v in files.items()},
    }
    p = kubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    assert p.returncode == 0, p.stderr


def cli(kubectl: Kubectl, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig), "HOME": str(tmp)}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def conditions(kubectl: Kubectl, ns: str) -> dict[str, dict[str, Any]]:
    obj = kubectl.get("consortium", "fed", ns)
    assert obj is not None
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_the_ceremony_with_the_cli_and_kubectl(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns = namespace
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    beta = Remote("beta", rng, "172.18.0.3:30751")
    gamma = Remote("gamma", rng, "172.18.0.3:30761")
    ceremony = cer.init("fed-it", ["acme", "beta", "gamma"], {"type": "raft"}, {}, 1_767_225_600)
    configmap(kubectl, ns, "fed-ceremony", {"ceremony.json": ceremony})
    spec = {
        "chainId": "fed-it",
        "consensus": {"type": "raft"},
        "localOrganizations": ["acme"],
        "ceremony": {"configMap": "fed-ceremony"},
        "organizations": [
            {"name": "acme", "validators": 1, "expose": {"address": "172.18.0.2"}},
            beta.spec(),
            gamma.spec(),
        ],
    }
    manifest = {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": "fed"},
        "spec": spec,
    }
    assert kubectl.apply(json.dumps(manifest), ns).returncode == 0

    def published() -> dict[str, Any] | None:
        obj = kubectl.get("consortium", "fed", ns)
        entries = ((obj or {}).get("status") or {}).get("contributions") or []
        return next((e for e in entries if e["organization"] == "acme"), None)

    entry = eventually(published, timeout=90, what="acme's contribution", on_fail=operator.tail)
    assert entry["validators"][0]["address"] == "172.18.0.2:30751"
    cond = conditions(kubectl, ns)["GenesisReady"]
    assert cond["status"] == "False" and cond["reason"] == "WaitingForCeremony"

    # acme exports its contribution, signed in its own cluster
    contrib_acme = tmp_path / "contribution-acme.json"
    p = cli(
        kubectl,
        tmp_path,
        "ceremony",
        "contribute-from-cluster",
        "-c",
        "fed",
        "--org",
        "acme",
        "-n",
        ns,
        "-o",
        str(contrib_acme),
    )
    assert p.returncode == 0, p.stderr
    parsed = cer.parse_contribution(contrib_acme.read_bytes(), ceremony)
    assert parsed.validators[0].node_id.hex() == entry["validators"][0]["nodeId"]
    # an organisation that is not local here: one line, non-zero
    p = cli(
        kubectl,
        tmp_path,
        "ceremony",
        "contribute-from-cluster",
        "-c",
        "fed",
        "--org",
        "beta",
        "-n",
        ns,
        "-o",
        str(tmp_path / "x.json"),
    )
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "no contribution of beta" in p.stderr

    # what a person adds to the spec for another organisation: its contribution as an entry
    (tmp_path / "contribution-beta.json").write_bytes(beta.contribution(ceremony))
    p = cli(kubectl, tmp_path, "ceremony", "remote-org", str(tmp_path / "contribution-beta.json"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == beta.spec()

    genesis = cer.assemble(
        ceremony,
        [gamma.contribution(ceremony), contrib_acme.read_bytes(), beta.contribution(ceremony)],
    )
    (tmp_path / "genesis.json").write_bytes(genesis)
    admin = kubectl.get("secret", "fed-acme-admin", ns)
    assert admin is not None
    (tmp_path / "acme-admin.json").write_bytes(base64.b64decode(admin["data"]["admin.json"]))
    p = cli(
        kubectl,
        tmp_path,
        "ceremony",
        "sign",
        str(tmp_path / "genesis.json"),
        "--org",
        "acme",
        "--contribution",
        str(contrib_acme),
        "--key",
        str(tmp_path / "acme-admin.json"),
        "-o",
        str(tmp_path / "genesis-acme.sig"),
    )
    assert p.returncode == 0, p.stderr
    sigs = {
        "genesis-acme.sig": (tmp_path / "genesis-acme.sig").read_bytes(),
        "genesis-beta.sig": cer.sign(genesis, "beta", beta.contribution(ceremony), beta.admin),
    }
    sha = cer.sha256hex(genesis)
    configmap(kubectl, ns, "fed-ceremony-genesis", {"genesis.json": genesis})
    configmap(kubectl, ns, "fed-sigs", sigs)  # gamma has not signed yet
    pin = {"configMap": "fed-ceremony-genesis", "sha256": sha, "signaturesConfigMap": "fed-sigs"}
    patch = [{"op": "add", "path": "/spec/genesisFrom", "value": pin}]
    kubectl.run("patch", "consortium", "fed", "-n", ns, "--type=json", "-p", json.dumps(patch))

    def degraded() -> dict[str, Any] | None:
        c = conditions(kubectl, ns).get("Degraded")
        return c if c and c["reason"] == "BadSignature" else None

    c = eventually(degraded, timeout=60, what="BadSignature", on_fail=operator.tail)
    assert c["status"] == "True" and "not signed by gamma" in c["message"]
    assert kubectl.get("configmap", "fed-genesis", ns) is None  # the nodes' genesis: none
    assert kubectl.get("statefulset", "fed-acme", ns) is None  # no node on an unsigned genesis

    sigs["genesis-gamma.sig"] = cer.sign(
        genesis, "gamma", gamma.contribution(ceremony), gamma.admin
    )
    configmap(kubectl, ns, "fed-sigs", sigs)

    def adopted() -> dict[str, Any] | None:
        return kubectl.get("statefulset", "fed-acme", ns)

    eventually(adopted, timeout=60, what="acme's StatefulSet", on_fail=operator.tail)
    # the operator's own genesis ConfigMap (what the nodes mount) holds the signed bytes
    own = kubectl.get("configmap", "fed-genesis", ns)
    assert own is not None and own["data"]["genesis.json"].encode() == genesis
    st = (kubectl.get("consortium", "fed", ns) or {}).get("status") or {}
    assert st.get("genesisHash") == sha
    assert kubectl.get("statefulset", "fed-beta", ns) is None
    assert kubectl.get("statefulset", "fed-gamma", ns) is None
    svc = kubectl.get("service", "fed-acme-0-ext", ns)
    assert svc is not None and svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 30751
    config = kubectl.get("configmap", "fed-config", ns)
    assert config is not None and set(config["data"]) == {"acme.yaml"}
    assert "172.18.0.3:30761" in config["data"]["acme.yaml"]  # gamma dialled at its address
    # no other organisation's key material in this cluster
    secrets = json.loads(kubectl.run("get", "secrets", "-n", ns, "-o", "json").stdout)["items"]
    assert not [
        s["metadata"]["name"]
        for s in secrets
        if "beta" in s["metadata"]["name"] or "gamma" in s["metadata"]["name"]
    ]
    blob = json.dumps(secrets)
    for party in (beta, gamma):
        assert party.admin.public.hex() not in blob


def test_a_fourth_organisation_joins_from_its_own_cluster(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """delta, not in the ceremony, runs here: acme, beta and gamma's chain runs elsewhere
    (their keys made in the test). delta's operator adopts the ceremony's genesis, creates
    its StatefulSet at once (non-validators trusting delta's own CA; no kubelet here, so no
    pod runs), and publishes delta's contribution after the genesis, which the CLI exports
    as a joining contribution and `remote-org` turns into the members' spec entry."""
    ns = namespace
    print(f"seed {SEED + 1}")
    rng = random.Random(SEED + 1)
    members = [
        Remote(n, rng, f"172.18.0.{i + 3}:30751") for i, n in enumerate(("acme", "beta", "gamma"))
    ]
    ceremony = cer.init("fed-join", [m.name for m in members], {"type": "raft"}, {}, 1_767_225_600)
    genesis = cer.assemble(ceremony, [m.contribution(ceremony) for m in members])
    sigs = {
        f"genesis-{m.name}.sig": cer.sign(genesis, m.name, m.contribution(ceremony), m.admin)
        for m in members
    }
    configmap(kubectl, ns, "fed-ceremony", {"ceremony.json": ceremony})
    configmap(kubectl, ns, "fed-ceremony-genesis", {"genesis.json": genesis})
    configmap(kubectl, ns, "fed-sigs", sigs)
    sha = cer.sha256hex(genesis)
    spec = {
        "chainId": "fed-join",
        "consensus": {"type": "raft"},
        "localOrganizations": ["delta"],
        "ceremony": {"configMap": "fed-ceremony"},
        "genesisFrom": {
            "configMap": "fed-ceremony-genesis",
            "sha256": sha,
            "signaturesConfigMap": "fed-sigs",
        },
        "organizations": [
            *(m.spec() for m in members),
            {"name": "delta", "validators": 1, "expose": {"address": "172.18.0.9", "port": 30781}},
        ],
    }
    manifest = {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": "fed"},
        "spec": spec,
    }
    assert kubectl.apply(json.dumps(manifest), ns).returncode == 0

    def joining() -> dict[str, Any] | None:
        obj = kubectl.get("consortium", "fed", ns) or {}
        st = obj.get("status") or {}
        published = [c for c in st.get("contributions") or [] if c["organization"] == "delta"]
        return st if st.get("genesisHash") and published else None

    # (the phase stays Creating here: no controller-manager settles the StatefulSet; the
    # Joining phase is the unit tests' and the kind tier's)
    st = eventually(joining, timeout=120, what="delta's contribution", on_fail=operator.tail)
    assert st["genesisHash"] == sha
    sts = kubectl.get("statefulset", "fed-delta", ns)
    assert sts is not None and sts["spec"]["replicas"] == 1  # started before admission
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["own-ca"]["secret"]["items"] == [{"key": "ca.pem", "path": "ca.pem"}]
    config = kubectl.get("configmap", "fed-config", ns)
    assert config is not None and "/tls-own-ca/ca.pem" in config["data"]["delta.yaml"]

    out = tmp_path / "contribution-delta.json"
    p = cli(
        kubectl,
        tmp_path,
        *("ceremony", "contribute-from-cluster", "-c", "fed", "--org", "delta"),
        *("-n", ns, "-o", str(out)),
    )
    assert p.returncode == 0, p.stderr
    joined = cer.parse_contribution(out.read_bytes(), ceremony, joining=True)
    assert joined.validators[0].address == "172.18.0.9:30781"
    with pytest.raises(cer.CeremonyError, match="delta is not an organisation"):
        cer.assemble(ceremony, [*(m.contribution(ceremony) for m in members), out.read_bytes()])
    p = cli(kubectl, tmp_path, "ceremony", "remote-org", str(out))
    assert p.returncode == 0, p.stderr
    entry = json.loads(p.stdout)
    assert entry["name"] == "delta" and entry["remote"]["validators"][0]["name"] == "fed-delta-0"
    # no member organisation's key material here
    blob = kubectl.run("get", "secrets", "-n", ns, "-o", "json").stdout
    assert not [m.name for m in members if m.admin.public.hex() in blob]
