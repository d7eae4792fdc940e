"""PySyncObj as the pure-Python Raft reference: 3 node processes on 127.0.0.1 (bench.pso_node),
journal on, each issuing a third of the writes with a third of the in-flight window."""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.ports import free_ports
from tests.support.wait import wait_for

from .etcd import Unavailable
from .procs import Procs, cpu_seconds
from .stats import merge_node_results


def pysyncobj_version() -> str:
    try:
        return metadata.version("pysyncobj")
    except metadata.PackageNotFoundError:
        raise Unavailable(
            "pysyncobj not installed in this venv: `make bench-deps` (or pip install pysyncobj)"
        ) from None


def run_cluster(
    directory: Path,
    procs: Procs,
    *,
    writes: int,
    window: int,
    size: int,
    nodes: int = 3,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """One run on a fresh cluster; returns the merged result plus the nodes' CPU seconds
    (which here include the load-generating code: it runs inside the node processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    addrs = [f"127.0.0.1:{p}" for p in free_ports(nodes)]
    go = directory / "go"
    running = []
    for i, me in enumerate(addrs):
        share = writes // nodes + (1 if i < writes % nodes else 0)
        argv = [
            sys.executable,
            "-m",
            "bench.pso_node",
            f"--self={me}",
            f"--partners={','.join(a for a in addrs if a != me)}",
            f"--journal={directory / f'n{i}.journal'}",
            f"--writes={share}",
            f"--window={max(1, window // nodes)}",
            f"--size={size}",
            f"--ready={directory / f'n{i}.ready'}",
            f"--go={go}",
            f"--out={directory / f'n{i}.json'}",
            f"--timeout={timeout}",
        ]
        running.append(procs.spawn(argv, directory / f"n{i}.log", cwd=Path.cwd()))
    try:
        deadline = time.monotonic() + timeout
        for i in range(nodes):
            _wait(directory / f"n{i}.ready", deadline, running)
        pids = [p.pid for p in running]
        c0 = cpu_seconds(pids)
        go.write_text("go")
        outs = []
        for i in range(nodes):
            out = directory / f"n{i}.json"
            _wait(out, deadline, running)
            outs.append(json.loads(out.read_text()))
        cpu = cpu_seconds(pids) - c0
    finally:
        procs.stop(running)
    merged = merge_node_results(outs)
    merged["cpu_s"] = round(cpu, 3)
    return merged


def _wait(path: Path, deadline: float, running: list[Any]) -> None:
    """Until `path` exists (a node's ready or result file), by `deadline` (monotonic)."""

    def written() -> bool:
        for p in running:
            if p.poll() is not None:
                raise RuntimeError(
                    f"a PySyncObj node exited with {p.returncode}; see {path.parent}"
                )
        return path.exists()

    wait_for(written, max(0.0, deadline - time.monotonic()), path.name, 0.02)
