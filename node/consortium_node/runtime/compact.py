"""Compact BFT proposals: a lossless wire encoding of the BFT engine's PROPOSAL messages.

Called by runtime/node.py only: `Compactor.outbound` on every envelope the engine sends
(Node.process_ready), `Compactor.inbound` on every peer payload of one of this module's kinds
(Node.on_peer_messages). The engine never sees a compact form; tests/sim exercises this
through whole nodes, tests/unit/runtime/test_compact.py directly.

Without it every client tx reaches each validator twice: by gossip at admission, then again
inside the proposal that includes it (10 validators x 4 KiB: the proposer sends 8 MiB to each
of 9 peers per block). A compact proposal carries the proposal's head and block header as they
are and, for each tx, its *digest*: SHA-256 of its exact bytes (a tx id hashes the body only,
so two signatures over one body share an id, never a digest). The receiver rebuilds the
engine's payload from its mempool; the txs it lacks it asks the sender for (TX_REQUEST, by
index), and the sender answers from the proposals it sent (TX_RESPONSE, the bytes).

Invariant: a payload handed to the engine is byte for byte the one the proposer's engine
produced. Every tx, from the pool or from a response, matches its digest before it is used, so
a compact proposal cannot make the engine see another block than the full proposal would have,
and what the engine checks (proposer, signature, block validity) is unchanged. A sender that
cites digests nobody holds and never answers is a proposer that sent nothing: the round times
out (Tendermint's L57) as for any silent proposer. A lost request or response is repaired by
the engine's periodic re-send of its proposal: each copy asks again for what is still missing.

Layouts (big-endian; u8 version, u8 kind first, as in consensus/bft/codec.py, whose kinds
are 1-4; 16-18 are this module's and never reach the engine):
    COMPACT     | the PROPOSAL head after its kind (height .. u32 block length) | block header
                | u32 n | 32s digest * n | the rest of the block (its certificate field)
    TX_REQUEST  | u64 height | u32 round | 32s block_hash | u32 k | u32 index * k
    TX_RESPONSE | u64 height | u32 round | 32s block_hash | u32 k | (u32 index | u32 len | tx) * k

Bounds: at most PENDING proposals wait for txs (the oldest is dropped first) and SENT proposals
are kept to answer requests; both are pruned once their height is committed (`committed`)."""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..consensus.api import Envelope
from ..consensus.bft import codec
from ..ledger.block import HEADER_LEN
from ..ledger.hashing import sha256

VERSION = codec.VERSION
COMPACT, TX_REQUEST, TX_RESPONSE = 16, 17, 18
KINDS = frozenset((COMPACT, TX_REQUEST, TX_RESPONSE))
DIGEST_LEN = 32
PENDING = 16
SENT = 4
_KIND = struct.Struct(">BB")
_HEAD = codec.PROPOSAL_HEAD_LEN  # version, kind, height, round, valid round, proposer, sig, len
_HR = struct.Struct(">QI")  # the height and round that follow version and kind
_REF = struct.Struct(">BBQI32sI")  # version, kind, height, round, block hash, k
_U32 = struct.Struct(">I")
_ITEM = struct.Struct(">II")  # index, length
_BODY = _HEAD + HEADER_LEN + _U32.size  # the fixed part of a COMPACT (and of a PROPOSAL's)


class Malformed(ValueError):
    """A payload of one of this module's kinds that does not parse (names what is wrong)."""


def is_compact_kind(payload: bytes) -> bool:
    return len(payload) >= _KIND.size and payload[0] == VERSION and payload[1] in KINDS


def digest(tx: bytes) -> bytes:
    return sha256(tx)


@dataclass(slots=True)
class _Pending:
    """A compact proposal being rebuilt: `txs[i]` is None until a tx matching `digests[i]`
    is found (pool) or received (response); `src` is the COMPACT payload it came from."""

    src: bytes
    height: int
    round: int
    block_hash: bytes
    digests: list[bytes]
    txs: list[bytes | None]
    missing: int

    def payload(self) -> bytes:
        """The full PROPOSAL payload (only once nothing is missing)."""
        s = self.src
        n = len(self.txs)
        rest = s[_BODY + n * DIGEST_LEN :]
        parts = [_KIND.pack(VERSION, codec.Kind.PROPOSAL), s[2:_BODY]]
        for tx in self.txs:
            assert tx is not None
            parts.append(_U32.pack(len(tx)))
            parts.append(tx)
        parts.append(rest)
        return b"".join(parts)

    def request(self, sender: bytes, me: bytes) -> Envelope:
        idx = [i for i, t in enumerate(self.txs) if t is None]
        head = _REF.pack(VERSION, TX_REQUEST, self.height, self.round, self.block_hash, len(idx))
        return Envelope(me, sender, head + b"".join(_U32.pack(i) for i in idx))


@dataclass(frozen=True, slots=True)
class Inbound:
    """What one inbound payload asks of the node: full payloads to step into the engine,
    envelopes to send, a reason to discard it (counted and logged like an engine rejection),
    and how many of a proposal's txs were found in the pool and received from the sender."""

    deliver: tuple[bytes, ...] = ()
    replies: tuple[Envelope, ...] = ()
    rejection: str | None = None
    pooled: int = 0
    fetched: int = 0


class Compactor:
    """One node's compact-proposal state. `lookup(digest)` returns the bytes of a pooled tx
    with that digest (the mempool's digest index), or None."""

    def __init__(self, node_id: bytes, lookup: Callable[[bytes], bytes | None]) -> None:
        self.node_id = node_id
        self._lookup = lookup
        # (height, round, block hash) -> (COMPACT payload, its txs) of proposals we sent
        self._sent: OrderedDict[tuple[int, int, bytes], tuple[bytes, tuple[bytes, ...]]] = (
            OrderedDict()
        )
        # (sender, height, round, block hash) -> the proposal being rebuilt
        self._pending: OrderedDict[tuple[bytes, int, int, bytes], _Pending] = OrderedDict()

    # -- out ------------------------------------------------------------------------------
    def outbound(self, env: Envelope) -> Envelope:
        """`env` with a proposal carrying txs replaced by its compact form; anything else
        (votes, decisions, empty blocks) unchanged."""
        p = env.payload
        if len(p) < _BODY or p[1] != codec.Kind.PROPOSAL:
            return env
        height, rnd = _HR.unpack_from(p, 2)
        key = (height, rnd, sha256(p[_HEAD : _HEAD + HEADER_LEN]))
        sent = self._sent.get(key)
        if sent is None or sent[0][2:_BODY] != p[2:_BODY]:
            compact = self._compact(p)
            if compact is None:
                return env
            sent = self._sent[key] = compact
            while len(self._sent) > SENT:
                self._sent.popitem(last=False)
        return Envelope(env.sender, env.to, sent[0])

    def _compact(self, p: bytes) -> tuple[bytes, tuple[bytes, ...]] | None:
        """Our own engine's PROPOSAL payload (well formed) as COMPACT, with its txs."""
        (n,) = _U32.unpack_from(p, _BODY - _U32.size)
        if n == 0:
            return None  # an empty block is no larger than its compact form
        txs = []
        pos = _BODY
        for _ in range(n):
            (size,) = _U32.unpack_from(p, pos)
            pos += _U32.size
            txs.append(p[pos : pos + size])
            pos += size
        compact = b"".join([_KIND.pack(VERSION, COMPACT), p[2:_BODY], *map(digest, txs), p[pos:]])
        return compact, tuple(txs)

    def committed(self, height: int) -> None:
        """Blocks up to `height` are committed here: their proposals are no longer needed
        (a peer still at such a height gets the engine's DECISION instead)."""
        for sk in [k for k in self._sent if k[0] <= height]:
            del self._sent[sk]
        for pk in [k for k in self._pending if k[1] <= height]:
            del self._pending[pk]

    # -- in -------------------------------------------------------------------------------
    def inbound(self, sender: bytes, payload: bytes) -> Inbound:
        """Handles one payload for which `is_compact_kind` holds. Never raises on its bytes."""
        try:
            kind = payload[1]
            if kind == COMPACT:
                return self._on_compact(sender, payload)
            if kind == TX_REQUEST:
                return self._on_request(sender, payload)
            return self._on_response(sender, payload)
        except Malformed as e:
            return Inbound(rejection=f"malformed compact proposal message: {e}")
        except (struct.error, IndexError) as e:  # defensive: untrusted bytes
            return Inbound(rejection=f"malformed compact proposal message: {e}")

    def _on_compact(self, sender: bytes, p: bytes) -> Inbound:
        if len(p) < _BODY:
            raise Malformed("truncated compact proposal")
        (n,) = _U32.unpack_from(p, _BODY - _U32.size)
        if len(p) < _BODY + n * DIGEST_LEN:
            raise Malformed(f"compact proposal cites {n} txs but is {len(p)} bytes")
        height, rnd = _HR.unpack_from(p, 2)
        key = (sender, height, rnd, sha256(p[_HEAD : _HEAD + HEADER_LEN]))
        pend = self._pending.get(key)
        if pend is None or pend.src != p:
            digests = [p[o : o + DIGEST_LEN] for o in range(_BODY, _BODY + n * DIGEST_LEN, 32)]
            pend = _Pending(p, height, rnd, key[3], digests, [None] * n, n)
        pooled = 0
        for i, d in enumerate(pend.digests):
            if pend.txs[i] is None and (tx := self._lookup(d)) is not None:
                pend.txs[i] = tx
                pend.missing -= 1
                pooled += 1
        if pend.missing == 0:
            self._pending.pop(key, None)
            return Inbound(deliver=(pend.payload(),), pooled=pooled)
        self._pending[key] = pend
        self._pending.move_to_end(key)
        while len(self._pending) > PENDING:
            self._pending.popitem(last=False)
        return Inbound(replies=(pend.request(sender, self.node_id),), pooled=pooled)

    def _ref(self, p: bytes) -> tuple[int, int, bytes, int]:
        if len(p) < _REF.size:
            raise Malformed("truncated tx request or response")
        _, _, height, rnd, bh, k = _REF.unpack_from(p)
        return height, rnd, bh, k

    def _on_request(self, sender: bytes, p: bytes) -> Inbound:
        height, rnd, bh, k = self._ref(p)
        if len(p) != _REF.size + k * _U32.size:
            raise Malformed(f"tx request for {k} txs is {len(p)} bytes")
        sent = self._sent.get((height, rnd, bh))
        if sent is None:
            return Inbound()  # not a proposal of ours (a Twin's), or one already committed
        txs = sent[1]
        idx = [i for (i,) in _U32.iter_unpack(p[_REF.size :])]
        if len(set(idx)) != k or any(i >= len(txs) for i in idx):
            return Inbound(rejection=f"bad tx request: indexes out of range for {height}/{rnd}")
        parts = [_REF.pack(VERSION, TX_RESPONSE, height, rnd, bh, k)]
        for i in idx:
            parts.append(_ITEM.pack(i, len(txs[i])))
            parts.append(txs[i])
        return Inbound(replies=(Envelope(self.node_id, sender, b"".join(parts)),))

    def _on_response(self, sender: bytes, p: bytes) -> Inbound:
        height, rnd, bh, k = self._ref(p)
        key = (sender, height, rnd, bh)
        pend = self._pending.get(key)
        if pend is None:
            return Inbound()  # late or duplicate: that proposal is complete or dropped
        pos, fetched = _REF.size, 0
        for _ in range(k):
            i, size = _ITEM.unpack_from(p, pos)
            pos += _ITEM.size
            tx = p[pos : pos + size]
            pos += size
            if len(tx) != size:
                raise Malformed("truncated tx response")
            if i >= len(pend.txs) or digest(tx) != pend.digests[i]:
                return Inbound(rejection=f"tx response does not match: index {i} of {height}/{rnd}")
            if pend.txs[i] is None:
                pend.txs[i] = tx
                pend.missing -= 1
                fetched += 1
        if pos != len(p):
            raise Malformed(f"{len(p) - pos} trailing bytes in tx response")
        if pend.missing:
            return Inbound(fetched=fetched)
        del self._pending[key]
        return Inbound(deliver=(pend.payload(),), fetched=fetched)
