"""Federation on three real kind clusters (issue 15): one operator in each, organisation a in
cluster A (KUBECONFIG), b and c in cluster B (E2E_FED_PEER_KUBECONFIG), and d, which joins
the running chain later, in cluster C (E2E_FED_JOIN_KUBECONFIG) — `make test-federation`
boots all three, loads the images, runs this (then README's federation blocks,
test_readme_federation.py), takes them down.

Peers reach each other only through the external addresses: each exposed node has a NodePort
Service on its kind node's address, which the node certificate names and the other clusters'
nodes dial; mutual TLS end to end. The genesis ceremony is run as people run it, with the CLI
and kubectl, files only between the clusters:

  consortium ceremony init -> ConfigMap in A and B -> each operator publishes its
  organisations' contributions in status -> `ceremony contribute-from-cluster` in each
  cluster (signed there with the organisation's admin key from its own Secret) -> `ceremony
  assemble` -> `ceremony sign` by each organisation with its key from its own cluster ->
  `ceremony verify` -> genesis + signatures ConfigMaps, the other organisations' entries
  (`ceremony remote-org`) and spec.genesisFrom in each cluster -> both Ready, one chain.

Then blocks commit with the same genesis on both sides, a proposal by a (cluster A) executes
on b's vote cast with the CLI in cluster B. Then d joins: its spec in cluster C pins the same
genesis and describes a, b, c from their contributions; its node starts as a non-validator
(phase Joining, WaitingForAdmission); its contribution, exported in C, is added to A's and
B's specs; their operators propose and vote AddOrganization; d's node catches up, d's
operator proposes its validator, A's and B's second it; all three clusters commit with four
validators. Finally no organisation's private key exists in another cluster (every Secret of
each cluster is searched for the other clusters' keys). Timings are printed with an `[e2e]`
prefix."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from consortium_node.cli.context import save_context

from .conftest import Kube
from .consortium_fixtures import (
    CHARTS,
    CLIENT_PORT,
    Chain,
    helm_run,
    install_crds,
    ready_now,
    report,
    split_image,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

NAME = "fed"
CHAIN_ID = "fed-e2e"
CLI = str(Path(sys.executable).parent / "consortium")
CTX_DIR = "/tmp/ctx"
NODE_PORT = {"a": 30751, "b": 30761, "c": 30771, "d": 30781}


@dataclass
class Side:
    """One cluster: its kubectl, helm, namespace, and the organisations its operator runs."""

    kube: Kube
    helm: list[str]
    namespace: str
    orgs: tuple[str, ...]
    address: str = ""

    @property
    def chain(self) -> Chain:
        return Chain(self.kube, self.namespace, NAME)


def node_address(kube: Kube) -> str:
    nodes = kube.json("get", "nodes")["items"]
    assert len(nodes) == 1, [n["metadata"]["name"] for n in nodes]
    return str({a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}["InternalIP"])


def peer_kube(kube: Kube, env: str) -> Kube:
    """The Kube of the kind cluster whose kubeconfig the environment variable `env` names."""
    config = os.environ.get(env, "")
    if not config:
        pytest.skip(f"no {env} (run 'make test-federation')")
    context = subprocess.run(
        [kube.binary, "--kubeconfig", config, "config", "current-context"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert context.startswith("kind-") and context != kube.context, context
    return Kube(binary=kube.binary, kubeconfig=config, context=context)


@pytest.fixture(scope="module")
def sides(
    kube: Kube,
    helm: list[str],
    node_image: str,
    operator_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Side, Side, Side]]:
    """The operator chart in a fresh namespace of each of the three clusters (a; b and c; d,
    which joins later); removed afterwards."""
    peer = peer_kube(kube, "E2E_FED_PEER_KUBECONFIG")
    joiner = peer_kube(kube, "E2E_FED_JOIN_KUBECONFIG")
    assert peer.context != joiner.context
    ns = f"e2e-fed-{uuid.uuid4().hex[:6]}"

    def helm_of(k: Kube) -> list[str]:
        return [helm[0], "--kubeconfig", str(k.kubeconfig), "--kube-context", k.context]

    a = Side(kube, helm, ns, ("a",))
    b = Side(peer, helm_of(peer), ns, ("b", "c"))
    d = Side(joiner, helm_of(joiner), ns, ("d",))
    op_repo, op_tag = split_image(operator_image)
    node_repo, node_tag = split_image(node_image)
    try:
        for side in (a, b, d):
            side.address = node_address(side.kube)
            side.kube.run("create", "namespace", ns)
            side.kube.run("label", "namespace", ns, "e2e.consortium/test=true")
            install_crds(side.kube, side.helm)
            t0 = time.monotonic()
            helm_run(
                side.helm,
                *("install", "consortium-operator", str(CHARTS / "consortium-operator")),
                *("--namespace", ns),
                *("--set", f"image.repository={op_repo},image.tag={op_tag}"),
                *("--set", f"nodeImage.repository={node_repo},nodeImage.tag={node_tag}"),
                *("--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{ns}}}"),
                *("--wait", "--timeout", "180s"),
            )
            report(
                request.config,
                f"{side.kube.context}: helm install (--wait) {time.monotonic() - t0:.1f}s",
            )
        assert len({a.address, b.address, d.address}) == 3
        yield a, b, d
    finally:
        for side in (a, b, d):
            side.kube.run(
                "--namespace",
                ns,
                "delete",
                "consortia",
                "--all",
                "--timeout=120s",
                check=False,
                timeout=150,
            )
            subprocess.run(
                [
                    *side.helm,
                    "uninstall",
                    "consortium-operator",
                    "--namespace",
                    ns,
                    "--wait",
                    "--timeout",
                    "120s",
                ],
                capture_output=True,
                check=False,
                timeout=150,
            )
            side.kube.run("delete", "namespace", ns, "--wait=false", check=False)


def cli(side: Side | None, tmp: Path, *args: str) -> str:
    """`consortium ARGS` on this machine, with the side's kubeconfig (its own cluster only)."""
    env = {**os.environ, "HOME": str(tmp)}
    if side is not None:
        env["KUBECONFIG"] = str(side.kube.kubeconfig)
    p = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp)
    assert p.returncode == 0, f"consortium {' '.join(args)}: {p.stderr}"
    return p.stdout


def manifest(side: Side, other: Side) -> dict[str, Any]:
    """The first spec of a side: its organisations exposed at its node's address, the others
    as a name and a validator count (the ceremony tells the rest)."""
    orgs = [
        {"name": o, "validators": 1, "expose": {"address": side.address, "port": NODE_PORT[o]}}
        for o in side.orgs
    ] + [{"name": o, "validators": 1} for o in other.orgs]
    order = {"a": 0, "b": 1, "c": 2}
    return {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": NAME},
        "spec": {
            "chainId": CHAIN_ID,
            "consensus": {"type": "raft"},
            "localOrganizations": list(side.orgs),
            "ceremony": {"configMap": "fed-ceremony"},
            "organizations": sorted(orgs, key=lambda o: order[str(o["name"])]),
        },
    }


def configmap(side: Side, name: str, files: dict[str, Path]) -> None:
    args = [f"--from-file={k}={v}" for k, v in files.items()]
    text = side.kube.run(
        "--namespace",
        side.namespace,
        "create",
        "configmap",
        name,
        *args,
        "--dry-run=client",
        "-o",
        "json",
    ).stdout
    side.kube.apply(text, namespace=side.namespace)


def use_org_context(c: Chain, org: str) -> None:
    """ORG's person's ~/.consortium in the client pod: ORG's client TLS directory and ORG's
    admin key, both from ORG's own cluster (this Chain's)."""
    with tempfile.TemporaryDirectory() as tmp:
        contexts = Path(tmp) / "contexts.yaml"
        tls = c.secret(f"{NAME}-{org}-client")
        save_context(
            org,
            f"{NAME}-client:{CLIENT_PORT}",
            tls,
            Path(f"{CTX_DIR}/{org}-admin.json"),
            path=contexts,
        )
        files = {"contexts.yaml": contexts.read_bytes()}
    c.put_files(CTX_DIR, files)
    c.put_files(f"{CTX_DIR}/contexts/{org}", tls)
    c.put_files(CTX_DIR, {f"{org}-admin.json": c.secret(f"{NAME}-{org}-admin")["admin.json"]})


def start_client(c: Chain, image: str) -> None:
    """A pod running the node image's `consortium` CLI (as Chain.start_client, without its
    first `keys new`, which this test does not need)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": c.client_pod, "labels": {"e2e.consortium/test": "client"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/usr/bin/tini", "--", "sleep", "infinity"],
                    "env": [{"name": "HOME", "value": "/tmp"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    c.kube.apply(json.dumps(pod), namespace=c.namespace)
    c.k("wait", "--for=condition=Ready", f"pod/{c.client_pod}", "--timeout=120s", timeout=150)


def cli_as(c: Chain, org: str, *args: str) -> str:
    p = c.kube.run(
        *("--namespace", c.namespace, "exec", c.client_pod, "--"),
        *("env", "-u", "CONSORTIUM_TLS_DIR", f"CONSORTIUM_CONTEXTS={CTX_DIR}/contexts.yaml"),
        f"CONSORTIUM_CONTEXT={org}",
        *("consortium", *args),
        check=False,
        timeout=300,  # a CLI start in a pod takes long on a loaded 2-core machine
    )
    assert p.returncode == 0, f"consortium {' '.join(args)} as {org}: {p.stderr}"
    return p.stdout


def run_ceremony(a: Side, b: Side, tmp: Path) -> list[str]:
    """The genesis ceremony as people run it (module docstring); returns the signature
    files, next to genesis.json in `tmp`."""
    cli(
        None,
        tmp,
        "ceremony",
        "init",
        "--chain-id",
        CHAIN_ID,
        "--org",
        "a",
        "--org",
        "b",
        "--org",
        "c",
        "--consensus",
        "raft",
        "--out",
        "ceremony.json",
    )
    for side, other in ((a, b), (b, a)):
        configmap(side, "fed-ceremony", {"ceremony.json": tmp / "ceremony.json"})
        side.kube.apply(json.dumps(manifest(side, other)), namespace=side.namespace)

    # each operator publishes its organisations' contributions; each is exported, signed, in
    # its own cluster
    for side in (a, b):

        def published(side: Side = side) -> bool:
            st = side.chain.get().get("status") or {}
            return {c["organization"] for c in st.get("contributions") or []} == set(side.orgs)

        side.chain.wait(f"{side.kube.context}: contributions in status", published, 240)
        for org in side.orgs:
            cli(
                side,
                tmp,
                "ceremony",
                "contribute-from-cluster",
                "-c",
                NAME,
                "--org",
                org,
                "-n",
                side.namespace,
                "-o",
                f"contribution-{org}.json",
            )
    contributions = [f"contribution-{o}.json" for o in ("c", "a", "b")]
    cli(
        None,
        tmp,
        "ceremony",
        "assemble",
        "ceremony.json",
        *contributions,
        "-o",
        "genesis.json",
    )
    for side in (a, b):
        for org in side.orgs:
            key = tmp / f"{org}-admin.json"  # read from ITS cluster, removed right after
            key.write_bytes(side.chain.secret(f"{NAME}-{org}-admin")["admin.json"])
            try:
                cli(
                    None,
                    tmp,
                    "ceremony",
                    "sign",
                    "genesis.json",
                    "--org",
                    org,
                    "--contribution",
                    f"contribution-{org}.json",
                    "--key",
                    str(key),
                    "--ceremony",
                    "ceremony.json",
                    "-o",
                    f"genesis-{org}.sig",
                )
            finally:
                key.unlink()
    sigs = [f"genesis-{o}.sig" for o in ("a", "b", "c")]
    cli(None, tmp, "ceremony", "verify", "genesis.json", *sigs)
    return sigs


def cross_cluster_vote(a: Side, b: Side, node_image: str) -> None:
    """a proposes in cluster A; b votes with the CLI in cluster B; it executes."""
    for side, org in ((a, "a"), (b, "b")):
        start_client(side.chain, node_image)
        use_org_context(side.chain, org)
    cli_as(
        a.chain,
        "a",
        "gov",
        "propose",
        "set-param",
        "max_tx_bytes",
        "262144",
        "--wait-timeout",
        "30",
    )
    listed = json.loads(cli_as(b.chain, "b", "gov", "list", "--open", "--json"))
    (p,) = [p for p in listed["proposals"] if p["proposer"] == "a"]
    assert p["state"] == "PENDING", p
    cli_as(b.chain, "b", "gov", "vote", str(p["id"]), "yes", "--wait-timeout", "30")

    def executed() -> dict[str, Any] | None:
        shown = json.loads(cli_as(a.chain, "a", "gov", "show", str(p["id"]), "--json"))
        return shown if shown["state"] == "EXECUTED" else None

    shown = a.chain.wait("a's proposal executed on b's vote", executed, 90)
    assert {v["organization"] for v in shown["votes"]} == {"a", "b"}, shown


def test_two_clusters_one_chain_then_a_fourth_organisation_joins(
    sides: tuple[Side, Side, Side],
    node_image: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    a, b, d = sides
    t0 = time.monotonic()
    sigs = run_ceremony(a, b, tmp_path)
    genesis = (tmp_path / "genesis.json").read_bytes()
    sha = hashlib.sha256(genesis).hexdigest()
    report(
        request.config,
        f"ceremony (init -> verified genesis {sha[:16]}): {time.monotonic() - t0:.1f}s",
    )

    # each cluster applies the genesis by reference, with the other organisations described
    t1 = time.monotonic()
    for side, other in ((a, b), (b, a)):
        configmap(side, "fed-ceremony-genesis", {"genesis.json": tmp_path / "genesis.json"})
        configmap(side, "fed-sigs", {s: tmp_path / s for s in sigs})
        remote = {
            o: json.loads(cli(None, tmp_path, "ceremony", "remote-org", f"contribution-{o}.json"))
            for o in other.orgs
        }
        orgs = [
            remote[str(o["name"])] if o["name"] in remote else o
            for o in manifest(side, other)["spec"]["organizations"]
        ]
        pin = {
            "configMap": "fed-ceremony-genesis",
            "sha256": sha,
            "signaturesConfigMap": "fed-sigs",
        }
        side.chain.patch(
            [
                {"op": "replace", "path": "/spec/organizations", "value": orgs},
                {"op": "add", "path": "/spec/genesisFrom", "value": pin},
            ]
        )
    for side in (a, b):
        side.chain.wait_ready(timeout=420, validators=f"{len(side.orgs)}/3")
    report(request.config, f"genesisFrom -> both clusters Ready: {time.monotonic() - t1:.1f}s")

    # one chain: the same genesis, blocks committing on both sides
    for side in (a, b):
        st = side.chain.get()["status"]
        assert st["genesisHash"] == sha, st
        assert st["organizations"] == ["a", "b", "c"], st
        cm = side.chain.json("get", "configmap", f"{NAME}-genesis")
        assert cm["data"]["genesis.json"].encode() == genesis
        svc = side.chain.json("get", "service", f"{NAME}-{side.orgs[0]}-0-ext")
        assert svc["spec"]["ports"][0]["nodePort"] == NODE_PORT[side.orgs[0]]
    h0 = {s.kube.context: int(s.chain.get()["status"]["height"]) for s in (a, b)}

    def both_advanced() -> bool:
        return all(int(s.chain.get()["status"]["height"]) >= h0[s.kube.context] + 3 for s in (a, b))

    a.chain.wait("both clusters report 3 more blocks", both_advanced, 120)

    cross_cluster_vote(a, b, node_image)

    # a fourth organisation, d, joins the running chain from a third cluster
    t2 = time.monotonic()
    join(a, b, d, tmp_path, sha, request)
    report(request.config, f"d joined (spec -> 4 validators): {time.monotonic() - t2:.1f}s")

    # no organisation's private key in another cluster: every private key of one side
    # (admin and node key seeds, CA key PEM) is searched for in every Secret of the others
    for side in (a, b, d):
        for other in (a, b, d):
            if other is not side:
                assert_no_keys_of(other, side)
    report(request.config, f"federation e2e total: {time.monotonic() - t0:.1f}s")


def _private(c: Chain, org: str) -> list[str]:
    """The private parts of ORG's keys in its own cluster: admin and node key seeds (hex),
    the CA key's PEM body."""
    out = [json.loads(c.secret(f"{NAME}-{org}-admin")["admin.json"])["private_key"]]
    keys = c.secret(f"{NAME}-{org}-keys")
    out += [json.loads(v)["private_key"] for k, v in keys.items() if k.endswith(".json")]
    pem = c.secret(f"{NAME}-{org}-ca")["ca.key"].decode()
    out.append("".join(line for line in pem.splitlines() if "PRIVATE" not in line))
    return out


def assert_no_keys_of(other: Side, side: Side) -> None:
    """No private key of `other`'s organisations is in any Secret of `side`'s cluster."""
    secrets = [p for org in other.orgs for p in _private(other.chain, org)]
    assert len(secrets) == 3 * len(other.orgs), len(secrets)  # admin, node, CA per org
    items = side.chain.json("get", "secrets")["items"]
    blob = "\n".join(
        base64.b64decode(v).decode(errors="replace")
        for s in items
        for v in (s.get("data") or {}).values()
    )
    flat = blob.replace("\n", "")
    leaked = [i for i, private in enumerate(secrets) if private in blob or private in flat]
    assert not leaked, (
        f"{len(leaked)} private key(s) of {other.kube.context} in {side.kube.context}"
    )
    names = {s["metadata"]["name"] for s in items}
    assert not [n for n in names if any(f"{NAME}-{o}-" in n for o in other.orgs)], names


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def join(a: Side, b: Side, d: Side, tmp: Path, sha: str, request: pytest.FixtureRequest) -> None:
    """d's person gets the chain's public files (ceremony.json, genesis, signatures, the
    members' contributions), describes the members as remote and pins the genesis; d's
    operator starts its node as a non-validator and waits for admission; d's contribution
    goes to the members, each adds d with `ceremony remote-org`; their operators propose and
    vote AddOrganization; d's node catches up and d's operator proposes its validator, which
    the members' operators second. Every step is read from d's status."""
    configmap(d, "fed-ceremony", {"ceremony.json": tmp / "ceremony.json"})
    configmap(d, "fed-ceremony-genesis", {"genesis.json": tmp / "genesis.json"})
    configmap(d, "fed-sigs", {f"genesis-{o}.sig": tmp / f"genesis-{o}.sig" for o in "abc"})
    members = [
        json.loads(cli(None, tmp, "ceremony", "remote-org", f"contribution-{o}.json"))
        for o in "abc"
    ]
    spec = {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": NAME},
        "spec": {
            "chainId": CHAIN_ID,
            "consensus": {"type": "raft"},
            "localOrganizations": ["d"],
            "ceremony": {"configMap": "fed-ceremony"},
            "genesisFrom": {
                "configMap": "fed-ceremony-genesis",
                "sha256": sha,
                "signaturesConfigMap": "fed-sigs",
            },
            "organizations": [
                *members,
                {"name": "d", "validators": 1, "expose": {"address": d.address, "port": 30781}},
            ],
        },
    }
    d.kube.apply(json.dumps(spec), namespace=d.namespace)
    seen: list[str] = []

    def waiting_for_admission() -> dict[str, Any] | None:
        obj = d.chain.get()
        st = obj.get("status") or {}
        prog = conditions(obj).get("Progressing", {})
        seen.append(f"{st.get('phase')}/{prog.get('reason')}")
        ok = st.get("phase") == "Joining" and prog.get("reason") == "WaitingForAdmission"
        published = {c["organization"] for c in st.get("contributions") or []} == {"d"}
        return obj if ok and published else None

    d.chain.wait("d: Joining, WaitingForAdmission", waiting_for_admission, 300)
    assert d.chain.get()["status"]["genesisHash"] == sha
    cli(
        d,
        tmp,
        *("ceremony", "contribute-from-cluster", "-c", NAME, "--org", "d"),
        *("-n", d.namespace, "-o", "contribution-d.json"),
    )
    entry = json.loads(cli(None, tmp, "ceremony", "remote-org", "contribution-d.json"))
    assert entry["remote"]["validators"][0]["address"] == f"{d.address}:30781", entry
    for side in (a, b):
        orgs = side.chain.get()["spec"]["organizations"]
        side.chain.patch(
            [{"op": "replace", "path": "/spec/organizations", "value": [*orgs, entry]}]
        )

    def admitted_and_validating() -> dict[str, Any] | None:
        obj = d.chain.get()
        st = obj.get("status") or {}
        prog = conditions(obj).get("Progressing", {})
        seen.append(f"{st.get('phase')}/{prog.get('reason')}")
        ok = st.get("organizations") == ["a", "b", "c", "d"] and ready_now(obj)
        return obj if ok and st.get("readyValidators") == "1/4" else None

    d.chain.wait("d admitted, caught up, its validator added", admitted_and_validating, 420)
    steps = list(dict.fromkeys(seen))  # in order, without repeats
    report(request.config, f"d's steps: {' -> '.join(steps)}")
    assert any(s.startswith("Joining/") for s in steps), steps
    for side, want in ((a, "1/4"), (b, "2/4")):
        side.chain.wait_ready(timeout=180, validators=want)
    h = {s.kube.context: int(s.chain.get()["status"]["height"]) for s in (a, b, d)}

    def all_advanced() -> bool:
        return all(
            int(s.chain.get()["status"]["height"]) >= h[s.kube.context] + 3 for s in (a, b, d)
        )

    d.chain.wait("three clusters report 3 more blocks", all_advanced, 120)

    def links_up() -> bool:  # each cluster reaches every remote validator, and says so
        for side in (a, b, d):
            obj = side.chain.get()
            peers = (obj.get("status") or {}).get("remotePeers") or []
            remote = {o for o in "abcd" if o not in side.orgs}
            if {p["organization"] for p in peers} != remote or not all(
                p["connected"] for p in peers
            ):
                return False
            if conditions(obj).get("PeerUnreachable", {}).get("status") != "False":
                return False
        return True

    d.chain.wait("status.remotePeers all connected, PeerUnreachable False", links_up, 120)
