"""Fixed binary codec for Raft peer messages (no protobuf): `encode(Message) -> bytes`,
`decode(bytes) -> Message`.

Called by raft/engine.py only: the engine puts `encode(msg)` into `Envelope.payload` and decodes
what `step()` receives; the transport carries the payload opaquely. `decode` raises
`ledger.errors.DecodeError` and nothing else on any input.

Layout (big-endian):
    u8 version | u8 type | u64 term | u64 index | u64 log_term | u64 commit | u64 hint
    | u64 snap_height | 32s snap_hash | u8 reject | u32 n_entries
    | n x (u64 index | u64 term | u32 len | data)
"""

from __future__ import annotations

import enum
import itertools
import struct
from dataclasses import dataclass

from ...ledger.errors import DecodeError
from ...ledger.hashing import ZERO_HASH
from ..api import Entry

VERSION = 1
_HEAD = struct.Struct(">BBQQQQQQ32sBI")
_ENTRY = struct.Struct(">QQI")
# A hostile length prefix must not make us allocate: entries are bounded by the payload size.
MAX_ENTRIES = 1 << 20


class MsgType(enum.IntEnum):
    PREVOTE = 1
    PREVOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APP = 5
    APP_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9  # "your next entry is below my log start: sync blocks, then resume at `index`"


_TYPES = {int(t): t for t in MsgType}


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message (etcd-raft style: one struct, fields used per type).

    APP: `index`/`log_term` = the entry preceding `entries`; `commit` = leader commit.
    APP_RESP: `index` = last matching index (accept) or the rejected `index` (reject) with
    `hint` = follower's guess of the last index that may match.
    SNAP: `index`/`log_term` = leader's snapshot point; `snap_height`/`snap_hash` = the block
    the follower must have applied (by block sync) before it can accept entries after `index`.
    """

    type: MsgType
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    reject: bool = False
    hint: int = 0
    entries: tuple[Entry, ...] = ()
    snap_height: int = 0
    snap_hash: bytes = ZERO_HASH


def encode(m: Message) -> bytes:
    out = [
        _HEAD.pack(
            VERSION,
            int(m.type),
            m.term,
            m.index,
            m.log_term,
            m.commit,
            m.hint,
            m.snap_height,
            m.snap_hash,
            1 if m.reject else 0,
            len(m.entries),
        )
    ]
    for e in m.entries:
        out.append(_ENTRY.pack(e.index, e.term, len(e.data)))
        out.append(e.data)
    return b"".join(out)


def decode(data: bytes) -> Message:
    """Decode a peer payload; any malformation raises DecodeError (never anything else)."""
    try:
        return _decode(data)
    except DecodeError:
        raise
    except Exception as e:  # defensive: untrusted bytes must never raise anything else
        raise DecodeError(f"malformed raft message: {e}") from None


def _decode(data: bytes) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("raft message must be bytes")
    mv = memoryview(data)
    if len(mv) < _HEAD.size:
        raise DecodeError("truncated raft message header")
    ver, typ, term, index, log_term, commit, hint, sh, shash, rej, n = _HEAD.unpack_from(mv, 0)
    if ver != VERSION:
        raise DecodeError(f"unsupported raft message version {ver}")
    mtype = _TYPES.get(typ)
    if mtype is None:
        raise DecodeError(f"unknown raft message type {typ}")
    if rej > 1:
        raise DecodeError("bad reject flag")
    if n > MAX_ENTRIES or n * _ENTRY.size > len(mv) - _HEAD.size:
        raise DecodeError("entry count exceeds payload")
    pos = _HEAD.size
    entries = []
    for _ in range(n):
        if pos + _ENTRY.size > len(mv):
            raise DecodeError("truncated raft entry header")
        ei, et, ln = _ENTRY.unpack_from(mv, pos)
        pos += _ENTRY.size
        if pos + ln > len(mv):
            raise DecodeError("truncated raft entry data")
        entries.append(Entry(ei, et, bytes(mv[pos : pos + ln])))
        pos += ln
    if pos != len(mv):
        raise DecodeError(f"{len(mv) - pos} trailing bytes in raft message")
    for a, b in itertools.pairwise(entries):
        if b.index != a.index + 1:
            raise DecodeError("raft entries are not contiguous")
    return Message(mtype, term, index, log_term, commit, rej == 1, hint, tuple(entries), sh, shash)
