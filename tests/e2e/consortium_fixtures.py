"""Helpers of the Consortium e2e tests (tests/e2e/test_consortium_*.py): install the charts,
wait on a Consortium's status, talk to the chain through a client pod running the node
image's `consortium` CLI (nothing leaves the cluster), load a second node image tag.

Every wait is bounded and, on timeout, fails with the namespace's diagnostics."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from tests.support.wait import wait_for

from .conftest import Kube

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
EXAMPLE = ROOT / "examples" / "consortium.yaml"
CRD_NAME = "consortia.consortium.dev"
CRD_RELEASE = "consortium-crds"
CRD_RELEASE_NAMESPACE = "default"
CLIENT_PORT = 7050
CLIENT_TLS_DIR = "/tmp/tls"
NODE_SELECTOR = "app.kubernetes.io/name=consortium-node"

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even under output capture (timings the run must show)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[e2e] {line}")
    else:  # pragma: no cover
        print(f"[e2e] {line}")


def split_image(ref: str) -> tuple[str, str]:
    """("repo", "tag") of an image reference (tag defaults to latest)."""
    head, _, tail = ref.rpartition(":")
    if head and "/" not in tail:
        return head, tail
    return ref, "latest"


# what a probe may raise while the cluster is changing (retried until the wait runs out)
RETRIED = (AssertionError, subprocess.SubprocessError, ValueError, KeyError)


# --------------------------------------------------------------------------- charts


def helm_run(helm: Sequence[str], *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [*helm, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def install_crds(kube: Kube, helm: Sequence[str]) -> None:
    """`helm upgrade --install` the CRD chart. A CRD applied earlier without Helm (e.g. by
    `make operator-crd`) is adopted into the release first; the CRD is kept on uninstall."""
    crd = kube.run("get", "crd", CRD_NAME, "-o", "json", check=False)
    if crd.returncode == 0:
        meta = json.loads(crd.stdout)["metadata"]
        annotations = meta.get("annotations") or {}
        if annotations.get("meta.helm.sh/release-name") != CRD_RELEASE:
            kube.run(
                "annotate",
                "--overwrite",
                "crd",
                CRD_NAME,
                f"meta.helm.sh/release-name={CRD_RELEASE}",
                f"meta.helm.sh/release-namespace={CRD_RELEASE_NAMESPACE}",
            )
            kube.run("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
    helm_run(
        helm,
        "upgrade",
        "--install",
        CRD_RELEASE,
        str(CHARTS / "consortium-crds"),
        "--namespace",
        CRD_RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "120s",
    )
    kube.run("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")


def load_image(kube: Kube, source: str, target: str) -> None:
    """`docker tag source target` and load `target` into the test cluster with
    cluster/load.sh (`ctr images import` in the node container; a kind cluster's node is
    `<name>-control-plane`, as the built-in cluster's, so CLUSTER_NAME=<name> names it)."""
    docker = shutil.which("docker")
    if docker is None:
        _cannot(f"docker is not available to build the image tag {target}")
    tagged = subprocess.run(
        [docker, "tag", source, target], capture_output=True, text=True, timeout=60, check=False
    )
    if tagged.returncode != 0:
        _cannot(f"docker tag {source} {target}: {tagged.stderr.strip()}")
    env = None
    if kube.context.startswith("kind-"):
        env = {**os.environ, "CLUSTER_NAME": kube.context.removeprefix("kind-")}
    cmd = [str(ROOT / "cluster" / "load.sh"), target]
    loaded = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    if loaded.returncode != 0:
        _cannot(f"{' '.join(cmd)} failed: {loaded.stdout}{loaded.stderr}")


def _cannot(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- the chain


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def ready_now(obj: dict[str, Any]) -> bool:
    """Ready=True for the current generation (not a stale condition from before a change)."""
    gen = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    ready = condition(obj, "Ready")
    return (
        ready is not None
        and ready.get("status") == "True"
        and status.get("observedGeneration") == gen
        and ready.get("observedGeneration", gen) == gen
    )


@dataclass
class Chain:
    """One Consortium in a namespace, with a client pod to talk to it."""

    kube: Kube
    namespace: str
    name: str
    client_pod: str = "client"
    timings: dict[str, float] = field(default_factory=dict)
    at_ready: dict[str, str] = field(default_factory=dict)  # pod name -> uid, when Ready

    # ------------------------------------------------------------------ kubectl

    def k(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.kube.run(
            "--namespace", self.namespace, *args, check=check, timeout=timeout
        ).stdout

    def json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.k(*args, "-o", "json")))

    def get(self) -> dict[str, Any]:
        return self.json("get", "consortium", self.name)

    def diagnostics(self) -> str:
        parts = [self.kube.diagnostics(self.namespace)]
        for args in (
            ("get", "consortium", self.name, "-o", "yaml"),
            ("logs", "-l", "app.kubernetes.io/name=consortium-operator", "--tail", "80"),
            ("logs", "-l", NODE_SELECTOR, "--prefix", "--tail", "20"),
        ):
            proc = self.kube.run("--namespace", self.namespace, *args, check=False)
            parts.append(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)[-20000:]

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 180) -> T:
        return wait_for(probe, timeout, what, 1.0, retry_on=RETRIED, diagnostics=self.diagnostics)

    def wait_ready(self, timeout: float = 240, validators: str | None = None) -> dict[str, Any]:
        """Ready for the current generation (and `validators` ready, e.g. "5/5")."""

        def probe() -> dict[str, Any] | None:
            obj = self.get()
            if not ready_now(obj):
                return None
            if validators is not None and obj["status"].get("readyValidators") != validators:
                return None
            return obj

        what = f"consortium/{self.name} Ready" + (f" with {validators}" if validators else "")
        return self.wait(what, probe, timeout)

    def pods(self) -> list[dict[str, Any]]:
        out = self.json(
            "get", "pods", "-l", f"{NODE_SELECTOR},app.kubernetes.io/instance={self.name}"
        )
        return [p for p in out.get("items", []) if not p["metadata"].get("deletionTimestamp")]

    def patch(self, ops: list[dict[str, Any]]) -> None:
        self.k("patch", "consortium", self.name, "--type=json", "-p", json.dumps(ops))

    # ------------------------------------------------------------------ client

    def start_client(self, image: str) -> None:
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.client_pod, "labels": {"e2e.consortium/test": "client"}},
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
                        "env": [
                            {"name": "HOME", "value": "/tmp"},
                            # filled by use_client_tls from the organisation's client Secret
                            {"name": "CONSORTIUM_TLS_DIR", "value": CLIENT_TLS_DIR},
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
        self.kube.apply(json.dumps(manifest), namespace=self.namespace)
        self.k(
            "wait", "--for=condition=Ready", f"pod/{self.client_pod}", "--timeout=120s", timeout=150
        )
        self.cli("keys", "new", "--out", "/tmp/me.json")

    def put_files(self, directory: str, files: dict[str, bytes]) -> None:
        """Write files into the client pod (mode 0600, never through argv or a log)."""
        for name, content in files.items():
            self.kube.run(
                *("--namespace", self.namespace, "exec", "-i", self.client_pod, "--"),
                *("sh", "-c", f"umask 077 && mkdir -p {directory} && cat > {directory}/{name}"),
                input=content.decode(),
            )

    def secret(self, name: str) -> dict[str, bytes]:
        data = self.json("get", "secret", name)["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}

    def use_client_tls(self, organization: str) -> None:
        """What a user of `organization` does to reach the cluster's nodes: the operator's
        `<consortium>-<org>-client` Secret is a TLS directory (ca.pem, client.pem,
        client.key); copied to the pod's CONSORTIUM_TLS_DIR, the CLI needs no flags."""
        self.put_files(CLIENT_TLS_DIR, self.secret(f"{self.name}-{organization}-client"))

    def cli_result(self, *args: str, env: dict[str, str], timeout: float = 60) -> Any:
        """`consortium ARGS` in the client pod with `env` set; the CompletedProcess (the
        caller checks the exit code)."""
        assigns = [f"{k}={v}" for k, v in env.items()]
        return self.kube.run(
            *("--namespace", self.namespace, "exec", self.client_pod, "--"),
            *("env", *assigns, "consortium", *args),
            check=False,
            timeout=timeout,
        )

    def vouch_client(self, organization: str) -> None:
        """AddMember for the client pod's key, signed with `organization`'s own admin key
        (read from its Secret <consortium>-<org>-admin into the pod's /tmp, never printed; an
        organisation vouches for its own members alone, policy SELF): permissioned chains
        refuse transactions from keys no member organisation vouches for."""
        secret = f"{self.name}-{organization}-admin"
        data = self.json("get", "secret", secret)["data"]["admin.json"]
        self.kube.run(
            *("--namespace", self.namespace, "exec", "-i", self.client_pod, "--"),
            *("sh", "-c", "umask 077 && cat > /tmp/admin.json"),
            input=base64.b64decode(data).decode(),
        )
        public = self.cli("keys", "show", "/tmp/me.json").split()[-1]

        def vouched() -> bool:
            try:
                self.cli(
                    *("tx", "add-member", public, organization, "--key", "/tmp/admin.json"),
                    *("--endpoint", self.endpoint, "--wait", "--wait-timeout", "30"),
                    timeout=60,
                )
            except AssertionError as e:
                if "already a member" in str(e):  # an earlier attempt committed after all
                    return True
                raise
            return True

        self.wait(f"client key {public[:16]}... vouched for by {organization}", vouched, 120)

    def cli(self, *args: str, timeout: float = 60) -> str:
        """`consortium ARGS` in the client pod; stdout."""
        return self.k("exec", self.client_pod, "--", "consortium", *args, timeout=timeout).strip()

    @property
    def endpoint(self) -> str:
        """The client Service."""
        return f"{self.name}-client:{CLIENT_PORT}"

    def pod_endpoint(self, pod: str) -> str:
        return f"{pod}.{self.name}-peers.{self.namespace}.svc:{CLIENT_PORT}"

    def put(self, key: str, value: str, endpoint: str | None = None) -> dict[str, Any]:
        out = self.cli(
            "tx",
            "put",
            "--endpoint",
            endpoint or self.endpoint,
            "--key",
            "/tmp/me.json",
            "--wait",
            "--wait-timeout",
            "30",
            "--json",
            key,
            value,
            timeout=60,
        )
        result = dict(json.loads(out.splitlines()[-1]))
        assert result.get("committed") is True and result.get("receipt_status") == "OK", result
        return result

    def put_eventually(self, key: str, value: str, timeout: float = 90) -> dict[str, Any]:
        """`put`, retried while the chain or the Service is changing (a terminating pod behind
        the client Service, a view change); bounded."""
        return self.wait(f"tx {key}={value!r} committed", lambda: self.put(key, value), timeout)

    def read(self, key: str, endpoint: str | None = None, min_height: int = 0) -> str | None:
        """KEY's value as one node answers it (the client Service picks any node: give
        `min_height`, e.g. the height a put committed at, to read your own write)."""
        out = self.cli(
            *("query", "get", "--json", "--endpoint", endpoint or self.endpoint),
            *("--min-height", str(min_height), key),
        )
        answer = json.loads(out.splitlines()[-1])
        return str(answer["value"]) if answer.get("found") else None

    def wait_value(self, key: str, value: str, endpoint: str, timeout: float = 60) -> None:
        """Until the node at `endpoint` has KEY = VALUE (committed and replicated there)."""
        self.wait(
            f"{key}={value!r} at {endpoint}", lambda: self.read(key, endpoint) == value, timeout
        )

    def status(self, endpoint: str | None = None) -> dict[str, Any]:
        out = self.cli("status", "--json", "--endpoint", endpoint or self.endpoint)
        return dict(json.loads(out.splitlines()[-1]))

    def wait_every_node(
        self, what: str, probe: Callable[[str], bool], timeout: float = 120
    ) -> None:
        """Until `probe(endpoint)` holds for every node pod's own endpoint: the client Service
        routes each new connection to any node, and one a block behind answers as of its own
        height (a run voted "unknown proposal 1" and read "unknown contract" this way)."""
        for pod in sorted(p["metadata"]["name"] for p in self.pods()):
            ep = self.pod_endpoint(pod)
            self.wait(f"{pod}: {what}", functools.partial(probe, ep), timeout)

    def wait_all_at(self, height: int, timeout: float = 120) -> None:
        """Until every node pod has applied block `height`."""
        self.wait_every_node(
            f"height {height}", lambda ep: self.status(ep)["height"] >= height, timeout
        )
