"""No DNS lookup leaves the machine from a kind cluster of `make kind-up` (issue 18).

Docker's embedded resolver (127.0.0.11 in the node, reached through the DNAT rules in
the node's nat chain DOCKER_OUTPUT) forwards to the host's resolvers, i.e. off the
machine. The node image points the node's resolver at loopback and CoreDNS has no
upstream, so: cluster names still resolve, outside names fail, from a pod and from the
node, and not one packet reaches docker's resolver meanwhile (DNAT counters unchanged).
Skipped unless the cluster is a kind cluster running cluster/kind-node-image.sh's image.
"""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from .conftest import Kube
from .kind_nodes import local_kind_node, node_exec

pytestmark = pytest.mark.e2e

LOOKUP_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    out = {}
    for name in sys.argv[1:]:
        try:
            out[name] = socket.getaddrinfo(name, 80, socket.AF_INET)[0][4][0]
        except socket.gaierror as exc:
            out[name] = "unresolved"
    print(json.dumps(out))
    """
)

LOOKUP_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: lookup
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 120
  template:
    metadata:
      labels: {{e2e.consortium/test: kind-dns}}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: lookup
          image: {image}
          imagePullPolicy: Never
          command: [python, -c, {script}, {names}]
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"""


def embedded_dns_packets(node: str) -> int:
    """Packets DNAT'ed to docker's embedded resolver in the node so far."""
    proc = node_exec(node, "iptables", "-w", "-t", "nat", "-L", "DOCKER_OUTPUT", "-n", "-v", "-x")
    assert proc.returncode == 0, f"no DOCKER_OUTPUT chain in {node}: {proc.stderr}"
    rules = [line.split() for line in proc.stdout.splitlines() if "127.0.0.11" in line]
    assert rules, f"no DNAT to docker's resolver in {node}:\n{proc.stdout}"
    return sum(int(fields[0]) for fields in rules)


def test_no_dns_lookup_leaves_the_machine(kube: Kube, namespace: str, node_image: str) -> None:
    node = local_kind_node(kube.context)
    if node is None:
        pytest.skip(f"{kube.context!r} is not a kind cluster of our offline node image")

    corefile = kube.json("--namespace", "kube-system", "get", "configmap", "coredns")["data"]
    plugins = {line.split()[0] for line in corefile["Corefile"].splitlines() if line.strip()}
    assert not plugins & {"forward", "proxy"}, f"CoreDNS forwards outside:\n{corefile}"

    resolv = node_exec(node, "cat", "/etc/resolv.conf").stdout
    servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver ")]
    assert servers and all(s.startswith("127.") and s != "127.0.0.11" for s in servers), resolv

    before = embedded_dns_packets(node)
    outside = ["example.com", f"e2e-{uuid.uuid4().hex[:12]}.example.org"]
    inside = "kubernetes.default.svc.cluster.local"
    manifest = LOOKUP_JOB.format(
        image=node_image, script=json.dumps(LOOKUP_SCRIPT), names=", ".join([inside, *outside])
    )
    kube.apply(manifest, namespace)
    wait_args = ["--namespace", namespace, "wait", "job/lookup", "--for=condition=Complete"]
    done = kube.run(*wait_args, "--timeout=150s", check=False, timeout=170)
    logs = kube.run("--namespace", namespace, "logs", "job/lookup", check=False).stdout
    assert done.returncode == 0, f"lookup job failed: {logs}\n{kube.diagnostics(namespace)}"
    answers = json.loads(logs.strip().splitlines()[-1])
    api_service = kube.json("--namespace", "default", "get", "service", "kubernetes")
    api_ip = api_service["spec"]["clusterIP"]
    assert answers == {inside: api_ip, **{name: "unresolved" for name in outside}}, answers

    for name in outside:  # from the node itself (hostNetwork pods and kubelet see this)
        proc = node_exec(node, "getent", "ahostsv4", name)
        assert proc.returncode != 0, f"{node} resolved {name}: {proc.stdout}"

    assert embedded_dns_packets(node) == before, "a lookup reached docker's embedded resolver"
