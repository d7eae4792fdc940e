"""Fixtures for the e2e tier: a real Kubernetes cluster.

The cluster is the one `make cluster-up` boots (kubeconfig context ``consortium-test``)
or a kind cluster (context ``kind-*``); any other context is refused, so these tests
can never touch a cluster that is not a throwaway test cluster. Without a reachable
cluster the tier is skipped, with the reason, unless ``CI=true``: then it fails.

Every test works in a namespace of its own (``namespace`` fixture), deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.kube import Kubectl, kubectl_binary

TEST_CLUSTER_CONTEXT = os.environ.get("CLUSTER_NAME", "consortium-test")
CACHE_DIR = Path(
    os.environ.get("CONSORTIUM_CACHE", Path.home() / ".cache" / "consortium")
).expanduser()
DEFAULT_KUBECONFIG = CACHE_DIR / "state" / "kubeconfig"
NODE_IMAGE = os.environ.get("NODE_IMAGE", "consortium/node:dev")
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", "consortium/operator:dev")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _kubectl_binary() -> str:
    found = kubectl_binary()
    if found is None:
        _unavailable("kubectl not found (run 'make cluster-tools' or set KUBECTL)")
    return found


def _unavailable(reason: str) -> NoReturn:
    """No cluster: skip the tier locally, fail it in CI."""
    if _in_ci():
        pytest.fail(f"e2e: no test cluster ({reason}); CI=true requires one", pytrace=False)
    pytest.skip(f"e2e: no test cluster ({reason}); run 'make cluster-up' or 'make kind-up'")


@dataclass(frozen=True)
class Kube(Kubectl):
    """kubectl bound to the test cluster's kubeconfig and context."""

    kubeconfig: str
    context: str

    def diagnostics(self, namespace: str) -> str:
        """Everything useful when a wait in `namespace` times out."""
        parts = []
        for args in (
            ("get", "all,events", "-o", "wide"),
            ("describe", "pods"),
            ("logs", "--all-containers", "--prefix", "--tail", "50", "-l", "e2e.consortium/test"),
        ):
            proc = self.run("--namespace", namespace, *args, check=False)
            parts.append(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)


@pytest.fixture(scope="session")
def kube() -> Kube:
    """The test cluster, checked: refused unless it is ours or kind, skipped if absent."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(DEFAULT_KUBECONFIG)
    if os.pathsep in kubeconfig:
        pytest.exit(f"e2e: refusing a merged KUBECONFIG ({kubeconfig}); point it at one file")
    if not Path(kubeconfig).is_file():
        _unavailable(f"no kubeconfig at {kubeconfig}")
    binary = _kubectl_binary()
    proc = subprocess.run(
        [binary, "--kubeconfig", kubeconfig, "config", "current-context"],
        capture_output=True,
        text=True,
        check=False,
    )
    context = proc.stdout.strip()
    if proc.returncode != 0 or not context:
        _unavailable(f"{kubeconfig} has no current context")
    if context != TEST_CLUSTER_CONTEXT and not context.startswith("kind-"):
        pytest.exit(
            f"e2e: refusing to run against context {context!r} from {kubeconfig}: only the "
            f"test cluster ({TEST_CLUSTER_CONTEXT!r}, 'make cluster-up') or a kind-* context",
            returncode=2,
        )
    kube = Kube(binary=binary, kubeconfig=kubeconfig, context=context)
    ready = kube.run("get", "--raw", "/readyz", "--request-timeout=10s", check=False, timeout=30)
    if ready.returncode != 0:
        _unavailable(f"API server of {context!r} not ready: {ready.stderr.strip()[:300]}")
    return kube


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    stem = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"e2e-{stem}-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)
    kube.run("label", "namespace", name, "e2e.consortium/test=true")
    try:
        yield name
    finally:
        kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node_image() -> str:
    return NODE_IMAGE


@pytest.fixture(scope="session")
def operator_image() -> str:
    return OPERATOR_IMAGE


@pytest.fixture(scope="session")
def helm(kube: Kube) -> list[str]:
    """The helm command, bound to the test cluster (``[*helm, "install", ...]``)."""
    for candidate in (
        os.environ.get("HELM"),
        str(CACHE_DIR / "bin" / "helm"),
        shutil.which("helm"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [candidate, "--kubeconfig", kube.kubeconfig, "--kube-context", kube.context]
    pytest.fail("helm not found (run 'make cluster-tools' or set HELM)", pytrace=False)
