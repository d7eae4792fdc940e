"""Raft: the crash-fault-tolerant consensus engine (2f+1 nodes), etcd-io/raft shaped.

The runtime constructs `RaftEngine` (fresh) or `RaftEngine.restore(...)` (after a restart) and
drives it through the `Engine` protocol; see engine.py for the full driver contract.
"""

from .codec import Message, MsgType, decode, encode
from .engine import HardState, RaftConfig, RaftEngine

__all__ = ["HardState", "Message", "MsgType", "RaftConfig", "RaftEngine", "decode", "encode"]
