"""LtHash16: a homomorphic multiset hash of the world state (Bellare-Micciancio lattice hash,
the parameters Facebook uses: 1024 lanes of 16 bits, 2048 bytes).

The state root commits to the whole key/value state and is updated incrementally per write:
`add(k, v)` / `remove(k, v)`. Two states with equal roots hold equal (key, value) multisets
(collision resistance reduces to a lattice problem, unlike XOR or plain additive hashing).
Used by state.py (block execution) and storage (persisted accumulator, snapshot checks).

Invariant of the fast representation: each 16-bit lane lives in its own 32-bit slot of one
big Python int, so one big-int addition adds all lanes at once; masking every slot back to 16
bits is needed only before 2**15 unmasked additions accumulate (we mask on every `digest`)."""

from __future__ import annotations

import hashlib
import struct

LANES = 1024
_SLOT_BYTES = 4
_MASK = int.from_bytes(b"\x00\x00\xff\xff" * LANES, "big")
_P16 = int.from_bytes(b"\x00\x01\x00\x00" * LANES, "big")  # 2**16 in every lane
_LEN = struct.Struct(">I")
_MAX_PENDING = 1 << 14


def _element(key: bytes, value: bytes) -> int:
    h = hashlib.shake_128(_LEN.pack(len(key)) + key + value).digest(LANES * 2)
    slots = bytearray(LANES * _SLOT_BYTES)
    slots[2::4] = h[0::2]
    slots[3::4] = h[1::2]
    return int.from_bytes(slots, "big")


class LtHash:
    __slots__ = ("_acc", "_pending")

    def __init__(self, lanes: bytes | None = None) -> None:
        self._pending = 0
        if lanes is None:
            self._acc = 0
            return
        if len(lanes) != LANES * 2:
            raise ValueError(f"LtHash16 state must be {LANES * 2} bytes")
        slots = bytearray(LANES * _SLOT_BYTES)
        slots[2::4] = lanes[0::2]
        slots[3::4] = lanes[1::2]
        self._acc = int.from_bytes(slots, "big")

    def copy(self) -> LtHash:
        c = LtHash()
        c._acc = self._acc
        c._pending = self._pending
        return c

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._acc &= _MASK
            self._pending = 0

    def add(self, key: bytes, value: bytes) -> None:
        self._acc += _element(key, value)
        self._bump()

    def remove(self, key: bytes, value: bytes) -> None:
        # 2**16 - x per lane never borrows across slots, since every lane of x is < 2**16.
        self._acc += _P16 - _element(key, value)
        self._bump()

    def lanes(self) -> bytes:
        self._acc &= _MASK
        self._pending = 0
        slots = self._acc.to_bytes(LANES * _SLOT_BYTES, "big")
        out = bytearray(LANES * 2)
        out[0::2] = slots[2::4]
        out[1::2] = slots[3::4]
        return bytes(out)

    def digest(self) -> bytes:
        return hashlib.sha256(b"consortium/lthash16/v1" + self.lanes()).digest()
