"""tests/sim: seeded multi-node simulations of the consensus engines (pytest marker `sim`)."""
