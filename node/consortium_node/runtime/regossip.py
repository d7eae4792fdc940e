"""Re-gossip of client-submitted transactions that are still pending: the node a client
submitted to is responsible for getting the transaction to whoever proposes blocks (the Raft
leader, the BFT proposers). Gossip is best effort (a peer link may drop its queue, or the
leader may be elected after the gossip went out), so a transaction that this node admitted
and that is still in its mempool after `first_s` is gossiped again, then at doubling
intervals up to `max_s`, until it leaves the mempool (committed or made stale by its
sender's nonce). Re-sends go to the current proposer only (Node.regossip_pending; to every
peer when none is known, none when this node proposes). Peers drop the copies they already
hold (DUPLICATE), so the cost of a redundant re-send is one message.

Pure scheduling: the caller passes the time. Owned by runtime.node.Node (`track` at
admission, `due` from its tick)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_S = 2.0
MAX_S = 30.0
PER_ROUND = 1000  # at most this many re-sends per call; the rest stay due


class Regossip:
    def __init__(
        self, first_s: float = FIRST_S, max_s: float = MAX_S, per_round: int = PER_ROUND
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.per_round = per_round
        # (due time, sequence, tx id, interval used for the next re-send); the sequence keeps
        # equal due times in admission order (and never compares tx ids)
        self._heap: list[tuple[float, int, bytes, float]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def track(self, tx_id: bytes, now: float) -> None:
        """A transaction this node admitted from a client at `now`."""
        self._push(now + self.first_s, tx_id, self.first_s)

    def _push(self, at: float, tx_id: bytes, interval: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, tx_id, interval))

    def due(self, now: float, pending: Callable[[bytes], T | None]) -> list[T]:
        """The still-pending transactions (`pending(tx_id)`: the pooled tx, or None once it
        left the pool) whose re-send time has come; each is rescheduled at twice its last
        interval (capped at max_s). Transactions no longer pending are forgotten."""
        out: list[T] = []
        while self._heap and self._heap[0][0] <= now and len(out) < self.per_round:
            _, _, tx_id, interval = heapq.heappop(self._heap)
            tx = pending(tx_id)
            if tx is None:
                continue
            out.append(tx)
            nxt = min(interval * 2, self.max_s)
            self._push(now + nxt, tx_id, nxt)
        return out
