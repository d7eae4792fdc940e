"""The Raft engine: a pure, deterministic, crash-fault-tolerant agreement state machine.

Shaped like etcd-io/raft: terms, randomized election timeouts in ticks, PreVote (thesis §9.6),
CheckQuorum (thesis §6.2), AppendEntries with batching and probe/replicate flow control, commit
by a majority of the current validator set (§5.3, §5.4.2: only entries of the leader's own term
are committed by counting; a new leader appends a no-op to commit its predecessors' entries).

Called by the node runtime (runtime/), and by tests/sim and tests/unit/consensus, through the
`Engine` protocol of consensus/api.py. Driver contract:

    eng = RaftEngine(node_id, app, random.Random(seed), chain_id=..., applied_height=h0,
                     applied_hash=genesis_or_tip_hash)            # fresh node, empty log
    eng = RaftEngine.restore(node_id, app, rng, chain_id=..., hard_state=hs_or_None,
                             entries=persisted_entries, last_applied_height=h,
                             last_block_hash=hash_of_block_h)     # after a restart
    loop:  eng.tick() every tick interval; eng.step(Envelope) for every peer message;
           while not (rd := eng.ready()).empty():
               if rd.truncate_from is not None: drop persisted entries with index >= it
               append rd.entries; store rd.hard_state if not None; fsync     # persist ...
               send rd.messages                                             # ... before send
               apply rd.committed in order (skip heights already applied)   # apply committed
               log rd.rejections; start block sync for each rd.sync
               eng.advance(rd)     # may queue the next proposal: loop on ready() again
    block sync done (blocks verified and applied up to height h): eng.synced(h, hash_of_h)
    compaction: eng.compact(upto_index) with upto_index <= eng.applied_index; persist the
           hard_state of the next Ready before physically deleting entries <= upto_index.

Blocks: the leader proposes through `app.build_block(tip+1, tip_hash, allow_empty)` only when its
previous block is committed and applied (one block in flight; batching in the block makes the
throughput). The block rides in a log entry as `log.encode_entry(validators_at(h), block)` (opaque
to the driver) and carries a `CommitCertificate(height, round=term, hash, ((leader, sig),))`
signed by the leader at proposal over `commit_sign_bytes`. HONESTY NOTE: Raft is crash-fault tolerant only. That certificate proves
which validator proposed the block, not that a quorum accepted it; followers trust the leader and
do not re-validate blocks. Use the bft engine when validators may be malicious.

Catch-up: when a follower needs entries below the leader's compacted log start, the leader sends
SNAP(index, term, height, hash); the follower emits `SyncRequest(leader, applied_height+1)` in
`Ready.sync` (at most once per `sync_retry_ticks`). The runtime fetches, verifies and applies the
committed blocks and calls `synced(height, hash)`; once height >= the SNAP height the follower
resets its log to the leader's snapshot point and acknowledges, and replication resumes.

Validator set: `app.validators_at(h)` decides height h and the leader writes that set into the
entry of block h. The configuration in effect for elections and commit counting is the set in
the last block entry of a node's log, committed or not (thesis §4.1; falling back to the set of
the snapshot's block), so configurations change one member at a time with the log, never by
applied height alone. A leader proposes only after the no-op of its term is committed (the fix
for the single-server change bug, raft-dev 2015) and one block at a time, so at most one change
is uncommitted. The leader also replicates to validators_at(applied+1) and (applied+2), so a
joining member catches up before it votes; a node outside the configuration never campaigns and
a leader whose configuration no longer includes it steps down once that block is applied.

Durability: hard state (term, vote, snapshot point) and entries are emitted in the same
Ready as the messages that depend on them, so "persist before send" is the driver's order above.
The commit index is volatile (paper, Figure 2): a change of it alone writes nothing (no fsync on
the commit path); the hard state carries the commit index of when it was last written, a lower
bound a restarted node resumes from (blocks its block store already holds are not handed out
again: they are at or below `last_applied_height`).

Commit notices: a leader whose commit index passes what it last told a follower in
REPLICATE sends it an empty append at once (prev = that follower's match, so it is always
accepted), as etcd's raft broadcasts after maybeCommit. Without it a follower learnt a commit
only with the next block or heartbeat, and a client following a follower waited that long.

Status: role leader/follower/candidate, leader id, height = applied block height, round = term.
Public read-only attributes the driver may use: `applied_index`, `log.snap_index`, `term`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Protocol

from ...ledger.block import Block, CommitCertificate, commit_sign_bytes
from ...ledger.errors import DecodeError, InvariantError
from ...ledger.hashing import ZERO_HASH
from ..api import Application, Entry, Envelope, Ready, Rejection, Status, SyncRequest
from . import codec
from .codec import Message, MsgType
from .log import RaftLog, decode_entry, encode_entry


class Random(Protocol):
    """The slice of `random.Random` the engine uses. Injected (seeded) by the driver; declared
    structurally so consensus/ never imports `random` (import-linter counts even
    TYPE_CHECKING imports)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_ticks: int = 10  # randomized election timeout is in [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 1
    # Ticks without a block after which the leader proposes an empty one; None = never.
    empty_block_ticks: int | None = 100
    max_append_entries: int = 64
    max_append_bytes: int = 4 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    sync_retry_ticks: int = 20
    # keep this many applied entries in the log for slow followers, compact the rest once
    # twice as many are applied (None: only when the driver calls compact)
    compact_every: int | None = None


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class _PrState(enum.Enum):
    PROBE = 1  # one APP in flight until answered (finding the match point)
    REPLICATE = 2  # stream entries optimistically
    SNAPSHOT = 3  # follower is block-syncing up to our snapshot point


class _Progress:
    __slots__ = (
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "snap_tick",
        "state",
        "told",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = _PrState.PROBE
        self.paused = False
        self.recent_active = False
        self.pending_snapshot = 0
        self.snap_tick = 0
        # the highest commit index this follower was sent that it can take (min(commit,
        # index it holds)); commit notices go out only above it (_tell_commit)
        self.told = 0


_HS = struct.Struct(">BQQQQQ32sB")
_HS_VERSION = 1


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash. Encoded into `Ready.hard_state` (opaque to the driver)."""

    term: int
    vote: bytes | None
    commit: int
    snap_index: int
    snap_term: int
    snap_height: int
    snap_hash: bytes

    def encode(self) -> bytes:
        vote = self.vote or b""
        return (
            _HS.pack(
                _HS_VERSION,
                self.term,
                self.commit,
                self.snap_index,
                self.snap_term,
                self.snap_height,
                self.snap_hash,
                len(vote),
            )
            + vote
        )

    @classmethod
    def decode(cls, data: bytes) -> HardState:
        try:
            v, term, commit, si, st, sh, shash, vl = _HS.unpack_from(data, 0)
        except struct.error:
            raise DecodeError("truncated raft hard state") from None
        if v != _HS_VERSION or len(data) != _HS.size + vl:
            raise DecodeError("bad raft hard state")
        vote = bytes(data[_HS.size :]) or None
        return cls(term, vote, commit, si, st, sh, shash)


class RaftEngine:
    """See the module docstring for the driver contract."""

    def __init__(
        self,
        node_id: bytes,
        app: Application,
        rng: Random,
        *,
        chain_id: str,
        applied_height: int = 0,
        applied_hash: bytes = ZERO_HASH,
        config: RaftConfig | None = None,
    ) -> None:
        self.node_id = node_id
        self.app = app
        self.rng = rng
        self.chain_id = chain_id
        self.cfg = config or RaftConfig()
        self.term = 0
        self.vote: bytes | None = None
        self.lead: bytes | None = None
        self.role = Role.FOLLOWER
        self.log = RaftLog(0, 0, (applied_height, applied_hash))
        self.commit = 0
        # Applied = handed to the driver in Ready.committed and acknowledged by advance().
        self.applied_index = 0
        self._compact_reported = 1  # compact_below last emitted in a Ready
        self.applied_height = applied_height
        self.applied_hash = applied_hash
        # Emitted = put into a Ready (not yet advanced). Blocks <= emitted_height are skipped.
        self._emitted_index = 0
        self._emitted_height = applied_height
        self._ticks = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes: dict[bytes, bool] = {}
        self._progress: dict[bytes, _Progress] = {}
        self._noop_index = 0
        self._ticks_since_block = 0
        self._pending_snap: Message | None = None
        self._sync_asked_tick: int | None = None
        # Outputs accumulated for the next Ready.
        self._msgs: list[Envelope] = []
        self._rejections: list[Rejection] = []
        self._sync: list[SyncRequest] = []
        self._hs_dirty = False
        self._unstable_from: int | None = None  # lowest index changed since the last Ready
        self._persisted_last = 0  # last index handed to the driver for persistence
        self._truncate: int | None = None  # forced truncation (snapshot install)
        self._voters_cache: tuple[tuple[int, int], frozenset[bytes]] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def restore(
        cls,
        node_id: bytes,
        app: Application,
        rng: Random,
        *,
        chain_id: str,
        hard_state: bytes | None,
        entries: list[Entry] | tuple[Entry, ...],
        last_applied_height: int,
        last_block_hash: bytes,
        config: RaftConfig | None = None,
    ) -> RaftEngine:
        """Rebuild from what the driver persisted. `entries` may include entries at or below the
        persisted snapshot point (they are ignored); those above must be contiguous.
        `last_applied_height`/`last_block_hash` = the runtime's block store tip."""
        eng = cls(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            applied_height=last_applied_height,
            applied_hash=last_block_hash,
            config=config,
        )
        if hard_state is None:
            if entries:
                raise InvariantError("raft entries persisted without a hard state")
            return eng
        try:
            hs = HardState.decode(hard_state)
        except DecodeError as err:
            raise InvariantError(f"corrupt raft hard state: {err}") from None
        if last_applied_height < hs.snap_height:
            raise InvariantError(
                f"block store at {last_applied_height} is below the compacted raft log "
                f"(snapshot block {hs.snap_height}); repair the block store from peers first"
            )
        eng.term, eng.vote = hs.term, hs.vote
        eng.log.reset(hs.snap_index, hs.snap_term, (hs.snap_height, hs.snap_hash))
        for e in sorted(entries, key=lambda e: e.index):
            if e.index > hs.snap_index:
                eng.log.append(e)  # raises InvariantError on a gap
        if hs.commit > eng.log.last_index or hs.commit < hs.snap_index:
            raise InvariantError(f"raft commit {hs.commit} outside the persisted log")
        eng.commit = hs.commit
        eng.applied_index = eng._emitted_index = hs.snap_index
        eng._persisted_last = eng.log.last_index
        eng._compact_reported = hs.snap_index + 1
        return eng

    # ------------------------------------------------------------------ Engine protocol

    def status(self) -> Status:
        role = "candidate" if self.role is Role.PRE_CANDIDATE else self.role.value
        return Status(role, self.lead, self.applied_height, self.term)

    def tick(self) -> None:
        self._ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_follower()

    def step(self, env: Envelope) -> None:
        try:
            m = codec.decode(env.payload)
        except DecodeError as e:
            self._reject(env.sender, f"undecodable raft message: {e}")
            return
        if env.sender == self.node_id:
            self._reject(env.sender, "raft message claims to come from ourselves")
            return
        self._step(env.sender, m)

    def ready(self) -> Ready:
        hs: bytes | None = None
        if self._hs_dirty:
            hs = self._hard_state().encode()
            self._hs_dirty = False
        entries: tuple[Entry, ...] = ()
        trunc = self._truncate
        if self._unstable_from is not None:
            lo = max(self._unstable_from, self.log.snap_index + 1)
            if lo <= self._persisted_last:
                trunc = lo if trunc is None else min(trunc, lo)
            if lo <= self.log.last_index:
                entries = tuple(self.log.entries[lo - self.log.snap_index - 1 :])
        self._persisted_last = self.log.last_index
        self._unstable_from = None
        self._truncate = None
        committed = self._take_committed()
        below: int | None = None
        if hs is not None and self.log.snap_index + 1 > self._compact_reported:
            # the hard state recording the snapshot point is persisted with this Ready
            below = self._compact_reported = self.log.snap_index + 1
        rd = Ready(
            compact_below=below,
            hard_state=hs,
            entries=entries,
            truncate_from=trunc,
            messages=tuple(self._msgs),
            committed=committed,
            rejections=tuple(self._rejections),
            sync=tuple(self._sync),
        )
        self._msgs.clear()
        self._rejections.clear()
        self._sync.clear()
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.committed:
            last = rd.committed[-1]
            if last.height > self.applied_height:
                self.applied_height, self.applied_hash = last.height, last.hash
        self.applied_index = max(self.applied_index, self._emitted_index)
        keep = self.cfg.compact_every
        if keep is not None and rd.committed:
            upto = self.applied_index - keep
            if upto > self.log.snap_index + keep:
                self.compact(upto)
        if self.role is Role.LEADER:
            if not self._may_lead():
                self._become_follower(self.term, None)  # removed from the set: step down
                return
            for p in self._replica_set():
                if p not in self._progress:
                    self._progress[p] = _Progress(self.log.last_index + 1)
            self._maybe_propose()

    def synced(self, height: int, block_hash: bytes) -> None:
        if height > self.applied_height:
            self.applied_height, self.applied_hash = height, block_hash
            self._emitted_height = max(self._emitted_height, height)
        snap = self._pending_snap
        if snap is not None and height >= snap.snap_height:
            self._install(snap)

    def compact(self, upto_index: int) -> None:
        """Forget log entries <= upto_index (capped at the applied index). The next Ready's
        hard_state records the new snapshot point; persist it before deleting those entries."""
        upto = min(upto_index, self.applied_index)
        if upto > self.log.snap_index:
            self.log.compact(upto)
            self._hs_dirty = True

    # ------------------------------------------------------------------ helpers

    def _random_timeout(self) -> int:
        e = self.cfg.election_ticks
        return e + self.rng.randrange(e)

    def _reject(self, offender: bytes, reason: str) -> None:
        self._rejections.append(Rejection(offender, reason))

    def _send(self, to: bytes, m: Message) -> None:
        self._msgs.append(Envelope(self.node_id, to, codec.encode(m)))

    def _hard_state(self) -> HardState:
        sh, shash = self.log.snap_block
        return HardState(
            self.term,
            self.vote,
            self.commit,
            self.log.snap_index,
            self.log.snap_term,
            sh,
            shash,
        )

    def _voters(self) -> frozenset[bytes]:
        """The configuration in effect: the validators carried by the last block entry in our
        log, committed or not (thesis §4.1); with no block above the snapshot point, the set
        that decided the snapshot's block (or block 1), from the application."""
        key = (self.log.last_index, self.log.snap_index)
        c = self._voters_cache
        if c is None or c[0] != key:
            vs = self.log.last_config()
            if vs is None:
                vs = tuple(self.app.validators_at(max(self.log.snap_block[0], 1)))
            c = (key, frozenset(vs))
            self._voters_cache = c
        return c[1]

    def _replica_set(self) -> set[bytes]:
        """Voters plus the members of the next two heights' sets: a joining validator catches
        up (as a learner) before its first vote counts."""
        peers = set(self._voters())
        peers.update(self.app.validators_at(self.applied_height + 1))
        peers.update(self.app.validators_at(self.applied_height + 2))
        peers.discard(self.node_id)
        return peers

    def _quorum(self, voters: frozenset[bytes]) -> int:
        return len(voters) // 2 + 1

    def _mark_unstable(self, index: int) -> None:
        if self._unstable_from is None or index < self._unstable_from:
            self._unstable_from = index

    def _append(self, e: Entry) -> None:
        self.log.append(e)
        self._mark_unstable(e.index)

    def _commit_to(self, index: int) -> None:
        # volatile: not a reason to write the hard state (see Durability in the docstring)
        if index > self.commit:
            self.commit = index

    def _take_committed(self) -> tuple[Block, ...]:
        if self.commit <= self._emitted_index:
            return ()
        out: list[Block] = []
        for i in range(self._emitted_index + 1, self.commit + 1):
            ref = self.log.ref(i)
            if ref is None or ref[0] <= self._emitted_height:
                continue
            if ref[0] != self._emitted_height + 1:
                raise InvariantError(
                    f"raft committed block {ref[0]} after {self._emitted_height}: height gap"
                )
            try:
                _, block = decode_entry(self.log.get(i).data)
            except DecodeError:
                raise InvariantError(f"raft entry {i} holds an undecodable block") from None
            out.append(block)
            self._emitted_height = ref[0]
        self._emitted_index = self.commit
        return tuple(out)

    # ------------------------------------------------------------------ roles

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
            self._hs_dirty = True
        self.lead = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes = {}
        self._progress = {}

    def _become_follower(self, term: int, lead: bytes | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.node_id
        nxt = self.log.last_index + 1
        self._progress = {p: _Progress(nxt) for p in self._replica_set()}
        for pr in self._progress.values():
            pr.recent_active = True
        # §5.4.2 / §8: commit entries of earlier terms by committing one of our own term.
        self._append(Entry(nxt, self.term, b""))
        self._noop_index = nxt
        self._ticks_since_block = 0
        self._bcast_append()
        self._maybe_commit()

    def _may_lead(self) -> bool:
        """A member of the configuration in effect and of the set deciding the next height
        (a validator being removed neither proposes that height nor campaigns)."""
        return self.node_id in self._voters() and self.node_id in self.app.validators_at(
            self.applied_height + 1
        )

    def _campaign(self, pre: bool) -> None:
        voters = self._voters()
        if not self._may_lead():
            return
        if pre:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            term, typ = self.term + 1, MsgType.PREVOTE
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.node_id
            self._hs_dirty = True
            term, typ = self.term, MsgType.VOTE
        self._votes = {self.node_id: True}
        if self._poll(voters):
            return
        m = Message(typ, term, index=self.log.last_index, log_term=self.log.last_term)
        for p in sorted(voters):
            if p != self.node_id:
                self._send(p, m)

    def _poll(self, voters: frozenset[bytes]) -> bool:
        """Count (pre)votes; act on a decided election. True if the role changed."""
        q = self._quorum(voters)
        granted = sum(1 for v, ok in self._votes.items() if ok and v in voters)
        rejected = sum(1 for v, ok in self._votes.items() if not ok and v in voters)
        if granted >= q:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return True
        if rejected >= q:
            self._become_follower(self.term, None)
            return True
        return False

    # ------------------------------------------------------------------ ticks

    def _tick_follower(self) -> None:
        self._election_elapsed += 1
        # etcd's tickElection: only a node that may lead resets its timer by campaigning.
        # A non-voter (e.g. a joiner whose log does not list it yet) must let the elapsed
        # time run on, so its CheckQuorum lease on a dead leader expires and it grants
        # (pre-)votes again; resetting it here kept the lease alive forever (a 2-member
        # chain whose leader restarted stalled for good: whole-node sim, raft seed 102).
        if self._election_elapsed >= self._timeout and self._may_lead():
            self._election_elapsed = 0
            self._campaign(pre=self.cfg.pre_vote)
        snap = self._pending_snap
        if (
            snap is not None
            and self._sync_asked_tick is not None
            and self._ticks - self._sync_asked_tick >= self.cfg.sync_retry_ticks
            and self.lead is not None
        ):
            self._ask_sync(self.lead)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        self._ticks_since_block += 1
        if self._election_elapsed >= self.cfg.election_ticks:
            self._election_elapsed = 0
            if self.cfg.check_quorum:
                voters = self._voters()
                active = sum(
                    1
                    for v in voters
                    if v == self.node_id
                    or ((pr := self._progress.get(v)) is not None and pr.recent_active)
                )
                if active < self._quorum(voters):
                    self._become_follower(self.term, None)  # thesis §6.2: lost the quorum
                    return
                for pr in self._progress.values():
                    pr.recent_active = False
        if self._heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for p, pr in sorted(self._progress.items()):
                c = min(pr.match, self.commit)
                pr.told = max(pr.told, c)
                self._send(p, Message(MsgType.HEARTBEAT, self.term, commit=c))
        self._maybe_propose()

    # ------------------------------------------------------------------ proposing

    def _maybe_propose(self) -> None:
        if self.role is not Role.LEADER or self.commit < self._noop_index:
            return
        tip_h, tip_hash = self.log.tip()
        if self.applied_height != tip_h or self._emitted_height != tip_h:
            return  # our previous block is still in flight (one block at a time)
        ebt = self.cfg.empty_block_ticks
        allow_empty = ebt is not None and self._ticks_since_block >= ebt
        if not allow_empty and not self.app.has_pending():
            return
        if self.node_id not in self.app.validators_at(tip_h + 1):
            return  # being removed at this height: advance() steps down
        block = self.app.build_block(tip_h + 1, tip_hash, allow_empty)
        if block is None:
            return
        if block.height != tip_h + 1 or block.header.prev_hash != tip_hash:
            raise InvariantError("app.build_block returned a block that does not extend the tip")
        sig = self.app.sign(commit_sign_bytes(self.chain_id, block.height, self.term, block.hash))
        cert = CommitCertificate(block.height, self.term, block.hash, ((self.node_id, sig),))
        block = block.with_certificate(cert)
        vals = tuple(self.app.validators_at(block.height))
        self._append(Entry(self.log.last_index + 1, self.term, encode_entry(vals, block)))
        for p in self._replica_set():  # the configuration may have just changed (§4.1)
            if p not in self._progress:
                self._progress[p] = _Progress(self.log.last_index)
        self._ticks_since_block = 0
        self._bcast_append()
        self._maybe_commit()

    # ------------------------------------------------------------------ replication

    def _bcast_append(self) -> None:
        for p in sorted(self._progress):
            self._send_append(p, probe_empty=False)

    def _send_append(self, to: bytes, probe_empty: bool = True) -> None:
        pr = self._progress[to]
        if pr.state is _PrState.SNAPSHOT or (pr.state is _PrState.PROBE and pr.paused):
            return
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:
            if prev > self.log.last_index:  # cannot happen: next <= last + 1
                pr.next = self.log.last_index + 1
                return
            self._send_snap(to, pr)
            return
        last = self.log.last_index
        ents: list[Entry] = []
        if pr.next <= last:
            hi = min(last, pr.next + self.cfg.max_append_entries - 1)
            ents = self.log.slice(pr.next, hi, self.cfg.max_append_bytes)
        elif not probe_empty or pr.state is _PrState.REPLICATE:
            return
        self._send(
            to,
            Message(
                MsgType.APP,
                self.term,
                index=prev,
                log_term=prev_term,
                commit=self.commit,
                entries=tuple(ents),
            ),
        )
        pr.told = max(pr.told, min(self.commit, prev + len(ents)))
        if pr.state is _PrState.REPLICATE:
            if ents:
                pr.next = ents[-1].index + 1
        else:
            pr.paused = True

    def _send_snap(self, to: bytes, pr: _Progress) -> None:
        sh, shash = self.log.snap_block
        pr.state = _PrState.SNAPSHOT
        pr.pending_snapshot = self.log.snap_index
        pr.snap_tick = self._ticks
        self._send(
            to,
            Message(
                MsgType.SNAP,
                self.term,
                index=self.log.snap_index,
                log_term=self.log.snap_term,
                commit=self.commit,
                snap_height=sh,
                snap_hash=shash,
            ),
        )

    def _maybe_commit(self) -> None:
        voters = self._voters()
        matches = sorted(
            (
                self.log.last_index
                if v == self.node_id
                else (pr.match if (pr := self._progress.get(v)) is not None else 0)
                for v in voters
            ),
            reverse=True,
        )
        q = self._quorum(voters)
        if len(matches) < q:
            return
        n = matches[q - 1]
        # §5.4.2: only an entry of the current term is committed by counting replicas.
        if n > self.commit and self.log.term(n) == self.term:
            self._commit_to(n)

    # ------------------------------------------------------------------ step

    def _step(self, frm: bytes, m: Message) -> None:  # noqa: C901 -- §5.1 term rules, then one branch per message type (etcd's Step)
        t = m.type
        if m.term > self.term:
            if t in (MsgType.PREVOTE, MsgType.VOTE):
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead is not None
                    and self._election_elapsed < self.cfg.election_ticks
                )
                if in_lease:
                    return  # thesis §4.2.3: ignore disruptive candidates while a leader lives
            if t is MsgType.PREVOTE:
                pass  # a pre-vote never changes our term
            elif t is MsgType.PREVOTE_RESP and not m.reject:
                pass  # granted pre-votes carry the future term; counted below
            else:
                lead = frm if t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP) else None
                self._become_follower(m.term, lead)
        elif m.term < self.term:
            if t in (MsgType.APP, MsgType.HEARTBEAT):
                # Tell a stale leader about the newer term so it steps down.
                self._send(frm, Message(MsgType.APP_RESP, self.term))
            elif t is MsgType.PREVOTE:
                self._send(frm, Message(MsgType.PREVOTE_RESP, self.term, reject=True))
            return

        if t in (MsgType.PREVOTE, MsgType.VOTE):
            self._handle_vote_request(frm, m)
            return
        if self.role is Role.LEADER:
            if t is MsgType.APP_RESP:
                self._handle_app_resp(frm, m)
            elif t is MsgType.HEARTBEAT_RESP:
                self._handle_heartbeat_resp(frm)
            return
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            want = MsgType.PREVOTE_RESP if self.role is Role.PRE_CANDIDATE else MsgType.VOTE_RESP
            if t is want:
                if t is MsgType.PREVOTE_RESP and not m.reject and m.term != self.term + 1:
                    return  # stale pre-vote grant
                self._votes.setdefault(frm, not m.reject)
                self._poll(self._voters())
                return
            if t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self._become_follower(self.term, frm)  # a leader exists for this term
            else:
                return
        # follower
        if t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self._election_elapsed = 0
            self.lead = frm
            if t is MsgType.APP:
                self._handle_app(frm, m)
            elif t is MsgType.HEARTBEAT:
                self._commit_to(min(m.commit, self.log.last_index))
                self._send(frm, Message(MsgType.HEARTBEAT_RESP, self.term))
            else:
                self._handle_snap(frm, m)

    def _handle_vote_request(self, frm: bytes, m: Message) -> None:
        up_to_date = m.log_term > self.log.last_term or (
            m.log_term == self.log.last_term and m.index >= self.log.last_index
        )
        if m.type is MsgType.VOTE:
            # §5.2: at most one vote per term (persisted before the grant is sent).
            can = self.vote == frm or (self.vote is None and self.lead is None)
        else:
            can = m.term > self.term
        resp = MsgType.VOTE_RESP if m.type is MsgType.VOTE else MsgType.PREVOTE_RESP
        # §5.4.1: only grant to a candidate whose log is at least as up-to-date as ours.
        if can and up_to_date:
            if m.type is MsgType.VOTE:
                self.vote = frm
                self._hs_dirty = True
                self._election_elapsed = 0
            self._send(frm, Message(resp, m.term))
        else:
            self._send(frm, Message(resp, self.term, reject=True))

    def _handle_app(self, frm: bytes, m: Message) -> None:
        if self._pending_snap is not None:
            if m.index <= self.log.last_index and self.log.term(m.index) == m.log_term:
                self._pending_snap = None  # leader found a match point after all
            else:
                return  # still syncing blocks; the leader waits for our ack
        if m.index < self.commit:
            self._send(frm, Message(MsgType.APP_RESP, self.term, index=self.commit))
            return
        if self.log.term(m.index) == m.log_term:
            last_new = m.index + len(m.entries)
            for k, e in enumerate(m.entries):
                have = self.log.term(e.index)
                if have == e.term:
                    continue
                if have is not None:
                    if e.index <= self.commit:
                        raise InvariantError(
                            f"raft leader conflicts with committed entry {e.index}"
                        )
                    self.log.truncate_from(e.index)  # §5.3: delete the conflicting suffix
                for e2 in m.entries[k:]:
                    self._append(e2)
                break
            self._commit_to(min(m.commit, last_new))
            self._send(frm, Message(MsgType.APP_RESP, self.term, index=last_new))
            return
        # §5.3 consistency check failed: hint the last index whose term may match.
        i = min(m.index, self.log.last_index)
        while i > self.log.snap_index and (self.log.term(i) or 0) > m.log_term:
            i -= 1
        self._send(frm, Message(MsgType.APP_RESP, self.term, index=m.index, reject=True, hint=i))

    def _handle_snap(self, frm: bytes, m: Message) -> None:
        if m.index <= self.commit:
            self._send(frm, Message(MsgType.APP_RESP, self.term, index=self.commit))
            return
        self._pending_snap = m
        if self.applied_height >= m.snap_height:
            self._install(m)
            return
        if self._sync_asked_tick is None or (
            self._ticks - self._sync_asked_tick >= self.cfg.sync_retry_ticks
        ):
            self._ask_sync(frm)

    def _ask_sync(self, peer: bytes) -> None:
        self._sync_asked_tick = self._ticks
        self._sync.append(SyncRequest(peer, self.applied_height + 1))

    def _install(self, m: Message) -> None:
        """Reset the log to the leader's snapshot point once our blocks reach its height."""
        self._pending_snap = None
        self._sync_asked_tick = None
        if m.index <= self.commit:
            return
        old_first = self.log.snap_index + 1
        self.log.reset(m.index, m.log_term, (m.snap_height, m.snap_hash))
        self.commit = m.index
        self._hs_dirty = True
        self._emitted_index = self.applied_index = m.index
        self._truncate = old_first if self._truncate is None else min(self._truncate, old_first)
        self._unstable_from = None
        self._persisted_last = m.index
        if self.lead is not None and self.role is Role.FOLLOWER:
            self._send(self.lead, Message(MsgType.APP_RESP, self.term, index=m.index))

    def _handle_app_resp(self, frm: bytes, m: Message) -> None:
        pr = self._progress.get(frm)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            if m.hint < pr.match and pr.state is not _PrState.SNAPSHOT:
                # The follower lacks entries it once acknowledged: its data dir was replaced
                # (re-seeded empty or restored from an older copy). Raft assumes durable logs,
                # so `match` is no longer a lower bound: probe again from its hint. Lowering
                # match never un-commits (commit only grows) and a merely stale reject costs
                # one extra probe round, after which the follower's ack restores match.
                pr.match = m.hint
                pr.state = _PrState.PROBE
                pr.next = max(m.hint + 1, 1)
            elif pr.state is _PrState.REPLICATE:
                if m.index <= pr.match:
                    return  # stale
                pr.state = _PrState.PROBE
                pr.next = pr.match + 1
            elif pr.state is _PrState.PROBE:
                if m.index != pr.next - 1:
                    return  # stale
                pr.next = max(min(m.index, m.hint + 1), pr.match + 1, 1)
            else:
                return
            pr.paused = False
            self._send_append(frm)
            return
        if m.index > self.log.last_index:
            self._reject(frm, f"raft ack for index {m.index} beyond our log")
            return
        if m.index > pr.match:
            pr.match = m.index
        pr.next = max(pr.next, m.index + 1)
        if pr.state is _PrState.SNAPSHOT:
            if m.index < pr.pending_snapshot:
                return
            pr.state = _PrState.PROBE
        if pr.state is _PrState.PROBE:
            pr.state = _PrState.REPLICATE
        pr.paused = False
        self._maybe_commit()
        if pr.next <= self.log.last_index:
            self._send_append(frm)
        self._tell_commit()

    def _tell_commit(self) -> None:
        """Commit notices (see the docstring): an empty append to each follower in REPLICATE
        that holds entries above the commit index it was last told. Its prev is the
        follower's match, an entry it acknowledged, so the consistency check passes and the
        follower commits min(commit, match): never an index it does not hold (§5.3). A
        follower in PROBE or SNAPSHOT learns the commit with the append that settles it."""
        for p, pr in sorted(self._progress.items()):
            c = min(self.commit, pr.match)
            if c <= pr.told or pr.state is not _PrState.REPLICATE:
                continue
            t = self.log.term(pr.match)
            if t is None:
                continue  # compacted: the next append or heartbeat carries the commit
            self._send(
                p, Message(MsgType.APP, self.term, index=pr.match, log_term=t, commit=self.commit)
            )
            pr.told = c

    def _handle_heartbeat_resp(self, frm: bytes) -> None:
        pr = self._progress.get(frm)
        if pr is None:
            return
        pr.recent_active = True
        if pr.state is _PrState.SNAPSHOT:
            if self._ticks - pr.snap_tick < self.cfg.sync_retry_ticks:
                return
            pr.state = _PrState.PROBE  # re-probe: the follower may have synced or lost it
            pr.next = pr.match + 1
        if pr.match < self.log.last_index:
            # Anything in flight may have been dropped: resend from the match point.
            pr.state = _PrState.PROBE
            pr.next = pr.match + 1
        pr.paused = False
        if pr.state is _PrState.PROBE:
            self._send_append(frm)
