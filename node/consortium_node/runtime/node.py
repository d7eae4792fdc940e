"""The node: ledger state, mempool and a consensus engine, driven from one asyncio loop.

`Node` is the consensus `Application` (block building, validation, signatures) and the thing
the gRPC servers call (`submit`, queries, block and commit notifications). The driver
(`process_ready`) follows the engine contract strictly: persist, then send, then apply
committed blocks, then advance.

Commit path of one block (one fsync per step, one state transaction per block):
  1. BlockStore.append   -> segment record, fdatasync
  2. execute_block       -> writes, receipts, new LtHash (pure)
  3. StateStore.commit   -> one LMDB write transaction (fsync on commit)
Restart: blocks in the segment files beyond the state's height are re-executed, so the node
resumes at exactly its last committed block.

Everything outside the process is injected: storage (storage/ports.py: the file adapters by
default, storage/memory.py in tests/sim), the clock (runtime/clock.py) and the peer network
(`PeerNetwork`, transport.peers in production; `peer_links`, the hub's link states for
`status()`). Created by runtime/service.py
(`consortium-node`), tests/sim (the whole-node simulator) and tests."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import crypto
from ..config import NodeConfig
from ..consensus.api import Engine, Envelope, Ready, SyncRequest
from ..consensus.bft import BftConfig
from ..consensus.raft import RaftConfig
from ..contracts import WasmEngine
from ..ledger.block import Block, BlockHeader, certificate_problem, commit_sign_bytes, tx_root
from ..ledger.contracts import ContractsUnavailable, ContractVM
from ..ledger.errors import Admission, DecodeError, InvariantError, Reject, TxRejected
from ..ledger.genesis import Genesis
from ..ledger.lthash import LtHash
from ..ledger.state import (
    ORG_PREFIX,
    PARAM_PREFIX,
    PARAMS,
    VSET_PREFIX,
    Receipt,
    Validator,
    check_nonces,
    decode_validators,
    execute_block,
    param,
    validators_hash,
)
from ..ledger.tx import Tx, check_stateless
from ..metrics import Metrics, rejection_label
from ..storage.ports import NodeStorage, StateView, open_files
from ..transport.peers import LinkState
from . import engines
from .clock import Clock, SystemClock
from .compact import Compactor, is_compact_kind
from .mempool import Mempool
from .regossip import Regossip

log = logging.getLogger(__name__)

# A validator that applied no block for this long also polls peers for committed blocks (see
# Node.wants_blocks), at most once per this period.
FOLLOW_STALL_S = 2.0
TxDecoder = Callable[[bytes], Tx]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    chain_id: str
    consensus: str
    organization: str
    node_id: bytes
    height: int
    last_hash: bytes
    state_root: bytes
    role: str
    leader: bytes | None
    validators: tuple[Validator, ...]
    syncing: bool
    mempool_size: int
    organizations: tuple[str, ...] = ()
    base_height: int = 0  # blocks 1..base_height are not stored here (state snapshot)
    halted: str = ""  # why this node stopped applying blocks ("" while it applies them)
    peers: tuple[LinkState, ...] = ()  # each configured peer's link (none on a solo node)


class PeerNetwork(Protocol):
    """Outbound consensus messages (implemented by transport.peers)."""

    def send(self, env: Envelope) -> None: ...

    def gossip(self, raw_tx: bytes, to: bytes | None = None) -> None:
        """To every peer, or to peer `to` only."""


class Node:
    # client txs to gossip again while pending; created at the first gossiped admission (a
    # class default keeps the constructor as it is)
    _regossip: Regossip | None = None
    # first height of the committed blocks the block store lost (damage cut at start-up);
    # None when it holds every block up to `height`
    repair_from: int | None = None
    # the peer links' states for status() (runtime/service.py sets the hub's link_states)
    peer_links: Callable[[], tuple[LinkState, ...]] | None = None

    def __init__(
        self,
        cfg: NodeConfig,
        key: crypto.Ed25519Key,
        genesis: Genesis,
        decode_tx: TxDecoder,
        metrics: Metrics | None = None,
        *,
        storage: NodeStorage | None = None,
        clock: Clock | None = None,
        network: PeerNetwork | None = None,
        engine_config: RaftConfig | BftConfig | None = None,
        contract_vm: ContractVM | None = None,
    ) -> None:
        self.cfg = cfg
        # the contract engine (injected into execute_block); a node whose engine differs
        # from the chain's halts at the first block that runs contract code (`halted`)
        # (compiled modules are cached on disk only beside real files: injected storage, as
        # in the simulator, means nothing under data_dir may be touched)
        cache = cfg.data_dir / "contracts" if storage is None else None
        self.vm: ContractVM = contract_vm or WasmEngine(cache_dir=cache)
        self.halted: str | None = None
        self.clock: Clock = clock or SystemClock()
        self.key = key
        self.node_id = key.public
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.metrics = metrics or Metrics()
        self._decode = decode_tx
        if storage is None:
            storage = open_files(cfg.data_dir, cfg.fsync, with_wal=genesis.consensus != "solo")
        self.blocks = storage.blocks
        self.state = storage.state
        self.mempool = Mempool(self.chain_id, cfg.mempool_size, crypto.verify, self.vm)
        self.network: PeerNetwork | None = network
        self._new_block = asyncio.Event()
        self._admitted_at: dict[bytes, float] = {}
        self._batch_since: float | None = None  # when the pending txs' batch window opened
        # the last block's start: the commit before it (0.0: none, the window is over)
        self._block_start = 0.0
        self._last_commit: float | None = None
        self._follow_polled = self.clock.monotonic()  # last stalled-validator poll (or start)
        self._commit_times: deque[tuple[float, int]] = deque()
        self._validated: tuple[bytes, list[Tx]] = (b"", [])  # last block validate_block passed
        self._params: dict[str, int] = {}
        self._load_params()
        self._recover()
        self._vsets = self.state.validator_history()
        # organisation -> CA PEM as on chain (genesis + AddOrganization); `orgs_version` bumps
        # whenever a committed block changes it (the service then reloads the TLS trust roots)
        self.organizations: dict[str, bytes] = {}
        self.orgs_version = 0
        self._load_organizations()
        self.wal = storage.wal
        if genesis.consensus == "solo" and self.node_id not in self.validators_at(self.height + 1):
            raise InvariantError("this node's key is not the solo validator of the genesis")
        self.engine: Engine = engines.make_engine(
            genesis.consensus,
            self.node_id,
            self.chain_id,
            self,
            cfg,
            self.height,
            self.last_hash,
            self.wal,
            engine_config,
        )
        self.syncing = False
        self.sync_requests: list[SyncRequest] = []
        # BFT proposals go out compact (tx digests) and are rebuilt from the pool on the way
        # in (runtime/compact.py); raft's appends and every other message go as they are
        self._compact = (
            Compactor(self.node_id, self.mempool.by_digest) if genesis.consensus == "bft" else None
        )

    # -- start-up ------------------------------------------------------------------------
    def _recover(self) -> None:
        meta = self.state.meta()
        if meta is None:
            acc = self.genesis.lthash()
            self.state.init_genesis(
                self.genesis.writes(), acc.lanes(), acc.digest(), self.genesis.hash
            )
            meta = self.state.meta()
            assert meta is not None
            # the genesis params: the load in __init__ read an empty state (the defaults), and
            # a node that restarted reads these; both must enforce the same limits
            self._load_params()
            log.info("initialised state from genesis", extra={"fields": {"chain": self.chain_id}})
        if meta.genesis_hash != self.genesis.hash:
            raise InvariantError(
                f"data dir {self.cfg.data_dir} holds another chain (genesis hash differs)"
            )
        if self.blocks.height < meta.height:
            if self.genesis.consensus == "solo":
                raise InvariantError(
                    f"block store ends at {self.blocks.height} but state is at {meta.height}: "
                    "committed blocks are missing and a solo node has no peer to fetch them "
                    "from; restore the data dir"
                )
            # The state applied them, so it knows each one's hash: runtime/repair.py fetches
            # them from peers and `restore_block` stores each after checking it against that
            # hash and its commit certificate. Until then the node neither serves nor votes.
            self.repair_from = self.blocks.height + 1
            log.error(
                "committed blocks missing from the block store; fetching them from peers",
                extra={"fields": {"missing": f"{self.repair_from}..{meta.height}"}},
            )
        self.height, self.last_hash = meta.height, meta.block_hash
        self._lthash, self.state_root = LtHash(meta.lthash), meta.state_root
        self._last_time = 0
        if self.height:
            last = self.blocks.get(self.height)
            # None only right after a state-snapshot install (block `height` is not stored)
            self._last_time = last.header.time_ms if last is not None else 0
        replay = self.blocks.height - self.height
        for h in range(self.height + 1, self.blocks.height + 1):
            block = self.blocks.get(h)
            assert block is not None
            try:
                self._execute(block, [self._decode(raw) for raw in block.txs])
            except ContractsUnavailable as e:
                self._halt(block.height, str(e))
                break
        if replay:
            log.info("replayed %d stored blocks into state", replay)
        self.metrics.height.set(self.height)

    # -- Application (consensus/api.py) ---------------------------------------------------
    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return tuple(v.node_id for v in self.validator_set(height))

    def validator_set(self, height: int) -> tuple[Validator, ...]:
        current: tuple[Validator, ...] = ()
        for eff, vals in self._vsets:
            if eff > height:
                break
            current = vals
        return current

    def organization_of(self, node_id: bytes) -> str | None:
        """The organisation `node_id` is a validator of in the latest validator set (None:
        not a validator: an observer or a node about to join)."""
        for v in self.validator_set(self.height + 1):
            if v.node_id == node_id:
                return v.organization
        return None

    def has_pending(self) -> bool:
        n = len(self.mempool)
        if n == 0:
            return False
        if n >= self._params["max_block_txs"]:
            return True
        since = self._batch_since
        return (
            since is not None
            and (self.clock.monotonic() - since) * 1000 >= self.cfg.consensus.block_interval_ms
        )

    def _load_params(self) -> None:
        with self.state.snapshot() as snap:
            self._params = {name: param(snap, name) for name in PARAMS}

    def build_block(self, height: int, prev_hash: bytes, allow_empty: bool) -> Block | None:
        if height != self.height + 1 or prev_hash != self.last_hash:
            return None
        max_txs, max_tx_bytes = self._params["max_block_txs"], self._params["max_tx_bytes"]
        txs = self.mempool.take(
            max_txs, max_txs * max_tx_bytes, self._params["contract_block_fuel"]
        )
        if not txs and not allow_empty:
            return None
        header = BlockHeader(
            height=height,
            time_ms=max(self.clock.wall_ms(), self._last_time + 1),
            prev_hash=prev_hash,
            tx_root=tx_root([t.id for t in txs]),
            state_root=self.state_root,
            validators_hash=validators_hash(self.validator_set(height)),
            proposer=self.node_id,
        )
        return Block(header, tuple(t.raw for t in txs))

    def validate_block(self, block: Block) -> str | None:
        h = block.header
        if h.height != self.height + 1:
            return f"height {h.height}, expected {self.height + 1}"
        if h.prev_hash != self.last_hash:
            return "prev_hash does not extend our last block"
        if h.state_root != self.state_root:
            return "state_root differs from ours"
        vals = self.validator_set(h.height)
        if h.validators_hash != validators_hash(vals):
            return "validators_hash differs from ours"
        if h.proposer not in {v.node_id for v in vals}:
            return "proposer is not a validator"
        if h.time_ms <= self._last_time:
            return "block time does not increase"
        try:
            txs = self._txs_of(block, verify=True)
        except TxRejected as e:
            return f"invalid transaction: {e.message}"
        if h.tx_root != tx_root([t.id for t in txs]):
            return "tx_root does not match the transactions"
        if len(txs) > self._params["max_block_txs"]:
            return "too many transactions"
        with self.state.snapshot() as snap:
            if any(snap.has_tx(t.id) for t in txs):
                return "block repeats a committed transaction"
            why = check_nonces(snap, txs)
        if why is None:
            self._validated = (block.hash, txs)
        return why

    def _txs_of(self, block: Block, verify: bool) -> list[Tx]:
        """Decoded txs of a block; signatures are checked once per node: pooled txs were
        verified at admission, others are verified here."""
        if self._validated[0] == block.hash:
            return list(self._validated[1])
        out = []
        for raw in block.txs:
            pooled = self.mempool.by_raw(raw)
            if pooled is not None:
                out.append(pooled)
                continue
            tx = self._decode(raw)
            if verify:
                check_stateless(tx, self.chain_id, len(raw))
                if not crypto.verify(tx.sender, tx.body, tx.signature):
                    raise TxRejected(Reject.BAD_SIGNATURE, f"bad signature on {tx.id.hex()}")
            out.append(tx)
        return out

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def verify(self, signer: bytes, data: bytes, signature: bytes) -> bool:
        return crypto.verify(signer, data, signature)

    # -- driver ---------------------------------------------------------------------------
    def _halt(self, height: int, why: str) -> None:
        """Stop applying blocks (and so voting) without writing anything: this node cannot
        execute block `height` the way its peers do. It keeps serving reads at its height."""
        self.halted = f"block {height} runs contract code this node cannot execute: {why}"
        log.error("node halted", extra={"fields": {"height": height, "reason": self.halted}})

    def process_ready(self) -> None:
        """Drain the engine: persist, send, apply, advance — until it has nothing to do."""
        if self.halted is not None:
            return
        while True:
            rd = self.engine.ready()
            if rd.empty():
                return
            self._persist(rd)
            if self.network is not None:
                compact = self._compact
                for env in rd.messages:
                    self.network.send(env if compact is None else compact.outbound(env))
            for block in rd.committed:
                if block.height <= self.height:
                    self._check_known(block)
                    continue
                try:
                    self.apply(block)
                except ContractsUnavailable as e:  # nothing of the block reached the state
                    self._halt(block.height, str(e))
                    return
            self.sync_requests.extend(rd.sync)
            for rej in rd.rejections:
                self._discarded(rej.offender, rej.reason)
            if rd.compact_below is not None and self.wal is not None:
                self.wal.compact(rd.compact_below)  # after persist and apply (engine contract)
            self.engine.advance(rd)

    def _check_known(self, block: Block) -> None:
        """A re-delivered committed block (e.g. raft log replay after restart) must be the
        one we stored; anything else means two different blocks were committed at a height."""
        stored = self.blocks.get(block.height)
        if stored is None or stored.hash != block.hash:
            raise InvariantError(f"engine committed a different block at height {block.height}")

    def _persist(self, rd: Ready) -> None:
        if rd.hard_state is None and not rd.entries and rd.truncate_from is None:
            return
        if self.wal is None:
            raise InvariantError("engine asked to persist state but this node has no WAL")
        self.wal.save(rd.hard_state, rd.entries, rd.truncate_from)

    def tick(self) -> None:
        self.engine.tick()
        self.process_ready()
        self.regossip_pending(self.clock.monotonic())

    def regossip_pending(self, now: float) -> int:
        """Gossips again the client transactions still pooled past their re-send time (see
        runtime/regossip.py); returns how many went out."""
        regossip = self._regossip
        if regossip is None or self.network is None:
            return 0
        txs = regossip.due(now, self.mempool.get)
        if not txs:
            return 0
        # Only to whoever proposes blocks now (the Raft leader, the BFT round's proposer):
        # the first gossip went to every peer, and a re-send is for the one that must hold
        # the tx to include it. To all, as the first time, when there is none; none when this
        # node proposes (the tx is in its own pool). Re-sends to every peer cost N-1 messages
        # of every still-pending tx at each interval: under overload, the whole backlog
        # (10 validators x 4 KiB: 0.65x of the saturated rate with no re-gossip at all).
        leader = self.engine.status().leader or None
        if leader == self.node_id:
            return 0
        for tx in txs:
            self.network.gossip(tx.raw, leader)
        return len(txs)

    def wants_blocks(self) -> bool:
        """Whether the driver should poll a peer for committed blocks now (runtime/service.py
        and tests/sim ask at their observer-poll cadence). Always outside the validator set of
        the next height: an observer gets no consensus traffic. And, at most every
        FOLLOW_STALL_S, a validator that applied no block for that long: one governance
        removed at a height above its own gets no consensus traffic either (the others no
        longer count it, nor answer a height that old) and can learn that it is an observer
        only from the blocks it lacks, so without this it never caught up (issue 13, found by
        tests/sim/nodesim.py). A poll of a peer with nothing newer costs one empty stream."""
        if self.node_id not in self.validators_at(self.height + 1):
            return True
        now = self.clock.monotonic()
        if now - max(self._last_commit or 0.0, self._follow_polled) < FOLLOW_STALL_S:
            return False
        self._follow_polled = now
        return True

    def _discarded(self, offender: bytes, reason: str) -> None:
        self.metrics.consensus_rejections.labels(rejection_label(reason)).inc()
        log.warning(
            "discarded consensus message",
            extra={"fields": {"offender": offender.hex(), "reason": reason}},
        )

    def on_peer_messages(self, sender: bytes, payloads: list[bytes]) -> None:
        """One inbound batch: step every message, then drain Ready once (amortised).
        Compact-proposal traffic is turned into the engine's full proposals first."""
        compact = self._compact
        for p in payloads:
            if compact is None or not is_compact_kind(p):
                self.engine.step(Envelope(sender, self.node_id, p))
                continue
            res = compact.inbound(sender, p)
            if res.rejection is not None:
                self._discarded(sender, res.rejection)
            if res.pooled:
                self.metrics.compact_txs.labels("pool").inc(res.pooled)
            if res.fetched:
                self.metrics.compact_txs.labels("fetched").inc(res.fetched)
            if self.network is not None:
                for env in res.replies:
                    self.network.send(env)
            for full in res.deliver:
                self.engine.step(Envelope(sender, self.node_id, full))
        self.process_ready()

    def on_peer_txs(self, _sender: bytes, txs: list[bytes]) -> None:
        # Under raft a peer's tx is not verified again: the node a client handed it to did
        # (Mempool.admit), and the crash-fault model trusts every node, as any of them can
        # lead and a leader's blocks are applied unchecked. Under bft every validator checks
        # every tx of a block it votes for, and the pool is its verified-signature cache.
        self.submit_many(txs, gossip=False, verified=self.genesis.consensus == "raft")

    def verify_certificate(self, block: Block) -> str | None:
        """None if the block's commit certificate is signed by enough validators of its
        height: a BFT quorum (> 2/3) for bft, one validator for raft (crash-fault model)."""
        return certificate_problem(
            block,
            self.chain_id,
            self.validators_at(block.height),
            self.genesis.consensus == "bft",
            crypto.verify,
        )

    def install_snapshot(
        self,
        height: int,
        block_hash: bytes,
        lanes: bytes,
        entries: list[tuple[bytes, bytes]],
        nxt: Block,
    ) -> None:
        """Verifies a peer's state snapshot "after block `height`" and installs it, then
        applies `nxt` (block height + 1). Trust rule: the entries hash (LtHash) to the state
        root that the certified header of block height + 1 carries; that certificate is a
        quorum of the snapshot's own validator set AND is signed by more than a third of the
        validators this node knows (bft; one for raft), so at least one honest validator we
        already trust vouches for it. Raises TxRejected (untrusted input) on any mismatch."""
        acc = LtHash()
        for k, v in entries:
            acc.add(k, v)
        if acc.lanes() != lanes:
            raise TxRejected(Reject.INVALID, "snapshot entries do not match its LtHash")
        root = acc.digest()
        h = nxt.header
        if nxt.height != height + 1 or h.prev_hash != block_hash or h.state_root != root:
            raise TxRejected(Reject.INVALID, "snapshot is not the state block height+1 certifies")
        history = sorted(
            (int.from_bytes(k[len(VSET_PREFIX) :], "big"), decode_validators(v))
            for k, v in entries
            if k.startswith(VSET_PREFIX)
        )
        snapvals = [vals for eff, vals in history if eff <= height + 1]
        if not snapvals:
            raise TxRejected(Reject.INVALID, "snapshot has no validator set")
        vals = {v.node_id for v in snapvals[-1]}
        if h.validators_hash != validators_hash(snapvals[-1]):
            raise TxRejected(Reject.INVALID, "snapshot validator set differs from the header's")
        cert = nxt.certificate
        if cert is None or cert.block_hash != nxt.hash or cert.height != nxt.height:
            raise TxRejected(Reject.INVALID, "block after the snapshot lacks its certificate")
        msg = commit_sign_bytes(self.chain_id, cert.height, cert.round, cert.block_hash)
        signers = {s for s, sig in cert.signatures if crypto.verify(s, msg, sig)}
        bft = self.genesis.consensus == "bft"
        if len(signers & vals) < (2 * len(vals) // 3 + 1 if bft else 1):
            raise TxRejected(Reject.INVALID, "certificate is not a quorum of the snapshot's set")
        known = set(self.validators_at(self.height + 1))
        if len(signers & known) < ((len(known) - 1) // 3 + 1 if bft else 1):
            raise TxRejected(Reject.INVALID, "no validator this node trusts vouches for it")
        self.state.install_snapshot(entries, height, block_hash, lanes, root)
        self.blocks.set_base(height)
        self.height, self.last_hash = height, block_hash
        self._lthash, self.state_root = LtHash(lanes), root
        self._vsets = self.state.validator_history()
        self._load_params()
        self._load_organizations()
        self.mempool = Mempool(self.chain_id, self.cfg.mempool_size, crypto.verify, self.vm)
        self._validated = (b"", [])
        log.info(
            "installed state snapshot",
            extra={"fields": {"height": height, "entries": len(entries), "root": root.hex()}},
        )
        self.engine.synced(height, block_hash)
        self.apply_synced(nxt)

    def restore_block(self, block: Block) -> None:
        """Stores a committed block the block store lost (see `repair_from`). Trust rule: this
        node's own state applied the block at that height and recorded its hash, so the block
        must hash to exactly that (the header pins prev_hash, tx_root and state_root), and its
        commit certificate must verify. Raises TxRejected (untrusted input) otherwise."""
        if self.repair_from is None or block.height != self.blocks.height + 1:
            raise TxRejected(Reject.INVALID, f"block {block.height} is not a missing block")
        if self.state.height_of(block.hash) != block.height:
            raise TxRejected(
                Reject.INVALID, f"block {block.height} is not the block this node committed"
            )
        why = self.verify_certificate(block)
        if why is not None:
            raise TxRejected(Reject.INVALID, f"restored block {block.height}: {why}")
        self.blocks.append(block)
        if self.blocks.height >= self.height:
            self.repair_from = None
            self._last_time = block.header.time_ms
            log.info("block store repaired from peers", extra={"fields": {"height": self.height}})

    def apply_synced(self, block: Block) -> None:
        """A block fetched by block sync: verified (certificate, linkage), then applied."""
        if block.height <= self.height:
            self._check_known(block)
            return
        if block.height != self.height + 1 or block.header.prev_hash != self.last_hash:
            raise TxRejected(
                Reject.INVALID, f"synced block {block.height} does not extend {self.height}"
            )
        why = self.verify_certificate(block)
        if why is not None:
            raise TxRejected(Reject.INVALID, f"synced block {block.height}: {why}")
        self.apply(block)
        self.engine.synced(self.height, self.last_hash)

    def apply(self, block: Block) -> None:
        """Persist and execute a committed block (with its certificate)."""
        if block.height != self.height + 1 or block.header.prev_hash != self.last_hash:
            raise InvariantError(f"committed block {block.height} does not extend {self.height}")
        t0 = self.clock.monotonic()
        txs = self._txs_of(block, verify=False)
        self.blocks.append(block)
        self._execute(block, txs)
        now = self.clock.monotonic()
        if txs:
            with self.state.snapshot() as snap:
                self.mempool.remove_committed(txs, snap)
        # The next block's batch window runs from the start of this one (the commit before
        # it): blocks are at least block_interval_ms apart, and a block whose consensus took
        # longer than the window is followed at once (its txs waited behind it already).
        # Where the chain was idle before this block it began later, when its txs came: the
        # approximation only ever cuts sooner.
        self._block_start = self._last_commit or 0.0
        self._batch_since = self._block_start if len(self.mempool) else None
        m = self.metrics
        m.apply_seconds.observe(now - t0)
        m.height.set(self.height)
        m.blocks.inc()
        m.txs.inc(len(txs))
        m.mempool.set(len(self.mempool))
        if self._last_commit is not None:
            m.block_interval.observe(now - self._last_commit)
        self._last_commit = now
        for tx in txs:
            at = self._admitted_at.pop(tx.id, None)
            if at is not None:
                m.commit_latency.observe(now - at)
        self._commit_times.append((now, len(txs)))
        while self._commit_times and now - self._commit_times[0][0] > 10:
            self._commit_times.popleft()
        m.tx_rate.set(sum(n for _, n in self._commit_times) / 10)
        if self._compact is not None:
            self._compact.committed(block.height)
        self._new_block.set()
        self._new_block = asyncio.Event()

    def _execute(self, block: Block, txs: Sequence[Tx]) -> None:
        with self.state.snapshot() as snap:
            result = execute_block(snap, self._lthash, block.height, txs, self.vm)
        self.state.commit_block(block.height, block.hash, result)
        self.height, self.last_hash = block.height, block.hash
        self._lthash, self.state_root = LtHash(result.lthash), result.state_root
        self._last_time = block.header.time_ms
        if any(k.startswith(VSET_PREFIX) for k in result.writes):
            self._vsets = self.state.validator_history()
        if any(k.startswith(PARAM_PREFIX) for k in result.writes):
            self._load_params()
        if any(k.startswith(ORG_PREFIX) for k in result.writes):
            self._load_organizations()

    def _load_organizations(self) -> None:
        with self.state.snapshot() as snap:
            orgs = {k[len(ORG_PREFIX) :].decode(): v for k, v in snap.prefix(ORG_PREFIX)}
        if orgs != self.organizations:
            self.organizations = orgs
            self.orgs_version += 1

    # -- client API (called by transport servers) -----------------------------------------
    def submit(self, raw: bytes, gossip: bool = True) -> Admission:
        return self.submit_many([raw], gossip)[0]

    def submit_many(
        self, raws: list[bytes], gossip: bool = True, verified: bool = False
    ) -> list[Admission]:
        """Admits a batch under one state snapshot. Client submissions (gossip=True) are
        forwarded to peers; gossiped ones may be held until a nonce gap fills. `verified`:
        a trusted peer checked the signatures (see on_peer_txs)."""
        out: list[Admission] = []
        now = self.clock.monotonic()
        max_tx_bytes = self._params["max_tx_bytes"]
        to, send = self._gossip_target() if gossip else (None, False)
        with self.state.snapshot() as snap:
            for raw in raws:
                tx_id = b""
                try:
                    tx = self._decode(raw)
                    tx_id = tx.id
                    self.mempool.admit(
                        tx,
                        snap,
                        max_tx_bytes,
                        snap.has_tx,
                        hold_future=not gossip,
                        verified=verified,
                    )
                except TxRejected as e:
                    self.metrics.rejected.labels(e.reason.value).inc()
                    out.append(Admission(tx_id, e.reason, e.message))
                    continue
                self._admitted_at[tx.id] = now
                if gossip and self.network is not None:
                    if send:
                        self.network.gossip(raw, to)
                    self._regossip_track(tx.id, now)
                out.append(Admission(tx.id, None, ""))
        if self._batch_since is None and len(self.mempool):
            # The batch window runs from the start of the last block (the commit before it,
            # `_block_start`): a non-full block is cut at most block_interval_ms after the
            # previous one began, and at once when the chain was idle for longer (no later
            # txs to wait for: batching would only add latency).
            self._batch_since = self._block_start
        self.metrics.mempool.set(len(self.mempool))
        return out

    def _gossip_target(self) -> tuple[bytes | None, bool]:
        """Where a client's tx goes after admission here: (peer or None for every peer,
        whether to send at all). BFT: every peer (each validator verifies every tx of a block
        and rebuilds compact proposals from its pool). Raft: the leader only, and nowhere
        when this node leads. A raft follower never validates the leader's blocks (the
        crash-fault model trusts the leader's ordering and its admission checks), so a tx in
        a follower's pool would only cost it a signature check; a tx whose leader changes
        before it commits reaches the new leader by re-gossip (runtime/regossip.py). Every
        peer while no leader is known."""
        if self.genesis.consensus != "raft":
            return None, True
        leader = self.engine.status().leader or None
        return leader, leader != self.node_id

    def _regossip_track(self, tx_id: bytes, now: float) -> None:
        if self._regossip is None:
            self._regossip = Regossip()
        self._regossip.track(tx_id, now)

    def receipt(self, tx_id: bytes) -> tuple[Block, Receipt] | None:
        loc = self.state.tx_location(tx_id)
        if loc is None:
            return None
        block = self.blocks.get(loc.height)
        if block is None:
            return None
        return block, Receipt(tx_id, loc.height, loc.index, loc.code, loc.message)

    def snapshot(self) -> StateView:
        return self.state.snapshot()

    def block_at(self, height: int) -> Block | None:
        return self.blocks.get(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        h = self.state.height_of(block_hash)
        return None if h is None else self.blocks.get(h)

    async def wait_block(self, after_height: int, within: float | None) -> bool:
        """Waits until height > after_height; False on timeout."""
        loop = asyncio.get_running_loop()  # an asyncio timeout: the event loop's own clock
        deadline = None if within is None else loop.time() + within
        while self.height <= after_height:
            ev = self._new_block
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def status(self) -> NodeStatus:
        st = self.engine.status()
        return NodeStatus(
            chain_id=self.chain_id,
            consensus=self.genesis.consensus,
            organization=self.cfg.organization,
            node_id=self.node_id,
            height=self.height,
            last_hash=self.last_hash,
            state_root=self.state_root,
            role=st.role,
            leader=st.leader,
            validators=self._vsets[-1][1] if self._vsets else (),
            syncing=self.syncing,
            mempool_size=len(self.mempool),
            organizations=tuple(sorted(self.organizations)),
            base_height=self.base_height,
            halted=self.halted or "",
            peers=self.peer_links() if self.peer_links is not None else (),
        )

    @property
    def base_height(self) -> int:
        """Blocks 1..base_height are not stored here: the node was seeded from a state
        snapshot after that block (the block store's BASE); 0 when it holds the whole chain."""
        return self.blocks.base

    def close(self) -> None:
        if self.wal is not None:
            self.wal.close()
        self.blocks.close()
        self.state.close()


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.from_json(path.read_bytes())
    except OSError as e:
        raise DecodeError(f"cannot read genesis {path}: {e.strerror}") from e
