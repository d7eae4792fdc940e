"""LtHash16: a homomorphic multiset hash of the world state (Bellare-Micciancio lattice hash,
the parameters Facebook uses: 1024 lanes of 16 bits, 2048 bytes).

The state root commits to the whole key/value state and is updated incrementally per write:
`add(k, v)` / `remove(k, v)`. Two states with equal roots hold equal (key, value) multisets
(collision resistance reduces to a lattice problem, unlike XOR or plain additive hashing).
Used by state.py (block execution) and storage (persisted accumulator, snapshot checks).

Invariant of the fast representation: the 1024 lanes are kept as two Python ints of 512
32-bit slots each (`_hi`: the even lanes 0, 2, 4, ...; `_lo`: the odd ones), every 16-bit lane
alone in its slot, so one big-int addition adds 512 lanes at once. An element's 2048 bytes are
read as one big-endian int x; `x & _MASK` is then its odd lanes and `(x >> 16) & _MASK` its even
ones, already in slot form (no per-byte shuffling). Masking every slot back to 16 bits is needed
only before 2**16 unmasked additions accumulate (we mask every 2**14, and on every `lanes`)."""

from __future__ import annotations

import hashlib
import struct

LANES = 1024
_HALF = LANES // 2
_MASK = int.from_bytes(b"\x00\x00\xff\xff" * _HALF, "big")  # the low 16 bits of every slot
_P16 = int.from_bytes(b"\x00\x01\x00\x00" * _HALF, "big")  # 2**16 in every slot
_LEN = struct.Struct(">I")
_MAX_PENDING = 1 << 14


def _element(key: bytes, value: bytes) -> int:
    """The element's 1024 big-endian u16 lanes as one int (lane 0 the most significant)."""
    h = hashlib.shake_128(_LEN.pack(len(key)) + key + value).digest(LANES * 2)
    return int.from_bytes(h, "big")


class LtHash:
    __slots__ = ("_hi", "_lo", "_pending")

    def __init__(self, lanes: bytes | None = None) -> None:
        self._pending = 0
        if lanes is None:
            self._hi = self._lo = 0
            return
        if len(lanes) != LANES * 2:
            raise ValueError(f"LtHash16 state must be {LANES * 2} bytes")
        x = int.from_bytes(lanes, "big")
        self._hi, self._lo = (x >> 16) & _MASK, x & _MASK

    def copy(self) -> LtHash:
        c = LtHash()
        c._hi, c._lo, c._pending = self._hi, self._lo, self._pending
        return c

    def _bump(self) -> None:
        self._pending += 1
        if self._pending >= _MAX_PENDING:
            self._hi &= _MASK
            self._lo &= _MASK
            self._pending = 0

    def add(self, key: bytes, value: bytes) -> None:
        x = _element(key, value)
        self._hi += (x >> 16) & _MASK
        self._lo += x & _MASK
        self._bump()

    def remove(self, key: bytes, value: bytes) -> None:
        # 2**16 - x per lane never borrows across slots, since every lane of x is < 2**16.
        x = _element(key, value)
        self._hi += _P16 - ((x >> 16) & _MASK)
        self._lo += _P16 - (x & _MASK)
        self._bump()

    def lanes(self) -> bytes:
        self._hi &= _MASK
        self._lo &= _MASK
        self._pending = 0
        return ((self._hi << 16) | self._lo).to_bytes(LANES * 2, "big")

    def digest(self) -> bytes:
        return hashlib.sha256(b"consortium/lthash16/v1" + self.lanes()).digest()
