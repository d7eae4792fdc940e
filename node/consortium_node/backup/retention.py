"""Retention of scheduled backups: which backups of a chain to delete so that the newest
`keep` remain — a pure function of the backups' manifests.

Called by `consortium backup create --keep N` (cli/backup.py), which the operator's backup
CronJob runs after each successful export; unit-tested in tests/unit/backup/test_retention.py.

Rules (invariants):
  * only backups of the same chain (genesis hash) as the one just made are considered: a
    directory shared by several chains never loses another chain's backups;
  * the newest are kept, newest by (height, creation time, name); the backup just made is
    always kept (it is the newest of its chain, or `protect` names it);
  * an unreadable entry (no manifest) is never deleted: it may be someone's evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Held:
    """One backup in the destination: its file name and what its manifest says."""

    name: str
    genesis_hash: bytes
    height: int
    created_unix: int


def to_prune(held: Sequence[Held], genesis_hash: bytes, keep: int, protect: str = "") -> list[str]:
    """Names of the backups of chain `genesis_hash` beyond the newest `keep` (oldest first);
    never `protect`. `keep` < 1 is refused (ValueError): retention never deletes them all."""
    if keep < 1:
        raise ValueError(f"retention must keep at least 1 backup (got {keep})")
    mine = sorted(
        (h for h in held if h.genesis_hash == genesis_hash),
        key=lambda h: (h.height, h.created_unix, h.name),
        reverse=True,
    )
    kept = {h.name for h in mine[:keep]} | {protect}
    return [h.name for h in reversed(mine) if h.name not in kept]
