"""BFT: the Byzantine-fault-tolerant consensus engine (Tendermint, 3f+1 validators).

The runtime constructs `BftEngine` (fresh) or `BftEngine.restore(...)` (after a restart) and
drives it through the `Engine` protocol; see engine.py for the full driver contract.
"""

from .codec import Decision, Kind, Proposal, Vote, decode, encode
from .engine import BftConfig, BftEngine, HardState

__all__ = [
    "BftConfig",
    "BftEngine",
    "Decision",
    "HardState",
    "Kind",
    "Proposal",
    "Vote",
    "decode",
    "encode",
]
