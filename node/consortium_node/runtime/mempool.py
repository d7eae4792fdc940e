"""Bounded mempool: admission checks, per-sender nonce order, batch cut for the block builder.

Invariants:
  * every tx in the pool passed decoding, stateless checks, the signature check (exactly once:
    the pool itself is the verified-signature cache, keyed by tx id) and state preflight; the
    signature check is this node's, except for txs a raft peer forwarded (`verified`: under
    the crash-fault model the node a client handed a tx to checked it; see runtime/node.py);
  * for each sender the pooled nonces are contiguous, starting at the sender's committed
    nonce, so any prefix of arrival order is a valid nonce sequence for a block;
  * txs gossiped by peers may arrive ahead of a gap (a sender that used two nodes): those are
    held aside (`_future`, bounded, verified) and promoted when the gap fills. Clients get the
    gap as an error instead, so they learn about it.
Called by the runtime node (submission, block building, block commit)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from ..ledger.contracts import ContractVM
from ..ledger.errors import Reject, TxRejected
from ..ledger.hashing import sha256
from ..ledger.state import StateReader, nonce_key, preflight, u64
from ..ledger.tx import Invoke, Tx, check_stateless

FUTURE_WINDOW = 256  # how far ahead of a sender's next nonce a gossiped tx may be held
FUTURE_MAX = 10_000  # held txs across all senders


class Mempool:
    def __init__(
        self,
        chain_id: str,
        capacity: int,
        verify: Callable[[bytes, bytes, bytes], bool],
        vm: ContractVM | None = None,
    ) -> None:
        self.chain_id = chain_id
        self._vm = vm  # the contract engine: deploys' code and Invoke methods are checked
        self.capacity = capacity
        self._verify = verify
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()  # arrival order
        self._by_raw: dict[bytes, Tx] = {}  # exact SignedTx bytes -> pooled tx (no re-decode)
        # SHA-256 of the exact bytes -> pooled tx (compact proposals cite txs by it; see
        # runtime/compact.py); it indexes exactly the txs of _by_raw.
        self._by_digest: dict[bytes, Tx] = {}
        self._next_nonce: dict[bytes, int] = {}  # sender -> next admissible nonce (pooled)
        self._count: dict[bytes, int] = {}  # sender -> pooled tx count
        self._future: dict[bytes, dict[int, Tx]] = {}  # sender -> nonce -> held tx (gossip)
        self._future_count = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Tx | None:
        return self._txs.get(tx_id)

    def by_raw(self, raw: bytes) -> Tx | None:
        """The pooled (already verified) tx with exactly these bytes, if any."""
        return self._by_raw.get(raw)

    def by_digest(self, d: bytes) -> bytes | None:
        """The bytes of the pooled tx whose SHA-256 is `d`, if any."""
        tx = self._by_digest.get(d)
        return None if tx is None else tx.raw

    def _unpool(self, tx: Tx) -> None:
        self._by_raw.pop(tx.raw, None)
        self._by_digest.pop(sha256(tx.raw), None)

    def admit(
        self,
        tx: Tx,
        state: StateReader,
        max_tx_bytes: int,
        committed: Callable[[bytes], bool],
        hold_future: bool = False,
        verified: bool = False,
    ) -> None:
        """Raises TxRejected with the reason; on return the tx is pooled (or, with
        `hold_future`, held until its nonce gap fills). `verified`: the signature was checked
        by a trusted peer (raft), so it is not checked again here."""
        check_stateless(tx, self.chain_id, max_tx_bytes)
        if tx.id in self._txs or committed(tx.id):
            raise TxRejected(Reject.DUPLICATE, f"transaction {tx.id.hex()} already submitted")
        want = self._next_nonce.get(tx.sender)
        if want is None:
            want = u64(state.get(nonce_key(tx.sender)))
        if tx.nonce < want:
            raise TxRejected(
                Reject.NONCE_REPLAY, f"nonce {tx.nonce} already used (next nonce is {want})"
            )
        if tx.nonce > want:
            if hold_future and self._hold(tx, want, verified):
                return
            raise TxRejected(
                Reject.NONCE_GAP, f"nonce {tx.nonce} leaves a gap (next nonce is {want})"
            )
        if len(self._txs) >= self.capacity:
            raise TxRejected(Reject.MEMPOOL_FULL, f"mempool is full ({self.capacity} txs)")
        if not verified and not self._verify(tx.sender, tx.body, tx.signature):
            raise TxRejected(Reject.BAD_SIGNATURE, "signature does not verify for the sender key")
        preflight(state, tx, self._vm)
        self._pool(tx)
        self._promote(tx.sender, state)

    def _hold(self, tx: Tx, want: int, verified: bool) -> bool:
        """Holds a gossiped tx that is ahead of its sender's next nonce `want`, verified, until
        the gap fills (`_promote`). False (the caller refuses it as a gap) when it is beyond
        FUTURE_WINDOW or FUTURE_MAX txs are already held.
        Invariant: `_future_count` == the number of held txs, and every held tx verified (here,
        or by the raft peer that forwarded it)."""
        if tx.nonce - want > FUTURE_WINDOW or self._future_count >= FUTURE_MAX:
            return False
        held = self._future.get(tx.sender, {})
        if tx.nonce in held:  # the first tx held for a nonce wins, as in the pool
            raise TxRejected(Reject.DUPLICATE, f"a transaction for nonce {tx.nonce} is held")
        if not verified and not self._verify(tx.sender, tx.body, tx.signature):
            raise TxRejected(Reject.BAD_SIGNATURE, "signature does not verify for the sender key")
        self._future.setdefault(tx.sender, held)[tx.nonce] = tx
        self._future_count += 1
        return True

    def held(self) -> int:
        """How many gossiped txs wait for a nonce gap to fill."""
        return self._future_count

    def _pool(self, tx: Tx) -> None:
        self._txs[tx.id] = tx
        self._by_raw[tx.raw] = tx
        self._by_digest[sha256(tx.raw)] = tx
        self._next_nonce[tx.sender] = tx.nonce + 1
        self._count[tx.sender] = self._count.get(tx.sender, 0) + 1

    def _promote(self, sender: bytes, state: StateReader) -> None:
        """Moves held txs that now continue the sender's nonce sequence into the pool."""
        held = self._future.get(sender)
        if not held:
            return
        want = self._next_nonce.get(sender)
        if want is None:
            want = u64(state.get(nonce_key(sender)))
        for n in [n for n in held if n < want]:
            del held[n]
            self._future_count -= 1
        while want in held and len(self._txs) < self.capacity:
            tx = held.pop(want)
            self._future_count -= 1
            try:
                preflight(state, tx, self._vm)
            except TxRejected:
                break
            self._pool(tx)
            want += 1
        if not held:
            del self._future[sender]

    def take(self, max_txs: int, max_bytes: int, max_fuel: int | None = None) -> list[Tx]:
        """Oldest-first batch for a block proposal (stays pooled until committed). It ends
        at the first tx that does not fit (never reordered): `max_txs`, `max_bytes`, and
        with `max_fuel` (the chain's contract_block_fuel) the sum of the batch's Invoke
        fuel limits — a block's contract calls cannot hold the node's loop for longer than
        that much fuel — except that the batch's first Invoke always fits (a call whose
        limit alone exceeds the cap still gets into a block, with no other call)."""
        out: list[Tx] = []
        size = fuel = 0
        for tx in self._txs.values():
            if len(out) >= max_txs or size + len(tx.raw) > max_bytes:
                break
            if max_fuel is not None and isinstance(tx.payload, Invoke):
                if fuel and fuel + tx.payload.fuel_limit > max_fuel:
                    break  # stays pooled: the next block starts with it
                fuel += tx.payload.fuel_limit
            out.append(tx)
            size += len(tx.raw)
        return out

    def remove_committed(self, txs: Iterable[Tx], state: StateReader) -> None:
        """Drops committed txs, then any pooled tx whose nonce the chain has now consumed
        (another proposer included a different tx of that sender)."""
        senders = set()
        for tx in txs:
            senders.add(tx.sender)
            pooled = self._txs.pop(tx.id, None)
            if pooled is not None:
                self._unpool(pooled)
                self._dec(tx.sender)
        for sender in senders:
            self._promote(sender, state)
            committed = u64(state.get(nonce_key(sender)))
            count = self._count.get(sender, 0)
            if count == 0:
                self._next_nonce.pop(sender, None)
                continue
            # By the contiguity invariant the sender's pooled nonces were [low, next) before
            # this block and the block used [low, committed): all of [committed, next) is still
            # pooled, so next - count == committed exactly when no stale tx (nonce < committed)
            # is left; the whole pool is scanned (once per such sender) only when some are.
            if self._next_nonce[sender] - count >= committed:
                continue
            stale = [t.id for t in self._txs.values() if t.sender == sender and t.nonce < committed]
            for tid in stale:
                self._unpool(self._txs.pop(tid))
                self._dec(sender)
            if self._count.get(sender, 0) == 0:
                self._next_nonce.pop(sender, None)
            elif self._next_nonce[sender] < committed:
                self._next_nonce[sender] = committed

    def _dec(self, sender: bytes) -> None:
        n = self._count[sender] - 1
        if n:
            self._count[sender] = n
        else:
            del self._count[sender]
