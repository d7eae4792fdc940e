"""consensus: pure, deterministic agreement state machines (solo, raft/, bft/), etcd-raft shaped.

Driven only by runtime/ through `Engine` (api.py): no asyncio, grpc, protobuf, time, os or random
imports here (import-linter enforced); time is ticks, randomness is an injected random.Random."""
