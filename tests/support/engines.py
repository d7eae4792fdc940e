"""Deterministic fakes for consensus tests: a keyring with fast keyed-hash signatures and an
in-memory `Application` whose state is a hash chain over applied blocks.

Used by tests/sim (the engine-level simulator) and tests/unit/consensus (golden scenarios);
it lives in tests/support so unit tests need not import tests/sim (issue 12 item 3).
Signatures are BLAKE2b keyed by a per-node secret: deterministic (like Ed25519) and unforgeable
by anyone without the secret, which is all the engines rely on; a Twins clone shares its secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from consortium_node.ledger.block import (
    Block,
    BlockHeader,
    CommitCertificate,
    commit_sign_bytes,
    tx_root,
)
from consortium_node.ledger.hashing import ZERO_HASH, sha256

CHAIN_ID = "sim-chain"
GENESIS_HASH = sha256(b"sim-genesis")


def node_id(name: str) -> bytes:
    """A 32-byte node id (stands in for an Ed25519 public key)."""
    return sha256(b"node:" + name.encode())


class Keyring:
    """Secrets by node id. `sign` needs the signer's secret; `verify` recomputes."""

    def __init__(self) -> None:
        self._secrets: dict[bytes, bytes] = {}

    def add(self, nid: bytes) -> None:
        self._secrets[nid] = sha256(b"secret:" + nid)

    def sign(self, nid: bytes, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._secrets[nid], digest_size=64).digest()

    def verify(self, nid: bytes, data: bytes, sig: bytes) -> bool:
        key = self._secrets.get(nid)
        if key is None or len(sig) != 64:
            return False
        return hashlib.blake2b(data, key=key, digest_size=64).digest() == sig


class SafetyViolation(AssertionError):
    """Two honest nodes committed different blocks at one height, or a commit vanished."""


ValidatorsFn = Callable[[int], tuple[bytes, ...]]


class FakeApp:
    """One node's application: durable block store (`blocks`, survives crashes in the sim),
    volatile mempool, state root = hash chain. Blocks are fake but fully checked."""

    def __init__(
        self,
        nid: bytes,
        keyring: Keyring,
        validators: ValidatorsFn,
        *,
        max_block_txs: int = 50,
        check_certificates: str = "none",  # none | leader | quorum
    ) -> None:
        self.node_id = nid
        self.keyring = keyring
        self._validators = validators
        self.max_block_txs = max_block_txs
        self.check_certificates = check_certificates
        self.blocks: list[Block] = []  # blocks[i] has height i + 1
        self.state_root = sha256(b"sim-state-0")
        self.state_roots: list[bytes] = [self.state_root]
        self.mempool: dict[bytes, None] = {}

    # ---- helpers for tests
    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def tip_hash(self) -> bytes:
        return self.blocks[-1].hash if self.blocks else GENESIS_HASH

    def add_tx(self, tx: bytes) -> None:
        self.mempool[tx] = None

    def restart(self) -> None:
        """A crash loses the mempool; the block store is durable."""
        self.mempool.clear()

    def make_block(self, height: int, prev_hash: bytes, txs: tuple[bytes, ...]) -> Block:
        header = BlockHeader(
            height=height,
            time_ms=height,
            prev_hash=prev_hash,
            tx_root=tx_root([sha256(t) for t in txs]),
            state_root=self.state_root,
            validators_hash=sha256(b"".join(self._validators(height))),
            proposer=self.node_id,
        )
        return Block(header, txs)

    def apply(self, block: Block) -> bool:
        """Apply a committed block (idempotent for heights already applied, which must match).
        Returns True if the block was new."""
        h = block.height
        if h <= self.height:
            if self.blocks[h - 1].hash != block.hash:
                raise SafetyViolation(
                    f"node {self.node_id.hex()[:8]}: committed block {h} changed "
                    f"{self.blocks[h - 1].hash.hex()[:8]} -> {block.hash.hex()[:8]}"
                )
            return False
        if h != self.height + 1 or block.header.prev_hash != self.tip_hash:
            raise SafetyViolation(f"block {h} does not extend our tip at {self.height}")
        self._check_certificate(block)
        self.blocks.append(block)
        self.state_root = sha256(self.state_root + block.hash)
        self.state_roots.append(self.state_root)
        for tx in block.txs:
            self.mempool.pop(tx, None)
        return True

    def _check_certificate(self, block: Block) -> None:
        if self.check_certificates == "none":
            return
        cert = block.certificate
        if cert is None or cert.block_hash != block.hash or cert.height != block.height:
            raise SafetyViolation(f"block {block.height} has no matching certificate")
        vals = set(self._validators(block.height))
        data = commit_sign_bytes(CHAIN_ID, cert.height, cert.round, cert.block_hash)
        good = {s for s, sig in cert.signatures if s in vals and self.verify(s, data, sig)}
        need = 1 if self.check_certificates == "leader" else len(vals) - (len(vals) - 1) // 3
        if len(good) < need or len(good) != len(cert.signatures):
            raise SafetyViolation(f"block {block.height}: certificate has {len(good)}/{need}")

    # ---- Application protocol
    def build_block(self, height: int, prev_hash: bytes, allow_empty: bool) -> Block | None:
        if height != self.height + 1 or prev_hash != self.tip_hash:
            return None
        txs = tuple(tx for tx, _ in zip(self.mempool, range(self.max_block_txs), strict=False))
        if not txs and not allow_empty:
            return None
        return self.make_block(height, prev_hash, txs)

    def has_pending(self) -> bool:
        return bool(self.mempool)

    def validate_block(self, block: Block) -> str | None:
        h = block.header
        if h.height != self.height + 1:
            return f"height {h.height}, expected {self.height + 1}"
        if h.prev_hash != self.tip_hash:
            return "prev_hash does not link to our tip"
        if h.state_root != self.state_root:
            return "wrong state root"
        if h.tx_root != tx_root([sha256(t) for t in block.txs]):
            return "wrong tx root"
        if h.validators_hash != sha256(b"".join(self._validators(h.height))):
            return "wrong validators hash"
        if any(not t.startswith(b"tx:") for t in block.txs):
            return "invalid transaction"
        return None

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return self._validators(height)

    def sign(self, data: bytes) -> bytes:
        return self.keyring.sign(self.node_id, data)

    def verify(self, signer: bytes, data: bytes, signature: bytes) -> bool:
        return self.keyring.verify(signer, data, signature)


def certificate_for(
    keyring: Keyring, signers: list[bytes], height: int, rnd: int, block_hash: bytes
) -> CommitCertificate:
    data = commit_sign_bytes(CHAIN_ID, height, rnd, block_hash)
    sigs = tuple(sorted((s, keyring.sign(s, data)) for s in signers))
    return CommitCertificate(height, rnd, block_hash, sigs)


__all__ = [
    "CHAIN_ID",
    "GENESIS_HASH",
    "ZERO_HASH",
    "FakeApp",
    "Keyring",
    "SafetyViolation",
    "certificate_for",
    "node_id",
]
