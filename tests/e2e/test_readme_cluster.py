"""Every `<!-- run: cluster -->` block of README.md, in order, on the e2e cluster, as a user
types them (issue 20): helm install of both charts, kubectl apply, wait, a port-forward in the
background, `consortium context from-cluster`, status, a write with the member key of the
context, its read-back, blocks, scaling, an organisation joining, a manual organisation's CLI
vote; then the `cleanup` blocks (also when an earlier block failed). The commands of the
charts' rendered NOTES.txt run too: the operator chart's right after the README installs it
(what `helm install` printed), the consortium chart's on a one-validator Consortium it
installs at the end.

The blocks run from a scratch directory holding copies of examples/ and charts/ (the
repository root, as README assumes), with a fresh HOME, `kubectl` and `helm` bound to the
test cluster by KUBECONFIG, and the project's `consortium` on PATH. README installs the
default images (consortium/{node,operator}:dev); when the run's images have another tag, the
cluster's containerd gets them under the :dev names too (kind only; nothing else is tagged).

README works in the default namespace and consortium-system (cluster-wide operator), so this
test must not share the cluster with another operator at the same time: the e2e tier runs
its modules one after the other, and this one removes what it installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.readme import ROOT, Block, Journey, ReadmeError, blocks, notes_blocks

from .conftest import Kube
from .consortium_fixtures import in_ci, report

pytestmark = [pytest.mark.e2e, pytest.mark.journey, pytest.mark.timeout(3000)]

DEFAULT_IMAGES = ("consortium/node:dev", "consortium/operator:dev")
OPERATOR_NAMESPACE = "consortium-system"  # README's
BLOCK_TIMEOUT = 600.0  # a `kubectl wait --timeout=5m` and its slack


def _ctr_name(ref: str) -> str:
    """containerd's name of a Docker reference (cluster/lib/common.sh ctr_name)."""
    slashes = ref.split(":", 1)[0].count("/")
    return (
        ref if slashes >= 2 else f"docker.io/{ref}" if slashes == 1 else f"docker.io/library/{ref}"
    )


def alias_default_images(kube: Kube, images: tuple[str, str]) -> None:
    """The run's images also under README's :dev names, in the kind node's containerd."""
    todo = [(src, dst) for src, dst in zip(images, DEFAULT_IMAGES, strict=True) if src != dst]
    if not todo:
        return
    if not kube.context.startswith("kind-") or shutil.which("docker") is None:
        reason = f"README installs {DEFAULT_IMAGES}; this cluster runs {images} (not kind)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    node = f"{kube.context.removeprefix('kind-')}-control-plane"
    for src, dst in todo:
        ctr = ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "tag", "--force"]
        proc = subprocess.run(
            [*ctr, _ctr_name(src), _ctr_name(dst)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"ctr images tag {src} {dst}: {proc.stderr}"


def scratch(tmp_path: Path, kube: Kube, helm: list[str]) -> tuple[Path, dict[str, str]]:
    """(cwd, env) of the journey: copies of examples/ and charts/, a fresh HOME, PATH with
    kubectl, helm and this interpreter's `consortium`, KUBECONFIG the test cluster's."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for d in ("examples", "charts"):
        shutil.copytree(ROOT / d, repo / d)
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(kube.binary)
    (bin_dir / "helm").symlink_to(helm[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIUM_")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]])
    env["HOME"] = str(home)
    env["KUBECONFIG"] = str(kube.kubeconfig)
    return repo, env


def notes(journey: Journey, *args: str) -> str:
    """`helm get notes ARGS` (what `helm install` printed) through the journey's env."""
    block = Block(
        line=0,
        marker="helm get notes",
        code=f"helm get notes {' '.join(args)}\n",
        tier="cluster",
        source="(test)",
    )
    return journey.run(block, 60)


def diagnostics(kube: Kube) -> str:
    """The README's objects and the operator's log, for a failed block (the cluster may be
    unreachable by then: each command's error is shown instead)."""
    parts = []
    try:
        parts.append(kube.diagnostics("default"))
        for args in (
            ("get", "consortia", "-A", "-o", "yaml"),
            ("-n", OPERATOR_NAMESPACE, "logs", "deployment/consortium-operator", "--tail", "80"),
            # the chain's own account of a stall: every node's last lines (README's pods carry
            # no e2e label, so Kube.diagnostics does not show them)
            (
                "-n",
                "default",
                "logs",
                "--all-containers",
                "--prefix",
                "--tail",
                "60",
                "--max-log-requests",
                "20",
                "-l",
                "app.kubernetes.io/name=consortium-node",
            ),
            ("get", "pods,pvc", "-A", "-o", "wide"),
        ):
            proc = kube.run(*args, check=False, timeout=60)
            parts.append(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    except subprocess.SubprocessError as e:  # a cluster that no longer answers
        parts.append(f"(diagnostics stopped: {e})")
    return "\n".join(parts)[-40000:]


CHART_VALUES = {
    # the consortium chart's NOTES on a small chain: one Raft validator, volumes deleted
    "spec": {
        "chainId": "notes-chain",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "acme", "validators": 1, "memberKey": True}],
        "image": "consortium/node:dev",
        "imagePullPolicy": "IfNotPresent",
        "deletionPolicy": "Delete",
    }
}


def test_every_cluster_block_of_the_readme_runs_in_order(
    kube: Kube,
    helm: list[str],
    node_image: str,
    operator_image: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    todo = blocks("cluster")
    main = [b for b in todo if not b.cleanup]
    cleanups = [b for b in todo if b.cleanup]
    assert len(main) >= 6 and cleanups, [b.where() for b in todo]
    alias_default_images(kube, (node_image, operator_image))
    cwd, env = scratch(tmp_path, kube, helm)
    chart_ns = f"e2e-readme-notes-{uuid.uuid4().hex[:6]}"
    (cwd / "notes-values.json").write_text(json.dumps(CHART_VALUES))
    failures: list[str] = []
    with Journey(cwd=cwd, env=env, timeout=BLOCK_TIMEOUT) as journey:
        try:
            # README's install, then what `helm install` printed (the operator chart's NOTES)
            journey.run(main[0])
            text = notes(journey, "consortium-operator", "-n", OPERATOR_NAMESPACE)
            op_notes = notes_blocks(text, "charts/consortium-operator NOTES.txt")
            assert len(op_notes) >= 8, text
            for b in op_notes:
                journey.run(b)
            journey.stop_background()
            report(request.config, f"README cluster: block 1 + {len(op_notes)} NOTES commands")
            for b in main[1:]:
                journey.run(b)
            journey.stop_background()
            report(request.config, f"README cluster: {len(main)} blocks ran")
            # the consortium chart, installed as its README says, and its NOTES' commands
            journey.run(
                Block(
                    line=0,
                    marker="helm install",
                    code=f"helm install notes charts/consortium -n {chart_ns} --create-namespace"
                    " -f notes-values.json\n",
                    tier="cluster",
                    source="(test)",
                )
            )
            text = notes(journey, "notes", "-n", chart_ns)
            for b in notes_blocks(text, "charts/consortium NOTES.txt", {"<org>": "acme"}):
                journey.run(b)
            journey.stop_background()
        except ReadmeError as e:
            failures.append(f"{e}\n{diagnostics(kube)}")
        finally:
            journey.stop_background()
            chart_cleanup = Block(
                line=0,
                marker="cleanup",
                code=f"helm uninstall notes -n {chart_ns} --ignore-not-found --wait\n"
                f"kubectl delete namespace {chart_ns} --ignore-not-found --wait=false\n",
                tier="cluster",
                cleanup=True,
                source="(test)",
            )
            # the chart's consortium first, while README's operator still runs
            for b in [chart_cleanup, *cleanups]:
                try:
                    journey.run(b)
                except ReadmeError as e:
                    failures.append(f"(cleanup) {e}")
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    out = "\n".join(journey.log)
    assert "hello" in out, out[-3000:]  # the greeting written with the member key, read back
