"""Two kind clusters side by side on one docker network (for the federation e2e).

`make e2e-kind-pair` brings up kind clusters `consortium` and `consortium-b` (both with
`make kind-up`, on network consortium-kind) and runs this with KUBECONFIG at the first and
E2E_KIND_PEER_KUBECONFIG at the second: a NodePort Service in the peer is reached from a
pod of the first through the peer node's address. Skipped without a peer kubeconfig.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kube import Kubectl

from .conftest import Kube

pytestmark = pytest.mark.e2e

HTTP_PORT = 8080

SERVER_MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web, e2e.consortium/test: kind-pair}}
    spec:
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: web
          image: {image}
          imagePullPolicy: Never
          command: [python, -m, http.server, "{port}", --directory, /tmp]
          ports:
            - {{name: http, containerPort: {port}}}
          readinessProbe:
            tcpSocket: {{port: http}}
            periodSeconds: 1
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {{app: web}}
  ports:
    - {{name: http, port: {port}, targetPort: http}}
"""

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    url = sys.argv[1]
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                print(json.dumps({"status": reply.status}))
                sys.exit(0)
        except Exception as exc:  # retried until the deadline
            if time.monotonic() > deadline:
                print(json.dumps({"error": repr(exc)}))
                sys.exit(2)
            time.sleep(1)
    """
)

CLIENT_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: client
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 120
  template:
    metadata:
      labels: {{e2e.consortium/test: kind-pair-client}}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: client
          image: {image}
          imagePullPolicy: Never
          command: [python, -c, {script}, {url}]
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"""


def node_address(kubectl: Kubectl) -> str:
    nodes = kubectl.json("get", "nodes")["items"]
    assert len(nodes) == 1, [n["metadata"]["name"] for n in nodes]
    addresses = {a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}
    return str(addresses["InternalIP"])


@pytest.fixture
def peer(kube: Kube) -> Iterator[tuple[Kubectl, str]]:
    """The second kind cluster and a namespace in it, deleted afterwards."""
    kubeconfig = os.environ.get("E2E_KIND_PEER_KUBECONFIG", "")
    if not kubeconfig:
        pytest.skip("no E2E_KIND_PEER_KUBECONFIG (run 'make e2e-kind-pair')")
    assert Path(kubeconfig).is_file(), f"no peer kubeconfig at {kubeconfig}"
    peer = Kubectl(binary=kube.binary, kubeconfig=kubeconfig)
    context = peer.run("config", "current-context").stdout.strip()
    assert context.startswith("kind-") and context != kube.context, context
    name = f"e2e-kind-pair-{uuid.uuid4().hex[:6]}"
    peer.run("create", "namespace", name)
    try:
        yield peer, name
    finally:
        peer.run("delete", "namespace", name, "--wait=false", check=False)


def test_pod_reaches_nodeport_of_the_other_cluster(
    kube: Kube, namespace: str, node_image: str, peer: tuple[Kubectl, str]
) -> None:
    other, other_ns = peer
    other.apply(SERVER_MANIFEST.format(image=node_image, port=HTTP_PORT), other_ns)
    rollout_args = ["--namespace", other_ns, "rollout", "status", "deployment/web"]
    rollout = other.run(*rollout_args, "--timeout=120s", check=False, timeout=140)
    assert rollout.returncode == 0, f"peer web Deployment not Ready: {rollout.stderr}"
    service = other.json("--namespace", other_ns, "get", "service", "web")
    node_port = service["spec"]["ports"][0]["nodePort"]
    peer_ip, own_ip = node_address(other), node_address(kube)
    assert peer_ip != own_ip

    url = f"http://{peer_ip}:{node_port}/"
    client = CLIENT_JOB.format(image=node_image, script=json.dumps(CLIENT_SCRIPT), url=url)
    kube.apply(client, namespace)
    wait_args = ["--namespace", namespace, "wait", "job/client", "--for=condition=Complete"]
    done = kube.run(*wait_args, "--timeout=150s", check=False, timeout=170)
    logs = kube.run("--namespace", namespace, "logs", "job/client", check=False).stdout
    assert done.returncode == 0, f"client cannot reach {url}: {logs}\n{kube.diagnostics(namespace)}"
    assert json.loads(logs.strip().splitlines()[-1]) == {"status": 200}
