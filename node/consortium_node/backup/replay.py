"""Replay: re-execute a verified backup's blocks from its genesis into a state store.

The second, deep half of verification and the way a restore builds the node's state: the
world state, receipts and tx index after each block come from the chain's own state machine
(`ledger.state.execute_block`, committed with `StateStore.commit_block`, as runtime/node.py
does), and before executing block h the header of h must carry exactly the state root the
replay holds after h-1 — so every intermediate state root is checked, not only the last,
and the final state must equal the backup's certified state (root and LtHash lanes).

Why this closes the trust rule of format.py: a validator-set change committed by block c
takes effect at c + VALIDATOR_CHANGE_DELAY > c, so the set that must certify block h is
fixed by blocks below h; blocks 1..h-1 being genuine (induction) makes the set of h genuine,
and the final-state equality shows the set history ChainVerifier used is the replayed one.

Called by backup/archive.py (`verify --replay`) and backup/restore.py (always)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..contracts import WasmEngine
from ..ledger.block import Block
from ..ledger.contracts import ContractsUnavailable
from ..ledger.errors import DecodeError
from ..ledger.genesis import Genesis
from ..ledger.lthash import LtHash
from ..ledger.state import execute_block
from ..ledger.tx import Tx
from ..storage.blocks import read_records
from ..storage.state import StateStore
from .format import BLOCKS, BackupError, DecodeTx, Manifest


def backup_blocks(root: Path, m: Manifest) -> Iterator[Block]:
    """Blocks 1..H of a backup directory, in order (already verified by ChainVerifier)."""
    for name in sorted(n for n in m.files if n.startswith(BLOCKS + "/")):
        for payload in read_records(root / name):
            yield Block.decode(payload)


def replay(root: Path, m: Manifest, genesis: Genesis, state_dir: Path, decode_tx: DecodeTx) -> None:
    """Executes the backup in `root` into a new StateStore at `state_dir` (must not exist),
    flushed to disk when done. Raises BackupError on the first state root that differs."""
    if state_dir.exists():
        raise BackupError(f"{state_dir} exists (replay writes a new state only)")
    store = StateStore(state_dir, sync=False)  # one flush at the end, not one per block
    try:
        acc = genesis.lthash()
        store.init_genesis(genesis.writes(), acc.lanes(), acc.digest(), genesis.hash)
        lanes, state_root = acc.lanes(), acc.digest()
        vm = WasmEngine()  # contract calls re-execute as on the nodes (no module cache)
        for block in backup_blocks(root, m):
            if block.header.state_root != state_root:
                raise BackupError(
                    f"replay: block {block.height} carries another state root than executing "
                    f"blocks 1..{block.height - 1} gives"
                )
            try:
                txs: list[Tx] = [decode_tx(raw) for raw in block.txs]
            except DecodeError as e:
                raise BackupError(f"replay: block {block.height}: {e}") from None
            try:
                with store.snapshot() as snap:
                    result = execute_block(snap, LtHash(lanes), block.height, txs, vm)
            except ContractsUnavailable as e:
                raise BackupError(f"replay: block {block.height}: {e}") from None
            store.commit_block(block.height, block.hash, result)
            lanes, state_root = result.lthash, result.state_root
        if (state_root, lanes) != (m.state_root, m.lthash):
            raise BackupError("replay: executing the blocks does not give the backup's state")
        store.flush()
    finally:
        store.close()
