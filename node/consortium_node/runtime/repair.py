"""Start-up repair of the block store from peers: the store cut a damaged tail at open
(storage/blocks.py keeps the cut bytes aside) and so lost committed blocks that the state
had already applied. Before the node serves or takes part in consensus, this fetches blocks
`repair_from`..height from its peers in turn (SyncBlocks) and hands each to
`Node.restore_block`, which stores it only if it hashes to what this node's own state recorded
for that height and its commit certificate verifies. A peer that cannot help (down, behind,
or serving something else) is skipped; the node keeps trying until the store is whole or it
is told to stop. Called by runtime/service.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from ..ledger.errors import TxRejected
from ..transport.peers import PeerHub
from .node import Node

log = logging.getLogger(__name__)
RETRY_S = 1.0  # after a round in which no peer gave a missing block


class _Stop(Protocol):
    def is_set(self) -> bool: ...
    async def wait(self) -> bool: ...


async def repair_block_store(node: Node, hub: PeerHub, stop: _Stop) -> bool:
    """True once every missing block is stored; False if `stop` was set first."""
    turn = 0
    while node.repair_from is not None:
        if stop.is_set():
            return False
        peers = sorted(hub.links)
        if not peers:
            log.error("block store repair: no peers configured to fetch from")
        else:
            peer = peers[turn % len(peers)]
            turn += 1
            if await _from_peer(node, hub, peer) > 0:
                continue  # progress: go on (with the next peer) without waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_S)
    return True


async def _from_peer(node: Node, hub: PeerHub, peer: bytes) -> int:
    """Restores what `peer` serves of the missing range; the number of blocks stored."""
    got = 0
    blocks = hub.fetch_blocks(peer, node.blocks.height + 1)
    try:
        async for block in blocks:
            if node.repair_from is None or block.height > node.height:
                break
            node.restore_block(block)
            got += 1
    except TxRejected as e:
        log.warning(
            "block store repair refused a peer's block",
            extra={"fields": {"peer": peer.hex()[:16], "reason": e.message}},
        )
    except Exception as e:  # a peer failure (down, refused): try the next one
        log.warning(
            "block store repair: peer failed",
            extra={"fields": {"peer": peer.hex()[:16], "error": repr(e)[:300]}},
        )
    finally:
        await blocks.aclose()
    return got
