"""Blocks: the fixed binary header, the block body, and the commit certificate.

The header has one encoding, `BlockHeader.encode()` (178 bytes, big-endian), and the block hash is
SHA-256 of it — never of a protobuf. `Block.encode()` is the storage/peer encoding of a whole
block (header, exact tx bytes, certificate). Used by storage (segment records), consensus (what
is agreed on), runtime (block building) and transport (pb <-> domain)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from .errors import DecodeError, InvariantError
from .hashing import HASH_LEN, merkle_root, sha256

HEADER_VERSION = 1
_HEADER = struct.Struct(">HQQ32s32s32s32s32s")
HEADER_LEN = _HEADER.size  # 178
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """`state_root` is the state after executing blocks 1..height-1 (execution lags one block,
    as in Tendermint), so a proposer never has to execute before proposing."""

    height: int
    time_ms: int
    prev_hash: bytes
    tx_root: bytes
    state_root: bytes
    validators_hash: bytes
    proposer: bytes
    version: int = HEADER_VERSION

    def encode(self) -> bytes:
        for name in ("prev_hash", "tx_root", "state_root", "validators_hash", "proposer"):
            if len(getattr(self, name)) != HASH_LEN:
                raise InvariantError(f"block header {name} must be {HASH_LEN} bytes")
        return _HEADER.pack(
            self.version,
            self.height,
            self.time_ms,
            self.prev_hash,
            self.tx_root,
            self.state_root,
            self.validators_hash,
            self.proposer,
        )

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        if len(data) != HEADER_LEN:
            raise DecodeError(f"block header must be {HEADER_LEN} bytes, got {len(data)}")
        v, h, t, prev, txr, sr, vh, prop = _HEADER.unpack(data)
        if v != HEADER_VERSION:
            raise DecodeError(f"unsupported block header version {v}")
        return cls(h, t, prev, txr, sr, vh, prop, v)

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Quorum evidence for a block: (signer node id, Ed25519 signature) pairs over
    `commit_sign_bytes(height, round, block_hash)`. Solo mode certifies with one signature."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...] = ()

    def encode(self) -> bytes:
        out = [_U64.pack(self.height), _U64.pack(self.round), self.block_hash]
        out.append(_U32.pack(len(self.signatures)))
        for signer, sig in self.signatures:
            out.append(signer)
            out.append(sig)
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> CommitCertificate:
        r = _Reader(data)
        height, rnd, bh = r.u64(), r.u64(), r.take(HASH_LEN)
        sigs = tuple((r.take(32), r.take(64)) for _ in range(r.u32()))
        r.end()
        return cls(height, rnd, bh, sigs)


def commit_sign_bytes(chain_id: str, height: int, rnd: int, block_hash: bytes) -> bytes:
    """The bytes a validator signs to commit a block (domain-separated per chain)."""
    cid = chain_id.encode()
    return (
        b"consortium/commit/v1"
        + _U32.pack(len(cid))
        + cid
        + _U64.pack(height)
        + _U64.pack(rnd)
        + block_hash
    )


def quorum(n_validators: int, bft: bool) -> int:
    """Signatures a commit certificate needs: a BFT quorum (> 2/3) for bft, one validator for
    raft and solo (crash-fault model)."""
    return 2 * n_validators // 3 + 1 if bft else 1


def certificate_problem(
    block: Block,
    chain_id: str,
    validators: Collection[bytes],
    bft: bool,
    verify: Callable[[bytes, bytes, bytes], bool],
) -> str | None:
    """None if `block`'s commit certificate is for this block and signed by a quorum of
    `validators` (the set of its height); else why not. `verify(public_key, data, signature)`
    is the Ed25519 check, injected (this module stays pure). The one certificate check: the
    runtime (synced and repaired blocks) and backup verification both call it."""
    cert = block.certificate
    if cert is None or cert.height != block.height or cert.block_hash != block.hash:
        return "missing or mismatched commit certificate"
    vals = set(validators)
    msg = commit_sign_bytes(chain_id, cert.height, cert.round, cert.block_hash)
    signers = {s for s, sig in cert.signatures if s in vals and verify(s, msg, sig)}
    need = quorum(len(vals), bft)
    if len(signers) < need:
        return f"certificate has {len(signers)} valid validator signatures, needs {need}"
    return None


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]  # exact SignedTx bytes as submitted
    certificate: CommitCertificate | None = None
    _hash: bytes = field(default=b"", compare=False, repr=False)

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self._hash or self.header.hash

    def with_certificate(self, cert: CommitCertificate) -> Block:
        return Block(self.header, self.txs, cert, self.hash)

    def encode(self) -> bytes:
        """header | u32 ntx | (u32 len | tx)* | u32 certlen | cert"""
        out = [self.header.encode(), _U32.pack(len(self.txs))]
        for tx in self.txs:
            out.append(_U32.pack(len(tx)))
            out.append(tx)
        cert = self.certificate.encode() if self.certificate else b""
        out.append(_U32.pack(len(cert)))
        out.append(cert)
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> Block:
        r = _Reader(data)
        header = BlockHeader.decode(r.take(HEADER_LEN))
        txs = tuple(r.take(r.u32()) for _ in range(r.u32()))
        certlen = r.u32()
        cert = CommitCertificate.decode(r.take(certlen)) if certlen else None
        r.end()
        return cls(header, txs, cert)


def tx_root(tx_ids: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Merkle root over the block's tx ids (each SHA-256 of the signed body)."""
    return merkle_root(tx_ids)


class _Reader:
    __slots__ = ("_d", "_p")

    def __init__(self, data: bytes) -> None:
        self._d = memoryview(data)
        self._p = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self._p + n > len(self._d):
            raise DecodeError("truncated block encoding")
        b = bytes(self._d[self._p : self._p + n])
        self._p += n
        return b

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def end(self) -> None:
        if self._p != len(self._d):
            raise DecodeError(f"{len(self._d) - self._p} trailing bytes in block encoding")
