"""Our consortium as local processes (consortium_node.localnet, fsync on), loaded by
`consortium_node.client.loadgen.run_bench` (what `consortium bench` runs) in-process: tx/s,
commit latency, node CPU per 1,000 tx."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consortium_api.v1 import types_pb2
from consortium_node.client.discovery import DataDir
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.loadgen import BenchConfig, run_bench
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .procs import cpu_seconds, rss_mib

# the consensus settings of every benchmarked consortium (CRD field names); the rest are
# the CRD's defaults (maxBlockTxs 2000, electionTimeoutMs 500, heartbeatIntervalMs 50)
CONSENSUS: dict[str, int] = {"tickMs": 5, "blockIntervalMs": 10, "emptyBlockIntervalMs": 1000}


def manifest(consensus: str, validators: int, name: str = "bench") -> dict[str, Any]:
    """A Consortium manifest with `validators` spread over organisations of at most 2."""
    orgs = []
    left, i = validators, 1
    while left > 0:
        n = min(2, left) if consensus == "bft" else 1
        orgs.append({"name": f"org{i}", "validators": n})
        left, i = left - n, i + 1
    return {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": name},
        "spec": {
            "chainId": name,
            "consensus": {"type": consensus, **CONSENSUS},
            "organizations": orgs,
        },
    }


@dataclass(frozen=True, slots=True)
class Load:
    """One `run_bench` shape. rate 0 = saturation (as fast as the nodes admit)."""

    txs: int
    streams: int = 4
    batch: int = 0
    size: int = 100
    rate: float = 0.0
    procs: int = 1
    commit_timeout: float = 20.0
    invoke: str = ""  # "contract/method": contract invocations instead of kv puts

    def describe(self) -> str:
        api = f"SubmitBatch x{self.batch}" if self.batch else "SubmitStream"
        pace = f"{self.rate:g} tx/s" if self.rate else "as fast as admitted"
        what = f"invocations of {self.invoke}" if self.invoke else f"kv puts of {self.size} B"
        return (
            f"{self.txs} signed {what} over {self.streams} streams "
            f"({api}, {pace}) spread over every node; commits followed on node 0"
        )


@contextlib.contextmanager
def local_net(consensus: str, validators: int, directory: Path) -> Iterator[LocalNet]:
    """Starts a fresh consortium in `directory` (fsync on) and always stops it."""
    init_data_dir(parse_manifest(manifest(consensus, validators)), directory, fsync=True)
    net = LocalNet(directory)
    try:
        net.start()
        _wait_height(net, 1, 60.0)
        yield net
    finally:
        net.stop()


def _wait_height(net: LocalNet, height: int, timeout: float) -> None:
    """Waits until node 0 reports a committed height >= `height` (a leader exists)."""
    with Client(net.nodes[0].endpoint, 5.0, tls=DataDir.load(net.data_dir).tls) as c:
        wait_for(
            lambda: int(c.status(timeout=2.0).height) >= height,
            timeout,
            f"block {height}",
            0.1,
            retry_on=(ClientError,),
        )


def _height(net: LocalNet) -> int:
    with Client(net.nodes[0].endpoint, 5.0, tls=DataDir.load(net.data_dir).tls) as c:
        return int(c.status(timeout=2.0).height)


def drain(net: LocalNet, timeout: float = 120.0) -> float:
    """Waits until every node's mempool is empty (what a saturation run left uncommitted
    has committed or gone), so that the next run is measured on an idle chain and not
    behind a backlog; returns the seconds it took. A run that starts behind one measures
    the backlog (10 validators x 4 KiB left ~4,700 txs, tens of seconds of blocks: the
    light run's first commit, the admin's AddMember vouching for its keys, missed its
    30 s wait)."""
    t0 = time.monotonic()
    tls = DataDir.load(net.data_dir).tls

    def empty() -> bool:
        for n in net.nodes:
            with Client(n.endpoint, 5.0, tls=tls) as c:
                if int(c.status(timeout=5.0).mempool_size):
                    return False
        return True

    wait_for(empty, timeout, "every mempool empty", 0.5, retry_on=(ClientError,))
    return round(time.monotonic() - t0, 2)


@contextlib.contextmanager
def paused(net: LocalNet, timeout: float = 60.0) -> Iterator[None]:
    """Freezes every node (SIGSTOP) while something else is measured beside the consortium
    (the model peer), so that it does not lose the CPU an idle consortium takes (a tick
    every 5 ms per node, empty blocks); the nodes always continue (SIGCONT) on the way out.
    Engine time is counted in ticks (runtime/service.py ticks once per wake-up, with no
    catching up), so a freeze fires no consensus timeout. Then it waits for node 0 to
    commit a new block, so that the next run of ours starts on a live chain."""
    height = _height(net)
    pids = [n.pid for n in net.nodes if n.pid]
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    _wait_height(net, height + 1, timeout)


def measure(net: LocalNet, load: Load) -> dict[str, Any]:
    """One run: run_bench's report plus node CPU seconds per 1,000 committed tx."""
    pids = [n.pid for n in net.nodes]
    dd = DataDir.load(net.data_dir)  # TLS material and the admin key that vouches for senders
    cfg = BenchConfig(
        tls=dd.tls,
        admin_key=dd.admin_key,
        member_org=dd.nodes[0].organization if dd.nodes else "",
        endpoint=net.nodes[0].endpoint,
        txs=load.txs,
        streams=load.streams,
        size=load.size,
        rate=load.rate,
        batch=load.batch,
        procs=load.procs,
        commit_timeout=load.commit_timeout,
        submit_to=tuple(n.endpoint for n in net.nodes),
        invoke=load.invoke,
    )
    c0 = cpu_seconds(pids)
    r = run_bench(cfg)
    cpu = cpu_seconds(pids) - c0
    out: dict[str, Any] = {
        "tx_per_s": round(r.tx_per_s, 1),
        "latency_ms": {k: round(v, 2) for k, v in r.latency_ms.items()},
        "committed": r.committed,
        "rejected": r.rejected,
        "uncommitted": r.uncommitted,
        "duration_s": round(r.duration_s, 3),
        "blocks": r.blocks,
        "node_cpu_s": round(cpu, 3),
        "cpu_s_per_1000_tx": round(1000 * cpu / r.committed, 3) if r.committed else None,
        "node_rss_mib": round(max((rss_mib(p) for p in pids), default=0.0), 1),
    }
    if r.rejections:
        out["rejections"] = r.rejections
    return out


def deploy_contract(net: LocalNet, name: str, code: bytes) -> None:
    """Deploys `code` as contract `name` with the chain's admin key (the bench chain has
    single-admin governance: a direct DeployContract) and waits for it to execute."""
    dd = DataDir.load(net.data_dir)
    if dd.admin_key is None:
        raise RuntimeError("the bench chain has no admin key to deploy a contract with")
    admin = Signer.from_json(dd.admin_key.read_text())
    with Client(net.nodes[0].endpoint, 10.0, tls=dd.tls) as c:
        chain = c.status().chain_id
        payload = types_pb2.DeployContract(name=name, code=code)
        tx_id, tx = admin.build_tx(chain, c.next_nonce(admin.public_key), payload)
        (res,) = c.submit([tx])
        if res.code:
            raise RuntimeError(f"deploying {name} was refused: {res.message}")
        got = c.wait_tx(tx_id, timeout=60)
        if got.receipt.code:
            raise RuntimeError(f"deploying {name} failed: {got.receipt.message}")
