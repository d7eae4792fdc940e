"""Fixtures of the operator's integration tier: a real kube-apiserver (+ etcd) on 127.0.0.1
with the Consortium CRD installed, kubectl bound to it, a fresh namespace per test, and the
operator running as a real `consortium-operator` process watching that namespace.

Skips, with the reason, when kube-apiserver, etcd or kubectl is missing (see apiserver.py for
where they are looked up); with CI=true a missing binary fails instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.apiserver import ControlPlane, find_binaries

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "charts" / "consortium-crds" / "templates" / "consortium.dev_consortia.yaml"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"operator integration: {reason}; CI=true requires it", pytrace=False)
    pytest.skip(f"operator integration: {reason}")


@dataclass(frozen=True)
class Kubectl:
    binary: str
    kubeconfig: Path

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        p = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if p.returncode != 0:
            if "NotFound" in p.stderr:
                return None
            raise AssertionError(p.stderr)
        out = json.loads(p.stdout)
        assert isinstance(out, dict)
        return out

    def apply(self, manifest: str, namespace: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-n", namespace, "-f", "-", input=manifest, check=False)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    found = find_binaries()
    if isinstance(found, str):
        _unavailable(found)
        raise AssertionError("unreachable")
    cp = ControlPlane(found, tmp_path_factory.mktemp("kube"))
    try:
        cp.start()
    except RuntimeError as e:
        cp.stop()
        _unavailable(f"control plane did not start: {e}")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not binary:
        _unavailable("kubectl not found (set KUBECTL or run 'make cluster-tools')")
        raise AssertionError("unreachable")
    k = Kubectl(binary, control_plane.kubeconfig)
    k.run("apply", "--server-side", "-f", str(CRD_FILE))
    # `kubectl wait` fails outright (instead of waiting) when it reads the CRD before the
    # apiserver wrote any status condition; a loaded machine hits that window.
    deadline = time.monotonic() + 60
    while (
        k.run(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/consortia.consortium.dev",
            check=False,
        ).returncode
        != 0
    ):
        assert time.monotonic() < deadline, "the Consortium CRD never became Established"
        time.sleep(0.3)
    # discovery may lag the Established condition by a moment
    deadline = time.monotonic() + 30
    while k.run("get", "consortia", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "consortia never became servable"
        time.sleep(0.3)
    return k


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", ns)
    return ns  # never deleted: no namespace controller runs here, it would hang Terminating


class OperatorProcess:
    """`python -m consortium_operator --standalone -n NS` with the test kubeconfig."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CONSORTIUM_RETRY_SECONDS": "1",
            "CONSORTIUM_RPC_TIMEOUT": "0.5",
            "CONSORTIUM_NODE_IMAGE": "consortium/node:it",
        }
        with self.log.open("ab") as out:
            self.proc = self._popen(env, out)
        return self

    def _popen(self, env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "consortium_operator", "--standalone", "-n", self.namespace],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture
def operator(
    control_plane: ControlPlane,
    kubectl: Kubectl,  # noqa: ARG001 -- requested first: the CRD is installed before the operator starts
    namespace: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()


def eventually(
    check: Callable[[], Any],
    timeout: float = 60,
    what: str = "",
    on_fail: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.5)
    extra = on_fail() if on_fail else ""
    raise AssertionError(f"timed out waiting for {what or check}: last={last!r}\n{extra}")
