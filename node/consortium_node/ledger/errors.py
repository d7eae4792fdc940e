"""Error types of the pure core. `TxRejected` carries a machine code that transport maps to a
gRPC status; `InvariantError` means our own state is corrupt and the node must stop."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DecodeError(ValueError):
    """Bytes from outside could not be decoded."""


class InvariantError(RuntimeError):
    """A broken invariant of our own: stop the node rather than continue corrupt."""


class Reject(enum.Enum):
    """Why a transaction is refused at admission (mapped to gRPC codes by transport)."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad-signature"
    WRONG_CHAIN = "wrong-chain"
    NONCE_REPLAY = "nonce-replay"
    NONCE_GAP = "nonce-gap"
    TOO_LARGE = "too-large"
    UNKNOWN_TYPE = "unknown-type"
    INSUFFICIENT_BALANCE = "insufficient-balance"
    UNAUTHORIZED = "unauthorized"
    INVALID = "invalid"
    MEMPOOL_FULL = "mempool-full"
    DUPLICATE = "duplicate"


class TxRejected(Exception):
    def __init__(self, reason: Reject, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Admission:
    """Outcome of submitting one transaction: `reject` is None when it was pooled."""

    tx_id: bytes
    reject: Reject | None
    message: str
