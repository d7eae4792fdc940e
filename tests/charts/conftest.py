"""Fixtures for the chart tests: the real `helm` binary (from `make cluster-tools`) and a
`render` helper around `helm template`. No cluster is needed.

helm is looked up in $HELM, ~/.cache/consortium/bin/helm, then PATH. Without it the tests are
skipped with the reason, unless CI=true: then they fail (CI must run `make test-charts`, which
installs helm first)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
CRD_CHART = CHARTS / "consortium-crds"
OPERATOR_CHART = CHARTS / "consortium-operator"
CONSORTIUM_CHART = CHARTS / "consortium"
ALL_CHARTS = (CRD_CHART, OPERATOR_CHART, CONSORTIUM_CHART)
CACHE_DIR = Path(
    os.environ.get("CONSORTIUM_CACHE", Path.home() / ".cache" / "consortium")
).expanduser()

Manifest = dict[str, Any]


def _find_helm() -> str | None:
    for candidate in (os.environ.get("HELM"), str(CACHE_DIR / "bin" / "helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("helm")


@dataclass(frozen=True)
class Helm:
    binary: str

    def run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # no cluster: an empty kubeconfig makes sure nothing is ever contacted
        env = {**os.environ, "KUBECONFIG": os.devnull}
        env.pop("HELM_NAMESPACE", None)
        proc = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def template(
        self,
        chart: Path,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "rel",
        namespace: str = "ops",
        extra: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`helm template`; `values` go in as a values file on stdin."""
        args = ["template", release, str(chart), "--namespace", namespace, *extra]
        text = None
        if values is not None:
            args += ["--values", "-"]
            text = yaml.safe_dump(dict(values))
        return self.run(*args, input=text, check=check)

    def render(
        self,
        chart: Path,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "rel",
        namespace: str = "ops",
        extra: Sequence[str] = (),
    ) -> list[Manifest]:
        """The rendered objects of `chart`."""
        out = self.template(chart, values, release=release, namespace=namespace, extra=extra)
        return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = _find_helm()
    if binary is None:
        reason = "helm not found: run 'make cluster-tools' (or 'make test-charts'), or set HELM"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"chart tests: {reason}; CI=true requires helm", pytrace=False)
        pytest.skip(f"chart tests: {reason}")
    return Helm(binary)


def find(docs: Sequence[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]
