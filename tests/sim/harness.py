"""The consensus simulator: N in-memory nodes, a fake clock and a seeded, hostile network.

Used by tests/sim/test_*_sim.py. Everything is driven from one `random.Random(seed)`, so a seed
replays exactly. Each node runs the real engine through the same Ready loop the runtime uses
(persist -> send -> apply -> advance); `Stored` is what survives a crash (hard state, entries and
the app's block store), everything else (the engine object, unsent messages, the mempool) is lost.

Faults: message drops, random delays (hence reordering), duplicates, bit-flipped payloads
(BFT only: Raft trusts its peers), partitions and heals,
crash-restart (optionally "torn": crash right after persisting, before sending or applying), and
for BFT a Twins-style Byzantine validator: two instances sharing one identity and key, placed on
different sides of partitions, each running honest code with a different mempool, so together
they equivocate (two proposals per round, double votes).

Invariants, checked on every apply (i.e. after every step): no two nodes commit different blocks
at one height; a node's committed chain never changes (FakeApp.apply, also across restarts);
after the final heal every honest node commits new blocks within `liveness_ticks`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from consortium_node.consensus.api import Entry, Envelope, Ready, Status

from tests.support.engines import FakeApp, Keyring, SafetyViolation, node_id


class SimEngine(Protocol):
    node_id: bytes

    def tick(self) -> None: ...
    def step(self, env: Envelope) -> None: ...
    def ready(self) -> Ready: ...
    def advance(self, rd: Ready) -> None: ...
    def synced(self, height: int, block_hash: bytes) -> None: ...
    def status(self) -> Status: ...


@dataclass
class Stored:
    """What a node persisted through Ready (survives crashes)."""

    hard_state: bytes | None = None
    entries: list[Entry] = field(default_factory=list)


# (node id, app, rng, stored-or-None-for-a-fresh-node) -> engine
EngineFactory = Callable[[bytes, FakeApp, random.Random, Stored | None], SimEngine]
AfterAdvance = Callable[["SimNode"], None]


@dataclass
class SimNode:
    name: str
    nid: bytes
    app: FakeApp
    stored: Stored
    honest: bool = True
    engine: SimEngine | None = None
    incarnation: int = 0
    torn: bool = False  # crash right after the next persist


@dataclass
class SimParams:
    chaos_ticks: int = 150
    liveness_ticks: int = 150
    max_delay: int = 3
    drop_rate: float = 0.1
    dup_rate: float = 0.02
    event_rate: float = 0.04
    tx_rate: float = 0.5
    min_progress: int = 2  # blocks each honest node must commit after the heal
    min_height: int = 0  # ... and at least this height (e.g. past scheduled membership changes)
    corrupt_rate: float = 0.0  # flip a bit in this share of payloads (Byzantine garbage)


class Sim:
    def __init__(
        self,
        seed: int,
        names: list[str],
        factory: EngineFactory,
        *,
        byzantine: str | None = None,
        params: SimParams | None = None,
        check_certificates: str = "none",
        after_advance: AfterAdvance | None = None,
        validators: Callable[[int], tuple[bytes, ...]] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.p = params or SimParams()
        self.factory = factory
        self.after_advance = after_advance
        self.keyring = Keyring()
        ids = sorted(node_id(n) for n in names)
        for i in ids:
            self.keyring.add(i)
        static = tuple(ids)
        self.validators: Callable[[int], tuple[bytes, ...]] = validators or (lambda h: static)
        self.nodes: dict[str, SimNode] = {}
        self.by_id: dict[bytes, list[SimNode]] = {}
        instances = [(n, True) for n in names]
        if byzantine is not None:
            instances = [(n, n != byzantine) for n in names]
            instances.append((byzantine + "'", False))  # the Twin
        for name, honest in instances:
            nid = node_id(name.rstrip("'"))
            app = FakeApp(nid, self.keyring, self.validators, check_certificates=check_certificates)
            node = SimNode(name, nid, app, Stored(), honest)
            self.nodes[name] = node
            self.by_id.setdefault(nid, []).append(node)
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, str, Envelope]] = []
        self._syncs: list[tuple[int, int, str, int, bytes, int]] = []
        self.group: dict[str, int] = {}
        self.drop_rate = 0.0
        self.commits: dict[int, bytes] = {}
        self.trace: deque[str] = deque(maxlen=60)
        self.delivered = 0
        self._tx = 0
        for node in self.nodes.values():
            self._start(node, fresh=True)

    # ------------------------------------------------------------------ lifecycle

    def _start(self, node: SimNode, fresh: bool = False) -> None:
        node.incarnation += 1
        salt = int.from_bytes(node.nid[:4], "big") + (1 if node.name.endswith("'") else 0)
        rng = random.Random(self.seed * 7919 + salt + node.incarnation * 31)
        node.engine = self.factory(node.nid, node.app, rng, None if fresh else node.stored)
        node.torn = False
        self._log(f"start {node.name} (incarnation {node.incarnation}) at h={node.app.height}")
        self._process(node)

    def crash(self, node: SimNode) -> None:
        node.engine = None
        node.app.restart()
        self._log(f"crash {node.name} at h={node.app.height}")

    def _log(self, s: str) -> None:
        self.trace.append(f"t={self.now} {s}")

    # ------------------------------------------------------------------ network

    def _connected(self, a: str, b: str) -> bool:
        return self.group.get(a, 0) == self.group.get(b, 0)

    def _send(self, src: SimNode, env: Envelope) -> None:
        if self.rng.random() < self.drop_rate:
            return
        if self.p.corrupt_rate and self.rng.random() < self.p.corrupt_rate:
            b = bytearray(env.payload)
            b[self.rng.randrange(len(b))] ^= 1 << self.rng.randrange(8)
            env = Envelope(env.sender, env.to, bytes(b))
        copies = 2 if self.rng.random() < self.p.dup_rate else 1
        for _ in range(copies):
            at = self.now + self.rng.randint(1, self.p.max_delay)
            self._seq += 1
            heapq.heappush(self._queue, (at, self._seq, src.name, env))

    def _deliver_due(self) -> None:
        q = self._queue
        while q and q[0][0] <= self.now:
            _, _, src, env = heapq.heappop(q)
            for dst in self.by_id.get(env.to, ()):
                if dst.engine is None or not self._connected(src, dst.name):
                    continue
                self.delivered += 1
                dst.engine.step(env)
                self._process(dst)

    # ------------------------------------------------------------------ the Ready loop

    def _process(self, node: SimNode) -> None:
        eng = node.engine
        while eng is not None:
            rd = eng.ready()
            if rd.empty():
                return
            st = node.stored
            if rd.truncate_from is not None:
                st.entries = [e for e in st.entries if e.index < rd.truncate_from]
            st.entries.extend(rd.entries)
            if rd.hard_state is not None:
                st.hard_state = rd.hard_state
            if node.torn:  # persisted, then died before sending or applying
                self.crash(node)
                return
            for m in rd.messages:
                self._send(node, m)
            for b in rd.committed:
                self._apply(node, b)
            for s in rd.sync:
                at = self.now + self.rng.randint(1, 3)
                self._seq += 1
                self._syncs.append(
                    (at, self._seq, node.name, node.incarnation, s.peer, s.from_height)
                )
            eng.advance(rd)
            if self.after_advance is not None:
                self.after_advance(node)

    def _apply(self, node: SimNode, block: object) -> None:
        from consortium_node.ledger.block import Block

        assert isinstance(block, Block)
        if node.app.apply(block):
            h = block.height
            prev = self.commits.setdefault(h, block.hash)
            if prev != block.hash:
                raise SafetyViolation(
                    f"{node.name} committed {block.hash.hex()[:8]} at height {h}, "
                    f"another node committed {prev.hex()[:8]}"
                )

    def _run_syncs(self) -> None:
        due = [s for s in self._syncs if s[0] <= self.now]
        if not due:
            return
        self._syncs = [s for s in self._syncs if s[0] > self.now]
        for _, _, name, inc, peer, from_h in sorted(due):
            node = self.nodes[name]
            if node.engine is None or node.incarnation != inc:
                continue
            src = next(
                (
                    p
                    for p in self.by_id.get(peer, ())
                    if p.engine is not None and self._connected(p.name, name)
                ),
                None,
            )
            if src is None:
                continue
            got = False
            for b in src.app.blocks[max(from_h, 1) - 1 :]:
                if b.height > node.app.height:
                    self._apply(node, b)
                    got = True
            if got:
                self._log(f"{name} synced to {node.app.height} from {src.name}")
                node.engine.synced(node.app.height, node.app.tip_hash)
                self._process(node)

    # ------------------------------------------------------------------ driving

    def _inject_txs(self) -> None:
        if self.rng.random() >= self.p.tx_rate:
            return
        self._tx += 1
        tx = b"tx:%d" % self._tx
        for node in self.nodes.values():
            # Twins see different txs, so their proposals differ (equivocation).
            if node.engine is not None and (node.honest or self.rng.random() < 0.5):
                node.app.add_tx(tx)

    def tick(self) -> None:
        self.now += 1
        self._deliver_due()
        self._run_syncs()
        self._inject_txs()
        for node in self.nodes.values():
            if node.engine is not None:
                node.engine.tick()
                self._process(node)

    def _chaos_event(self) -> None:
        r = self.rng.random()
        names = sorted(self.nodes)
        down = [n for n in names if self.nodes[n].engine is None]
        up = [n for n in names if self.nodes[n].engine is not None]
        if down and (r > 0.65 or len(down) * 2 >= len(names)):
            self._start(self.nodes[self.rng.choice(down)])
        elif r < 0.25:
            side = {n: self.rng.randrange(2) for n in names}
            twins = [n for n in names if not self.nodes[n].honest]
            if len(twins) == 2:  # Twins: put the two clones on different sides
                side[twins[0]], side[twins[1]] = 0, 1
            self.group = side
            self._log(f"partition {sorted(n for n in names if side[n])}")
        elif r < 0.4:
            self.group = {}
            self._log("heal partition")
        elif up:
            node = self.nodes[self.rng.choice(up)]
            if self.rng.random() < 0.3:
                node.torn = True
                self._log(f"torn crash pending {node.name}")
            else:
                self.crash(node)

    def heights(self, honest_only: bool = True) -> dict[str, int]:
        return {n.name: n.app.height for n in self.nodes.values() if n.honest or not honest_only}

    def member_heights(self) -> dict[str, int]:
        """Heights of honest nodes that are validators of the next height to decide (removed
        validators legitimately stop following)."""
        h = max(self.heights().values()) + 1
        members = set(self.validators(h))
        return {k: v for k, v in self.heights().items() if self.nodes[k].nid in members}

    def run(self) -> None:
        """Chaos phase, then heal everything and require progress."""
        self.drop_rate = self.rng.choice([0.0, self.p.drop_rate, 2 * self.p.drop_rate])
        for _ in range(self.p.chaos_ticks):
            if self.rng.random() < self.p.event_rate:
                self._chaos_event()
            self.tick()
        # Heal: one network, no drops, everyone up.
        self.group = {}
        self.drop_rate = 0.0
        for node in self.nodes.values():
            node.torn = False
            if node.engine is None:
                self._start(node)
        self._log("final heal")
        target = max(max(self.heights().values()) + self.p.min_progress, self.p.min_height)
        for _ in range(self.p.liveness_ticks):
            self.tick()
            if min(self.member_heights().values()) >= target:
                return
        raise AssertionError(
            f"no progress after heal: heights {self.member_heights()} did not all reach {target} "
            f"within {self.p.liveness_ticks} ticks"
        )

    def dump(self) -> str:
        st = {
            n.name: (n.app.height, n.engine.status() if n.engine else "down")
            for n in self.nodes.values()
        }
        return "\n".join([*self.trace, f"state: {st}"])


class Runnable(Protocol):
    """A simulation: `run()` raises on a broken invariant, `dump()` explains the run."""

    def run(self) -> None: ...

    def dump(self) -> str: ...


S = TypeVar("S", bound=Runnable)


def run_or_explain(sim_factory: Callable[[], S], seed: int, test: str, extra: str = "") -> S:
    """Run a simulation; on any failure, fail with the seed, a one-line replay command (plus
    `extra` options, e.g. " --sim-ticks 10000") and the tail of the event trace."""
    sim: S | None = None
    try:
        sim = sim_factory()
        sim.run()
        return sim
    except Exception as e:
        trace = sim.dump() if sim is not None else ""
        raise AssertionError(
            f"simulation failed: seed={seed}: {type(e).__name__}: {e}\n"
            f"replay: .venv/bin/python -m pytest -p no:cacheprovider '{test}' --seed {seed}{extra}\n"
            f"{trace}"
        ) from e
