"""The BFT engine: Tendermint consensus (Buchman, Kwon, Milosevic, arXiv:1807.04938,
Algorithm 1) as a pure, deterministic state machine; safe with f Byzantine of n = 3f+1 validators.

Called by the node runtime (runtime/), tests/sim and tests/unit/consensus through the `Engine`
protocol (consensus/api.py). Driver contract:

    eng = BftEngine(node_id, app, random.Random(seed), chain_id=..., applied_height=h,
                    applied_hash=hash_of_block_h)                 # fresh (h = 0: genesis hash)
    eng = BftEngine.restore(node_id, app, rng, chain_id=..., hard_state=hs_or_None,
                            entries=persisted_entries, last_applied_height=h,
                            last_block_hash=hash_of_block_h)       # after a restart
    loop:  eng.tick() every tick; eng.step(Envelope) per peer message;
           while not (rd := eng.ready()).empty():
               append rd.entries, store rd.hard_state if not None, fsync  # the vote is durable ...
               send rd.messages                                           # ... before it is sent
               apply rd.committed (height order; skip heights already applied)
               log + count rd.rejections (offender, reason); start block sync per rd.sync
               eng.advance(rd)          # starts the next height: loop on ready() again
    block sync (blocks verified by their certificates, applied up to h): eng.synced(h, hash)

Entries: BFT uses `Ready.entries` only to make durable what it may have to re-send after a
restart: the block it proposed, its valid value and the 2f+1 prevotes (polka) justifying it.
Entry.term is the height, Entry.index a counter, Entry.data opaque to the driver. Entries whose
term is <= status().height (already committed) are garbage and may be deleted at any time.
`truncate_from` is never set.

Hard state = (height, round, step, locked/valid round+hash, and what we signed: our proposal,
prevote and precommit round+hash at that height). It is emitted in the Ready that carries the
vote, so a restarted node never signs two different values for one (height, round, kind); it
re-sends the vote it already signed instead (Ed25519 signatures are deterministic). The height
in the hard state only moves on after the decided block was handed out and `advance` was called,
so a crash between persist and apply re-runs that height (with the same signed votes) and peers
answer with a DECISION.

Protocol (line numbers of Algorithm 1): proposer(h, r) = sorted(validators_at(h))[(h+r) % n]
(L14); PROPOSAL -> PREVOTE (L22-33, with locking: prevote v only if not locked or locked on v, or
a polka for v in round vr >= locked round), polka -> lock + PRECOMMIT (L36-43), nil polka ->
PRECOMMIT nil (L44), 2f+1 PRECOMMIT for v -> decide (L49; certificate = those signatures over
`commit_sign_bytes`), f+1 messages of a higher round -> skip to it (L55), timeouts in ticks
growing with the round (L57-67); 2f+1 nil precommits -> the next round at once (no value can
be decided in that round any more, so L47's timeout could only lead there). An empty block is proposed after `empty_block_ticks` without
pending txs (immediately when there are txs). A non-proposer's round-0 propose timeout includes
that wait while its own mempool is empty (txs are gossiped, so mempools fill together) and
shrinks to timeout_propose once txs arrive; `empty_block_ticks` = "never" is therefore safe.

Untrusted input (rule 2): a message is processed, stashed (next height, bounded per sender) or
dropped with a `Rejection` naming the offender: undecodable bytes, non-validators, proposals
from the wrong proposer, an equivocating proposer (two proposals for one height/round), double
votes (two signed votes of one kind for one height/round), invalid signatures, invalid blocks,
bad certificates. Votes for blocks we have not seen are counted (the vote sets are bounded by
validators x rounds within `max_round_ahead`); the block is needed only to lock or decide.

Catch-up: a message for a height beyond ours + 1 (or a DECISION for one) makes us emit
`SyncRequest(sender, our_height)` (rate-limited); a message from a peer one height behind is
answered with our last DECISION. We re-send our own current-round messages every
`rebroadcast_ticks` so a lossy network cannot stall a round, and at once to a validator first
heard from late in a height (`_greet`: it restarted or block-synced up to here).

Validator set: `app.validators_at(h)` decides height h; a node not in it is an observer: it
follows and decides from certificates but never proposes or votes (a removed validator stops).
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
from .codec import NIL, Decision, Kind, Proposal, Vote


class Random(Protocol):
    """The slice of `random.Random` the engine uses. Injected (seeded) by the driver; declared
    structurally so consensus/ never imports `random` (import-linter counts even
    TYPE_CHECKING imports)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


@dataclass(frozen=True, slots=True)
class BftConfig:
    timeout_propose: int = 30  # ticks; + round * timeout_delta
    timeout_prevote: int = 10
    timeout_precommit: int = 10
    timeout_delta: int = 5
    empty_block_ticks: int = 100  # propose an empty block after this many ticks without txs
    rebroadcast_ticks: int = 20
    sync_retry_ticks: int = 20
    max_round_ahead: int = 64  # ignore messages for rounds further ahead (bounded state)
    max_stash_per_sender: int = 64  # next-height messages kept per sender


class Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


_HS = struct.Struct(">BQIBi32si32si32sii32si32sQ")
_HS_VERSION = 1


@dataclass(frozen=True, slots=True)
class HardState:
    """Durable record of the current height: where we are and exactly what we signed."""

    height: int
    round: int
    step: Step
    locked_round: int
    locked_hash: bytes
    valid_round: int
    valid_hash: bytes
    proposal_round: int  # last round we proposed in at `height` (-1 none)
    proposal_hash: bytes
    proposal_vr: int
    prevote_round: int  # last round we prevoted in at `height` (-1 none)
    prevote_hash: bytes
    precommit_round: int
    precommit_hash: bytes
    next_entry: int

    def encode(self) -> bytes:
        return _HS.pack(
            _HS_VERSION,
            self.height,
            self.round,
            int(self.step),
            self.locked_round,
            self.locked_hash,
            self.valid_round,
            self.valid_hash,
            self.proposal_round,
            self.proposal_hash,
            self.proposal_vr,
            self.prevote_round,
            self.prevote_hash,
            self.precommit_round,
            self.precommit_hash,
            self.next_entry,
        )

    @classmethod
    def decode(cls, data: bytes) -> HardState:
        if len(data) != _HS.size:
            raise DecodeError("bad bft hard state length")
        f = _HS.unpack(data)
        if f[0] != _HS_VERSION or f[3] > 2:
            raise DecodeError("bad bft hard state")
        return cls(f[1], f[2], Step(f[3]), *f[4:])


def _read_entry(data: bytes, blocks: dict[bytes, Block], pol: list[Vote]) -> None:
    """Decode one persisted BFT entry: b"B" + block, or b"P" + encoded prevotes (a polka)."""
    try:
        if data[:1] == b"B":
            b = Block.decode(data[1:])
            blocks[b.hash] = b
        elif data[:1] == b"P":
            n = codec.VOTE_LEN
            for i in range(1, len(data), n):
                v = codec.decode(data[i : i + n])
                if isinstance(v, Vote):
                    pol.append(v)
        else:
            raise DecodeError("unknown bft entry tag")
    except DecodeError:
        raise InvariantError("corrupt bft entry") from None


REBROADCAST_ROUNDS = 8  # how many recent rounds of our own votes a rebroadcast re-sends
MAX_CONFLICTS = 2  # conflicting votes kept per validator per (round, kind): bounded memory


class _VoteSet:
    """Votes of one kind for one (height, round).

    `votes` holds each validator's first vote: the "2f+1 of any kind" tallies (L34, L47) count
    distinct validators. `by_block` tallies per block hash and also keeps an equivocator's
    conflicting vote (reported, at most MAX_CONFLICTS of them): like Tendermint's votesByBlock,
    a polka or commit for one specific block may count it. That is safe because any 2f+1
    signers include f+1 honest validators, who never sign two values; it is needed for
    liveness, as honest nodes may have received different halves of an equivocation.
    """

    __slots__ = ("by_block", "conflicts", "counts", "votes")

    def __init__(self) -> None:
        self.votes: dict[bytes, Vote] = {}
        self.by_block: dict[bytes, dict[bytes, Vote]] = {}
        self.counts: dict[bytes, int] = {}
        self.conflicts: dict[bytes, int] = {}

    def has(self, v: Vote) -> bool:
        b = self.by_block.get(v.block_hash)
        return b is not None and v.validator in b

    def add(self, v: Vote) -> int:
        """Add a verified vote; returns the tally of its block hash."""
        if v.validator in self.votes:
            self.conflicts[v.validator] = self.conflicts.get(v.validator, 0) + 1
        else:
            self.votes[v.validator] = v
        self.by_block.setdefault(v.block_hash, {})[v.validator] = v
        c = self.counts.get(v.block_hash, 0) + 1
        self.counts[v.block_hash] = c
        return c


class BftEngine:
    """See the module docstring for the driver contract."""

    _timers: list[tuple[int, int, int, int]]  # (deadline tick, Step, height, round)
    _last_rebroadcast: int
    _waiting_for_txs: bool  # round 0: non-proposer giving an idle proposer empty_block_ticks

    def __init__(
        self,
        node_id: bytes,
        app: Application,
        rng: Random,
        *,
        chain_id: str,
        applied_height: int = 0,
        applied_hash: bytes = ZERO_HASH,
        config: BftConfig | None = None,
        _start: bool = True,
    ) -> None:
        self.node_id = node_id
        self.app = app
        self.rng = rng  # unused by the protocol today (deterministic); kept for the contract
        self.chain_id = chain_id
        self.cfg = config or BftConfig()
        self._ticks = 0
        self._msgs: list[Envelope] = []
        self._rejections: list[Rejection] = []
        self._sync: list[SyncRequest] = []
        self._entries: list[Entry] = []
        self._committed: list[Block] = []
        self._hs_dirty = False
        self._frozen_hs: bytes | None = None  # hard state of a decided, not yet applied height
        self._next_entry = 1
        self._compact_reported = 1  # compact_below last emitted in a Ready
        self._last_decision: Block | None = None
        self._decision_sent: dict[bytes, int] = {}  # peer -> tick we last sent it a DECISION
        self._sync_asked = -(10**9)
        self._stash: dict[bytes, list[codec.Message]] = {}
        self._raw: bytes | None = None  # payload of the proposal being stepped (see _remember)
        self._awaiting_apply = 0  # height decided but not yet applied (0 = none)
        self.last_hash = applied_hash
        self._new_height(applied_height + 1)
        if _start:
            self._enter_height()

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
        config: BftConfig | None = None,
    ) -> BftEngine:
        """Rebuild after a restart from the persisted hard state and entries and the block
        store tip. Resumes the current height with the votes already signed."""
        eng = cls(
            node_id,
            app,
            rng,
            chain_id=chain_id,
            applied_height=last_applied_height,
            applied_hash=last_block_hash,
            config=config,
            _start=False,
        )
        if entries:
            eng._next_entry = max(e.index for e in entries) + 1
        if hard_state is None:
            eng._enter_height()
            return eng
        try:
            hs = HardState.decode(hard_state)
        except DecodeError as err:
            raise InvariantError(f"corrupt bft hard state: {err}") from None
        eng._next_entry = max(eng._next_entry, hs.next_entry)
        if hs.height > last_applied_height + 1:
            raise InvariantError(
                f"bft hard state at height {hs.height} but blocks only up to {last_applied_height}"
            )
        if hs.height <= last_applied_height:
            eng._enter_height()  # that height is decided and applied: start the next one fresh
            return eng
        blocks: dict[bytes, Block] = {}
        pol: list[Vote] = []
        for e in entries:
            if e.term == hs.height:
                _read_entry(e.data, blocks, pol)
        eng.round, eng.phase = hs.round, hs.step
        eng.locked_round, eng.locked_hash = hs.locked_round, hs.locked_hash
        eng.valid_block = blocks.get(hs.valid_hash) if hs.valid_round >= 0 else None
        eng.valid_round = hs.valid_round if eng.valid_block is not None else -1
        eng._load_validators()
        eng._proposal_vr = hs.proposal_vr
        eng._signed = {
            Kind.PROPOSAL: (hs.proposal_round, hs.proposal_hash),
            Kind.PREVOTE: (hs.prevote_round, hs.prevote_hash),
            Kind.PRECOMMIT: (hs.precommit_round, hs.precommit_hash),
        }
        for b in blocks.values():
            eng._blocks[b.hash] = b
        eng._persisted_blocks = set(blocks)
        for v in pol:
            if v.height == hs.height and v.validator in eng._vset:
                vs = eng._prevotes.setdefault(v.round, _VoteSet())
                if not vs.has(v):
                    eng._add_vote(v)
        eng._hs_dirty = True
        eng._start_round(hs.round, restoring=True)
        eng._progress()
        return eng

    # ------------------------------------------------------------------ Engine protocol

    def status(self) -> Status:
        role = "validator" if self._is_validator else "observer"
        return Status(role, self._proposer(self.round), self.height - 1, self.round)

    def tick(self) -> None:
        self._ticks += 1
        if self._awaiting_apply:
            return
        due = [t for t in self._timers if t[0] <= self._ticks]
        if due:
            self._timers = [t for t in self._timers if t[0] > self._ticks]
            for _, kind, h, r in sorted(due):
                self._on_timeout(kind, h, r)
        if self.phase is Step.PROPOSE:
            if self._waiting_for_txs and self.app.has_pending():
                # Txs arrived: the proposer should propose now; time it out normally from here.
                self._waiting_for_txs = False
                deadline = self._ticks + self.cfg.timeout_propose
                self._timers = [
                    (min(t[0], deadline), t[1], t[2], t[3]) if t[1] == Step.PROPOSE else t
                    for t in self._timers
                ]
            self._try_propose()
        if self._ticks - self._last_rebroadcast >= self.cfg.rebroadcast_ticks:
            self._rebroadcast()
        self._progress()

    def step(self, env: Envelope) -> None:
        try:
            m = codec.decode(env.payload)
        except DecodeError as e:
            self._reject(env.sender, f"undecodable bft message: {e}")
            return
        # A decoded proposal's block bytes are exactly m.block.encode(): offer them for reuse.
        self._raw = env.payload if isinstance(m, Proposal) else None
        self._handle(env.sender, m)
        self._raw = None

    def ready(self) -> Ready:
        frozen = self._frozen_hs is not None
        if self._frozen_hs is not None:
            hs: bytes | None = self._frozen_hs
            self._frozen_hs = None
        else:
            hs = self._hard_state().encode() if self._hs_dirty else None
            self._hs_dirty = False
        below: int | None = None
        # entries of decided heights are garbage once this height's hard state is persisted
        if hs is not None and not frozen and self._height_first_entry > self._compact_reported:
            below = self._compact_reported = self._height_first_entry
        rd = Ready(
            compact_below=below,
            hard_state=hs,
            entries=tuple(self._entries),
            messages=tuple(self._msgs),
            committed=tuple(self._committed),
            rejections=tuple(self._rejections),
            sync=tuple(self._sync),
        )
        self._entries.clear()
        self._msgs.clear()
        self._committed.clear()
        self._rejections.clear()
        self._sync.clear()
        return rd

    def advance(self, rd: Ready) -> None:
        if self._awaiting_apply and any(b.height >= self._awaiting_apply for b in rd.committed):
            self._awaiting_apply = 0
            self._enter_height()

    def synced(self, height: int, block_hash: bytes) -> None:
        if height < self.height:
            return
        self._awaiting_apply = 0
        self._frozen_hs = None
        self.last_hash = block_hash
        self._new_height(height + 1)
        self._enter_height()

    # ------------------------------------------------------------------ height / round

    def _new_height(self, height: int) -> None:
        """Reset per-height state (L11-L21 initial values)."""
        self.height = height
        self._height_first_entry = self._next_entry  # entries below are of decided heights
        self.round = 0
        self.phase = Step.PROPOSE
        self.locked_round = -1
        self.locked_hash = NIL
        self.valid_round = -1
        self.valid_block: Block | None = None
        self._proposals: dict[int, Proposal] = {}
        self._alt_blocks: dict[int, Block] = {}  # an equivocating proposer's second block
        self._blocks: dict[bytes, Block] = {}
        self._valid: dict[bytes, bool] = {}
        self._encoded: dict[bytes, bytes] = {}  # block hash -> Block.encode() bytes
        self._prevotes: dict[int, _VoteSet] = {}
        self._precommits: dict[int, _VoteSet] = {}
        self._commit_candidates: set[tuple[int, bytes]] = set()
        self._max_round: dict[bytes, int] = {}  # highest round seen from each validator
        self._heard: set[bytes] = set()  # peers that sent us a message of this height (_greet)
        self._signed: dict[Kind, tuple[int, bytes]] = {
            k: (-1, NIL) for k in (Kind.PROPOSAL, Kind.PREVOTE, Kind.PRECOMMIT)
        }
        self._persisted_blocks: set[bytes] = set()
        self._timers = []
        self._height_start = self._ticks
        self._last_rebroadcast = self._ticks
        self._fired: set[tuple[str, int]] = set()  # "first time" rules (L34, L36, L47)
        self._proposal_vr = -1
        self._waiting_for_txs = False

    def _load_validators(self) -> None:
        """validators_at(height) is known once height-1 is applied, so this runs only then."""
        self._validators: tuple[bytes, ...] = tuple(sorted(self.app.validators_at(self.height)))
        self._vset = frozenset(self._validators)
        n = len(self._validators)
        self._f = (n - 1) // 3
        self._q = n - self._f  # 2f+1 when n = 3f+1 (the smallest quorum with q > 2n/3)
        self._is_validator = self.node_id in self._vset
        self._peers = tuple(v for v in self._validators if v != self.node_id)

    def _enter_height(self) -> None:
        """Start round 0 of the (new) current height and replay stashed messages."""
        self._load_validators()
        self._hs_dirty = True
        self._start_round(0)
        stash, self._stash = self._stash, {}
        for sender, msgs in sorted(stash.items()):
            for m in msgs:
                if self._awaiting_apply:
                    break
                self._handle(sender, m)
        self._progress()

    def _proposer(self, rnd: int) -> bytes | None:
        if not self._validators:
            return None
        return self._validators[(self.height + rnd) % len(self._validators)]

    def _start_round(self, rnd: int, restoring: bool = False) -> None:
        """L11 StartRound."""
        if not restoring:
            self.round = rnd
            self.phase = Step.PROPOSE
            self._hs_dirty = True
        self._timers = [t for t in self._timers if t[3] >= rnd]
        tp = self.cfg.timeout_propose + rnd * self.cfg.timeout_delta
        self._waiting_for_txs = False
        if self.phase is Step.PROPOSE:
            wait = tp
            if rnd == 0 and not self.app.has_pending():
                # The proposer may be waiting for txs (empty blocks only every
                # empty_block_ticks): do not time it out before then (cf. tick()).
                wait += self.cfg.empty_block_ticks
                self._waiting_for_txs = True
            self._schedule(wait, Step.PROPOSE, rnd)
        elif restoring:
            # We do not know which timeouts were pending: arm both (L57-L67 are idempotent).
            self._schedule(
                self.cfg.timeout_prevote + rnd * self.cfg.timeout_delta, Step.PREVOTE, rnd
            )
            self._schedule(tp, Step.PRECOMMIT, rnd)
        if restoring:
            self._rebroadcast()
        elif rnd > 0:
            self._send_pol()
        self._try_propose()

    def _schedule(self, ticks: int, kind: Step, rnd: int) -> None:
        self._timers.append((self._ticks + ticks, int(kind), self.height, rnd))

    def _on_timeout(self, kind: int, h: int, r: int) -> None:
        if h != self.height or r != self.round:
            return
        if kind == Step.PROPOSE and self.phase is Step.PROPOSE:  # L57
            self._vote(Kind.PREVOTE, NIL)
            self.phase = Step.PREVOTE
        elif kind == Step.PREVOTE and self.phase is Step.PREVOTE:  # L61
            self._vote(Kind.PRECOMMIT, NIL)
            self.phase = Step.PRECOMMIT
        elif kind == Step.PRECOMMIT:  # L65
            self._start_round(r + 1)

    # ------------------------------------------------------------------ our own messages

    def _try_propose(self) -> None:
        """L14-L21: as proposer, propose validValue or a new block (once per round)."""
        if (
            self._awaiting_apply
            or self.phase is not Step.PROPOSE
            or not self._is_validator
            or self._proposer(self.round) != self.node_id
            or self.round in self._proposals
        ):
            return
        sr, sh = self._signed[Kind.PROPOSAL]
        if sr == self.round:
            block = self._blocks.get(sh)  # restarted after proposing: re-send the same block
            if block is None:
                return
            vr = self._proposal_vr
        elif sr > self.round:
            return
        elif self.valid_block is not None:
            block, vr = self.valid_block, self.valid_round
        else:
            waited = self._ticks - self._height_start >= self.cfg.empty_block_ticks
            allow_empty = self.round > 0 or waited
            if not allow_empty and not self.app.has_pending():
                return
            built = self.app.build_block(self.height, self.last_hash, allow_empty)
            if built is None:
                return
            if built.height != self.height or built.header.prev_hash != self.last_hash:
                raise InvariantError(
                    "app.build_block returned a block that does not extend the tip"
                )
            block, vr = built, -1
        self._persist_block(block)
        if sr != self.round:
            self._signed[Kind.PROPOSAL] = (self.round, block.hash)
            self._proposal_vr = vr
            self._hs_dirty = True
        sig = self.app.sign(
            codec.proposal_sign_bytes(self.chain_id, self.height, self.round, vr, block.hash)
        )
        p = Proposal(self.height, self.round, vr, self.node_id, block, sig)
        self._broadcast(p)
        self._proposals[self.round] = p
        self._blocks[block.hash] = block

    def _persist_block(self, block: Block) -> None:
        if block.hash in self._persisted_blocks:
            return
        self._persisted_blocks.add(block.hash)
        self._entries.append(Entry(self._next_entry, self.height, b"B" + self._bytes_of(block)))
        self._next_entry += 1
        self._hs_dirty = True

    def _vote(self, kind: Kind, block_hash: bytes) -> None:
        """Sign and broadcast our vote for the current round, recording it durably first.
        Never signs two different values for one (height, round, kind)."""
        if not self._is_validator:
            return
        sr, sh = self._signed[kind]
        if sr > self.round:
            return
        if sr == self.round:
            block_hash = sh  # already signed in this round (restart): re-send the same vote
        else:
            self._signed[kind] = (self.round, block_hash)
            self._hs_dirty = True
        data = codec.vote_sign_bytes(self.chain_id, kind, self.height, self.round, block_hash)
        v = Vote(kind, self.height, self.round, self.node_id, block_hash, self.app.sign(data))
        self._broadcast(v)
        self._add_vote(v)

    def _send_pol(self, to: bytes | None = None) -> None:
        """Re-send the 2f+1 PREVOTEs of our valid round (its proof of lock), to every peer or
        to `to`. Tendermint assumes gossip eventually delivers every vote; peers that lost that
        round's prevotes (dropped, or a restart) need them for L28 to accept a re-proposal of
        the locked value."""
        vb = self.valid_block
        pv = self._prevotes.get(self.valid_round)
        if vb is None or pv is None or not self._is_validator:
            return
        for v in pv.by_block.get(vb.hash, {}).values():
            self._broadcast(v, to)

    def _bytes_of(self, block: Block) -> bytes:
        """`block.encode()`, computed at most once per block and height (rule 4)."""
        b = self._encoded.get(block.hash)
        if b is None:
            b = self._encoded[block.hash] = block.encode()
        return b

    def _broadcast(self, m: codec.Message, to: bytes | None = None) -> None:
        """Send `m` to every peer validator, or to `to` only."""
        body = self._bytes_of(m.block) if isinstance(m, Proposal) else None
        payload = codec.encode(m, body)
        for p in self._peers if to is None else (to,):
            self._msgs.append(Envelope(self.node_id, p, payload))

    def _rebroadcast(self, to: bytes | None = None) -> None:
        """Re-send what we signed at this height (lossy links must not stall a round); to one
        peer (`to`, see _greet) without moving the periodic rebroadcast."""
        if to is None:
            self._last_rebroadcast = self._ticks
        if not self._is_validator:
            return
        p = self._proposals.get(self.round)
        sr, sh = self._signed[Kind.PROPOSAL]
        if p is None and sr == self.round and (b := self._blocks.get(sh)) is not None:
            data = codec.proposal_sign_bytes(
                self.chain_id, self.height, sr, self._proposal_vr, b.hash
            )
            p = Proposal(self.height, sr, self._proposal_vr, self.node_id, b, self.app.sign(data))
            self._proposals[sr] = p
        if p is not None and p.proposer == self.node_id:
            self._broadcast(p, to)
        for kind in (Kind.PREVOTE, Kind.PRECOMMIT):
            sr, sh = self._signed[kind]
            votes = self._prevotes if kind is Kind.PREVOTE else self._precommits
            if sr == self.round and self.node_id not in votes.get(sr, _VoteSet()).votes:
                # Restarted after signing: re-create the (deterministic) signature.
                data = codec.vote_sign_bytes(self.chain_id, kind, self.height, sr, sh)
                self._add_vote(Vote(kind, self.height, sr, self.node_id, sh, self.app.sign(data)))
            # Our votes of recent rounds too: Tendermint's liveness assumes every vote of a
            # correct process eventually reaches every correct process; peers in older rounds
            # need them to reach the 2f+1 that arms their timeouts (lines 34, 47).
            for r in range(max(0, self.round - REBROADCAST_ROUNDS + 1), self.round + 1):
                vs = votes.get(r)
                own = vs.votes.get(self.node_id) if vs is not None else None
                if own is not None:
                    self._broadcast(own, to)

    # ------------------------------------------------------------------ receiving

    def _reject(self, offender: bytes, reason: str) -> None:
        self._rejections.append(Rejection(offender, reason))

    def _handle(self, sender: bytes, m: codec.Message) -> None:
        if isinstance(m, Decision):
            self._on_decision(sender, m)
            return
        h = m.height
        if h != self.height or self._awaiting_apply:
            self._other_height(sender, m)
            return
        signer = m.validator if isinstance(m, Vote) else m.proposer
        if signer not in self._vset:
            self._reject(sender, f"bft message signed by non-validator {signer.hex()[:16]}")
            return
        if m.round > self.round + self.cfg.max_round_ahead:
            return  # bounded state: far-future rounds are dropped (f+1 of them come back)
        self._greet(sender)
        if isinstance(m, Vote):
            self._on_vote(sender, m)
        else:
            self._on_proposal(sender, m)
        self._progress()

    def _other_height(self, sender: bytes, m: codec.Message) -> None:
        h = m.height
        next_h = self.height if self._awaiting_apply else self.height + 1
        if h == next_h or (self._awaiting_apply and h == self.height):
            stash = self._stash.setdefault(sender, [])
            if len(stash) < self.cfg.max_stash_per_sender:
                stash.append(m)
            if not self._awaiting_apply and (
                self._ticks - self._height_start >= self.cfg.sync_retry_ticks
            ):
                # The sender moved on long ago and we are still here (we missed the precommits
                # and it may have no DECISION to give us): fetch the block by sync.
                self._ask_sync(sender)
            return
        if h > next_h:
            self._ask_sync(sender)
            return
        if h == self.height - 1 and self._last_decision is not None:
            # The sender is one height behind: hand it the decision (rate-limited per peer).
            last = self._decision_sent.get(sender)
            if last is None or self._ticks - last >= self.cfg.rebroadcast_ticks // 2:
                self._decision_sent[sender] = self._ticks
                payload = codec.encode(Decision(self._last_decision))
                self._msgs.append(Envelope(self.node_id, sender, payload))

    def _greet(self, sender: bytes) -> None:
        """A peer first heard from at this height long after the height began (it restarted,
        block-synced up to here, or its link just came back) missed what we broadcast: send it
        our current-round messages now instead of at the next rebroadcast (up to
        rebroadcast_ticks later: that wait was part of every round a rejoining validator had
        to catch up with). Once per peer and height; peers heard from early get nothing extra."""
        if sender in self._heard:
            return
        self._heard.add(sender)
        late = self._ticks - self._height_start >= max(1, self.cfg.rebroadcast_ticks // 2)
        if late and sender in self._peers:
            self._rebroadcast(to=sender)
            if self.round > 0:
                self._send_pol(to=sender)  # as at a round start: it may need it for L28

    def _ask_sync(self, peer: bytes) -> None:
        if self._ticks - self._sync_asked >= self.cfg.sync_retry_ticks:
            self._sync_asked = self._ticks
            self._sync.append(SyncRequest(peer, self.height))

    def _on_proposal(self, sender: bytes, p: Proposal) -> None:
        if p.proposer != self._proposer(p.round):
            self._reject(sender, f"proposal for {p.height}/{p.round} from non-proposer")
            return
        known = self._proposals.get(p.round)
        if (
            known is not None
            and known.block.hash == p.block.hash
            and known.valid_round == p.valid_round
        ):
            return  # duplicate
        data = codec.proposal_sign_bytes(
            self.chain_id, p.height, p.round, p.valid_round, p.block.hash
        )
        if not self.app.verify(p.proposer, data, p.signature):
            self._reject(sender, f"invalid proposal signature for {p.height}/{p.round}")
            return
        if known is not None:
            self._reject(
                p.proposer, f"equivocating proposer: two proposals for {p.height}/{p.round}"
            )
            # Keep its block aside: if 2f+1 precommit it we can still decide (L49).
            self._alt_blocks.setdefault(p.round, p.block)
            self._remember(p)
            return
        self._proposals[p.round] = p
        self._remember(p)
        self._note_round(p.round, p.proposer)

    def _remember(self, p: Proposal) -> None:
        """Keep a verified proposal's block (first one per hash) and, if it arrived in this
        step's payload, its encoding."""
        h = p.block.hash
        if h not in self._blocks:
            self._blocks[h] = p.block
            raw = self._raw
            if raw is not None:
                self._encoded[h] = raw[codec.PROPOSAL_HEAD_LEN :]

    def _on_vote(self, sender: bytes, v: Vote) -> None:
        sets = self._prevotes if v.kind is Kind.PREVOTE else self._precommits
        vs = sets.get(v.round)
        prev = vs.votes.get(v.validator) if vs is not None else None
        if vs is not None and vs.has(v):
            return  # duplicate (no second signature check)
        if (
            prev is not None
            and vs is not None
            and vs.conflicts.get(v.validator, 0) >= MAX_CONFLICTS
        ):
            # Unverified yet, so it must not frame the validator: blame the sender.
            self._reject(sender, f"dropped: too many conflicting votes at {v.height}/{v.round}")
            return
        data = codec.vote_sign_bytes(self.chain_id, v.kind, v.height, v.round, v.block_hash)
        if not self.app.verify(v.validator, data, v.signature):
            self._reject(sender, f"invalid {v.kind.name.lower()} signature at {v.height}/{v.round}")
            return
        if prev is not None:
            self._reject(
                v.validator,
                f"double {v.kind.name.lower()} at {v.height}/{v.round}: "
                f"{prev.block_hash.hex()[:8]} and {v.block_hash.hex()[:8]}",
            )
            # Not counted in the round's distinct tally; kept for its block (see _VoteSet).
        self._add_vote(v)
        self._note_round(v.round, v.validator)

    def _add_vote(self, v: Vote) -> None:
        sets = self._prevotes if v.kind is Kind.PREVOTE else self._precommits
        vs = sets.get(v.round)
        if vs is None:
            vs = sets[v.round] = _VoteSet()
        c = vs.add(v)
        if v.kind is Kind.PRECOMMIT and c == self._q and v.block_hash != NIL:
            self._commit_candidates.add((v.round, v.block_hash))

    def _note_round(self, rnd: int, signer: bytes) -> None:
        """Lines 55-56: f+1 validators in higher rounds make us skip ahead. Generalised from
        "f+1 messages of one round r'" to "the (f+1)-th highest round among validators ahead of
        us": f+1 signers include a correct process at that round or beyond, so the skip is
        just as justified, and it cannot deadlock when laggards are spread over rounds."""
        if rnd <= self.round or self._max_round.get(signer, -1) >= rnd:
            return
        self._max_round[signer] = rnd
        ahead = sorted((r for r in self._max_round.values() if r > self.round), reverse=True)
        if len(ahead) >= self._f + 1:
            self._start_round(ahead[self._f])

    def _on_decision(self, sender: bytes, d: Decision) -> None:
        h = d.height
        if h < self.height or (self._awaiting_apply and h == self.height - 1):
            return
        if h > self.height:
            self._ask_sync(sender)
            return
        cert = d.block.certificate
        if cert is None:  # pragma: no cover - the codec refuses these
            return
        reason = self._check_certificate(d.block, cert)
        if reason is not None:
            self._reject(sender, f"bad decision for height {h}: {reason}")
            return
        if self._awaiting_apply:
            return
        self._decide(d.block, cert)

    def _check_certificate(self, block: Block, cert: CommitCertificate) -> str | None:
        if cert.height != block.height or cert.block_hash != block.hash:
            return "certificate does not match the block"
        if block.header.prev_hash != self.last_hash:
            return "block does not extend our chain"
        seen: set[bytes] = set()
        data = commit_sign_bytes(self.chain_id, cert.height, cert.round, cert.block_hash)
        for signer, sig in cert.signatures:
            if signer not in self._vset or signer in seen:
                return "certificate signer is not a distinct validator"
            if not self.app.verify(signer, data, sig):
                return f"invalid certificate signature by {signer.hex()[:16]}"
            seen.add(signer)
        if len(seen) < self._q:
            return f"certificate has {len(seen)} signatures, needs {self._q}"
        return None

    # ------------------------------------------------------------------ the rules

    def _is_valid(self, block: Block) -> bool:
        ok = self._valid.get(block.hash)
        if ok is None:
            reason = self.app.validate_block(block)
            ok = reason is None
            self._valid[block.hash] = ok
            if not ok:
                self._reject(block.header.proposer, f"invalid block at {block.height}: {reason}")
        return ok

    def _progress(self) -> None:
        """Apply the upon-rules of Algorithm 1 until none fires (each fires at most once per
        round and step, so this terminates)."""
        while not self._awaiting_apply and self._step_rules():
            pass

    def _step_rules(self) -> bool:
        # L49: 2f+1 PRECOMMIT(h, r', id(v)) for a known, valid v -> decide (any round).
        for rnd, bh in sorted(self._commit_candidates):
            block = self._blocks.get(bh)
            if block is not None and self._is_valid(block):
                votes = self._precommits[rnd].by_block[bh].values()
                sigs = tuple(sorted((v.validator, v.signature) for v in votes))
                self._decide(block, CommitCertificate(self.height, rnd, bh, sigs))
                return False
        r = self.round
        p = self._proposals.get(r)
        pv = self._prevotes.get(r)
        if self.phase is Step.PROPOSE and p is not None:
            v = p.block
            if p.valid_round == -1:  # L22
                ok = self._is_valid(v) and (self.locked_round == -1 or self.locked_hash == v.hash)
                self._vote(Kind.PREVOTE, v.hash if ok else NIL)
                self.phase = Step.PREVOTE
                return True
            pvr = self._prevotes.get(p.valid_round)
            if pvr is not None and pvr.counts.get(v.hash, 0) >= self._q:  # L28
                ok = self._is_valid(v) and (
                    self.locked_round <= p.valid_round or self.locked_hash == v.hash
                )
                self._vote(Kind.PREVOTE, v.hash if ok else NIL)
                self.phase = Step.PREVOTE
                return True
        if pv is not None:
            if (
                self.phase is Step.PREVOTE
                and len(pv.votes) >= self._q
                and ("L34", r) not in self._fired
            ):
                self._fired.add(("L34", r))
                self._schedule(
                    self.cfg.timeout_prevote + r * self.cfg.timeout_delta, Step.PREVOTE, r
                )
            if (
                self.phase >= Step.PREVOTE
                and p is not None
                and ("L36", r) not in self._fired
                and pv.counts.get(p.block.hash, 0) >= self._q
                and self._is_valid(p.block)
            ):
                self._fired.add(("L36", r))
                v = p.block
                if self.phase is Step.PREVOTE:
                    self.locked_round, self.locked_hash = r, v.hash
                    self._vote(Kind.PRECOMMIT, v.hash)
                    self.phase = Step.PRECOMMIT
                self.valid_block, self.valid_round = v, r
                self._persist_block(v)
                # Keep the polka that justifies it, to re-send after a restart (see _send_pol).
                pol = list(pv.by_block[v.hash].values())
                data = b"P" + b"".join(codec.encode(x) for x in pol)
                self._entries.append(Entry(self._next_entry, self.height, data))
                self._next_entry += 1
                self._hs_dirty = True
                return True
            if self.phase is Step.PREVOTE and pv.counts.get(NIL, 0) >= self._q:  # L44
                self._vote(Kind.PRECOMMIT, NIL)
                self.phase = Step.PRECOMMIT
                return True
        pc = self._precommits.get(r)
        if pc is not None and pc.counts.get(NIL, 0) >= self._q:
            # 2f+1 distinct validators precommitted nil in round r: no value can gather 2f+1
            # precommits in r any more (that takes f+1 validators signing twice, more than f),
            # so line 47's timeout could only end in StartRound(r+1) (L65): start it now
            # (Tendermint's Go implementation does the same on a nil +2/3). Timing never
            # touches safety; this saves timeout_precommit + r * timeout_delta per failed round.
            self._start_round(r + 1)
            return True
        if pc is not None and len(pc.votes) >= self._q and ("L47", r) not in self._fired:
            self._fired.add(("L47", r))
            self._schedule(
                self.cfg.timeout_precommit + r * self.cfg.timeout_delta, Step.PRECOMMIT, r
            )
        return False

    def _decide(self, block: Block, cert: CommitCertificate) -> None:
        """L49-L54: commit `block` at the current height; the next height starts once the
        driver has applied it (advance)."""
        decided = block.with_certificate(cert)
        if self._hs_dirty:  # votes signed at this height must still be persisted (before send)
            self._frozen_hs = self._hard_state().encode()
            self._hs_dirty = False
        self._committed.append(decided)
        self._last_decision = decided
        self.last_hash = block.hash
        self._awaiting_apply = self.height
        self._new_height(self.height + 1)

    # ------------------------------------------------------------------ durability

    def _hard_state(self) -> HardState:
        pr, ph = self._signed[Kind.PROPOSAL]
        vr, vh = self._signed[Kind.PREVOTE]
        cr, ch = self._signed[Kind.PRECOMMIT]
        if self._awaiting_apply:
            # The decided height's hard state stays the durable record until it is applied.
            raise InvariantError("bft hard state requested while a decision awaits apply")
        vb = self.valid_block.hash if self.valid_block is not None else NIL
        return HardState(
            self.height,
            self.round,
            self.phase,
            self.locked_round,
            self.locked_hash,
            self.valid_round,
            vb,
            pr,
            ph,
            self._proposal_vr,
            vr,
            vh,
            cr,
            ch,
            self._next_entry,
        )
