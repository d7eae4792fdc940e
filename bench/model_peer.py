"""One validator of the model peer (bench/model.py), run as a process by `model.run`:
`python -m bench.model_peer --index I --control HOST:PORT --config F --txs F --dir D`.

One asyncio loop, one TCP connection to every other validator (outbound for sending; each
peer's inbound one for receiving, frames of u32 length | payload, in order per sender), the
happy path only: no timers, rounds other than 0, retries, stashing beyond "a later height
waits for its height", or recovery. Its own data directory holds what a node's holds: block
segments (`storage.blocks.BlockStore`), the LMDB state (`storage.state.StateStore`) and the
consensus WAL (`storage.wal.ConsensusWal`). The work per block, with the node's own code:

Every validator, per tx, once (what our mempool's admission does, `Replica.admit`):
    decode_tx, check_stateless, has_tx (LMDB), crypto.verify (Ed25519), preflight (LMDB)
    -- except a Raft follower, which decodes only (the crash-fault model trusts the leader)

BFT (`Bft`, Tendermint's happy path; proposer of height h = validator h mod N):
    proposer   admit its block's txs, build the header (tx_root, the lagging state root),
               sign the proposal, WAL: block + its own prevote (one fdatasync), send
               PROPOSAL and PREVOTE (consensus.bft.codec) to all
    the others verify the proposal's signature, admit its txs, check the header, tx_root
               and nonces (`Replica.validate`, as `Node.validate_block`), WAL: prevote
               (fdatasync), send a signed PREVOTE to all
    all        verify every vote received; at 2f+1 prevotes: WAL: block + proof-of-lock +
               precommit (fdatasync), send a signed PRECOMMIT; at 2f+1 precommits: commit
Raft (`Raft`, a fixed leader = validator 0, majority commit):
    leader     admit its block's txs, build the header, WAL: entry (fdatasync), send APPEND;
               at a majority (itself + acks): sign the 1-signature certificate, commit, send
               COMMIT, start the next block
    followers  on APPEND: WAL: entry (fdatasync), ACK; on COMMIT: decode the txs, commit
Commit, everywhere (`Replica.commit`, as `Node.apply`): BlockStore.append (fdatasync),
    execute_block (LtHash state root), StateStore.commit_block (one LMDB txn, synced).
One block is in flight: the next starts when its proposer has committed the previous one.
With `gossip` (bft), every validator admits block h+1's txs right after its precommit for h,
as ours admits gossiped txs ahead of their block; the proposal then finds them admitted.

Invariant: a message that depends on durable state is sent only after the WAL save that
records it returned (house rule 5), as the node's driver does (persist, send, apply)."""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from consortium_node import crypto
from consortium_node.consensus.api import Entry
from consortium_node.consensus.bft import codec
from consortium_node.consensus.bft.codec import Kind, Proposal, Vote
from consortium_node.ledger.block import (
    Block,
    BlockHeader,
    CommitCertificate,
    commit_sign_bytes,
    quorum,
    tx_root,
)
from consortium_node.ledger.errors import DecodeError, TxRejected
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    PARAMS,
    check_nonces,
    execute_block,
    preflight,
    validators_hash,
)
from consortium_node.ledger.tx import Tx, check_stateless
from consortium_node.storage.blocks import BlockStore
from consortium_node.storage.state import StateStore
from consortium_node.storage.wal import ConsensusWal
from consortium_node.transport.codec import decode_tx

from .model import (
    CHAIN_ID,
    ModelConfig,
    genesis_hash,
    genesis_lthash,
    genesis_writes,
    node_keys,
    read_txs,
    validator_set,
)

_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")
MAX_TX_BYTES = PARAMS["max_tx_bytes"][0]
APPEND, ACK, COMMIT = b"A", b"K", b"C"  # the Raft shape's messages: kind | u64 height | body


class Refused(Exception):
    """A message or block the happy path does not expect: the run fails (`Peer.fail`)."""


class Replica:
    """One validator's durable state and the node's per-tx / per-block work on it."""

    def __init__(self, cfg: ModelConfig, directory: Path) -> None:
        self.cfg = cfg
        self.blocks = BlockStore(directory / "blocks")
        self.state = StateStore(directory / "state")
        self.wal = ConsensusWal(directory / "wal" / "consensus.wal") if cfg.wal else None
        acc = genesis_lthash(cfg)
        self.state.init_genesis(
            dict(genesis_writes(cfg)), acc.lanes(), acc.digest(), genesis_hash(cfg)
        )
        self.lthash, self.root = acc, acc.digest()
        self.height, self.last_hash, self.last_time = 0, genesis_hash(cfg), 0
        self.vhash = validators_hash(validator_set(cfg))
        self.hashes: list[str] = []
        self.commits_ns: list[int] = []
        self.starts_ns: dict[int, int] = {}  # heights this validator proposed
        self.signature_checks = self.signatures = self.fsyncs = 0
        self._entry = 1

    def admit(
        self, raws: tuple[bytes, ...] | list[bytes], pooled: dict[bytes, Tx] | None = None
    ) -> list[Tx]:
        """The mempool's admission of each tx, under one state snapshot: every validator
        checks every signature exactly once (house rule 4). A tx found in `pooled` (by its
        exact bytes, as `Mempool.by_raw`) was admitted before and is taken from there."""
        out = []
        checked = 0
        with self.state.snapshot() as snap:
            for raw in raws:
                if pooled is not None and (tx := pooled.pop(raw, None)) is not None:
                    out.append(tx)
                    continue
                checked += 1
                tx = decode_tx(raw)
                check_stateless(tx, CHAIN_ID, MAX_TX_BYTES)
                if snap.has_tx(tx.id):
                    raise Refused(f"tx {tx.id.hex()} is committed already")
                if not crypto.verify(tx.sender, tx.body, tx.signature):
                    raise Refused(f"bad signature on {tx.id.hex()}")
                preflight(snap, tx)
                out.append(tx)
        self.signature_checks += checked
        return out

    def header(self, txs: list[Tx], proposer: bytes) -> BlockHeader:
        return BlockHeader(
            height=self.height + 1,
            time_ms=max(int(time.time() * 1000), self.last_time + 1),
            prev_hash=self.last_hash,
            tx_root=tx_root([t.id for t in txs]),
            state_root=self.root,  # execution lags one block, as in ours
            validators_hash=self.vhash,
            proposer=proposer,
        )

    def validate(self, block: Block, txs: list[Tx], proposer: bytes) -> None:
        """`Node.validate_block`'s checks of a proposed block (its txs already admitted)."""
        h = block.header
        if (h.height, h.prev_hash, h.state_root) != (
            self.height + 1,
            self.last_hash,
            self.root,
        ):
            raise Refused(f"block {h.height} does not extend {self.height} with our state")
        if h.validators_hash != self.vhash or h.proposer != proposer:
            raise Refused("wrong validator set or proposer")
        if h.time_ms <= self.last_time or h.tx_root != tx_root([t.id for t in txs]):
            raise Refused("block time or tx_root")
        with self.state.snapshot() as snap:
            why = check_nonces(snap, txs)
        if why is not None:
            raise Refused(why)

    def persist(self, hard_state: bytes | None, entries: list[bytes]) -> None:
        """One WAL save (one fdatasync) of what the next message depends on."""
        if self.wal is None:
            return
        es = []
        for data in entries:
            es.append(Entry(self._entry, self.height + 1, data))
            self._entry += 1
        self.wal.save(hard_state, es)
        self.fsyncs += 1

    def commit(self, block: Block, txs: list[Tx]) -> None:
        """`Node.apply`: append (fdatasync), execute, one LMDB transaction (synced)."""
        self.blocks.append(block)
        with self.state.snapshot() as snap:
            result = execute_block(snap, self.lthash, block.height, txs)
        self.state.commit_block(block.height, block.hash, result)
        self.fsyncs += 2
        self.height, self.last_hash = block.height, block.hash
        self.lthash, self.root = LtHash(result.lthash), result.state_root
        self.last_time = block.header.time_ms
        self.hashes.append(block.hash.hex())
        self.commits_ns.append(time.monotonic_ns())

    def result(self, index: int, late: int) -> dict[str, Any]:
        return {
            "index": index,
            "height": self.height,
            "state_root": self.root.hex(),
            "block_hashes": self.hashes,
            "commits_ns": self.commits_ns,
            "starts_ns": {str(h): t for h, t in self.starts_ns.items()},
            "signature_checks": self.signature_checks,
            "signatures": self.signatures,
            "fsyncs": self.fsyncs,
            "late": late,
        }

    def close(self) -> None:
        self.blocks.close()
        self.state.close()
        if self.wal is not None:
            self.wal.close()


class Net:
    """Outbound connections by peer index. `send` only buffers; the loop drains after each
    inbound message and after start."""

    def __init__(self) -> None:
        self.writers: dict[int, asyncio.StreamWriter] = {}

    def send(self, to: int, payload: bytes) -> None:
        self.writers[to].write(_LEN.pack(len(payload)) + payload)

    def broadcast(self, payload: bytes) -> None:
        frame = _LEN.pack(len(payload)) + payload
        for w in self.writers.values():
            w.write(frame)

    async def drain(self) -> None:
        for w in self.writers.values():
            await w.drain()


class Peer:
    """What both shapes share: the inbox (one message at a time, no re-entry), the txs of
    the run, keys, and the end of the run."""

    def __init__(
        self, cfg: ModelConfig, index: int, replica: Replica, txs: list[bytes], net: Net
    ) -> None:
        self.cfg, self.index, self.replica, self.net = cfg, index, replica, net
        self.keys = node_keys(cfg)
        self.key = self.keys[index]
        self.pubs = [k.public for k in self.keys]
        self.all_txs = txs
        self.done = asyncio.Event()
        self.error = ""
        self.late = 0  # messages of a committed height (the vote or ack a quorum did not need)
        self._inbox: deque[tuple[int, bytes]] = deque()
        self._draining = False

    def sign(self, data: bytes) -> bytes:
        self.replica.signatures += 1
        return self.key.sign(data)

    def verify(self, signer: bytes, data: bytes, sig: bytes) -> bool:
        self.replica.signature_checks += 1
        return crypto.verify(signer, data, sig)

    def block_txs(self, height: int) -> list[bytes]:
        b = self.cfg.block_txs
        return self.all_txs[(height - 1) * b : height * b]

    def fail(self, why: str) -> None:
        """End the run with an error: on the happy path nothing is ever refused, so a
        refusal is a broken model (or altered input), reported at once instead of stalling
        the others until the timeout."""
        if not self.error:
            self.error = f"validator {self.index}: {why}"
        self.done.set()

    def start_safely(self) -> None:
        try:
            self.start()
        except (Refused, DecodeError, TxRejected) as e:
            self.fail(f"{type(e).__name__}: {e}")

    def on_message(self, sender: int, payload: bytes) -> None:
        """Queue a message and, unless already inside this loop (a commit replaying its
        stash), handle the queue in order, one message at a time."""
        self._inbox.append((sender, payload))
        if self._draining:
            return
        self._draining = True
        try:
            while self._inbox and not self.done.is_set():
                s, p = self._inbox.popleft()
                try:
                    self.handle(s, p)
                except (Refused, DecodeError, TxRejected) as e:
                    self.fail(f"on a message from validator {s}: {type(e).__name__}: {e}")
        finally:
            self._draining = False

    def finish_height(self) -> bool:
        """After a commit: True if the run goes on."""
        if self.replica.height >= self.cfg.blocks:
            self.done.set()
            return False
        return True

    def start(self) -> None:
        raise NotImplementedError

    def handle(self, sender: int, payload: bytes) -> None:
        raise NotImplementedError


class Bft(Peer):
    """Tendermint's happy path at round 0 with the engine's own messages and sign-bytes."""

    def __init__(
        self, cfg: ModelConfig, index: int, replica: Replica, txs: list[bytes], net: Net
    ) -> None:
        super().__init__(cfg, index, replica, txs, net)
        self.q = quorum(cfg.validators, bft=True)
        self.stash: dict[int, list[tuple[int, bytes]]] = {}
        self.pool: dict[bytes, Tx] = {}  # `gossip`: txs admitted before their block
        self._reset()

    def _reset(self) -> None:
        self.height = self.replica.height + 1
        self.block: Block | None = None
        self.block_bytes = b""
        self.txs: list[Tx] = []
        self.prevotes: dict[bytes, tuple[bytes, bytes]] = {}  # validator -> (hash, raw vote)
        self.precommits: dict[bytes, tuple[bytes, bytes]] = {}  # validator -> (hash, sig)
        self.precommitted = False

    def proposer(self, height: int) -> int:
        return height % self.cfg.validators

    def start(self) -> None:
        self._admit_ahead(1)
        if self.proposer(self.height) == self.index:
            self._propose()

    def _admit_ahead(self, height: int) -> None:
        """`gossip`: admit block `height`'s txs now, as ours admits the txs gossiped to it
        while earlier blocks are decided (the proposal then finds them pooled)."""
        if self.cfg.gossip and height <= self.cfg.blocks:
            raws = self.block_txs(height)
            self.pool.update(zip(raws, self.replica.admit(raws), strict=True))

    def handle(self, sender: int, payload: bytes) -> None:
        m = codec.decode(payload)
        if not isinstance(m, Proposal | Vote) or m.round != 0:
            raise Refused("not a round-0 proposal or vote")
        if m.height < self.height:
            self.late += 1  # the vote a quorum did not need (dropped unchecked, as ours)
            return
        if m.height > self.height:  # a faster validator's next height: wait for ours
            self.stash.setdefault(m.height, []).append((sender, payload))
            return
        if isinstance(m, Proposal):
            self._on_proposal(m, payload)
        else:
            self._on_vote(m, payload)
        self._progress()

    def _propose(self) -> None:
        r = self.replica
        r.starts_ns[self.height] = time.monotonic_ns()
        raws = self.block_txs(self.height)
        self.txs = r.admit(raws, self.pool)
        block = Block(r.header(self.txs, self.key.public), tuple(raws))
        self.block, self.block_bytes = block, block.encode()
        data = codec.proposal_sign_bytes(CHAIN_ID, self.height, 0, -1, block.hash)
        p = Proposal(self.height, 0, -1, self.key.public, block, self.sign(data))
        # one Ready of ours: the block and our prevote on it, durable together, then sent
        self._vote(Kind.PREVOTE, [b"B" + self.block_bytes], codec.encode(p, self.block_bytes))

    def _on_proposal(self, p: Proposal, payload: bytes) -> None:
        want = self.pubs[self.proposer(self.height)]
        if self.block is not None or p.proposer != want or p.valid_round != -1:
            raise Refused("unexpected proposal")
        data = codec.proposal_sign_bytes(CHAIN_ID, p.height, 0, -1, p.block.hash)
        if not self.verify(p.proposer, data, p.signature):
            raise Refused("bad proposal signature")
        txs = self.replica.admit(p.block.txs, self.pool)
        self.replica.validate(p.block, txs, want)
        self.block, self.txs = p.block, txs
        self.block_bytes = payload[codec.PROPOSAL_HEAD_LEN :]
        self._vote(Kind.PREVOTE, [])

    def _vote(self, kind: Kind, entries: list[bytes], first: bytes = b"") -> None:
        """Sign our vote for the block, make it durable (with `entries`), then send `first`
        (the proposal, if ours) and the vote."""
        assert self.block is not None
        bh = self.block.hash
        data = codec.vote_sign_bytes(CHAIN_ID, kind, self.height, 0, bh)
        v = Vote(kind, self.height, 0, self.key.public, bh, self.sign(data))
        raw = codec.encode(v)
        self.replica.persist(raw, entries)  # the signed vote is the hard state
        if first:
            self.net.broadcast(first)
        self.net.broadcast(raw)
        self._add(v, raw)

    def _on_vote(self, v: Vote, raw: bytes) -> None:
        votes = self.prevotes if v.kind is Kind.PREVOTE else self.precommits
        if v.validator not in self.pubs or v.validator in votes:
            raise Refused("vote of a stranger, or a second one")
        data = codec.vote_sign_bytes(CHAIN_ID, v.kind, v.height, 0, v.block_hash)
        if not self.verify(v.validator, data, v.signature):
            raise Refused("bad vote signature")
        self._add(v, raw)

    def _add(self, v: Vote, raw: bytes) -> None:
        if v.kind is Kind.PREVOTE:
            self.prevotes[v.validator] = (v.block_hash, raw)
        else:
            self.precommits[v.validator] = (v.block_hash, v.signature)

    def _progress(self) -> None:
        b = self.block
        if b is None:
            return
        polka = [raw for h, raw in self.prevotes.values() if h == b.hash]
        if not self.precommitted and len(polka) >= self.q:
            self.precommitted = True
            # as the engine's L36: the block (the proposer's is in the WAL already) and the
            # proof of lock (2f+1 prevotes) go with the signed precommit
            entries = [b"P" + b"".join(polka)]
            if self.proposer(self.height) != self.index:
                entries.insert(0, b"B" + self.block_bytes)
            self._vote(Kind.PRECOMMIT, entries)
            self._admit_ahead(self.height + 1)  # while the others' precommits come in
        sigs = sorted((val, s) for val, (h, s) in self.precommits.items() if h == b.hash)
        if len(sigs) >= self.q:
            cert = CommitCertificate(self.height, 0, b.hash, tuple(sigs))
            self.replica.commit(b.with_certificate(cert), self.txs)
            self._reset()
            if not self.finish_height():
                return
            if self.proposer(self.height) == self.index:
                self._propose()
            for sender, payload in self.stash.pop(self.height, []):
                self.on_message(sender, payload)  # queued: the loop in on_message runs them


class Raft(Peer):
    """A fixed leader (index 0) replicating one block at a time; commit at a majority."""

    LEADER = 0

    def __init__(
        self, cfg: ModelConfig, index: int, replica: Replica, txs: list[bytes], net: Net
    ) -> None:
        super().__init__(cfg, index, replica, txs, net)
        self.majority = cfg.validators // 2 + 1
        self.block: Block | None = None
        self.txs: list[Tx] = []
        self.acks: set[int] = set()
        self.pending: dict[int, Block] = {}  # followers: appended, not yet committed

    def start(self) -> None:
        if self.index == self.LEADER:
            self._propose()

    def _propose(self) -> None:
        r = self.replica
        h = r.height + 1
        r.starts_ns[h] = time.monotonic_ns()
        raws = self.block_txs(h)
        self.txs = r.admit(raws)
        self.block = Block(r.header(self.txs, self.key.public), tuple(raws))
        body = self.block.encode()
        r.persist(None, [body])  # the leader's own log append counts toward the majority
        self.acks = {self.index}
        self.net.broadcast(APPEND + _U64.pack(h) + body)

    def handle(self, sender: int, payload: bytes) -> None:
        kind, (h,) = payload[:1], _U64.unpack_from(payload, 1)
        body = payload[1 + _U64.size :]
        if kind == ACK and self.index == self.LEADER:
            self._on_ack(sender, h)
        elif kind == APPEND and sender == self.LEADER:
            block = Block.decode(body)
            if block.height != h or h != self.replica.height + 1 + len(self.pending):
                raise Refused(f"append of {h} out of order")
            self.replica.persist(None, [body])  # durable before the ack (rule 5)
            self.pending[h] = block
            self.net.send(self.LEADER, ACK + _U64.pack(h))
        elif kind == COMMIT and sender == self.LEADER:
            self._on_commit(h, body)
        else:
            raise Refused(f"unexpected raft message {kind!r}")

    def _on_ack(self, sender: int, h: int) -> None:
        if self.block is None or h != self.block.height:
            self.late += 1  # an ack the majority did not need
            return
        self.acks.add(sender)
        if len(self.acks) < self.majority:
            return
        b = self.block
        sig = self.sign(commit_sign_bytes(CHAIN_ID, h, 0, b.hash))
        self.replica.commit(
            b.with_certificate(CommitCertificate(h, 0, b.hash, ((self.key.public, sig),))), self.txs
        )
        self.net.broadcast(COMMIT + _U64.pack(h) + sig)
        self.block = None
        if self.finish_height():
            self._propose()

    def _on_commit(self, h: int, sig: bytes) -> None:
        block = self.pending.pop(h, None)
        if block is None or h != self.replica.height + 1:
            raise Refused(f"commit of {h} without its append")
        txs = [decode_tx(raw) for raw in block.txs]  # no re-verification: crash-fault model
        cert = CommitCertificate(h, 0, block.hash, ((self.pubs[self.LEADER], sig),))
        self.replica.commit(block.with_certificate(cert), txs)
        self.finish_height()


# --------------------------------------------------------------------------- process


async def _tell(w: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    w.write(json.dumps(msg).encode() + b"\n")
    await w.drain()


async def _hear(r: asyncio.StreamReader, key: str) -> Any:
    line = await r.readline()
    if not line:
        raise ConnectionError(f"the parent closed the control connection before {key!r}")
    return json.loads(line)[key]


async def serve(a: argparse.Namespace, cfg: ModelConfig) -> None:
    replica = Replica(cfg, Path(a.dir))
    net = Net()
    shape = Bft if cfg.shape == "bft" else Raft
    node = shape(cfg, a.index, replica, read_txs(Path(a.txs)), net)
    inbound: set[int] = set()
    joined = asyncio.Event()

    async def on_inbound(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        peer = (await reader.readexactly(1))[0]
        inbound.add(peer)
        if len(inbound) == cfg.validators - 1:
            joined.set()
        try:
            while True:
                (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
                node.on_message(peer, await reader.readexactly(n))
                await net.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the peer closed: the run is over
        except Exception:
            node.fail(traceback.format_exc())

    host, port = a.control.rsplit(":", 1)
    cr, cw = await asyncio.open_connection(host, int(port))
    server = await asyncio.start_server(on_inbound, "127.0.0.1", 0)
    try:
        await _tell(cw, {"index": a.index, "listening": server.sockets[0].getsockname()[1]})
        peers = await _hear(cr, "peers")
        for j, addr in enumerate(peers):
            if j != a.index:
                h, p = addr.rsplit(":", 1)
                _, w = await asyncio.open_connection(h, int(p))
                w.write(bytes([a.index]))
                net.writers[j] = w
        await net.drain()
        await joined.wait()
        await _tell(cw, {"ready": True})
        await _hear(cr, "go")
        node.start_safely()
        await net.drain()
        await node.done.wait()
        if node.error:
            await _tell(cw, {"error": node.error})
        else:
            await _tell(cw, {"result": replica.result(a.index, node.late)})
        await cr.read()  # stay connected (and reachable by the others) until the parent closes
    finally:
        server.close()
        replica.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.model_peer")
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--control", required=True, help="the parent's HOST:PORT")
    ap.add_argument("--config", required=True, help="ModelConfig as JSON")
    ap.add_argument("--txs", required=True, help="the run's signed txs (bench.model.write_txs)")
    ap.add_argument("--dir", required=True, help="this validator's data directory")
    a = ap.parse_args()
    cfg = ModelConfig.from_json(Path(a.config).read_text())
    try:
        asyncio.run(asyncio.wait_for(serve(a, cfg), cfg.timeout))
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
