"""storage: durable adapters behind small ports — block segment files (blocks.py), the LMDB world
state and indexes (state.py), the consensus write-ahead log (wal.py). Used by runtime/ only."""
