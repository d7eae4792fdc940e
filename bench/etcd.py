"""etcd as the reference Raft: a 3-member cluster of Debian's etcd (fsync on, its default) on
127.0.0.1 with random ports, loaded by etcd's own `benchmark put` tool built from its Go
module (go.etcd.io/etcd/v3 tools/benchmark), cached under ~/.cache/consortium/bin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_ports
from tests.support.wait import WaitTimeout, wait_for

from .procs import Procs, cpu_seconds

ETCD_BENCH_VERSION = "v3.5.21"
CACHE = Path(os.environ.get("CONSORTIUM_CACHE", Path.home() / ".cache" / "consortium"))
BENCH_BIN = CACHE / "bin" / f"etcd-benchmark-{ETCD_BENCH_VERSION}"


class Unavailable(RuntimeError):
    """A peer system cannot be run here; the message says why (it goes into the JSON)."""


def find_etcd() -> str:
    etcd = os.environ.get("ETCD") or shutil.which("etcd") or ""
    if not etcd:
        raise Unavailable("etcd not found: apt-get install -y etcd-server (or set ETCD)")
    return etcd


def etcd_version(etcd: str) -> str:
    out = subprocess.run([etcd, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"etcd Version:\s*(\S+)", out)
    return m.group(1) if m else "unknown"


def build_benchmark_tool(log: Path) -> Path:
    """etcd's `benchmark` binary, built once from the Go module proxy into the cache.

    `go install module@version` refuses etcd's root module (it has replace directives), so a
    throwaway module requires go.etcd.io/etcd/v3 at ETCD_BENCH_VERSION (whose require lines
    pin every etcd submodule to the same release) and builds tools/benchmark from it."""
    if BENCH_BIN.exists():
        return BENCH_BIN
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else ""
    )
    if not go:
        raise Unavailable("go not found: cannot build etcd's benchmark tool")
    BENCH_BIN.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etcd-bench-build-") as tmp, log.open("ab") as out:
        steps = [
            [go, "mod", "init", "consortium.bench/etcdtool"],
            [go, "get", f"go.etcd.io/etcd/v3@{ETCD_BENCH_VERSION}"],
            [go, "build", "-o", str(BENCH_BIN) + ".tmp", "go.etcd.io/etcd/v3/tools/benchmark"],
        ]
        for argv in steps:
            p = subprocess.run(argv, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, timeout=600)
            if p.returncode != 0:
                raise Unavailable(
                    f"building etcd benchmark failed at {' '.join(argv[1:3])}; see {log}"
                )
    Path(str(BENCH_BIN) + ".tmp").rename(BENCH_BIN)
    return BENCH_BIN


@dataclass(frozen=True, slots=True)
class EtcdResult:
    requests_per_s: float
    total_s: float
    latency_ms: dict[str, float]


_LINE = re.compile(r"^\s*([\d.]+)% in ([\d.]+) secs\.", re.M)


def parse_benchmark_output(text: str) -> EtcdResult:
    """The `Summary` and `Latency distribution` sections of `benchmark put` output."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"Total:\s*([\d.]+) secs", text)
    if rps is None or total is None:
        raise ValueError("no Requests/sec / Total in etcd benchmark output")
    lat: dict[str, float] = {}
    for q, secs in _LINE.findall(text):
        lat["p" + format(float(q), "g")] = float(secs) * 1000
    for key, label in (("Average", "mean"), ("Slowest", "max")):
        m = re.search(rf"{key}:\s*([\d.]+) secs", text)
        if m:
            lat[label] = float(m.group(1)) * 1000
    return EtcdResult(float(rps.group(1)), float(total.group(1)), lat)


class EtcdCluster:
    """Three etcd members on 127.0.0.1, data in `directory`, fsync on (etcd's default)."""

    def __init__(self, etcd: str, directory: Path, procs: Procs, members: int = 3) -> None:
        self.etcd, self.dir, self.procs, self.members = etcd, directory, procs, members
        self.client_urls: list[str] = []
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 30.0) -> None:
        ports = free_ports(2 * self.members)
        names = [f"m{i}" for i in range(self.members)]
        peers = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(self.members)]
        self.client_urls = [f"http://127.0.0.1:{ports[2 * i]}" for i in range(self.members)]
        initial = ",".join(f"{n}={p}" for n, p in zip(names, peers, strict=True))
        for i, name in enumerate(names):
            argv = [
                self.etcd,
                f"--name={name}",
                f"--data-dir={self.dir / name}",
                f"--listen-client-urls={self.client_urls[i]}",
                f"--advertise-client-urls={self.client_urls[i]}",
                f"--listen-peer-urls={peers[i]}",
                f"--initial-advertise-peer-urls={peers[i]}",
                f"--initial-cluster={initial}",
                "--initial-cluster-state=new",
                "--initial-cluster-token=consortium-bench",
                "--log-level=warn",
            ]
            env = {"ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "arm64")}
            self.running.append(self.procs.spawn(argv, self.dir / f"{name}.log", env))
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        """Until every member's /health says true; Unavailable when a member exits or the
        time runs out."""
        pending = list(self.client_urls)

        def healthy() -> bool:
            for p in self.running:
                if p.poll() is not None:
                    raise Unavailable(f"etcd exited with {p.returncode}; see {self.dir}/*.log")
            while pending:
                with urllib.request.urlopen(f"{pending[0]}/health", timeout=2) as r:
                    if b'"true"' not in r.read():
                        return False
                pending.pop(0)
            return True

        try:
            wait_for(healthy, timeout, "etcd cluster healthy", 0.2, retry_on=(OSError,))
        except WaitTimeout:
            raise Unavailable(f"etcd cluster not healthy within {timeout:.0f}s") from None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.running]

    def stop(self) -> None:
        self.procs.stop(self.running)
        self.running.clear()


@dataclass(frozen=True, slots=True)
class EtcdRun:
    result: EtcdResult
    cpu_s: float  # of the etcd members during the run
    argv: list[str]


def run_put(
    tool: Path,
    cluster: EtcdCluster,
    *,
    total: int,
    clients: int,
    conns: int,
    val_size: int,
    log: Path,
    timeout: float = 300.0,
) -> EtcdRun:
    """`benchmark put` against every member (the tool spreads connections over endpoints)."""
    argv = [
        str(tool),
        f"--endpoints={','.join(u.removeprefix('http://') for u in cluster.client_urls)}",
        f"--clients={clients}",
        f"--conns={conns}",
        "put",
        f"--total={total}",
        f"--val-size={val_size}",
        "--key-size=16",
        f"--key-space-size={total}",
        "--sequential-keys",
    ]
    c0 = cpu_seconds(cluster.pids)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    c1 = cpu_seconds(cluster.pids)
    with log.open("a") as f:
        f.write(" ".join(argv) + "\n" + p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"etcd benchmark exited {p.returncode}: {p.stderr[-500:]}")
    return EtcdRun(parse_benchmark_output(p.stdout), c1 - c0, argv)
