"""The node containers of kind clusters made by `make kind-up` on this machine.

Used by the kind e2e tests (test_kind_dns.py, test_kind_pair.py): they look inside the
node container with `docker exec` (resolver, iptables counters), which only means
something for the offline node image cluster/kind-node-image.sh builds. `local_kind_node`
answers that container's name, or None when the cluster is anything else (the
self-booted test cluster, kind with kind's own image, no docker here).
"""

from __future__ import annotations

import shutil
import subprocess

LOCAL_KIND_IMAGE = "consortium/kind-node:"


def docker_binary() -> str | None:
    return shutil.which("docker")


def local_kind_node(context: str) -> str | None:
    """`<name>-control-plane` for context `kind-<name>` if it runs our kind node image."""
    docker = docker_binary()
    if docker is None or not context.startswith("kind-"):
        return None
    node = f"{context.removeprefix('kind-')}-control-plane"
    proc = subprocess.run(
        [docker, "inspect", "-f", "{{.Config.Image}}", node],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.startswith(LOCAL_KIND_IMAGE):
        return None
    return node


def node_exec(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv in the node container (never raises on a non-zero exit)."""
    docker = docker_binary()
    assert docker is not None, "docker is not on PATH"
    return subprocess.run(
        [docker, "exec", node, *argv], capture_output=True, text=True, timeout=60, check=False
    )
