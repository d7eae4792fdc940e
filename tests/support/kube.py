"""The one kubectl wrapper of the tests and benchmarks.

`Kubectl(binary, kubeconfig, context=None)` runs `kubectl --kubeconfig K [--context C] ...`
with a timeout and captured text output. `run(..., check=True)` raises `KubectlError` (an
AssertionError, so a test shows it as a failed expectation; benchmarks catch it) with the
command and its output; `get` answers None for NotFound; `json` parses `-o json`.
`kubectl_binary()` finds the binary: $KUBECTL, else the one `make cluster-tools` caches in
$CONSORTIUM_CACHE/bin, else `kubectl` on PATH; None when there is none.

Used by tests/e2e (the test cluster), bench/operator_scale.py (a throwaway kube-apiserver or
the test cluster)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_DIR = Path(
    os.environ.get("CONSORTIUM_CACHE", Path.home() / ".cache" / "consortium")
).expanduser()


class KubectlError(AssertionError):
    """A kubectl command exited non-zero; the text holds the command and its output."""


def kubectl_binary() -> str | None:
    for candidate in (os.environ.get("KUBECTL"), str(CACHE_DIR / "bin" / "kubectl")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("kubectl")


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one kubeconfig (and context, when given)."""

    binary: str
    kubeconfig: Path | str
    context: str | None = None

    def argv(self, *args: str) -> list[str]:
        ctx = ["--context", self.context] if self.context else []
        return [self.binary, "--kubeconfig", str(self.kubeconfig), *ctx, *args]

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def json(self, *args: str, timeout: float = 120) -> Any:
        return json.loads(self.run(*args, "-o", "json", timeout=timeout).stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        p = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if p.returncode != 0:
            if "NotFound" in p.stderr:
                return None
            raise KubectlError(f"kubectl get {kind} {name} -n {namespace}: {p.stderr}")
        out = json.loads(p.stdout)
        assert isinstance(out, dict)
        return out

    def apply(
        self, manifest: str, namespace: str | None = None, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        ns = ["--namespace", namespace] if namespace else []
        return self.run(*ns, "apply", "-f", "-", input=manifest, check=check)
