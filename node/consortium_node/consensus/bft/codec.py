"""Fixed binary codec and sign-bytes for the BFT engine's messages (no protobuf).

Called by bft/engine.py (encode into `Envelope.payload`, decode in `step`) and by anything that
must check a BFT signature offline (sign-bytes helpers). `decode` raises
`ledger.errors.DecodeError` and nothing else on any input.

Layouts (big-endian; u8 version, u8 kind first):
    PROPOSAL   | u64 height | u32 round | i32 valid_round | 32s proposer | 64s sig | u32 n | block
    PREVOTE    | u64 height | u32 round | 32s validator | 32s block_hash | 64s sig
    PRECOMMIT  (same as PREVOTE; nil = 32 zero bytes)
    DECISION   | u32 n | block (with its commit certificate)

Sign-bytes are fixed and domain-separated per chain: proposals and prevotes have their own
domains; a precommit signs exactly `commit_sign_bytes(chain_id, height, round, block_hash)`, so a
block's commit certificate is the 2f+1 precommit signatures, checkable by any node.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ...ledger.block import Block, commit_sign_bytes
from ...ledger.errors import DecodeError
from ...ledger.hashing import ZERO_HASH

VERSION = 1
NIL = ZERO_HASH  # the "nil" block hash of a vote
_KIND = struct.Struct(">BB")
_PROPOSAL = struct.Struct(">BBQIi32s64sI")
_VOTE = struct.Struct(">BBQI32s32s64s")
PROPOSAL_HEAD_LEN = _PROPOSAL.size
VOTE_LEN = _VOTE.size
_DECISION = struct.Struct(">BBI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I32 = struct.Struct(">i")


class Kind(enum.IntEnum):
    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3
    DECISION = 4


@dataclass(frozen=True, slots=True)
class Proposal:
    """Tendermint PROPOSAL(h, r, v, vr): `block` proposed at (height, round) by `proposer`,
    `valid_round` = vr (-1 when none)."""

    height: int
    round: int
    valid_round: int
    proposer: bytes
    block: Block
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Vote:
    """PREVOTE or PRECOMMIT by `validator` for `block_hash` (NIL for nil) at (height, round)."""

    kind: Kind
    height: int
    round: int
    validator: bytes
    block_hash: bytes
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Decision:
    """A committed block with its 2f+1-precommit certificate, sent to a peer that lags."""

    block: Block

    @property
    def height(self) -> int:
        return self.block.height


Message = Proposal | Vote | Decision


def _chain(chain_id: str) -> bytes:
    c = chain_id.encode()
    return _U32.pack(len(c)) + c


def proposal_sign_bytes(chain_id: str, height: int, rnd: int, valid_round: int, bh: bytes) -> bytes:
    return (
        b"consortium/proposal/v1"
        + _chain(chain_id)
        + _U64.pack(height)
        + _U64.pack(rnd)
        + _I32.pack(valid_round)
        + bh
    )


def prevote_sign_bytes(chain_id: str, height: int, rnd: int, bh: bytes) -> bytes:
    return b"consortium/prevote/v1" + _chain(chain_id) + _U64.pack(height) + _U64.pack(rnd) + bh


def vote_sign_bytes(chain_id: str, kind: Kind, height: int, rnd: int, bh: bytes) -> bytes:
    if kind is Kind.PRECOMMIT:
        return commit_sign_bytes(chain_id, height, rnd, bh)
    return prevote_sign_bytes(chain_id, height, rnd, bh)


def encode(m: Message, block_bytes: bytes | None = None) -> bytes:
    """`block_bytes`, if given, must be `m.block.encode()` for a Proposal (saves re-encoding)."""
    if isinstance(m, Vote):
        return _VOTE.pack(
            VERSION, int(m.kind), m.height, m.round, m.validator, m.block_hash, m.signature
        )
    if isinstance(m, Proposal):
        body = m.block.encode() if block_bytes is None else block_bytes
        head = _PROPOSAL.pack(
            VERSION,
            int(Kind.PROPOSAL),
            m.height,
            m.round,
            m.valid_round,
            m.proposer,
            m.signature,
            len(body),
        )
        return head + body
    body = m.block.encode()
    return _DECISION.pack(VERSION, int(Kind.DECISION), len(body)) + body


def decode(data: bytes) -> Message:
    """Decode a peer payload; any malformation raises DecodeError (never anything else)."""
    try:
        return _decode(data)
    except DecodeError:
        raise
    except Exception as e:  # defensive: untrusted bytes must never raise anything else
        raise DecodeError(f"malformed bft message: {e}") from None


def _decode(data: bytes) -> Message:
    if not isinstance(data, bytes):
        raise DecodeError("bft message must be bytes")
    if len(data) < _KIND.size:
        raise DecodeError("truncated bft message")
    ver, kind = _KIND.unpack_from(data, 0)
    if ver != VERSION:
        raise DecodeError(f"unsupported bft message version {ver}")
    if kind in (Kind.PREVOTE, Kind.PRECOMMIT):
        if len(data) != _VOTE.size:
            raise DecodeError(f"bft vote must be {_VOTE.size} bytes, got {len(data)}")
        _, _, h, r, val, bh, sig = _VOTE.unpack(data)
        return Vote(Kind(kind), h, r, val, bh, sig)
    if kind == Kind.PROPOSAL:
        if len(data) < _PROPOSAL.size:
            raise DecodeError("truncated bft proposal")
        _, _, h, r, vr, prop, sig, n = _PROPOSAL.unpack_from(data, 0)
        if n != len(data) - _PROPOSAL.size:
            raise DecodeError("bft proposal block length mismatch")
        if vr < -1 or vr >= r:
            raise DecodeError(f"bft proposal valid_round {vr} not in [-1, {r})")
        block = Block.decode(data[_PROPOSAL.size :])
        if block.height != h:
            raise DecodeError("bft proposal height differs from its block's")
        return Proposal(h, r, vr, prop, block, sig)
    if kind == Kind.DECISION:
        if len(data) < _DECISION.size:
            raise DecodeError("truncated bft decision")
        _, _, n = _DECISION.unpack_from(data, 0)
        if n != len(data) - _DECISION.size:
            raise DecodeError("bft decision block length mismatch")
        block = Block.decode(data[_DECISION.size :])
        if block.certificate is None:
            raise DecodeError("bft decision without a commit certificate")
        return Decision(block)
    raise DecodeError(f"unknown bft message kind {kind}")
