"""Every entry point turns gRPC's fork support off before grpc is imported (see
consortium_node's package docstring: grpc/grpc#43055, children aborting between fork and
exec). Checked in a fresh interpreter per entry point: an import hook records
GRPC_ENABLE_FORK_SUPPORT at the moment grpc itself is first imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import builtins, os, sys
seen = []
real = builtins.__import__
def hook(name, *args, **kwargs):
    if not seen and (name == "grpc" or name.startswith("grpc.")) and "grpc" not in sys.modules:
        seen.append(os.environ.get("GRPC_ENABLE_FORK_SUPPORT"))
    return real(name, *args, **kwargs)
builtins.__import__ = hook
import importlib
importlib.import_module(sys.argv[1])
assert "grpc" in sys.modules, "the entry point did not import grpc"
print(seen[0])
"""

ENTRY_POINTS = [
    "consortium_node.__main__",  # the node process
    "consortium_node.cli",  # consortium (CLI; `consortium up` starts nodes)
    "consortium_operator.handlers",  # the operator (its __main__ imports them in main())
    "bench.run",  # make bench (starts nodes, etcd, kubectl while its clients are open)
]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_fork_support_is_off_when_grpc_is_imported(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "false"


def test_a_value_set_by_whoever_runs_us_is_kept() -> None:
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "true"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "consortium_node.__main__"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "true"
