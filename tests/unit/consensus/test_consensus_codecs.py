"""The raft and bft peer codecs: exact round trips, and `decode` raising DecodeError (never
anything else) on truncations, bit flips and random garbage (rule 2: untrusted input)."""

from __future__ import annotations

import contextlib
import random

import pytest
from consortium_node.consensus.api import Entry
from consortium_node.consensus.bft import Decision, Kind, Proposal, Vote
from consortium_node.consensus.bft import decode as bdecode
from consortium_node.consensus.bft import encode as bencode
from consortium_node.consensus.raft import Message, MsgType
from consortium_node.consensus.raft import decode as rdecode
from consortium_node.consensus.raft import encode as rencode
from consortium_node.ledger.errors import DecodeError

from tests.support.engines import GENESIS_HASH, FakeApp, Keyring, certificate_for, node_id

pytestmark = pytest.mark.unit

N = node_id("n")
KR = Keyring()
KR.add(N)
BLOCK = FakeApp(N, KR, lambda h: (N,)).make_block(1, GENESIS_HASH, (b"tx:1", b"tx:22"))


def raft_samples() -> list[Message]:
    return [
        Message(MsgType.VOTE, 3, index=7, log_term=2),
        Message(MsgType.APP_RESP, 3, index=9, reject=True, hint=4),
        Message(
            MsgType.APP,
            5,
            index=1,
            log_term=1,
            commit=1,
            entries=(Entry(2, 5, b""), Entry(3, 5, BLOCK.encode())),
        ),
        Message(MsgType.SNAP, 2, index=10, log_term=2, snap_height=4, snap_hash=b"\x01" * 32),
    ]


def bft_samples() -> list[Proposal | Vote | Decision]:
    cert = certificate_for(KR, [N], 1, 0, BLOCK.hash)
    return [
        Proposal(1, 2, 1, N, BLOCK, b"\x05" * 64),
        Vote(Kind.PREVOTE, 1, 0, N, BLOCK.hash, b"\x06" * 64),
        Vote(Kind.PRECOMMIT, 9, 3, N, b"\x00" * 32, b"\x07" * 64),
        Decision(BLOCK.with_certificate(cert)),
    ]


def test_raft_round_trip() -> None:
    for m in raft_samples():
        assert rdecode(rencode(m)) == m


def test_bft_round_trip() -> None:
    for m in bft_samples():
        assert bdecode(bencode(m)) == m


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    out = [data[:i] for i in range(0, len(data), max(1, len(data) // 40))]
    out += [data + b"\x00", b"", b"\x01", bytes(300)]
    for _ in range(60):
        b = bytearray(data)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        out.append(bytes(b))
    out += [rng.randbytes(rng.randrange(1, 400)) for _ in range(60)]
    return out


@pytest.mark.parametrize("engine", ["raft", "bft"])
def test_decode_raises_only_decode_error(engine: str) -> None:
    rng = random.Random(7)
    if engine == "raft":
        samples = [rencode(m) for m in raft_samples()]
        dec = rdecode
    else:
        samples = [bencode(m) for m in bft_samples()]
        dec = bdecode  # type: ignore[assignment]
    for s in samples:
        for bad in _mutations(s, rng):
            with contextlib.suppress(DecodeError):
                dec(bad)
