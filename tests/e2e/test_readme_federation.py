"""Every `<!-- run: federation -->` block of README.md, in order, on three kind clusters, as a
person types them (issues 15 and 20): an operator in each of clusters A and B, the genesis
ceremony with the CLI and kubectl (files only between the clusters), the genesis applied by
reference in both, then organisation d joining the running chain from cluster C; then the
`cleanup` blocks (also when an earlier block failed).

`make test-federation` runs it after tests/e2e/test_federation.py, on the same clusters:
KUBECONFIG is A, E2E_FED_PEER_KUBECONFIG B, E2E_FED_JOIN_KUBECONFIG C. The blocks run from a
scratch directory holding a copy of charts/ with a fresh HOME (test_readme_cluster.scratch);
README installs the default images (consortium/{node,operator}:dev), which each kind node's
containerd also gets under those names when the run's images have another tag. README works
in namespace `fed` of each cluster and removes it at the end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.readme import Journey, ReadmeError, blocks

from .conftest import Kube
from .consortium_fixtures import report
from .test_federation import peer_kube
from .test_readme_cluster import alias_default_images, scratch

pytestmark = [pytest.mark.e2e, pytest.mark.journey, pytest.mark.timeout(3000)]

BLOCK_TIMEOUT = 900.0  # a `kubectl wait --timeout=10m` and its slack


def diagnostics(kubes: dict[str, Kube]) -> str:
    """Each cluster's Consortium and operator log, for a failed block."""
    parts = []
    for name, k in kubes.items():
        for args in (
            ("-n", "fed", "get", "consortia", "-o", "yaml"),
            ("-n", "fed", "logs", "deployment/consortium-operator", "--tail", "60"),
            ("-n", "fed", "get", "pods", "-o", "wide"),
        ):
            try:
                proc = k.run(*args, check=False, timeout=60)
            except subprocess.SubprocessError as e:  # a cluster that no longer answers
                parts.append(f"[{name}] $ kubectl {' '.join(args)}: {e}")
                continue
            parts.append(f"[{name}] $ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    return "\n".join(parts)[-40000:]


def test_every_federation_block_of_the_readme_runs_in_order(
    kube: Kube,
    helm: list[str],
    node_image: str,
    operator_image: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    kubes = {
        "A": kube,
        "B": peer_kube(kube, "E2E_FED_PEER_KUBECONFIG"),
        "C": peer_kube(kube, "E2E_FED_JOIN_KUBECONFIG"),
    }
    todo = blocks("federation")
    main = [b for b in todo if not b.cleanup]
    cleanups = [b for b in todo if b.cleanup]
    assert len(main) >= 7 and cleanups, [b.where() for b in todo]
    for k in kubes.values():
        alias_default_images(k, (node_image, operator_image))
    cwd, env = scratch(tmp_path, kube, helm)
    env = {**env, **{f"KUBECONFIG_{n}": str(k.kubeconfig) for n, k in kubes.items()}}
    env.pop("KUBECONFIG")  # every README command names its cluster
    failures: list[str] = []
    with Journey(cwd=cwd, env=env, timeout=BLOCK_TIMEOUT) as journey:
        try:
            for b in main:
                journey.run(b)
                report(request.config, f"README federation: {b.where()} ran")
        except ReadmeError as e:
            failures.append(f"{e}\n{diagnostics(kubes)}")
        finally:
            for b in cleanups:
                try:
                    journey.run(b)
                except ReadmeError as e:
                    failures.append(f"(cleanup) {e}")
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    out = "\n".join(journey.log)
    assert '["a","b","c","d"]' in out, out[-3000:]  # d is a member, seen from cluster A
    assert (cwd / "contribution-d.json").exists()
