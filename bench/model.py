"""The model peer of `make bench` (issue 19): our node's per-block work with no framework
around it, so that our BFT and Raft figures read as a fraction of it, measured in the same
run on the same machine.

N validator processes (`python -m bench.model_peer`, one validator's loop each) on 127.0.0.1
TCP, happy path only: no consensus engine, gRPC, TLS, mempool, timers, retries or
gossip. Per block they do the node's real work with the node's own code (exactly what, per
shape, is in bench/model_peer.py's docstring and bench/README.md): decode every tx
(`transport.codec.decode_tx`), the mempool's admission checks once per tx per validator
(stateless, duplicate, Ed25519 via `crypto.verify`, `ledger.state.preflight`; a Raft
follower skips them, the crash-fault model), the block's checks (`tx_root`, nonces), the
consensus messages (`consensus.bft.codec` proposals and votes, each signed and verified),
the consensus WAL (`storage.wal`, fdatasync before the message that depends on it), the
block file append (`storage.blocks`, fdatasync), `ledger.state.execute_block` (LtHash state
root) and one LMDB transaction (`storage.state.StateStore.commit_block`, synced).

This module is the parent side, called by bench/run.py (the `bft`, `raft` and `model`
sections) and tests/unit/bench/test_bench_model.py: `run` signs the transactions (before
the clock starts), starts the processes through `Procs` (stopped on every exit path), tells
them each other's addresses, starts them together, collects their results over one control
connection each (JSON lines) and turns them into a run (`summarize_nodes`). The run's
configuration, keys, genesis state and the tx file format are shared with the peers here.

Control protocol, per peer, on its own TCP connection to the parent (one JSON object a line):
    peer -> {"index": i, "listening": port}     its peer listener is bound
    parent -> {"peers": ["127.0.0.1:port", ...]} every peer's listener, by index
    peer -> {"ready": true}                     connected to every peer, and they to it
    parent -> {"go": true}                      (sent to all; CPU is counted from here)
    peer -> {"result": {...}} or {"error": traceback}
    parent closes the connection                the peer exits
A peer that dies closes its connection, so the parent never waits on a dead process for
longer than the read in progress."""

from __future__ import annotations

import contextlib
import json
import random
import select
import socket
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

from consortium_api.v1 import types_pb2
from consortium_node.client.keys import Signer
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import PERMISSIONED_KEY, Validator, member_key

from .procs import Procs, cpu_seconds
from .stats import latency_summary

ROOT = Path(__file__).resolve().parents[1]
CHAIN_ID = "bench-model"
SHAPES = ("bft", "raft")
_LEN = struct.Struct(">I")


class ModelFailed(RuntimeError):
    """The model did not run to the end, or its validators disagree (a bug of the model)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One run. `shape` "bft": every validator verifies and votes (prevote, precommit), one
    block in flight; "raft": a fixed leader (index 0) replicates to followers, commit at a
    majority of acks, followers apply without re-verifying signatures."""

    shape: str = "bft"
    validators: int = 4
    blocks: int = 20
    block_txs: int = 1000
    size: int = 100  # value bytes of each kv put
    senders: int = 8  # distinct sender keys, round-robin (sequential nonces each)
    seed: int = 0  # keys, values and so every state root follow from it
    wal: bool = True  # the consensus WAL's fdatasync before each vote / append (as ours)
    # bft: txs reach every validator before their block, as ours gossips them: each admits
    # block h+1's txs right after its precommit for h (off by default: the issue's model)
    gossip: bool = False
    timeout: float = 120.0  # the whole run, start-up included

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"model shape must be one of {SHAPES}, not {self.shape!r}")
        if self.validators < 2 or self.blocks < 1 or self.block_txs < 1 or self.senders < 1:
            raise ValueError("the model needs >= 2 validators, >= 1 block, tx and sender")

    @property
    def txs(self) -> int:
        return self.blocks * self.block_txs

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))

    def describe(self) -> str:
        return (
            f"{self.shape} x{self.validators}: {self.blocks} blocks of {self.block_txs} signed "
            f"kv puts of {self.size} B"
        )


# --------------------------------------------------------------------------- shared


def node_keys(cfg: ModelConfig) -> list[Ed25519Key]:
    """The validators' keys, by index (derived from the seed: every process knows them)."""
    return [
        Ed25519Key(sha256(f"bench-model/{cfg.seed}/node/{i}".encode()))
        for i in range(cfg.validators)
    ]


def validator_set(cfg: ModelConfig) -> tuple[Validator, ...]:
    """Organisations of two validators, as the benchmarked BFT consortium has."""
    return tuple(Validator(k.public, f"org{i // 2 + 1}") for i, k in enumerate(node_keys(cfg)))


def sender_signers(cfg: ModelConfig) -> list[Signer]:
    return [
        Signer.from_seed(sha256(f"bench-model/{cfg.seed}/sender/{i}".encode()))
        for i in range(cfg.senders)
    ]


def genesis_hash(cfg: ModelConfig) -> bytes:
    return sha256(f"bench-model/{cfg.seed}/genesis".encode())


def genesis_writes(cfg: ModelConfig) -> dict[bytes, bytes]:
    """A permissioned chain (as ours runs) whose senders are vouched for by org1, so every
    tx pays the permission reads of admission and execution."""
    writes = {PERMISSIONED_KEY: b"1"}
    for s in sender_signers(cfg):
        writes[member_key(s.public_key)] = b"org1"
    return writes


def genesis_lthash(cfg: ModelConfig) -> LtHash:
    acc = LtHash()
    for k, v in genesis_writes(cfg).items():
        acc.add(k, v)
    return acc


def signed_txs(cfg: ModelConfig) -> list[bytes]:
    """Every tx of the run as SignedTx bytes, block by block: kv puts `bench-model/<i>` of
    one seeded value, signed with `Signer.build_tx` (as the load generator does), senders
    round-robin with sequential nonces, so any block-sized slice in order is valid."""
    signers = sender_signers(cfg)
    value = random.Random(cfg.seed).randbytes(cfg.size)
    nonces = [0] * len(signers)
    out = []
    for i in range(cfg.txs):
        s = i % len(signers)
        payload = types_pb2.KvPut(key=f"bench-model/{i}".encode(), value=value)
        _, tx = signers[s].build_tx(CHAIN_ID, nonces[s], payload)
        nonces[s] += 1
        out.append(tx.SerializeToString())
    return out


def write_txs(path: Path, raws: Sequence[bytes]) -> None:
    """The tx file: (u32 length | SignedTx bytes)*, in order."""
    path.write_bytes(b"".join(_LEN.pack(len(r)) + r for r in raws))


def read_txs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


# --------------------------------------------------------------------------- parent


def run(
    cfg: ModelConfig, directory: Path, procs: Procs, txs: Sequence[bytes] | None = None
) -> dict[str, Any]:
    """One run on fresh data directories `directory/node<i>` (kept: the caller owns
    `directory`); returns `summarize_nodes`'s figures. Raises ModelFailed. `txs` replaces
    `signed_txs(cfg)` (a test alters one to see it refused)."""
    directory.mkdir(parents=True, exist_ok=True)
    tx_file = directory / "txs.bin"
    write_txs(tx_file, signed_txs(cfg) if txs is None else txs)
    conf = directory / "config.json"
    conf.write_text(cfg.to_json())
    deadline = time.monotonic() + cfg.timeout
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        running = [
            procs.spawn(
                [
                    sys.executable,
                    "-m",
                    "bench.model_peer",
                    f"--index={i}",
                    f"--control=127.0.0.1:{port}",
                    f"--config={conf}",
                    f"--txs={tx_file}",
                    f"--dir={directory / f'node{i}'}",
                ],
                directory / f"node{i}.log",
                cwd=ROOT,
            )
            for i in range(cfg.validators)
        ]
        control = _Control(listener, running, directory, deadline)
        try:
            hello = control.accept_all()
            control.tell_all({"peers": [f"127.0.0.1:{h}" for h in hello]})
            control.hear_all("ready")
            pids = [p.pid for p in running]
            c0 = cpu_seconds(pids)
            control.tell_all({"go": True})
            results = control.hear_all("result")
            cpu = cpu_seconds(pids) - c0  # before they exit: /proc/PID/stat must still be there
        finally:
            control.close()
            procs.stop(running)
    return summarize_nodes(cfg, results, cpu)


class _Control:
    """The parent's ends of the control connections, by peer index. Lines are read from
    whichever peer sends first (select), so one peer's error is seen at once even while
    the others wait for it; every wait is bounded by `deadline` (monotonic)."""

    def __init__(
        self, listener: socket.socket, running: list[Popen[bytes]], logs: Path, deadline: float
    ) -> None:
        self._listener = listener
        self._running = running
        self._logs = logs
        self._deadline = deadline
        self._conns: dict[int, socket.socket] = {}
        self._bufs: dict[int, bytes] = {}

    def _remaining(self, what: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ModelFailed(f"model: timed out waiting for {what}; logs in {self._logs}")
        return left

    def _check_alive(self) -> None:
        for i, p in enumerate(self._running):
            if p.poll() is not None:
                raise ModelFailed(
                    f"model peer {i} exited with {p.returncode}; see {self._logs}/node{i}.log"
                )

    def accept_all(self) -> list[int]:
        """Every peer's listening port, by index."""
        ports: dict[int, int] = {}
        pending: dict[socket.socket, bytes] = {}
        while len(ports) < len(self._running):
            # short slices, so that a peer that died before it said hello is noticed
            wait = min(1.0, self._remaining("the peers to start"))
            ready, _, _ = select.select([self._listener, *pending], [], [], wait)
            if not ready:
                self._check_alive()
            for sock in ready:
                if sock is self._listener:
                    conn, _ = self._listener.accept()
                    pending[conn] = b""
                    continue
                data = sock.recv(65536)
                if not data:
                    raise ModelFailed(
                        f"a model peer hung up before its hello; logs in {self._logs}"
                    )
                pending[sock] += data
                if b"\n" in pending[sock]:
                    line, rest = pending.pop(sock).split(b"\n", 1)
                    msg = json.loads(line)
                    i = int(msg["index"])
                    self._conns[i], self._bufs[i] = sock, rest
                    ports[i] = int(msg["listening"])
        return [ports[i] for i in range(len(self._running))]

    def tell_all(self, msg: Mapping[str, Any]) -> None:
        line = json.dumps(msg).encode() + b"\n"
        for conn in self._conns.values():
            conn.sendall(line)

    def hear_all(self, key: str) -> list[Any]:
        """`msg[key]` from every peer, by index; a peer's error or exit raises ModelFailed."""
        got: dict[int, Any] = {}
        index = {conn: i for i, conn in self._conns.items()}
        while len(got) < len(self._conns):
            for i in [i for i in self._conns if i not in got and b"\n" in self._bufs[i]]:
                line, self._bufs[i] = self._bufs[i].split(b"\n", 1)
                msg = json.loads(line)
                if key not in msg:
                    raise ModelFailed(f"model peer {i}: {msg.get('error', msg)}")
                got[i] = msg[key]
            waiting = [c for c, i in index.items() if i not in got]
            if not waiting:
                break
            ready, _, _ = select.select(waiting, [], [], self._remaining(f"{key!r} from the peers"))
            for conn in ready:
                i = index[conn]
                data = conn.recv(1 << 20)
                if not data:
                    raise ModelFailed(
                        f"model peer {i} closed its control connection before {key!r}; "
                        f"see {self._logs}/node{i}.log"
                    )
                self._bufs[i] += data
        return [got[i] for i in range(len(self._running))]

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(OSError):
                conn.close()
        self._conns.clear()


def summarize_nodes(
    cfg: ModelConfig, results: Sequence[Mapping[str, Any]], cpu_s: float
) -> dict[str, Any]:
    """One run's figures from the peers' results. Node 0's commits are the commit times (as
    ours is followed on node 0); a block's latency runs from its proposer starting it (the
    first admission check) to node 0's commit; tx/s = txs / (last commit - block 1's start).
    Every validator must hold the same `blocks` block hashes and the same state root, or
    the model is broken and ModelFailed is raised: no figure from a model that disagrees."""
    roots = {r["state_root"] for r in results}
    chains = {tuple(r["block_hashes"]) for r in results}
    heights = sorted({int(r["height"]) for r in results})
    if len(roots) != 1 or len(chains) != 1 or heights != [cfg.blocks]:
        raise ModelFailed(
            f"model validators disagree: heights {heights}, {len(roots)} state roots, "
            f"{len(chains)} chains"
        )
    starts: dict[int, int] = {}
    for r in results:
        starts.update({int(h): int(t) for h, t in r["starts_ns"].items()})
    commits = [int(t) for t in results[0]["commits_ns"]]
    lat = [(commits[h - 1] - starts[h]) / 1e6 for h in range(1, cfg.blocks + 1)]
    duration = (commits[-1] - starts[1]) / 1e9
    return {
        "tx_per_s": round(cfg.txs / duration, 1) if duration > 0 else 0.0,
        "latency_ms": {k: round(v, 2) for k, v in latency_summary(lat).items()},
        "committed": cfg.txs,
        "blocks": cfg.blocks,
        "block_txs": cfg.block_txs,
        "duration_s": round(duration, 4),
        "node_cpu_s": round(cpu_s, 3),
        "cpu_s_per_1000_tx": round(1000 * cpu_s / cfg.txs, 3),
        "signature_checks": sum(int(r["signature_checks"]) for r in results),
        "signatures": sum(int(r["signatures"]) for r in results),
        "fsyncs": sum(int(r["fsyncs"]) for r in results),
        "state_root": roots.pop(),
    }
