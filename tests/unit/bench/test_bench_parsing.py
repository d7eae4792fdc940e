"""Parsing what the benchmarks read: etcd's `benchmark put` output, /proc files, the
manifests of the benchmarked consortia."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from consortium_node.localnet import parse_manifest

from bench.etcd import parse_benchmark_output
from bench.operator_scale import consortium_doc
from bench.ours import manifest
from bench.procs import Procs, cpu_seconds, parse_proc_stat, parse_status_kib, rss_mib
from tests.support.ports import free_ports

pytestmark = pytest.mark.unit

ETCD_OUTPUT = """
Summary:
  Total:	2.7443 secs.
  Slowest:	0.2016 secs.
  Fastest:	0.0012 secs.
  Average:	0.0337 secs.
  Stddev:	0.0290 secs.
  Requests/sec:	7287.8655

Response time histogram:
  0.0012 [1]	|
  0.0212 [7480]	|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎

Latency distribution:
  10% in 0.0125 secs.
  25% in 0.0179 secs.
  50% in 0.0280 secs.
  75% in 0.0420 secs.
  90% in 0.0606 secs.
  95% in 0.0797 secs.
  99% in 0.1151 secs.
  99.9% in 0.1916 secs.
"""


def test_parse_etcd_benchmark_output() -> None:
    r = parse_benchmark_output(ETCD_OUTPUT)
    assert r.requests_per_s == pytest.approx(7287.8655)
    assert r.total_s == pytest.approx(2.7443)
    assert r.latency_ms["p50"] == pytest.approx(28.0)
    assert r.latency_ms["p99"] == pytest.approx(115.1)
    assert r.latency_ms["p99.9"] == pytest.approx(191.6)
    assert r.latency_ms["mean"] == pytest.approx(33.7)
    assert r.latency_ms["max"] == pytest.approx(201.6)


def test_parse_etcd_benchmark_output_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_benchmark_output("Error: context deadline exceeded\n")


def test_parse_proc_stat_with_spaces_and_parens_in_the_name() -> None:
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "123", "45", "0", "0"]
    text = "4242 (we ird) (name)) " + " ".join(fields) + "\n"
    assert parse_proc_stat(text) == (123, 45)


def test_parse_status_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert parse_status_kib(text, "VmRSS") == 102400
    assert parse_status_kib(text, "VmHWM") == 204800
    assert parse_status_kib(text, "VmSwap") == 0


def test_cpu_and_memory_of_this_process() -> None:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    assert cpu_seconds([os.getpid()]) > 0
    assert cpu_seconds([2**22 + 12345]) == 0  # no such process: counts 0
    assert rss_mib(os.getpid()) > 1
    assert rss_mib(os.getpid(), peak=True) >= rss_mib(os.getpid())


def test_free_ports_are_distinct() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(p > 0 for p in ports)


def test_procs_stop_all_kills_the_whole_group(tmp_path: Path) -> None:
    """A spawned process's own children die with it (each spawn is its own session)."""
    procs = Procs()
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(60)\n"
    )
    p = procs.spawn([sys.executable, "-c", script], tmp_path / "log")
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, (tmp_path / "log").read_text()
        time.sleep(0.05)
    child = int(pidfile.read_text())
    procs.stop_all()
    assert p.poll() is not None
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the grandchild survived"
        time.sleep(0.05)
    assert procs.procs == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize(
    ("consensus", "n", "orgs"), [("bft", 4, 2), ("bft", 7, 4), ("bft", 10, 5), ("raft", 3, 3)]
)
def test_benchmark_manifests_are_valid_consortia(consensus: str, n: int, orgs: int) -> None:
    plan = parse_manifest(manifest(consensus, n))
    assert plan.consensus == consensus
    assert len(plan.node_names) == n
    assert len(plan.organizations) == orgs


def test_subprocess_module_entry_points_import() -> None:
    """The harness modules import from the repository root (as `python -m bench.run` does)."""
    root = Path(__file__).resolve().parents[3]
    p = subprocess.run(
        [sys.executable, "-c", "import bench.run, bench.report"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr


def test_operator_benchmark_consortia_are_valid_specs() -> None:
    from consortium_operator.model import ConsortiumSpec

    doc = consortium_doc("c007", "consortium/node:bench-a")
    spec = ConsortiumSpec.parse(doc["spec"])
    assert sum(o.validators for o in spec.organizations) == 4
    assert doc["metadata"]["name"] == "c007"


def test_bench_imports_test_support_only_as_modules() -> None:
    """bench/ may use tests/support (a package) but never a test module, and never loads a
    file by path (it used to exec tests/integration/operator/apiserver.py that way)."""
    import ast

    bench_dir = Path(__file__).resolve().parents[3] / "bench"
    for path in sorted(bench_dir.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = []
            for name in names:
                assert not name.startswith("tests") or name.startswith("tests.support."), (
                    f"{path.name} imports {name}"
                )
            if isinstance(node, ast.Attribute):
                assert node.attr != "spec_from_file_location", f"{path.name} loads by path"
