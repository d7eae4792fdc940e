"""The whole product on a real cluster, as a user runs it: `helm install` the CRD and operator
charts, `kubectl apply -f examples/consortium.yaml` (4 BFT validators), wait for Ready, send
and read transactions through the client Service, scale an organisation up and down, roll a
new node image, kill the leader pod, delete the consortium.

The tests of this module run in order on one consortium (module-scoped fixtures) in a
namespace of their own; the operator is installed namespaced (watch.clusterWide=false), so
its Role-only RBAC is exercised against a real API server and it cannot touch anything else.
Timings (helm install, apply -> Ready, recoveries) are printed with an `[e2e]` prefix."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from consortium_node import pki as x509pki
from cryptography.hazmat.primitives import serialization

from tests.support.wait import wait_for

from .conftest import Kube
from .consortium_fixtures import (
    CHARTS,
    EXAMPLE,
    NODE_SELECTOR,
    Chain,
    helm_run,
    install_crds,
    load_image,
    ready_now,
    report,
    split_image,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

UPGRADE_TAG = "e2e-rollout"


@dataclass(frozen=True)
class Installed:
    kube: Kube
    helm: list[str]
    namespace: str
    release: str


@pytest.fixture(scope="module")
def installed(
    kube: Kube,
    helm: list[str],
    node_image: str,
    operator_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Installed]:
    """CRD chart + operator chart (namespaced to a fresh namespace), removed afterwards."""
    ns = f"e2e-consortium-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", ns)
    kube.run("label", "namespace", ns, "e2e.consortium/test=true")
    release = "consortium-operator"
    try:
        install_crds(kube, helm)
        op_repo, op_tag = split_image(operator_image)
        node_repo, node_tag = split_image(node_image)
        t0 = time.monotonic()
        helm_run(
            helm,
            "install",
            release,
            str(CHARTS / "consortium-operator"),
            "--namespace",
            ns,
            "--set",
            f"image.repository={op_repo},image.tag={op_tag}",
            "--set",
            f"nodeImage.repository={node_repo},nodeImage.tag={node_tag}",
            "--set",
            "watch.clusterWide=false",
            "--set",
            f"watch.namespaces={{{ns}}}",
            "--wait",
            "--timeout",
            "180s",
        )
        seconds = time.monotonic() - t0
        report(request.config, f"helm install consortium-operator (--wait): {seconds:.1f}s")
        yield Installed(kube, helm, ns, release)
    finally:
        # consortia first, while the operator still runs its finalizer
        kube.run(
            *("--namespace", ns, "delete", "consortia", "--all", "--timeout=120s"),
            check=False,
            timeout=150,
        )
        try:
            helm_run(helm, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "120s")
        finally:
            kube.run("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chain(installed: Installed, node_image: str, request: pytest.FixtureRequest) -> Chain:
    """examples/consortium.yaml applied with kubectl and Ready; a client pod beside it."""
    example = yaml.safe_load(EXAMPLE.read_text())
    c = Chain(installed.kube, installed.namespace, example["metadata"]["name"])
    c.start_client(node_image)  # before the apply: not part of the measured time
    t0 = time.monotonic()
    c.k("apply", "-f", str(EXAMPLE))
    # what the user types; bounded, then checked against the current generation below
    waited = c.kube.run(
        *("--namespace", c.namespace, "wait", "--for=condition=Ready", f"consortium/{c.name}"),
        "--timeout=300s",
        check=False,
        timeout=330,
    )
    if waited.returncode != 0:
        pytest.fail(
            f"kubectl wait Ready: {waited.stderr.strip()}\n{c.diagnostics()}", pytrace=False
        )
    c.wait_ready(timeout=60)
    c.timings["apply_to_ready"] = time.monotonic() - t0
    c.use_client_tls("acme")  # TLS is on: the client pod gets acme's client certificate
    # Each node pod's own DNS name, as the tests below dial it. The nodes dial each other by
    # these names from their first second, before every pod has an address, and CoreDNS
    # caches that NXDOMAIN for the zone's 30 s TTL, for every client (a landing run read
    # "cannot resolve host" 15 s after Ready): poll until each resolves, and check below that
    # no pod was replaced meanwhile, which a late re-creation would show.
    c.wait_every_node("its own DNS name answers", lambda ep: bool(c.status(ep)), timeout=90)
    c.at_ready = {p["metadata"]["name"]: p["metadata"]["uid"] for p in c.pods()}
    c.vouch_client("acme")  # the example's genesis is permissioned: an admin vouches for our key
    report(
        request.config,
        f"kubectl apply -f examples/consortium.yaml -> Ready (4 BFT validators): "
        f"{c.timings['apply_to_ready']:.1f}s",
    )
    return c


def test_example_becomes_ready(chain: Chain) -> None:
    # Ready means every validator is up and caught up; the first (empty) block follows within
    # the empty-block interval, and the status timer reports it.
    # (status is written by passes and the status timer: wait until one reports both, rather
    # than asserting on whichever snapshot comes first — a run saw height 1 with 3/4 ready)
    obj = chain.wait(
        "the first committed block and 4/4 ready validators in status",
        lambda: (
            o
            if (s := (o := chain.get())["status"]).get("height", 0) >= 1
            and s.get("readyValidators") == "4/4"
            else None
        ),
        60,
    )
    status = obj["status"]
    assert status["phase"] == "Running", status
    assert status["validators"] == 4 and status["readyValidators"] == "4/4", status
    assert status["height"] >= 1
    assert status["leader"], status
    assert status["endpoint"].startswith(f"{chain.name}-client.{chain.namespace}.svc:")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "GenesisReady": "True",
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "WaitingForApprovals": "False",
    }
    assert status["governance"] == "organizations" and status["proposals"] == []
    pods = chain.pods()
    assert len(pods) == 4
    for pod in pods:
        sc = pod["spec"]["containers"][0]["securityContext"]
        assert sc.get("readOnlyRootFilesystem") is True
    names = {s["metadata"]["name"] for s in chain.json("get", "secrets")["items"]}
    # governance by organisations: each organisation's own admin key, no consortium admin key
    own = {f"{chain.name}-{o}-{kind}" for o in ("acme", "globex") for kind in ("admin", "keys")}
    assert own <= names and f"{chain.name}-admin" not in names
    chain.k("get", "service", f"{chain.name}-client")
    chain.k("get", "pdb", f"{chain.name}-quorum")
    # the printer columns answer `kubectl get consortia`
    table = chain.k("get", "consortia")
    assert "4/4" in table and "bft" in table


def test_transactions_through_client_service(chain: Chain) -> None:
    result = chain.put("e2e/hello", "world")
    assert result["height"] >= 1
    # through the Service again, which may pick a node a block behind the one that answered
    # the put (a landing run read "not found at height 3" that way): read as of the put
    assert chain.read("e2e/hello", min_height=result["height"]) == "world", result
    # every node has the committed value (replicated, not just the node that answered)
    for pod in chain.pods():
        chain.wait_value("e2e/hello", "world", chain.pod_endpoint(pod["metadata"]["name"]))
    status = chain.status()
    assert status["chain_id"] == "demo-chain"
    assert len(status["validators"]) == 4


def test_nodes_speak_mutual_tls_only(chain: Chain) -> None:
    """The cluster runs TLS by default: a client without a certificate, with a certificate
    from a stranger CA (even one calling itself acme), or in plaintext is refused; acme's
    client certificate from the operator's Secret works, against the Service and a pod name."""
    now = dt.datetime.now(dt.UTC)
    stranger_ca = x509pki.new_ca("acme", now, x509pki.new_private_key(), 7)
    stranger = x509pki.issue_client_cert(
        stranger_ca, "acme", "mallory", now, x509pki.new_private_key(), 8
    )
    real = chain.secret(f"{chain.name}-acme-client")
    chain.put_files("/tmp/anon", {"ca.pem": real["ca.pem"]})
    chain.put_files(
        "/tmp/stranger",
        {"ca.pem": real["ca.pem"], "client.pem": stranger.cert_pem, "client.key": stranger.key_pem},
    )
    status = ("status", "--endpoint", chain.endpoint)
    for env, why in (
        ({"CONSORTIUM_TLS_DIR": "/tmp/anon"}, "no client certificate"),
        ({"CONSORTIUM_TLS_DIR": "/tmp/stranger"}, "a stranger CA's certificate"),
        ({"CONSORTIUM_TLS_DIR": ""}, "plaintext"),
    ):
        proc = chain.cli_result(*status, env=env)
        assert proc.returncode != 0, f"{why}: the node answered:\n{proc.stdout}"
        # (kubectl exec adds its own "command terminated with exit code 1" line)
        err = [ln for ln in proc.stderr.splitlines() if not ln.startswith("command terminated")]
        assert len(err) == 1 and err[0].startswith("error:"), (why, proc.stderr)
    ok = chain.cli_result(*status, "--json", env={})
    assert ok.returncode == 0, ok.stderr
    pods = chain.pods()
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods} == chain.at_ready
    pod = pods[0]["metadata"]["name"]
    ok = chain.cli_result("status", "--endpoint", chain.pod_endpoint(pod), env={})
    assert ok.returncode == 0, ok.stderr
    # the node pods run with their certificates: config and arguments say so
    cfg = chain.json("get", "configmap", f"{chain.name}-config")
    node_cfg = yaml.safe_load(cfg["data"]["acme.yaml"])
    assert node_cfg["tls"]["cert_file"] and node_cfg["tls"]["key_file"], node_cfg


def test_cli_context_from_cluster_through_port_forward(chain: Chain, tmp_path: Path) -> None:
    """The README's path for a user outside the cluster: `kubectl port-forward` to the client
    Service, `consortium context from-cluster` (globex's client Secret), then plain
    `consortium status` over mutual TLS with no flags (the node certificate names localhost)."""
    k = chain.kube
    with subprocess.Popen(
        [
            *(k.binary, "--kubeconfig", k.kubeconfig, "--context", k.context),
            *("-n", chain.namespace, "port-forward", f"service/{chain.name}-client", "0:7050"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            port = _forwarded_port(proc, 60)
            env = {
                **os.environ,
                "KUBECONFIG": k.kubeconfig,
                "HOME": str(tmp_path),
                "CONSORTIUM_CONTEXTS": str(tmp_path / "contexts.yaml"),
            }
            env.pop("CONSORTIUM_TLS_DIR", None)
            cli = str(Path(sys.executable).parent / "consortium")
            made = subprocess.run(
                [
                    *(cli, "context", "from-cluster", "e2e", "--consortium", chain.name),
                    *("--org", "globex", "-n", chain.namespace, "--kube-context", k.context),
                    *("--endpoint", f"localhost:{port}"),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert made.returncode == 0, made.stderr
            got = subprocess.run(
                [cli, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
            )
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout.splitlines()[-1])["chain_id"] == "demo-chain"
        finally:
            proc.kill()
            proc.wait(10)


def _forwarded_port(proc: subprocess.Popen[str], timeout: float) -> int:
    """The local port `kubectl port-forward ... 0:PORT` chose (its first output line)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"kubectl port-forward printed nothing in {timeout:g}s", pytrace=False)
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+) ->", line)
    if m is None:
        pytest.fail(f"kubectl port-forward: {line.strip()}", pytrace=False)
    return int(m.group(1))


def test_node_certificate_rotates_without_restart(chain: Chain) -> None:
    """A node's certificate entry disappears from its organisation's TLS Secret (as if it had
    to be reissued): the operator issues a new one, kubelet refreshes the mounted file, the
    node reloads it (no restart), and the chain keeps committing through it."""
    pod = f"{chain.name}-globex-0"
    secret = f"{chain.name}-globex-tls"
    old = chain.secret(secret)[f"{pod}.pem"]
    restarts = chain.json("get", "pod", pod)["status"]["containerStatuses"][0]["restartCount"]
    ops = [
        {"op": "remove", "path": f"/data/{pod}.pem"},
        {"op": "remove", "path": f"/data/{pod}.key"},
    ]
    chain.k("patch", "secret", secret, "--type=json", "-p", json.dumps(ops))

    def reissued() -> bytes | None:
        pem = chain.secret(secret).get(f"{pod}.pem")
        return pem if pem is not None and pem != old else None

    new = chain.wait("the operator reissues the certificate", reissued, 90)
    cert = x509pki.load_cert(new)
    assert x509pki.node_id_of(cert) == x509pki.node_id_of(x509pki.load_cert(old))
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
    n = 0

    def reloaded() -> bool:
        nonlocal n
        n += 1
        chain.put(f"e2e/rotation-{n}", "x")  # traffic throughout: every put must commit
        logs = chain.k("logs", pod, "--tail", "-1")
        return any(
            '"TLS certificate reloaded"' in line and fingerprint in line
            for line in logs.splitlines()
        )

    # kubelet refreshes Secret volumes on its pod sync period (about a minute)
    chain.wait(f"{pod} reloads certificate {fingerprint}", reloaded, 240)
    assert (
        chain.json("get", "pod", pod)["status"]["containerStatuses"][0]["restartCount"] == restarts
    )
    assert chain.status(chain.pod_endpoint(pod))["height"] >= 1  # a new handshake: new cert


def test_no_secret_material_outside_secrets(chain: Chain) -> None:
    """Private keys (node, admin, CA, TLS) never appear in logs, events, status or
    ConfigMaps."""
    chain.put("e2e/secret-grep", "x")  # some traffic in the logs first
    needles: set[str] = set()
    for secret in chain.json("get", "secrets")["items"]:
        for key, value in (secret.get("data") or {}).items():
            text = base64.b64decode(value).decode(errors="replace")
            if key.endswith(".json") and "private_key" in text:
                needles.add(json.loads(text)["private_key"])
            if "PRIVATE KEY" in text:  # a PEM key: its base64 body lines
                # full lines only: a short last line could occur in any base64 text
                needles.update(ln for ln in text.splitlines() if len(ln) >= 32 and "-" not in ln)
    assert needles, "found no private keys to look for"
    haystacks = {
        "node logs": chain.k("logs", "-l", NODE_SELECTOR, "--tail", "-1", "--prefix"),
        "operator logs": chain.k(
            "logs", "-l", "app.kubernetes.io/name=consortium-operator", "--tail", "-1"
        ),
        "events": chain.k("get", "events", "-o", "json"),
        "status": json.dumps(chain.get().get("status", {})),
        "configmaps": chain.k("get", "configmaps", "-o", "json"),
    }
    for what, text in haystacks.items():
        assert "PRIVATE KEY" not in text, what
        leaked = [n[:8] for n in needles if n in text]
        assert not leaked, f"{what} contains private key material ({len(leaked)} pieces)"


def test_scale_up_organisation(chain: Chain, request: pytest.FixtureRequest) -> None:
    """acme 2 -> 3 validators: the operator adds the node through a governance transaction."""
    t0 = time.monotonic()
    chain.patch([{"op": "replace", "path": "/spec/organizations/0/validators", "value": 3}])
    obj = chain.wait_ready(300, validators="5/5")
    report(request.config, f"scale acme 2 -> 3 validators -> Ready: {time.monotonic() - t0:.1f}s")
    assert obj["status"]["validators"] == 5
    vset = chain.status()["validators"]
    assert sum(1 for v in vset if v["organization"] == "acme") == 3, vset
    new_pod = f"{chain.name}-acme-2"
    chain.wait_value("e2e/hello", "world", chain.pod_endpoint(new_pod))  # caught up
    chain.put_eventually("e2e/after-scale-up", "5")


def test_scale_down_organisation(chain: Chain, request: pytest.FixtureRequest) -> None:
    """acme 3 -> 2: removed by governance first, then the pod goes; quorum never breaks."""
    t0 = time.monotonic()
    chain.patch([{"op": "replace", "path": "/spec/organizations/0/validators", "value": 2}])
    chain.wait_ready(300, validators="4/4")
    chain.wait("acme-2 pod gone", lambda: len(chain.pods()) == 4, 120)
    report(request.config, f"scale acme 3 -> 2 validators -> Ready: {time.monotonic() - t0:.1f}s")
    assert len(chain.status()["validators"]) == 4
    chain.put_eventually("e2e/after-scale-down", "4")


def test_leader_pod_killed_recovers_and_catches_up(
    chain: Chain, request: pytest.FixtureRequest
) -> None:
    def current_leader() -> tuple[str, str] | None:
        # status is refreshed by a timer: right after the scale-down test it may still name
        # the removed pod for a few seconds; take a leader whose pod exists.
        status = chain.get()["status"]
        leader = str(status.get("leader") or "")
        assert leader.startswith(f"{chain.name}-"), status
        pod = chain.kube.run(
            "--namespace", chain.namespace, "get", "pod", leader, "-o", "json", check=False
        )
        return (leader, json.loads(pod.stdout)["metadata"]["uid"]) if pod.returncode == 0 else None

    leader, old_uid = chain.wait("a leader whose pod exists", current_leader, 60)
    before = chain.status()["height"]  # from a node: the Consortium status lags by its timer
    t0 = time.monotonic()
    chain.k("delete", "pod", leader, "--wait=false")
    # the chain goes on without it (3 of 4 BFT validators are a quorum)
    chain.put_eventually("e2e/while-leader-down", "yes")

    def recovered() -> bool:
        pod = chain.json("get", "pod", leader)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
        return pod["metadata"]["uid"] != old_uid and ready

    chain.wait(f"{leader} recreated and Ready", recovered, 180)
    endpoint = chain.pod_endpoint(leader)
    chain.wait_value("e2e/while-leader-down", "yes", endpoint, 120)
    # Ready needs a quorum only; the status timer reports the recovered node within its period
    chain.wait_ready(120, validators="4/4")
    report(
        request.config,
        f"leader pod {leader} deleted -> back and caught up: {time.monotonic() - t0:.1f}s",
    )
    # the recovered node itself has the blocks committed while it was gone
    assert chain.status(endpoint)["height"] > before


def test_node_image_rolls(chain: Chain, node_image: str, request: pytest.FixtureRequest) -> None:
    """A new node image tag (same content, built by `docker tag`) rolls out one node at a
    time; the chain keeps committing and ends Ready on the new image."""
    repo, _ = split_image(node_image)
    new_image = f"{repo}:{UPGRADE_TAG}"
    load_image(chain.kube, node_image, new_image)
    height = chain.get()["status"]["height"]
    t0 = time.monotonic()
    chain.patch([{"op": "replace", "path": "/spec/image", "value": new_image}])

    def rolled() -> bool:
        pods = chain.pods()
        return (
            len(pods) == 4
            and all(p["spec"]["containers"][0]["image"] == new_image for p in pods)
            and ready_now(chain.get())
        )

    chain.wait(f"all nodes on {new_image}", rolled, 600)
    report(request.config, f"rolling update to {new_image} -> Ready: {time.monotonic() - t0:.1f}s")
    chain.put_eventually("e2e/after-rollout", "ok")
    assert chain.get()["status"]["height"] > height
    for pod in chain.pods():
        chain.wait_value("e2e/after-rollout", "ok", chain.pod_endpoint(pod["metadata"]["name"]))


def test_organisation_joins_the_running_consortium(
    chain: Chain, request: pytest.FixtureRequest
) -> None:
    """`kubectl patch` adds organisation initech with one validator: the operator creates its
    CA, admits it on chain (AddOrganization), starts its node, adds it as a validator; every
    node — none restarted — then accepts initech's client certificate."""
    before = {p["metadata"]["name"]: (p["metadata"]["uid"], _restarts(p)) for p in chain.pods()}
    t0 = time.monotonic()
    chain.patch(
        [
            {
                "op": "add",
                "path": "/spec/organizations/-",
                "value": {"name": "initech", "validators": 1},
            }
        ]
    )
    chain.wait_ready(300, validators="5/5")
    report(request.config, f"organisation initech joins -> Ready 5/5: {time.monotonic() - t0:.1f}s")
    # every organisation's client Secret now trusts initech's CA too (initech's nodes answer
    # behind the client Service); users refresh their copy, as `context from-cluster` does
    initech_ca = chain.secret(f"{chain.name}-initech-ca")["ca.pem"]
    for org in ("acme", "globex", "initech"):
        assert initech_ca in chain.secret(f"{chain.name}-{org}-client")["ca.pem"], org
    chain.use_client_tls("acme")
    status = chain.status()
    assert "initech" in status["organizations"], status
    chain.wait(
        "initech in the Consortium's status.organizations",
        lambda: "initech" in (chain.get()["status"].get("organizations") or []),
        30,
    )
    assert {v["organization"] for v in status["validators"]} == {"acme", "globex", "initech"}
    # initech's users: the operator's client Secret works against every node
    chain.put_files("/tmp/tls-initech", chain.secret(f"{chain.name}-initech-client"))
    for pod in chain.pods():
        name = pod["metadata"]["name"]
        got = chain.cli_result(
            "status",
            "--endpoint",
            chain.pod_endpoint(name),
            env={"CONSORTIUM_TLS_DIR": "/tmp/tls-initech"},
        )
        assert got.returncode == 0, (name, got.stderr)
        if name in before:  # the old nodes trust initech without a restart
            assert (pod["metadata"]["uid"], _restarts(pod)) == before[name], name
    chain.put_eventually("e2e/after-initech", "5")


def _restarts(pod: dict[str, Any]) -> int:
    return int(sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", [])))


def test_delete_consortium_cleans_up(chain: Chain, request: pytest.FixtureRequest) -> None:
    """deletionPolicy Delete (the example's): workloads, Secrets, ConfigMaps, Services and
    the ledger PVCs all go."""
    assert chain.get()["spec"]["deletionPolicy"] == "Delete"
    selector = f"app.kubernetes.io/instance={chain.name}"
    pvcs = chain.json("get", "pvc", "-l", selector)["items"]
    assert len(pvcs) >= 4
    t0 = time.monotonic()
    chain.k("delete", "consortium", chain.name, "--timeout=180s", timeout=200)
    report(request.config, f"kubectl delete consortium: {time.monotonic() - t0:.1f}s")
    _assert_gone(chain)
    chain.wait(
        "ledger PVCs deleted", lambda: not chain.json("get", "pvc", "-l", selector)["items"], 120
    )


def _assert_gone(chain: Chain) -> None:
    """Nothing of the consortium remains but (possibly) its PVCs."""
    for kind in ("statefulsets", "services", "configmaps", "secrets", "poddisruptionbudgets"):
        left = [
            o["metadata"]["name"]
            for o in chain.json("get", kind)["items"]
            if o["metadata"]["name"].startswith(f"{chain.name}-")
        ]
        assert left == [], f"{kind} left after deletion: {left}"
    chain.wait("node pods gone", lambda: not chain.pods(), 120)


RETAIN = """
apiVersion: consortium.dev/v1alpha1
kind: Consortium
metadata:
  name: keep
spec:
  chainId: keep-chain
  consensus: {type: raft}
  organizations:
    - name: solo
      validators: 1
      storage: {size: 100Mi}
      resources:
        requests: {cpu: 50m, memory: 64Mi}
  image: IMAGE
  imagePullPolicy: IfNotPresent
  deletionPolicy: Retain
"""


def test_retain_policy_keeps_ledger_volumes(
    installed: Installed, node_image: str, request: pytest.FixtureRequest
) -> None:
    """A one-node raft chain with deletionPolicy Retain: after deletion its PVC remains,
    everything else is gone."""
    c = Chain(installed.kube, installed.namespace, "keep")
    t0 = time.monotonic()
    installed.kube.apply(RETAIN.replace("IMAGE", node_image), namespace=c.namespace)
    c.wait_ready(240)
    report(
        request.config, f"raft 1-validator consortium apply -> Ready: {time.monotonic() - t0:.1f}s"
    )
    selector = f"app.kubernetes.io/instance={c.name}"
    before = {p["metadata"]["name"] for p in c.json("get", "pvc", "-l", selector)["items"]}
    assert len(before) == 1
    c.k("delete", "consortium", c.name, "--timeout=120s", timeout=150)
    _assert_gone(c)
    after = {p["metadata"]["name"] for p in c.json("get", "pvc", "-l", selector)["items"]}
    assert after == before, "deletionPolicy Retain must keep the ledger PVCs"
    c.k("delete", "pvc", "-l", selector, "--wait=false")


def test_invalid_spec_is_refused_at_apply(installed: Installed) -> None:
    bad = RETAIN.replace("name: keep", "name: bad").replace("type: raft", "type: bft")
    proc = installed.kube.run(
        "--namespace", installed.namespace, "apply", "-f", "-", input=bad, check=False
    )
    assert proc.returncode != 0, "a BFT consortium with 1 validator was accepted"
    assert "4" in proc.stderr and "bft" in proc.stderr.lower(), proc.stderr
    wait_for(
        lambda: (
            installed.kube.run(
                "--namespace", installed.namespace, "get", "consortium", "bad", check=False
            ).returncode
            != 0
        ),
        10,
        "no Consortium 'bad'",
        1.0,
    )
