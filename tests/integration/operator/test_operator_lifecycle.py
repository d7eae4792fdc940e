"""The operator (a real `consortium-operator` process) against a real kube-apiserver: a new
Consortium gets one admin key per organisation (each in that organisation's own Secret) and its
node keys in Secrets, its genesis in an immutable ConfigMap, and
only then its StatefulSets, Services and PDB, all owned by the Consortium; status conditions
are written; restarting the operator and changing the spec never changes keys or genesis; a
template change holds every pod until the rollout gets to it; deletion removes everything and
honours deletionPolicy for the ledger PVCs.

No kubelet or controllers run here, so no pod ever starts: the full lifecycle (Ready, scaling,
rolling upgrades) is the e2e tier's job."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from consortium_node import pki
from consortium_node.ledger.genesis import Genesis
from cryptography import x509

from .conftest import Kubectl, OperatorProcess, eventually

pytestmark = pytest.mark.integration

OWNED = [
    ("secret", "{n}-acme-admin"),
    ("secret", "{n}-beta-admin"),
    ("secret", "{n}-acme-keys"),
    ("secret", "{n}-beta-keys"),
    ("secret", "{n}-acme-ca"),
    ("secret", "{n}-beta-ca"),
    ("secret", "{n}-acme-tls"),
    ("secret", "{n}-beta-tls"),
    ("secret", "{n}-acme-client"),
    ("secret", "{n}-beta-client"),
    ("secret", "{n}-operator-client"),
    ("configmap", "{n}-genesis"),
    ("configmap", "{n}-config"),
    ("statefulset", "{n}-acme"),
    ("statefulset", "{n}-beta"),
    ("service", "{n}-peers"),
    ("service", "{n}-client"),
    ("poddisruptionbudget", "{n}-quorum"),
    ("networkpolicy", "{n}-nodes"),
]


def consortium(name: str, policy: str = "Retain", **extra: Any) -> str:
    spec: dict[str, Any] = {
        "chainId": f"{name}-chain",
        "organizations": [{"name": "acme", "validators": 2}, {"name": "beta", "validators": 2}],
        "deletionPolicy": policy,
        "genesis": {"accounts": [{"asset": "coin", "account": "ab" * 32, "amount": 1000}]},
    }
    spec.update(extra)
    return json.dumps(
        {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def pvc(name: str, consortium: str, org: str) -> str:
    """A PVC as the StatefulSet controller would create it from the volume claim template."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": "consortium-node",
                    "app.kubernetes.io/instance": consortium,
                    "consortium.dev/organization": org,
                },
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )


def wait_created(
    kubectl: Kubectl, ns: str, name: str, op: OperatorProcess
) -> dict[str, dict[str, Any]]:
    def all_there() -> dict[str, dict[str, Any]] | None:
        got = {}
        for kind, pattern in OWNED:
            obj = kubectl.get(kind, pattern.format(n=name), ns)
            if obj is None:
                return None
            got[f"{kind}/{pattern.format(n=name)}"] = obj
        return got

    out: dict[str, dict[str, Any]] = eventually(
        all_there, timeout=90, what=f"objects of {name}", on_fail=op.tail
    )
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    obj = kubectl.get("consortium", name, ns)
    assert obj is not None
    st = obj.get("status") or {}
    assert isinstance(st, dict)
    return st


def conditions(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st.get("conditions") or []}


def secret_entries(obj: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def test_consortium_gets_keys_genesis_workloads_and_status(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns, name = namespace, "alpha"
    assert kubectl.apply(consortium(name), ns).returncode == 0
    objs = wait_created(kubectl, ns, name, operator)
    uid = kubectl.get("consortium", name, ns)["metadata"]["uid"]  # type: ignore[index]

    for key, obj in objs.items():
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [
            ("Consortium", name, uid, True)
        ], key
        assert meta["labels"]["app.kubernetes.io/instance"] == name, key
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "consortium-operator", key

    # keys: one per genesis validator, in Secrets; the genesis lists exactly those keys
    acme = secret_entries(objs[f"secret/{name}-acme-keys"])
    beta = secret_entries(objs[f"secret/{name}-beta-keys"])
    assert sorted(acme) == [f"{name}-acme-0.json", f"{name}-acme-1.json"]
    assert sorted(beta) == [f"{name}-beta-0.json", f"{name}-beta-1.json"]
    pubs = {json.loads(t)["public_key"] for t in (*acme.values(), *beta.values())}
    gcm = objs[f"configmap/{name}-genesis"]
    assert gcm["immutable"] is True
    g = Genesis.from_json(gcm["data"]["genesis.json"])
    assert g.chain_id == f"{name}-chain" and g.consensus == "bft"
    assert {v.node_id.hex() for v in g.validators} == pubs
    # governance by organisations (issue 14): each organisation's own admin key, in its own
    # Secret, is what genesis lists for it; there is no consortium admin key at all
    admins = {
        org: json.loads(secret_entries(objs[f"secret/{name}-{org}-admin"])["admin.json"])
        for org in ("acme", "beta")
    }
    for org, admin in admins.items():
        assert set(secret_entries(objs[f"secret/{name}-{org}-admin"])) == {"admin.json"}
        assert objs[f"secret/{name}-{org}-admin"]["immutable"] is True
        listed = {o.name: o.admins for o in g.organizations}
        assert listed[org] == (bytes.fromhex(admin["public_key"]),)
    assert admins["acme"]["public_key"] != admins["beta"]["public_key"]
    assert g.admins == () and g.governed_by_organizations
    assert kubectl.get("secret", f"{name}-admin", ns) is None
    # no Secret holds two organisations' admin keys, nor any admin key but its own Secret
    secrets = json.loads(kubectl.run("get", "secrets", "-n", ns, "-o", "json").stdout)["items"]
    for sec in secrets:
        text = json.dumps(secret_entries(sec))
        holds = [org for org, a in admins.items() if a["private_key"] in text]
        own = [org for org in admins if sec["metadata"]["name"] == f"{name}-{org}-admin"]
        assert holds == own, sec["metadata"]["name"]
    assert g.accounts[0].amount == 1000
    # no key material in ConfigMaps
    for cm in ("genesis", "config"):
        text = json.dumps(objs[f"configmap/{name}-{cm}"]["data"])
        assert "private_key" not in text
        assert all(a["private_key"] not in text for a in admins.values())
        assert "PRIVATE KEY" not in text
    # TLS: one CA per organisation, listed in genesis; a certificate per node binding its key
    for org, keys in (("acme", acme), ("beta", beta)):
        ca = secret_entries(objs[f"secret/{name}-{org}-ca"])
        assert g.ca_certs()[org] == ca["ca.pem"].encode()
        assert objs[f"secret/{name}-{org}-ca"]["immutable"] is True
        tls = secret_entries(objs[f"secret/{name}-{org}-tls"])
        for entry, text in keys.items():
            pod = entry.removesuffix(".json")
            cert = pki.load_cert(tls[f"{pod}.pem"].encode())
            assert pki.node_id_of(cert) == bytes.fromhex(json.loads(text)["public_key"])
            assert pki.issuer_org(cert, {org: pki.load_cert(ca["ca.pem"].encode())}, _now()) == org
            assert "PRIVATE KEY" in tls[f"{pod}.key"]
    # client TLS directories: one per organisation (for its users) and the operator's own;
    # each trusts every organisation's CA and holds a certificate of its organisation
    bundle = "".join(g.ca_certs()[o].decode() for o in sorted(("acme", "beta")))
    for secret, org in (
        ("acme-client", "acme"),
        ("beta-client", "beta"),
        ("operator-client", "acme"),
    ):
        d = secret_entries(objs[f"secret/{name}-{secret}"])
        assert set(d) == {"ca.pem", "client.pem", "client.key"} and d["ca.pem"] == bundle
        cert = pki.load_cert(d["client.pem"].encode())
        cas = {o: pki.load_cert(pem) for o, pem in g.ca_certs().items()}
        assert pki.issuer_org(cert, cas, _now()) == org
    assert g.permissioned

    # workloads
    sts = objs[f"statefulset/{name}-acme"]
    assert sts["spec"]["replicas"] == 2 and sts["spec"]["serviceName"] == f"{name}-peers"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "consortium/node:it"
    assert container["readinessProbe"]["grpc"]["port"] == 7053  # plaintext health only
    assert "--tls-cert-file" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert objs[f"poddisruptionbudget/{name}-quorum"]["spec"]["maxUnavailable"] == 1
    assert objs[f"service/{name}-peers"]["spec"]["clusterIP"] == "None"

    # status: genesis done, not ready (no pods can run here), progressing
    def written() -> dict[str, Any] | None:
        st = status_of(kubectl, ns, name)
        return st if "GenesisReady" in conditions(st) else None

    st = eventually(written, timeout=30, what="status", on_fail=operator.tail)
    c = conditions(st)
    assert c["GenesisReady"]["status"] == "True" and c["GenesisReady"]["reason"] == "GenesisWritten"
    assert c["Ready"]["status"] == "False"
    assert c["Progressing"]["status"] == "True"
    assert c["Degraded"]["status"] == "False"
    assert st["observedGeneration"] == 1 and st["phase"] == "Creating"
    assert st["genesisHash"] == g.hash.hex() and st["chainId"] == f"{name}-chain"
    assert st["endpoint"] == f"{name}-client.{ns}.svc:7050"
    assert st["readyValidators"] == "0/4"
    # kubectl wait sees it
    kubectl.run(
        "wait", "--for=condition=GenesisReady", f"consortium/{name}", "-n", ns, "--timeout=10s"
    )

    events = kubectl.run("get", "events", "-n", ns, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"KeysCreated", "GenesisWritten"} <= reasons


def test_rerunning_never_changes_keys_or_genesis(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns, name = namespace, "beta"
    assert kubectl.apply(consortium(name), ns).returncode == 0
    before = wait_created(kubectl, ns, name, operator)

    def snapshot(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "admins": [objs[f"secret/{name}-{o}-admin"]["data"] for o in ("acme", "beta")],
            "acme": objs[f"secret/{name}-acme-keys"]["data"],
            "beta": objs[f"secret/{name}-beta-keys"]["data"],
            "genesis": objs[f"configmap/{name}-genesis"]["data"],
        }

    # kopf's diff base lives in the operator's memory, not in an annotation (diffbase.py);
    # one an earlier operator left is removed with the next handled change
    legacy = "consortium.dev/last-handled-configuration"
    obj = kubectl.get("consortium", name, ns)
    assert obj is not None and legacy not in (obj["metadata"].get("annotations") or {})
    kubectl.run("annotate", "consortium", name, "-n", ns, f"{legacy}=" + '{"spec":{}}')

    # the operator restarts (resume) and the spec changes (image, scale): same chain
    operator.restart()
    patch = [
        {"op": "add", "path": "/spec/image", "value": "consortium/node:v2"},
        {"op": "replace", "path": "/spec/organizations/0/validators", "value": 3},
    ]
    kubectl.run("patch", "consortium", name, "-n", ns, "--type=json", "-p", json.dumps(patch))

    def observed_gen2() -> bool:
        return bool(status_of(kubectl, ns, name).get("observedGeneration") == 2)

    eventually(observed_gen2, timeout=60, what="observedGeneration 2", on_fail=operator.tail)
    after = wait_created(kubectl, ns, name, operator)
    assert snapshot(after) == snapshot(before)
    obj = kubectl.get("consortium", name, ns)
    assert obj is not None and legacy not in (obj["metadata"].get("annotations") or {})

    # the new template is in place but every pod is held until the rollout reaches it
    sts = after[f"statefulset/{name}-acme"]
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "consortium/node:v2"
    assert (
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == sts["spec"]["replicas"] == 2
    )
    # scaling waits for the chain (no node answers here): no pod added behind its back
    assert sts["spec"]["replicas"] == 2


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_removes_workloads_and_honours_deletion_policy(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, policy: str
) -> None:
    ns, name = namespace, f"del-{policy.lower()}"
    assert kubectl.apply(consortium(name, policy), ns).returncode == 0
    wait_created(kubectl, ns, name, operator)
    obj = kubectl.get("consortium", name, ns)
    assert obj is not None and obj["metadata"].get("finalizers") == ["consortium.dev/finalizer"]
    for org in ("acme", "beta"):
        assert kubectl.apply(pvc(f"data-{name}-{org}-0", name, org), ns).returncode == 0
    # another consortium's volume must survive either way
    assert kubectl.apply(pvc("data-other-acme-0", "other", "acme"), ns).returncode == 0

    kubectl.run("delete", "consortium", name, "-n", ns, "--wait=true", "--timeout=60s", timeout=90)
    assert kubectl.get("consortium", name, ns) is None
    for kind, pattern in OWNED:
        assert kubectl.get(kind, pattern.format(n=name), ns) is None, f"{kind} survived"
    pvcs = {
        p["metadata"]["name"]
        for p in json.loads(kubectl.run("get", "pvc", "-n", ns, "-o", "json").stdout)["items"]
        if not p["metadata"].get("deletionTimestamp")
    }
    ours = {f"data-{name}-acme-0", f"data-{name}-beta-0"}
    if policy == "Retain":
        assert ours <= pvcs
    else:
        assert not (ours & pvcs)
    assert "data-other-acme-0" in pvcs


def test_drift_is_repaired_after_convergence_of_the_handler(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns, name = namespace, "drift"
    assert kubectl.apply(consortium(name), ns).returncode == 0
    wait_created(kubectl, ns, name, operator)
    kubectl.run("delete", "service", f"{name}-client", "-n", ns)
    kubectl.run("delete", "poddisruptionbudget", f"{name}-quorum", "-n", ns)
    eventually(
        lambda: (
            kubectl.get("service", f"{name}-client", ns) is not None
            and kubectl.get("poddisruptionbudget", f"{name}-quorum", ns) is not None
        ),
        timeout=40,
        what="client Service and PDB recreated",
        on_fail=operator.tail,
    )


def test_node_certificates_are_reissued_before_expiry(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns, name = namespace, "rota"
    spec: dict[str, Any] = {"security": {"certValidityDays": 60, "certRenewBeforeDays": 20}}
    assert kubectl.apply(consortium(name, **spec), ns).returncode == 0
    objs = wait_created(kubectl, ns, name, operator)
    tls = secret_entries(objs[f"secret/{name}-acme-tls"])
    pod = f"{name}-acme-0"
    first = pki.load_cert(tls[f"{pod}.pem"].encode())
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    assert dt.timedelta(days=59) < lifetime < dt.timedelta(days=61)
    # Replace the certificate by one expiring inside the lead time (as if 45 days passed).
    ca = secret_entries(objs[f"secret/{name}-acme-ca"])
    node_id = pki.node_id_of(first)
    assert node_id is not None
    old = pki.issue_node_cert(
        pki.Issued(ca["ca.pem"].encode(), ca["ca.key"].encode()),
        "acme", pod, node_id, _now(), pki.new_private_key(), 99, days=10,
    )  # fmt: skip
    patch = {
        "data": {
            f"{pod}.pem": base64.b64encode(old.cert_pem).decode(),
            f"{pod}.key": base64.b64encode(old.key_pem).decode(),
        }
    }
    p = kubectl.run(
        "patch", "secret", f"{name}-acme-tls", "-n", ns, "--type=merge", "-p", json.dumps(patch)
    )
    assert p.returncode == 0, p.stderr
    # a spec change triggers a pass at once (the status timer would too, more slowly)
    assert kubectl.apply(consortium(name, image="consortium/node:v2", **spec), ns).returncode == 0

    def renewed() -> x509.Certificate | None:
        obj = kubectl.get("secret", f"{name}-acme-tls", ns)
        assert obj is not None
        cert = pki.load_cert(secret_entries(obj)[f"{pod}.pem"].encode())
        return cert if cert.serial_number != 99 else None

    fresh = eventually(renewed, timeout=60, what="certificate renewal", on_fail=operator.tail)
    assert fresh.not_valid_after_utc - _now() > dt.timedelta(days=50)
    assert pki.node_id_of(fresh) == node_id
    # the other pods' certificates were left alone
    obj = kubectl.get("secret", f"{name}-acme-tls", ns)
    assert obj is not None
    assert secret_entries(obj)[f"{name}-acme-1.pem"] == tls[f"{name}-acme-1.pem"]


def test_cli_context_from_the_operators_client_secret(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """`consortium context from-cluster` against the real kube-apiserver: the TLS directory
    is the operator's client Secret of the organisation, the context becomes current, and
    the CLI finds the TLS material through it with no flags."""
    ns, name = namespace, "ctx"
    assert kubectl.apply(consortium(name), ns).returncode == 0
    objs = wait_created(kubectl, ns, name, operator)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubectl.kubeconfig),
        "CONSORTIUM_CONTEXTS": str(tmp_path / "contexts.yaml"),
        "HOME": str(tmp_path),
    }
    env.pop("CONSORTIUM_TLS_DIR", None)
    cli = [str(Path(sys.executable).parent / "consortium")]
    args = ["context", "from-cluster", "prod", "--consortium", name, "--org", "beta", "-n", ns]
    proc = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = secret_entries(objs[f"secret/{name}-beta-client"])
    got_dir = tmp_path / "contexts" / "prod"
    for f in ("ca.pem", "client.pem", "client.key"):
        assert (got_dir / f).read_text() == want[f]
    assert (got_dir / "client.key").stat().st_mode & 0o077 == 0
    doc = yaml.safe_load((tmp_path / "contexts.yaml").read_text())
    assert doc["current"] == "prod"
    assert doc["contexts"]["prod"]["endpoint"] == f"{name}-client.{ns}.svc:7050"
    # an organisation the consortium does not have: one line, non-zero, nothing written
    bad = [*args[:-4], "--org", "nobody", "-n", ns]
    proc = subprocess.run([*cli, *bad], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "nobody-client not found" in proc.stderr
    assert not (tmp_path / "contexts" / "nobody").exists()


def test_a_lost_ca_secret_is_not_replaced_by_an_untrusted_ca(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    """After genesis the chain trusts only the CA it lists: a deleted CA Secret is reported
    (restore it from a backup), never silently replaced — a new CA's certificates would be
    refused by every node."""
    ns, name = namespace, "lost"
    assert kubectl.apply(consortium(name), ns).returncode == 0
    objs = wait_created(kubectl, ns, name, operator)
    client_before = secret_entries(objs[f"secret/{name}-acme-client"])
    kubectl.run("delete", "secret", f"{name}-acme-ca", "-n", ns)
    eventually(
        lambda: (
            f"Secret {name}-acme-ca (the CA of acme, which the chain trusts) is missing"
            in operator.tail(20000)
        ),
        60,
        "the operator to report the missing CA",
        operator.tail,
    )
    assert kubectl.get("secret", f"{name}-acme-ca", ns) is None
    client = kubectl.get("secret", f"{name}-acme-client", ns)
    assert client is not None and secret_entries(client) == client_before


def test_no_new_key_over_a_retained_ledger_volume(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    """A consortium deleted with deletionPolicy Retain leaves its ledger PVCs; one created
    again under the same name must not mint new node keys over that old data (the
    quorum-kubernetes incident): Degraded with OldDataExists until a person deletes it."""
    ns, name = namespace, "again"
    assert kubectl.apply(pvc(f"data-{name}-acme-1", name, "acme"), ns).returncode == 0
    assert kubectl.apply(consortium(name), ns).returncode == 0

    def refused() -> dict[str, Any] | None:
        st = status_of(kubectl, ns, name)
        d = conditions(st).get("Degraded") or {}
        return st if d.get("reason") == "OldDataExists" else None

    st = eventually(refused, timeout=60, what="OldDataExists", on_fail=operator.tail)
    assert f"data-{name}-acme-1" in conditions(st)["Degraded"]["message"]
    assert st["phase"] == "Degraded"
    keys = kubectl.get("secret", f"{name}-acme-keys", ns)
    assert keys is None or f"{name}-acme-1.json" not in (keys.get("data") or {})
    assert kubectl.get("configmap", f"{name}-genesis", ns) is None
    # the person decides the old data is not this chain's: the consortium is created
    kubectl.run("delete", "pvc", f"data-{name}-acme-1", "-n", ns, "--wait=false")
    kubectl.run(
        "patch",
        "pvc",
        f"data-{name}-acme-1",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
        check=False,
    )
    objs = wait_created(kubectl, ns, name, operator)
    assert f"{name}-acme-1.json" in objs[f"secret/{name}-acme-keys"]["data"]


def test_member_key_in_the_client_secret_vouched_for_in_genesis_and_taken_by_the_context(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Issue 20: beta declares memberKey: its client Secret carries a member key (key.json)
    that the genesis lists as beta's member; `consortium context from-cluster` makes it the
    context's signing key. acme (no memberKey) gets none; no Secret holds another
    organisation's member key."""
    ns, name = namespace, "member"
    orgs = [{"name": "acme", "validators": 2}, {"name": "beta", "validators": 2, "memberKey": True}]
    assert kubectl.apply(consortium(name, organizations=orgs), ns).returncode == 0
    objs = wait_created(kubectl, ns, name, operator)
    beta = secret_entries(objs[f"secret/{name}-beta-client"])
    assert set(beta) == {"ca.pem", "client.pem", "client.key", "key.json"}
    member = json.loads(beta["key.json"])
    assert "key.json" not in secret_entries(objs[f"secret/{name}-acme-client"])
    g = Genesis.from_json(objs[f"configmap/{name}-genesis"]["data"]["genesis.json"])
    listed = {o.name: o.members for o in g.organizations}
    assert listed == {"acme": (), "beta": (bytes.fromhex(member["public_key"]),)}
    secrets = json.loads(kubectl.run("get", "secrets", "-n", ns, "-o", "json").stdout)["items"]
    holders = [
        s["metadata"]["name"]
        for s in secrets
        if member["private_key"] in json.dumps(secret_entries(s))
    ]
    assert holders == [f"{name}-beta-client"]
    # the context signs with it, no --key
    env = {
        **os.environ,
        "KUBECONFIG": str(kubectl.kubeconfig),
        "CONSORTIUM_CONTEXTS": str(tmp_path / "contexts.yaml"),
        "HOME": str(tmp_path),
    }
    for var in ("CONSORTIUM_TLS_DIR", "CONSORTIUM_KEY", "CONSORTIUM_CONTEXT"):
        env.pop(var, None)
    cli = [str(Path(sys.executable).parent / "consortium")]
    args = ["context", "from-cluster", "beta", "--consortium", name, "--org", "beta", "-n", ns]
    proc = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "signing key: the member key of beta" in proc.stdout
    doc = yaml.safe_load((tmp_path / "contexts.yaml").read_text())
    assert doc["contexts"]["beta"]["key"] == "contexts/beta/key.json"
    got = json.loads((tmp_path / "contexts" / "beta" / "key.json").read_text())
    assert got["public_key"] == member["public_key"]
    assert (tmp_path / "contexts" / "beta" / "key.json").stat().st_mode & 0o077 == 0
