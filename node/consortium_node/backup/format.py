"""The backup format and the decision "these bytes are chain C at height H" — pure functions.

A backup is a directory (or a tar of exactly that directory, members in this order):

  SEAL                  "sha256 <hex>\\n": SHA-256 of manifest.json's exact bytes
  manifest.json         canonical JSON (sorted keys, no spaces), fields in `Manifest`; lists
                        every other file with its size and SHA-256
  genesis.json          the chain's genesis, exact bytes (its hash is the chain's identity)
  state.bin             the world state after block H, in key order, one record per entry
  blocks/seg-<12 digits of the first height>.blk
                        blocks 1..H, the node's own segment format (storage/blocks.py:
                        u32 length | u32 CRC-32 | Block.encode()); each block carries its
                        commit certificate, so block H carries the certificate of H
  certifier.blk         ONE record of the same framing: block H+1, whose header carries the
                        state root after H (execution lags one block) and whose certificate
                        certifies that root

state.bin record: u32 length | u32 CRC-32 | payload, payload = u32 key length | key | value.

No private key is ever in a backup: the exporter reads only the ledger (blocks/ and state/)
and the genesis (public keys only). Node keys are backed up separately (README, "Backup and
restore").

Trust rule of `ChainVerifier` (offline; the same rules a node applies to blocks and snapshots,
through the same functions: `certificate_problem`, `BlockHeader.hash`, `tx_root`,
`validators_hash`, `LtHash`):
  * the genesis hashes to the manifest's genesis hash, and its validator set is the snapshot's
    first one;
  * the state entries hash (LtHash) to the manifest's lanes and root, and block H+1's header
    carries that root, links to block H and is certified by a quorum of its validator set;
  * blocks 1..H form a hash chain from the genesis hash (prev_hash), each header's tx_root is
    the Merkle root of its transactions, each transaction's signature verifies (the tx id
    covers the signed body only), its validators_hash is that of the validator set the
    (certified) state records for its height, and its certificate is a quorum of that set.
Callers feed records in file order: state, then blocks, then the certifier. Called by
backup/archive.py (verify, restore) and backup/export.py (the manifest it writes)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ledger.block import Block, certificate_problem, tx_root
from ..ledger.errors import DecodeError
from ..ledger.genesis import Genesis
from ..ledger.lthash import LtHash
from ..ledger.state import VSET_PREFIX, Validator, decode_validators, validators_hash
from ..ledger.tx import Tx

FORMAT = "consortium-backup/1"
MANIFEST = "manifest.json"
SEAL = "SEAL"
GENESIS = "genesis.json"
STATE = "state.bin"
CERTIFIER = "certifier.blk"
BLOCKS = "blocks"
_U32 = struct.Struct(">I")
_INT_FIELDS = ("height", "state_entries", "created_unix")
_HEX_FIELDS = ("genesis_hash", "block_hash", "state_root", "lthash")

Verify = Callable[[bytes, bytes, bytes], bool]  # Ed25519 (public key, data, signature)
DecodeTx = Callable[[bytes], Tx]  # raw SignedTx bytes -> Tx (raises DecodeError)


class BackupError(Exception):
    """A backup refused: the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Manifest:
    chain_id: str
    consensus: str
    genesis_hash: bytes
    height: int  # H: the backup holds blocks 1..H and the state after H
    block_hash: bytes  # of block H
    state_root: bytes  # after H
    lthash: bytes  # the state's LtHash lanes after H
    state_entries: int
    created_unix: int  # when the export read the state (informational, sealed like the rest)
    files: dict[str, FileEntry]

    def encode(self) -> bytes:
        d: dict[str, Any] = {
            "format": FORMAT,
            "chain_id": self.chain_id,
            "consensus": self.consensus,
            "files": {n: {"sha256": f.sha256, "bytes": f.bytes} for n, f in self.files.items()},
        }
        for name in _INT_FIELDS:
            d[name] = getattr(self, name)
        for name in _HEX_FIELDS:
            d[name] = getattr(self, name).hex()
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parses a manifest; refuses anything but the canonical encoding of a valid one (so a
        changed byte cannot hide in whitespace or an unknown field)."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                raise BackupError(f"manifest is not a {FORMAT} manifest")
            files = {
                str(n): FileEntry(str(f["sha256"]), int(f["bytes"]))
                for n, f in dict(d["files"]).items()
            }
            m = cls(
                chain_id=str(d["chain_id"]),
                consensus=str(d["consensus"]),
                genesis_hash=bytes.fromhex(str(d["genesis_hash"])),
                height=int(d["height"]),
                block_hash=bytes.fromhex(str(d["block_hash"])),
                state_root=bytes.fromhex(str(d["state_root"])),
                lthash=bytes.fromhex(str(d["lthash"])),
                state_entries=int(d["state_entries"]),
                created_unix=int(d["created_unix"]),
                files=files,
            )
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BackupError(f"manifest is malformed ({type(e).__name__}: {e})") from None
        if m.encode() != data:
            raise BackupError("manifest is not in canonical form (edited or damaged)")
        return m


def seal(manifest_bytes: bytes) -> bytes:
    return f"sha256 {hashlib.sha256(manifest_bytes).hexdigest()}\n".encode()


def check_seal(seal_bytes: bytes, manifest_bytes: bytes) -> None:
    if seal_bytes != seal(manifest_bytes):
        raise BackupError("manifest does not match its SEAL (edited or damaged)")


def encode_entry(key: bytes, value: bytes) -> bytes:
    """The payload of one state.bin record."""
    return _U32.pack(len(key)) + key + value


def decode_entry(payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < _U32.size:
        raise BackupError("state.bin: truncated entry")
    (n,) = _U32.unpack_from(payload)
    if _U32.size + n > len(payload):
        raise BackupError("state.bin: entry key runs past its record")
    return payload[_U32.size : _U32.size + n], payload[_U32.size + n :]


class ChainVerifier:
    """Streams a backup's records through the trust rule above; memory: the validator-set
    history plus one record. Each method raises BackupError naming the first problem."""

    def __init__(
        self, manifest: Manifest, genesis_bytes: bytes, verify: Verify, decode_tx: DecodeTx
    ) -> None:
        self.m = manifest
        self._verify = verify
        self._decode_tx = decode_tx
        try:
            self.genesis = Genesis.from_json(genesis_bytes)
        except (DecodeError, ValueError) as e:
            raise BackupError(f"genesis.json is not a valid genesis: {e}") from None
        if self.genesis.hash != manifest.genesis_hash:
            raise BackupError("genesis.json does not hash to the manifest's genesis hash")
        if (self.genesis.chain_id, self.genesis.consensus) != (
            manifest.chain_id,
            manifest.consensus,
        ):
            raise BackupError("manifest chain id or consensus differs from its genesis")
        self._bft = self.genesis.consensus == "bft"
        self._acc = LtHash()
        self._entries = 0
        self._last_key: bytes | None = None
        self._vset_raw: dict[bytes, bytes] = {}
        self._vsets: list[tuple[int, tuple[Validator, ...]]] = []
        self._height = 0
        self._prev = manifest.genesis_hash
        self._state_done = False
        self._certified = False

    # -- state -----------------------------------------------------------------------------
    def state_record(self, payload: bytes) -> None:
        key, value = decode_entry(payload)
        if self._last_key is not None and key <= self._last_key:
            raise BackupError("state.bin: entries out of key order")
        self._last_key = key
        self._acc.add(key, value)
        self._entries += 1
        if key.startswith(VSET_PREFIX):
            self._vset_raw[key] = value

    def state_done(self) -> None:
        if self._entries != self.m.state_entries:
            raise BackupError(
                f"state.bin holds {self._entries} entries, the manifest says {self.m.state_entries}"
            )
        if self._acc.lanes() != self.m.lthash or self._acc.digest() != self.m.state_root:
            raise BackupError("state.bin does not hash to the manifest's state root")
        for key, value in self.genesis.writes().items():
            if key.startswith(VSET_PREFIX) and self._vset_raw.get(key) != value:
                raise BackupError("the state's first validator set is not the genesis one")
        try:
            self._vsets = sorted(
                (int.from_bytes(k[len(VSET_PREFIX) :], "big"), decode_validators(v))
                for k, v in self._vset_raw.items()
            )
        except (DecodeError, ValueError) as e:
            raise BackupError(f"state.bin: undecodable validator set: {e}") from None
        self._state_done = True

    def _validators(self, height: int) -> tuple[Validator, ...]:
        current: tuple[Validator, ...] = ()
        for eff, vals in self._vsets:
            if eff > height:
                break
            current = vals
        return current

    # -- blocks ----------------------------------------------------------------------------
    def _check_block(self, payload: bytes, where: str) -> Block:
        try:
            block = Block.decode(payload)
            txs = [self._decode_tx(raw) for raw in block.txs]
        except (DecodeError, ValueError) as e:
            raise BackupError(f"{where}: undecodable block: {e}") from None
        h = block.header
        if h.tx_root != tx_root([tx.id for tx in txs]):
            raise BackupError(f"{where}: block {block.height} tx_root does not match its txs")
        # the tx id (hence tx_root and the block hash) covers the signed body, not the
        # signature: each signature is checked here, once, as the node checked it at admission
        for tx in txs:
            if tx.chain_id != self.m.chain_id or not self._verify(tx.sender, tx.body, tx.signature):
                raise BackupError(
                    f"{where}: block {block.height} tx {tx.id.hex()[:16]} has a bad signature"
                )
        vals = self._validators(block.height)
        if not vals or h.validators_hash != validators_hash(vals):
            raise BackupError(
                f"{where}: block {block.height} validators_hash is not its validator set's"
            )
        why = certificate_problem(
            block, self.m.chain_id, [v.node_id for v in vals], self._bft, self._verify
        )
        if why is not None:
            raise BackupError(f"{where}: block {block.height}: {why}")
        return block

    def block(self, payload: bytes, where: str) -> None:
        if not self._state_done:
            raise BackupError("blocks fed before the state (verifier misuse)")
        block = self._check_block(payload, where)
        if block.height != self._height + 1:
            raise BackupError(f"{where}: block {block.height} where {self._height + 1} belongs")
        if block.height > self.m.height:
            raise BackupError(f"{where}: block {block.height} above the backup height")
        if block.header.prev_hash != self._prev:
            raise BackupError(f"{where}: block {block.height} does not link to its predecessor")
        self._height, self._prev = block.height, block.hash

    def certifier(self, payload: bytes) -> None:
        if self._height != self.m.height:
            raise BackupError(
                f"blocks end at {self._height}, the manifest says height {self.m.height}"
            )
        if self._prev != self.m.block_hash:
            raise BackupError(f"block {self._height} is not the manifest's block hash")
        block = self._check_block(payload, CERTIFIER)
        h = block.header
        if block.height != self.m.height + 1 or h.prev_hash != self._prev:
            raise BackupError(f"{CERTIFIER}: not the block after {self.m.height}")
        if h.state_root != self.m.state_root:
            raise BackupError(f"{CERTIFIER}: certifies another state root than the backup's")
        self._certified = True

    def done(self) -> None:
        if not self._certified:
            raise BackupError("backup lacks its certifier block (verifier misuse)")
