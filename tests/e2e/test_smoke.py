"""Smoke test of the e2e tier: needs only the cluster and the node image.

A Deployment of the node image (`consortium-node dev`, a single-node chain) becomes
Ready, and a client pod reaches it through its Service — cluster DNS name, ClusterIP,
kube-proxy — and gets SERVING from the standard grpc.health.v1 Health service.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from .conftest import Kube

pytestmark = pytest.mark.e2e

GRPC_PORT = 7050

NODE_MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: node
spec:
  replicas: 1
  selector:
    matchLabels: {{app: node}}
  template:
    metadata:
      labels: {{app: node, e2e.consortium/test: smoke}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 5
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
      containers:
        - name: node
          image: {image}
          imagePullPolicy: Never
          args: [dev, --data-dir, /data, --listen, "0.0.0.0:{port}"]
          ports:
            - {{name: grpc, containerPort: {port}}}
          readinessProbe:
            grpc: {{port: {port}}}
            periodSeconds: 2
            failureThreshold: 30
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          volumeMounts:
            - {{name: data, mountPath: /data}}
            - {{name: tmp, mountPath: /tmp}}
      volumes:
        - {{name: data, emptyDir: {{}}}}
        - {{name: tmp, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: node
spec:
  selector: {{app: node}}
  ports:
    - {{name: grpc, port: {port}, targetPort: grpc}}
"""

# Runs in a client pod: resolve the Service by its DNS name and call
# grpc.health.v1.Health/Check with raw bytes (an empty HealthCheckRequest; SERVING is
# field 1 = 1, i.e. b"\x08\x01"), so the client needs nothing but grpcio.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, time
    import grpc

    host, port = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + 60
    while True:
        try:
            addr = socket.getaddrinfo(host, port, socket.AF_INET)[0][4][0]
            with grpc.insecure_channel(f"{host}:{port}") as channel:
                check = channel.unary_unary(
                    "/grpc.health.v1.Health/Check",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                reply = check(b"", timeout=5)
            print(json.dumps({"address": addr, "reply": reply.hex()}))
            sys.exit(0 if reply == b"\\x08\\x01" else 1)
        except Exception as exc:  # retried until the deadline
            if time.monotonic() > deadline:
                print(json.dumps({"error": repr(exc)}))
                sys.exit(2)
            time.sleep(1)
    """
)

CLIENT_MANIFEST = """
apiVersion: batch/v1
kind: Job
metadata:
  name: health-client
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 120
  template:
    metadata:
      labels: {{e2e.consortium/test: smoke-client}}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: client
          image: {image}
          imagePullPolicy: Never
          command: [python, -c, {script}, {host}, "{port}"]
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"""


def test_node_deployment_serves_grpc_health_through_service(
    kube: Kube, namespace: str, node_image: str
) -> None:
    kube.apply(NODE_MANIFEST.format(image=node_image, port=GRPC_PORT), namespace)
    rollout_args = ["--namespace", namespace, "rollout", "status", "deployment/node"]
    rollout = kube.run(*rollout_args, "--timeout=180s", check=False, timeout=200)
    assert rollout.returncode == 0, f"node Deployment not Ready:\n{kube.diagnostics(namespace)}"

    service = kube.json("--namespace", namespace, "get", "service", "node")
    cluster_ip = service["spec"]["clusterIP"]
    assert cluster_ip not in ("", "None")

    host = f"node.{namespace}.svc.cluster.local"
    kube.apply(
        CLIENT_MANIFEST.format(
            image=node_image, script=json.dumps(CLIENT_SCRIPT), host=host, port=GRPC_PORT
        ),
        namespace,
    )
    wait_args = ["--namespace", namespace, "wait", "job/health-client", "--for=condition=Complete"]
    done = kube.run(*wait_args, "--timeout=150s", check=False, timeout=170)
    logs = kube.run("--namespace", namespace, "logs", "job/health-client", check=False).stdout
    assert done.returncode == 0, f"health client failed: {logs}\n{kube.diagnostics(namespace)}"
    result = json.loads(logs.strip().splitlines()[-1])
    assert result == {"address": cluster_ip, "reply": "0801"}, result
