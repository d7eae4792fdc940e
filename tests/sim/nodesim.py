"""The whole-node simulator (tigerbeetle's VOPR is the model): N real runtime `Node`s.

Used by tests/sim/test_node_sim.py and tests/sim/mutants.py. Each node is the production
`consortium_node.runtime.node.Node` (engine, mempool, ledger execution, WAL replay, block-store
scan at start-up) with three things injected: a fake clock (one tick = `tick_ms`), storage on a
simulated `Disk` (storage/memory.py: lost un-fsynced writes, torn records, flipped bits, failed
fsyncs) and a `PeerNetwork` that queues messages through the simulator. A crash drops the
`Node` object and powers the disk off; a restart builds a new `Node` from what the disk kept.

Swarm testing: `Swarm.draw(rng)` picks this seed's parameters (validators 1-7 for raft, 4-7 for
bft; drop, duplicate and delay rates; partition shapes and symmetry; crash, restart and storage
fault rates; a Byzantine Twin or not, and how often it lies in its compact proposals; engine
tunings such as raft's append size and bft's round timeouts), so the seeds together cover far
more than any fixed scenario. Besides random faults, two nemeses strike at the moments that
matter: the partition follows the leader (it is cut off right after it wins an election or
commits, so its next messages are lost: the moves of Raft's Figure 8), and a node may crash
right after it persisted and sent a vote. The workload is real Ed25519-signed transactions from
several clients (KvPut with a unique key each) plus an admin adding and removing validators by
governance transactions, and contract invocations (the admin deploys a WAT counter; clients
call its `incr`).

Invariants (checked after every call into a node, and at the end):
  agreement   honest nodes hold the same block hash at every height and the same state root
              after every height (the header of h + 1 carries the root after h)
  durability  every transaction a client saw committed (a receipt from an honest node) is on
              every honest node at the same height and index, with its key holding its value
  no dups     a transaction id is in the chain at most once
  liveness    after the final heal (one network, no faults, every node up) every member
              commits new blocks and every client transaction commits, within
              `liveness_ticks`
  startable   a node always restarts from what its disk kept (rule 2 of the house style)
  bounded     fewer than MAX_IN_FLIGHT_MESSAGES messages in flight (no message storm)
  contracts   the counter contract's value is the number of its invocations clients saw
              succeed, on every honest node (receipts are state: agreement covers them)

Service-loop duties that live in runtime/service.py (block sync on an engine's request,
observers polling a peer) are reproduced here, driving the same `Node` methods
(`apply_synced`, `process_ready`). A failing seed prints its replay command (`run_or_explain`)."""

from __future__ import annotations

import dataclasses
import heapq
import logging
import random
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from consortium_api.v1 import types_pb2
from consortium_node import crypto
from consortium_node.config import ConsensusConfig, NodeConfig
from consortium_node.consensus.api import Envelope
from consortium_node.consensus.bft import BftConfig
from consortium_node.consensus.bft import codec as bft_codec
from consortium_node.consensus.raft import RaftConfig
from consortium_node.contracts import WasmEngine
from consortium_node.ledger import contracts as cx
from consortium_node.ledger.block import HEADER_LEN, Block
from consortium_node.ledger.errors import InvariantError, TxRejected
from consortium_node.ledger.genesis import Genesis
from consortium_node.ledger.state import OK, Validator, kv_key
from consortium_node.runtime import compact, engines
from consortium_node.runtime.node import Node
from consortium_node.storage.memory import (
    Disk,
    DiskFaults,
    MemoryBlockLog,
    MemoryConsensusLog,
    MemoryStateStore,
    PowerLoss,
)
from consortium_node.storage.ports import NodeStorage
from consortium_node.transport import codec

from tests.support import wat
from tests.support.engines import SafetyViolation

from .govload import GovernanceLoad

TICK_MS = 10
GENESIS_MS = 1_700_000_000_000
OBSERVER_POLL_TICKS = 20  # runtime/service.py OBSERVER_POLL_S at 10 ms a tick
SYNC_BATCH = 64  # blocks per simulated fetch_blocks stream
RESUBMIT_TICKS = 60  # a client re-sends a transaction not committed after this long
MAX_IN_FLIGHT = 3  # per client
# Bounded work: a healthy cluster has at most a few hundred messages in flight (measured: the
# first 60 raft / 30 bft seeds peak at 242 / 613); more means nodes answer messages with ever
# more messages.
MAX_IN_FLIGHT_MESSAGES = 5_000
_VOTE_HEAD = struct.Struct(">BBQI")  # bft codec: version, kind, height, round


class SimFailure(AssertionError):
    """An invariant broke (or a node could not start, or the chain stalled after the heal)."""


@dataclass(frozen=True)
class Swarm:
    """One seed's parameters; `describe()` is printed with a failure."""

    consensus: str
    validators: int
    joiner: bool  # a node outside genesis that governance adds as a validator
    remove: bool  # governance removes a genesis validator later
    twin: bool  # a Byzantine validator: two instances sharing one key (bft only)
    drop: float
    dup: float
    max_delay: int
    partition_rate: float
    symmetric: bool
    shapes: tuple[str, ...]
    crash_rate: float
    restart_rate: float
    power_loss: float
    fsync_fail: float
    bit_flip_rate: float
    tx_rate: float
    clients: int
    chaos_ticks: int
    liveness_ticks: int
    # engine tunings (runtime/engines.engine_config otherwise): raft sends this many bytes of
    # entries per append at most (1: one entry a message, as with blocks above the limit);
    # bft round timeouts in ticks (propose, prevote, precommit, delta): production or short
    max_append_bytes: int = 4 << 20
    bft_timeouts: tuple[int, int, int, int, int] = (30, 10, 10, 5, 20)  # + rebroadcast
    leader_nemesis: float = 0.0  # share of partitions and crashes aimed at the leader
    # each time a node becomes leader or a leader commits (the moments its next messages
    # matter most), cut it off from everyone right after, reconnecting whoever was cut off
    # before: the partition follows the leader (the choreography of Raft's Figure 8)
    follow_leader: float = 0.0
    # after a call in which a node persisted consensus state (a vote, a log entry) and sent
    # what depends on it, crash it at once: what it sent must be what it remembers
    crash_after_persist: float = 0.0
    # bft: the share of (validator, height, round) whose precommits reach one peer only, the
    # witness, which is then cut off once it commits — the other validators time out into a
    # new round without seeing the decision (the setting in which Tendermint's lock rule,
    # Alg. 1 l.22, is what prevents a second block at that height)
    lone_witness: float = 0.0
    # governance by organisations (tests/sim/govload.py): one organisation per genesis
    # validator, its admin proposing, voting, withdrawing; validator changes are proposals
    governance: bool = False
    # the node's batch window (consensus.block_interval_ms): 10 (one tick) cuts a block a tick
    # under load, 200 batches many txs a block; how far apart blocks are decides which messages a
    # fault or a nemesis strikes, so a timing the seeds never vary is a blind spot
    block_interval_ms: int = 50
    # genesis max_block_txs (0: the default, 2000, never reached here): small, blocks are
    # full and txs wait behind a backlog (mempool take limits; every node must enforce the
    # genesis value from its first run: tests/unit/runtime/test_runtime_genesis_params.py)
    max_block_txs: int = 0
    # bft: the share of the Twin's compact proposals (runtime/compact.py) citing one digest
    # no node holds, and of its tx responses with one tx's bytes altered: a Byzantine
    # proposer whose proposal cannot be rebuilt (its round must time out, nothing else)
    twin_lies: float = 0.0

    @classmethod
    def draw(cls, rng: random.Random, consensus: str, chaos_ticks: int) -> Swarm:
        bft = consensus == "bft"
        n = rng.randint(4, 7) if bft else rng.choice([1, 2, 3, 3, 3, 4, 5, 5, 6, 7])
        twin = bft and rng.random() < 0.6
        faulty_disk = rng.random() < 0.6
        return cls(
            consensus=consensus,
            validators=n,
            joiner=rng.random() < 0.5,
            # a Twin needs n >= 4 honest-majority validators after a removal too
            remove=rng.random() < 0.4 and (n > 4 if bft else n > 1),
            twin=twin,
            drop=rng.choice([0.0, 0.02, 0.1, 0.25]),
            dup=rng.choice([0.0, 0.02, 0.1]),
            max_delay=rng.choice([1, 3, 8]),
            partition_rate=rng.choice([0.0, 0.01, 0.03, 0.08]),
            symmetric=rng.random() < 0.6,
            shapes=tuple(s for s in ("split", "isolate", "bridge", "ring") if rng.random() < 0.6)
            or ("split",),
            crash_rate=rng.choice([0.0, 0.005, 0.02]),
            restart_rate=rng.choice([0.02, 0.1]),
            power_loss=rng.choice([0.0, 0.001, 0.005]) if faulty_disk else 0.0,
            fsync_fail=rng.choice([0.0, 0.001]) if faulty_disk else 0.0,
            bit_flip_rate=rng.choice([0.0, 0.2]) if faulty_disk else 0.0,
            tx_rate=rng.choice([0.2, 0.5, 1.0]),
            clients=rng.randint(1, 4),
            chaos_ticks=chaos_ticks,
            liveness_ticks=max(600, chaos_ticks // 4),
            max_append_bytes=rng.choice([1, 4 << 20]),
            bft_timeouts=rng.choice([(30, 10, 10, 5, 20), (6, 3, 3, 2, 8)]),
            leader_nemesis=rng.choice([0.0, 0.3, 0.7]),
            follow_leader=rng.choice([0.0, 0.3, 0.5]),
            crash_after_persist=rng.choice([0.0, 0.0, 0.02, 0.1]),
            # drawn last, so every earlier parameter of a seed stays what it was
            lone_witness=rng.choice([0.0, 0.0, 0.3, 0.7]) if bft else 0.0,
            governance=rng.random() < 0.5,  # (after every other draw: they stay unchanged)
            block_interval_ms=rng.choice([10, 50, 50, 200]),  # (drawn last, as above)
            max_block_txs=rng.choice([0, 0, 2, 8]),  # (drawn last, as above)
            twin_lies=rng.choice([0.0, 0.3, 1.0]) if twin else 0.0,  # (drawn last, as above)
        )

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


@dataclass
class SimNode:
    name: str
    key: crypto.Ed25519Key
    disk: Disk
    honest: bool
    node: Node | None = None
    incarnation: int = 0
    sync_due: tuple[int, bytes, int] | None = None  # (tick, peer id, from height)
    next_poll: int = 0
    checked: int = 0  # heights verified against the global record

    @property
    def nid(self) -> bytes:
        return self.key.public


@dataclass
class ClientTx:
    raw: bytes
    tx_id: bytes
    key: bytes  # KvPut key (b"" for governance)
    value: bytes
    sent_at: int


@dataclass
class Client:
    name: str
    key: crypto.Ed25519Key
    nonce: int = 0
    outstanding: dict[int, ClientTx] = field(default_factory=dict)


@dataclass
class Seen:
    """A receipt a client got: the transaction is committed, for good."""

    height: int
    index: int
    code: int
    key: bytes
    value: bytes


class FakeClock:
    """The runtime clock (runtime/clock.py) of one node: simulated ticks, plus a wall skew."""

    def __init__(self, sim: NodeSim, skew_ms: int) -> None:
        self._sim = sim
        self._skew = skew_ms

    def monotonic(self) -> float:
        return self._sim.now * TICK_MS / 1000

    def wall_ms(self) -> int:
        return GENESIS_MS + self._sim.now * TICK_MS + self._skew


class SimNetwork:
    """One node's `PeerNetwork` (runtime/node.py): everything goes through the sim's queue."""

    def __init__(self, sim: NodeSim, src: str) -> None:
        self._sim = sim
        self._src = src

    def send(self, env: Envelope) -> None:
        witness = self._sim.precommit_witness(self._src, env.payload)
        payload = self._sim.twin_lie(self._src, env.payload)
        for dst in self._sim.by_id.get(env.to, ()):
            if witness is not None and dst.name != witness:
                continue  # this precommit reaches the lone witness only
            self._sim.enqueue(self._src, dst.name, "msg", payload)

    def gossip(self, raw_tx: bytes, to: bytes | None = None) -> None:
        for dst in self._sim.nodes.values() if to is None else self._sim.by_id.get(to, []):
            if dst.name != self._src:
                self._sim.enqueue(self._src, dst.name, "tx", raw_tx)


def _signed(key: crypto.Ed25519Key, chain_id: str, nonce: int, **payload: object) -> bytes:
    body = types_pb2.TxBody(chain_id=chain_id, sender=key.public, nonce=nonce, **payload)  # type: ignore[arg-type]
    raw = body.SerializeToString()
    return types_pb2.SignedTx(body=raw, signature=key.sign(raw)).SerializeToString()


class NodeSim:
    def __init__(self, seed: int, swarm: Swarm) -> None:
        self.seed = seed
        self.p = swarm
        self.rng = random.Random(seed)
        self.now = 0
        self.trace: deque[str] = deque(maxlen=80)
        self._queue: list[tuple[int, int, str, str, str, bytes]] = []
        self._seq = 0
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs that cannot talk
        self.drop = swarm.drop
        # the global record every honest node must agree with
        self.hashes: dict[int, bytes] = {}
        self.roots: dict[int, bytes] = {}
        self.tx_height: dict[bytes, int] = {}
        self.seen: dict[bytes, Seen] = {}
        self.armed_chaos = True  # network nemeses act (off after the final heal)
        self._witness: dict[tuple[str, int, int], str | None] = {}  # see precommit_witness
        self.damaged: set[str] = set()  # flipped a bit in its block store, not started since
        self.stats = {"delivered": 0, "crashes": 0, "restarts": 0, "repairs": 0, "syncs": 0}

        def key() -> crypto.Ed25519Key:
            return crypto.Ed25519Key(self.rng.randbytes(32))

        names = [f"v{i}" for i in range(swarm.validators)]
        keys = {n: key() for n in names}
        self.joiner = "j0" if swarm.joiner else None
        if self.joiner is not None:
            keys[self.joiner] = key()
        self.admin = Client("admin", key())
        self.clients = [Client(f"c{i}", key()) for i in range(swarm.clients)]
        vals = tuple(Validator(keys[n].public, f"org{i}") for i, n in enumerate(names))
        # governance seeds: organisation admins (keys and workload from their own stream) and
        # no consortium admin in the genesis
        self.gov = (
            GovernanceLoad.create(self, [v.organization for v in vals])
            if swarm.governance
            else None
        )
        self.genesis = Genesis(
            chain_id=f"sim-{seed}",
            time_ms=GENESIS_MS,
            validators=vals,
            admins=() if self.gov else (self.admin.key.public,),
            consensus=swarm.consensus,
            contracts_engine=cx.CONTRACTS_ENGINE,
            organizations=self.gov.organizations() if self.gov else (),
            params={"max_block_txs": swarm.max_block_txs} if swarm.max_block_txs else {},
        )
        # contracts in the workload: the admin deploys the WAT counter first (a direct
        # DeployContract: single-admin governance), then clients invoke its `incr` among
        # their KvPuts. Drawn from their own generator, so every other draw of a seed is the
        # one it was without contracts. One engine serves every node (calls are sequential).
        self.vm = WasmEngine()
        self.crng = random.Random(f"contracts/{seed}")
        self.deploy_tx: bytes | None = None
        self.invokes: set[bytes] = set()
        self.genesis.validate()
        self.twin = self.rng.choice(names) if swarm.twin else None
        self.victim = (
            self.rng.choice([n for n in names if n != self.twin]) if swarm.remove else None
        )
        self.nodes: dict[str, SimNode] = {}
        self.by_id: dict[bytes, list[SimNode]] = {}
        instances = [*names, *([self.joiner] if self.joiner else [])]
        if self.twin is not None:
            instances.append(self.twin + "'")
        for name in instances:
            base = name.rstrip("'")
            faults = DiskFaults(swarm.power_loss, swarm.fsync_fail)
            disk = Disk(random.Random(self.rng.randbytes(8)), faults)
            sn = SimNode(name, keys[base], disk, honest=base != self.twin)
            self.nodes[name] = sn
            self.by_id.setdefault(sn.nid, []).append(sn)
        self._skew = {n: self.rng.randint(-50, 50) for n in self.nodes}
        self.governance: list[tuple[int, str]] = [(0, "deploy")]  # (tick, what) admin txs
        if self.joiner is not None:
            self.governance.append((swarm.chaos_ticks // 5, "add"))
        if self.victim is not None:
            self.governance.append((swarm.chaos_ticks // 2, "remove"))
        for sn in self.nodes.values():
            self._start(sn)

    # ------------------------------------------------------------------ lifecycle

    def _log(self, s: str) -> None:
        self.trace.append(f"t={self.now} {s}")

    def _config(self, sn: SimNode) -> NodeConfig:
        root = Path("/sim") / sn.name  # never touched: storage is injected
        return NodeConfig(
            data_dir=root,
            key_file=root / "key.json",
            genesis_file=root / "genesis.json",
            name=sn.name,
            consensus=ConsensusConfig(
                tick_ms=TICK_MS,
                block_interval_ms=self.p.block_interval_ms,
                empty_block_ms=300,
                election_ticks=10,
                heartbeat_ticks=2,
            ),
            snapshot_sync_blocks=0,
        )

    def _storage(self, disk: Disk) -> NodeStorage:
        return NodeStorage(
            blocks=MemoryBlockLog(disk),
            state=MemoryStateStore(disk),
            wal=MemoryConsensusLog(disk),
        )

    def _start(self, sn: SimNode) -> None:
        sn.incarnation += 1
        try:
            node = self._open(sn)
        except (PowerLoss, OSError) as e:
            sn.disk.crash()
            self._log(f"{sn.name} failed while starting: {e!r}")
            return
        if node is None:
            return
        self.damaged.discard(sn.name)
        sn.node = node
        sn.sync_due = None
        self._log(f"start {sn.name} #{sn.incarnation} at h={node.height}")
        self._call(sn, node.process_ready)

    def _open(self, sn: SimNode) -> Node | None:
        """A new Node on what the disk kept; None if its block store lost blocks the state
        already holds and no peer can give them back yet. Any other refusal to start fails
        the run: committed chain state must never make a node unstartable."""
        try:
            node = self._build(sn)
        except InvariantError as e:
            raise SimFailure(f"{sn.name} cannot start: {e}") from e
        if node.repair_from is not None and not self._repair(sn, node):
            self._log(f"{sn.name} cannot start yet (no peer to repair from up to {node.height})")
            node.close()
            return None
        return node

    def _build(self, sn: SimNode) -> Node:
        return Node(
            self._config(sn),
            sn.key,
            self.genesis,
            codec.decode_tx,
            storage=self._storage(sn.disk),
            clock=FakeClock(self, self._skew[sn.name]),
            network=SimNetwork(self, sn.name),
            engine_config=self._engine_config(self._config(sn)),
            contract_vm=self.vm,
        )

    def _engine_config(self, cfg: NodeConfig) -> RaftConfig | BftConfig | None:
        base = engines.engine_config(self.p.consensus, cfg)
        if isinstance(base, RaftConfig):
            return dataclasses.replace(base, max_append_bytes=self.p.max_append_bytes)
        if isinstance(base, BftConfig):
            tp, tv, tc, td, tr = self.p.bft_timeouts
            return dataclasses.replace(
                base,
                timeout_propose=tp,
                timeout_prevote=tv,
                timeout_precommit=tc,
                timeout_delta=td,
                rebroadcast_ticks=tr,
                sync_retry_ticks=tr,
            )
        return base

    def _repair(self, sn: SimNode, node: Node) -> bool:
        """A block-store scan cut blocks the state already holds (a flipped bit), so the node
        came up with `repair_from` set: before it is driven (it neither serves nor votes),
        fetch each missing block from an honest peer and hand it to the runtime's own
        `Node.restore_block`, which checks it against this node's recorded hash and its
        commit certificate — what runtime/repair.py does over SyncBlocks (issue 13, defect 4)."""
        peers = [p for p in self.nodes.values() if p.node is not None and p.honest and p is not sn]
        while node.repair_from is not None:
            h = node.blocks.height + 1
            for p in peers:
                assert p.node is not None
                b = p.node.block_at(h)
                if b is None:
                    continue
                try:
                    node.restore_block(b)
                except TxRejected:
                    continue  # that peer's copy does not match what this node committed
                break
            else:
                return False
        self.stats["repairs"] += 1
        self._log(f"{sn.name}: block store repaired from peers up to {node.height}")
        return True

    def crash(self, sn: SimNode, why: str) -> None:
        sn.node = None
        sn.disk.crash()
        self.stats["crashes"] += 1
        self._log(f"crash {sn.name} ({why})")

    def _call(self, sn: SimNode, fn: object, *args: object) -> object:
        """Calls into a node; a power loss or failed fsync kills it (fail-stop); afterwards
        the node's new blocks are checked against the global record."""
        assert callable(fn)
        before = self._leading(sn)
        wal_records = len(sn.disk.wal.records)
        try:
            out = fn(*args)
        except PowerLoss:
            self.crash(sn, "power loss")
            return None
        except OSError as e:
            self.crash(sn, f"fsync failed: {e}")
            return None
        except InvariantError as e:
            if not sn.honest:
                self.crash(sn, f"twin stopped: {e}")
                return None
            raise SimFailure(f"{sn.name} stopped on an invariant: {e}") from e
        self._check(sn)
        self._follow_leader(sn, before)
        self._cut_off_witness(sn, before)
        if (
            self.armed_chaos
            and sn.node is not None
            and len(sn.disk.wal.records) > wal_records
            and self.rng.random() < self.p.crash_after_persist
        ):
            self.crash(sn, "right after persisting and sending")
        return out

    def twin_lie(self, src: str, payload: bytes) -> bytes:
        """`payload` as the Twin sends it: a compact proposal with one digest altered, or a
        tx response with its last tx's last byte altered (Swarm.twin_lies of them)."""
        if (
            self.nodes[src].honest
            or len(payload) < 2
            or payload[1] not in (compact.COMPACT, compact.TX_RESPONSE)
            or self.rng.random() >= self.p.twin_lies
        ):
            return payload
        lie = bytearray(payload)
        if payload[1] == compact.TX_RESPONSE:
            lie[-1] ^= 0xFF
        else:  # the first digest (a compact proposal cites at least one tx)
            lie[bft_codec.PROPOSAL_HEAD_LEN + HEADER_LEN + 4] ^= 0xFF
        return bytes(lie)

    def precommit_witness(self, src: str, payload: bytes) -> str | None:
        """The one peer a BFT precommit of `src` may reach (None: it goes to all): decided
        once per (validator, height, round), while the network nemeses act."""
        if (
            not self.armed_chaos
            or not self.p.lone_witness
            or len(payload) < _VOTE_HEAD.size
            or payload[1] != bft_codec.Kind.PRECOMMIT
        ):
            return None
        _, _, height, rnd = _VOTE_HEAD.unpack_from(payload)
        key = (src, height, rnd)
        if key not in self._witness:
            others = sorted(n for n in self.nodes if n != src)
            lone = others and self.rng.random() < self.p.lone_witness
            self._witness[key] = self.rng.choice(others) if lone else None
        return self._witness[key]

    def _cut_off_witness(self, sn: SimNode, before: tuple[int, bool]) -> None:
        """A lone witness that just committed is isolated, so its decision does not spread."""
        node = sn.node
        if node is None or not self.armed_chaos or node.height <= before[0]:
            return
        if not any(w == sn.name for (_, h, _), w in self._witness.items() if h == node.height):
            return
        names = sorted(self.nodes)
        self.blocked = {(a, b) for a in names for b in names if (a == sn.name) != (b == sn.name)}
        self._log(f"lone witness {sn.name} committed h={node.height}: isolated")

    def _leading(self, sn: SimNode) -> tuple[int, bool]:
        node = sn.node
        return (0, False) if node is None else (node.height, node.engine.status().role == "leader")

    def _follow_leader(self, sn: SimNode, before: tuple[int, bool]) -> None:
        now = self._leading(sn)
        if not self.armed_chaos or not now[1] or now == before:
            return
        if self.p.follow_leader and self.rng.random() < self.p.follow_leader:
            names = sorted(self.nodes)
            self.blocked = {
                (a, b) for a in names for b in names if (a == sn.name) != (b == sn.name)
            }
            self._log(f"partition follows the leader: isolate {sn.name} at h={now[0]}")

    # ------------------------------------------------------------------ invariants

    def _check(self, sn: SimNode) -> None:
        node = sn.node
        if node is None or not sn.honest:
            return
        if node.height < sn.checked:
            raise SafetyViolation(f"{sn.name} went back from height {sn.checked} to {node.height}")
        for h in range(max(sn.checked, node.blocks.base) + 1, node.height + 1):
            block = node.block_at(h)
            if block is None:
                raise SafetyViolation(f"{sn.name} is at height {node.height} but lacks block {h}")
            self._record(sn.name, h, block)
        sn.checked = node.height
        self._agree(self.roots, node.height, node.state_root, f"{sn.name} state root")

    def _agree(self, table: dict[int, bytes], h: int, value: bytes, what: str) -> None:
        prev = table.setdefault(h, value)
        if prev != value:
            raise SafetyViolation(f"{what} at height {h}: {value.hex()[:12]} != {prev.hex()[:12]}")

    def _record(self, name: str, h: int, block: Block) -> None:
        new = h not in self.hashes
        self._agree(self.hashes, h, block.hash, f"{name} block hash")
        self._agree(self.roots, h - 1, block.header.state_root, f"{name} state root")
        if new:
            for raw in block.txs:
                tid = codec.decode_tx(raw).id
                if self.tx_height.setdefault(tid, h) != h:
                    raise SafetyViolation(
                        f"tx {tid.hex()[:12]} committed twice: {self.tx_height[tid]} and {h}"
                    )

    def _deployed(self) -> bool:
        s = None if self.deploy_tx is None else self.seen.get(self.deploy_tx)
        return s is not None and s.code == OK

    def _check_counter(self, sn: SimNode, node: Node) -> None:
        """contracts: the counter counts exactly the invocations clients saw succeed (each
        one's receipt is in the state every node agrees on), on every honest node (a removed
        validator included: it follows the chain to its head, runtime Node.wants_blocks)."""
        ok = sum(1 for t in self.invokes if (s := self.seen.get(t)) is not None and s.code == OK)
        with node.snapshot() as snap:
            raw = snap.get(cx.state_key("counter", b"n"))
        got = 0 if raw is None else int.from_bytes(raw, "little")
        if got != ok:
            raise SafetyViolation(f"{sn.name}: counter is {got}, {ok} invocations succeeded")

    def final_checks(self) -> None:
        if self.gov is not None:
            for sn in self._up_honest():
                self.stats.update({f"gov {k}": v for k, v in self.gov.check(sn).items()})
            self.stats.update({f"gov sent {k}": v for k, v in self.gov.stats.items()})
        for sn in self.nodes.values():
            node = sn.node
            if not sn.honest or node is None:
                continue
            for tid, s in self.seen.items():
                rc = node.receipt(tid)
                if rc is None:
                    raise SafetyViolation(f"{sn.name} lacks tx {tid.hex()[:12]} seen at {s.height}")
                _, r = rc
                if (r.height, r.index, r.code) != (s.height, s.index, s.code):
                    raise SafetyViolation(f"{sn.name}: tx {tid.hex()[:12]} receipt {r} != {s}")
                if s.key and s.code == OK:
                    with node.snapshot() as snap:
                        if snap.get(kv_key(s.key)) != s.value:
                            raise SafetyViolation(f"{sn.name}: value of {s.key!r} is wrong")
            self._check_counter(sn, node)

    # ------------------------------------------------------------------ network

    def enqueue(self, src: str, dst: str, kind: str, payload: bytes) -> None:
        if self.rng.random() < self.drop:
            return
        for _ in range(2 if self.rng.random() < self.p.dup else 1):
            self._seq += 1
            at = self.now + self.rng.randint(1, self.p.max_delay)
            heapq.heappush(self._queue, (at, self._seq, src, dst, kind, payload))

    def _deliver(self) -> None:
        q = self._queue
        while q and q[0][0] <= self.now:
            _, _, src, dst, kind, payload = heapq.heappop(q)
            d, s = self.nodes[dst], self.nodes[src]
            if d.node is None or (src, dst) in self.blocked:
                continue
            self.stats["delivered"] += 1
            if kind == "msg":
                self._call(d, d.node.on_peer_messages, s.nid, [payload])
            else:
                self._call(d, d.node.on_peer_txs, s.nid, [payload])

    def _partition(self) -> None:
        names = sorted(self.nodes)
        shape = self.rng.choice(self.p.shapes)
        side: dict[str, int]
        leaders = self._leaders()
        if leaders and self.rng.random() < self.p.leader_nemesis:
            shape = "isolate"
            lone = self.rng.choice(leaders)
            side = {n: int(n == lone) for n in names}
        elif shape == "isolate":
            lone = self.rng.choice(names)
            side = {n: int(n == lone) for n in names}
        elif shape == "ring":  # each node hears only its two neighbours
            order = self.rng.sample(names, len(names))
            pos = {n: i for i, n in enumerate(order)}
            k = len(order)
            self.blocked = {
                (a, b)
                for a in names
                for b in names
                if a != b and (pos[a] - pos[b]) % k not in (1, k - 1)
            }
            self._log(f"partition ring {order}")
            return
        else:
            side = {n: self.rng.randrange(2) for n in names}
        if self.twin is not None:  # Twins: the two clones on different sides
            side[self.twin], side[self.twin + "'"] = 0, 1
        bridge = self.rng.choice(names) if shape == "bridge" else None
        cut = {(a, b) for a in names for b in names if side[a] != side[b] and bridge not in (a, b)}
        if not self.p.symmetric:  # one direction only: a hears b, b does not hear a
            cut = {(a, b) for a, b in cut if side[a] == 0}
        self.blocked = cut
        self._log(f"partition {shape} side1={[n for n in names if side[n]]} sym={self.p.symmetric}")

    # ------------------------------------------------------------------ service-loop duties

    def _connected(self, a: str, b: str) -> bool:
        return (a, b) not in self.blocked and (b, a) not in self.blocked

    def _service(self, sn: SimNode) -> None:
        """What runtime/service.py does after a tick: start block sync on an engine's
        request, or (outside the validator set, or stalled: Node.wants_blocks) poll a peer
        for committed blocks."""
        node = sn.node
        assert node is not None
        if node.sync_requests and sn.sync_due is None:
            req = node.sync_requests.pop(0)
            node.sync_requests.clear()
            sn.sync_due = (self.now + self.rng.randint(1, 3), req.peer, req.from_height)
        elif sn.sync_due is None and self.now >= sn.next_poll:
            sn.next_poll = self.now + OBSERVER_POLL_TICKS
            if node.wants_blocks():
                peers = [p for p in self.nodes.values() if p is not sn and p.node is not None]
                if peers:
                    sn.sync_due = (self.now + 1, self.rng.choice(peers).nid, node.height + 1)
        if sn.sync_due is not None and sn.sync_due[0] <= self.now:
            _, peer, from_h = sn.sync_due
            sn.sync_due = None
            self._sync(sn, peer, from_h)

    def _sync(self, sn: SimNode, peer: bytes, from_h: int) -> None:
        srcs = [
            p
            for p in self.by_id.get(peer, ())
            if p.node is not None and self._connected(p.name, sn.name)
        ]
        if not srcs:
            return
        self._call(sn, self._fetch, sn, self.rng.choice(srcs), from_h)

    def _fetch(self, sn: SimNode, src: SimNode, from_h: int) -> None:
        """One fetch_blocks stream from `src`: each block verified and applied by the node."""
        node, peer = sn.node, src.node
        assert node is not None and peer is not None
        h = max(from_h, node.height + 1)
        for _ in range(SYNC_BATCH):
            block = peer.block_at(h)
            if block is None:
                return
            try:
                node.apply_synced(block)
            except TxRejected as e:
                self._log(f"{sn.name} refused synced block {h} from {src.name}: {e}")
                return
            self.stats["syncs"] += 1
            node.process_ready()
            h = node.height + 1

    # ------------------------------------------------------------------ workload

    def _up_honest(self) -> list[SimNode]:
        return [sn for sn in self.nodes.values() if sn.node is not None and sn.honest]

    def _submit(self, c: Client, txs: list[ClientTx], everywhere: bool = False) -> None:
        """Send to one random up node or, for a re-send, to every up node: a tx a node already
        pools is not gossiped again (issue 13 defect 2, re-gossip), so a client re-sending to
        one node may never reach the leader."""
        targets = [sn for sn in self.nodes.values() if sn.node is not None]
        if not targets:
            return
        for t in txs:
            t.sent_at = self.now
        for sn in targets if everywhere else [self.rng.choice(targets)]:
            if sn.node is not None:
                self._call(sn, sn.node.submit_many, [t.raw for t in txs])

    def _new_tx(self, c: Client, **payload: object) -> ClientTx:
        raw = _signed(c.key, self.genesis.chain_id, c.nonce, **payload)
        tx = codec.decode_tx(raw)
        kv = payload.get("kv_put")
        key = kv.key if isinstance(kv, types_pb2.KvPut) else b""
        value = kv.value if isinstance(kv, types_pb2.KvPut) else b""
        ct = ClientTx(raw, tx.id, key, value, self.now)
        c.outstanding[c.nonce] = ct
        c.nonce += 1
        return ct

    def _poll(self, c: Client) -> None:
        """Ask an honest node about the oldest outstanding transactions."""
        up = self._up_honest()
        if not up or not c.outstanding:
            return
        sn = self.rng.choice(up)
        assert sn.node is not None
        for nonce in sorted(c.outstanding):
            t = c.outstanding[nonce]
            rc = sn.node.receipt(t.tx_id)
            if rc is None:
                break
            _, r = rc
            self.seen[t.tx_id] = Seen(r.height, r.index, r.code, t.key, t.value)
            del c.outstanding[nonce]
        stale = [
            t for _, t in sorted(c.outstanding.items()) if self.now - t.sent_at > RESUBMIT_TICKS
        ]
        if stale:
            self._submit(c, [c.outstanding[n] for n in sorted(c.outstanding)], everywhere=True)

    def _workload(self, new_txs: bool) -> None:
        if new_txs and self.rng.random() < self.p.tx_rate and self.clients:
            c = self.rng.choice(self.clients)
            if len(c.outstanding) < MAX_IN_FLIGHT:
                k = b"%s/%d" % (c.name.encode(), c.nonce)
                t = self._new_tx(c, kv_put=types_pb2.KvPut(key=k, value=self.rng.randbytes(8)))
                self._submit(c, [t])
            if len(c.outstanding) < MAX_IN_FLIGHT and self._deployed() and self.crng.random() < 0.5:
                inv = types_pb2.Invoke(contract="counter", method="incr", fuel_limit=100_000)
                t = self._new_tx(c, invoke=inv)
                self.invokes.add(t.tx_id)
                self._submit(c, [t])
        if self.gov is not None and new_txs:
            self.gov.tick()
        while self.governance and self.governance[0][0] <= self.now:
            _, what = self.governance.pop(0)
            if what == "deploy":
                if self.gov is not None:
                    # organisation-governed seeds: a deployment is a proposal (not drawn
                    # here); the invocation workload runs in the other half of the seeds
                    continue
                d = types_pb2.DeployContract(name="counter", code=wat.counter())
                t = self._new_tx(self.admin, deploy_contract=d)
                self.deploy_tx = t.tx_id
            elif self.gov is not None:
                self._gov_membership(what)
                continue
            elif what == "add":
                assert self.joiner is not None
                nid = self.nodes[self.joiner].nid
                p = types_pb2.AddValidator(node_id=nid, organization="org-joiner")
                t = self._new_tx(self.admin, add_validator=p)
            else:
                assert self.victim is not None
                rv = types_pb2.RemoveValidator(node_id=self.nodes[self.victim].nid)
                t = self._new_tx(self.admin, remove_validator=rv)
            self._log(f"admin submits {what}")
            self._submit(self.admin, [t])
        for c in (*self.clients, self.admin):
            self._poll(c)

    def _gov_membership(self, what: str) -> None:
        """Governance seeds: the planned validator change as a proposal (govload.py) of the
        organisation it concerns — the joiner joins org0, the victim leaves its own."""
        assert self.gov is not None
        if what == "add":
            assert self.joiner is not None
            self.gov.membership("add", self.nodes[self.joiner].nid, "org0")
        else:
            assert self.victim is not None
            org = f"org{int(self.victim[1:])}"
            self.gov.membership("remove", self.nodes[self.victim].nid, org)

    # ------------------------------------------------------------------ driving

    def _chaos(self) -> None:
        p, rng = self.p, self.rng
        if rng.random() < p.partition_rate:
            if self.blocked and rng.random() < 0.5:
                self.blocked = set()
                self._log("heal partition")
            else:
                self._partition()
        leaders = self._leaders()
        if leaders and rng.random() < p.crash_rate * p.leader_nemesis * 3:
            self.crash(self.nodes[rng.choice(leaders)], "kill -9 the leader")
        for sn in self.nodes.values():
            if sn.node is not None and rng.random() < p.crash_rate:
                self.crash(sn, "kill -9")
            elif sn.node is None and rng.random() < p.restart_rate:
                # one damaged disk at a time, and only with another copy of the chain around
                # (a block the others do not hold yet would be lost for good: no redundancy)
                held = max(
                    (o.checked for o in self.nodes.values() if o is not sn and o.honest),
                    default=0,
                )
                meta = MemoryStateStore(sn.disk).meta()
                ours = meta.height if meta is not None else 0
                if not self.damaged and held >= ours and rng.random() < p.bit_flip_rate:
                    self.damaged.add(sn.name)
                    at = sn.disk.flip_block_bit()
                    self._log(f"{sn.name}: flipped a bit in block record {at}")
                self.stats["restarts"] += 1
                self._start(sn)

    def _leaders(self) -> list[str]:
        return sorted(
            n
            for n, sn in self.nodes.items()
            if sn.node is not None and sn.node.engine.status().role == "leader"
        )

    def tick(self, chaos: bool) -> None:
        self.now += 1
        if len(self._queue) > MAX_IN_FLIGHT_MESSAGES:
            raise SimFailure(f"message storm: {len(self._queue)} messages in flight")
        self._deliver()
        if chaos:
            self._chaos()
        self._workload(new_txs=chaos)
        for sn in self.nodes.values():
            if sn.node is None and not chaos and self.now % 10 == 0:
                self._start(sn)  # after the heal: the operator keeps restarting it
            if sn.node is not None:
                self._call(sn, sn.node.tick)
            if sn.node is not None:
                self._service(sn)

    def members(self) -> list[SimNode]:
        # the validator set as the node with the longest chain knows it
        ref = max((sn.node for sn in self._up_honest() if sn.node), key=lambda n: n.height)
        vals = set(ref.validators_at(ref.height + 1))
        return [sn for sn in self._up_honest() if sn.nid in vals]

    def _settled(self, target: int) -> bool:
        if len(self._up_honest()) != sum(sn.honest for sn in self.nodes.values()):
            return False
        up = self._up_honest()  # a removed validator too: it follows up to the head
        if any(c.outstanding for c in (*self.clients, self.admin)):
            return False
        top = max(sn.node.height for sn in up if sn.node)
        if any(sn.node.height < top for sn in up if sn.node):
            return False
        return all(sn.node is not None and sn.node.height >= target for sn in self.members())

    def run(self) -> None:
        level = logging.getLogger("consortium_node").level
        logging.getLogger("consortium_node").setLevel(logging.CRITICAL)
        try:
            self._run()
        finally:
            logging.getLogger("consortium_node").setLevel(level)

    def _run(self) -> None:
        for _ in range(self.p.chaos_ticks):
            self.tick(chaos=True)
        self.blocked = set()
        self.drop = 0.0
        self.armed_chaos = False
        for sn in self.nodes.values():
            sn.disk.armed = False
        for sn in self.nodes.values():
            if sn.node is None:
                self._start(sn)
        for sn in self.nodes.values():  # a repair may have needed peers that were down
            if sn.node is None:
                self._start(sn)
        self._log("final heal")
        top = max((sn.node.height for sn in self._up_honest() if sn.node), default=0)
        target = top + 2
        for _ in range(self.p.liveness_ticks):
            self.tick(chaos=False)
            if self._settled(target):
                self.final_checks()
                return
        heights = {n: (s.node.height if s.node else None) for n, s in self.nodes.items()}
        left = sum(len(c.outstanding) for c in (*self.clients, self.admin))
        raise SimFailure(
            f"no liveness after heal: heights {heights}, target {target}, "
            f"{left} client txs still uncommitted after {self.p.liveness_ticks} ticks"
        )

    def dump(self) -> str:
        st = {
            n: (s.node.height, s.node.status().role) if s.node else "down"
            for n, s in self.nodes.items()
        }
        return "\n".join(
            [f"swarm: {self.p.describe()}", *self.trace, f"stats: {self.stats}", f"nodes: {st}"]
        )
