"""Solo engine: one validator that proposes and commits its own blocks (ChainMaker's SOLO), for
development and single-node chains. It implements the same `Engine` contract as raft/ and
bft/, so the runtime drives all three identically. No crash or Byzantine tolerance.

Cutting: a block is built as soon as the application says a batch is due (`has_pending`: by
size or by the batch interval), or an empty block after `empty_ticks` idle ticks (0 = never)."""

from __future__ import annotations

from ..ledger.block import Block, CommitCertificate, commit_sign_bytes
from .api import EMPTY_READY, Application, Envelope, Ready, Rejection, Status


class SoloEngine:
    def __init__(
        self,
        node_id: bytes,
        chain_id: str,
        app: Application,
        height: int,
        last_hash: bytes,
        empty_ticks: int,
    ) -> None:
        self.node_id = node_id
        self._chain_id = chain_id
        self._app = app
        self._height = height
        self._last_hash = last_hash
        self._empty_ticks = empty_ticks
        self._idle = 0
        self._rejections: list[Rejection] = []

    def tick(self) -> None:
        self._idle += 1

    def step(self, env: Envelope) -> None:
        self._rejections.append(Rejection(env.sender, "solo consensus takes no peer messages"))

    def ready(self) -> Ready:
        block = self._propose()
        rejections, self._rejections = tuple(self._rejections), []
        if block is None:
            return Ready(rejections=rejections) if rejections else EMPTY_READY
        sig = self._app.sign(commit_sign_bytes(self._chain_id, block.height, 0, block.hash))
        cert = CommitCertificate(block.height, 0, block.hash, ((self.node_id, sig),))
        return Ready(committed=(block.with_certificate(cert),), rejections=rejections)

    def _propose(self) -> Block | None:
        empty_due = self._empty_ticks > 0 and self._idle >= self._empty_ticks
        if not (self._app.has_pending() or empty_due):
            return None
        return self._app.build_block(self._height + 1, self._last_hash, allow_empty=empty_due)

    def advance(self, rd: Ready) -> None:
        for b in rd.committed:
            self._height, self._last_hash = b.height, b.hash
            self._idle = 0

    def synced(self, height: int, block_hash: bytes) -> None:
        self._height, self._last_hash = height, block_hash

    def status(self) -> Status:
        return Status(role="solo", leader=self.node_id, height=self._height, round=0)
