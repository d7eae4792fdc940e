"""ledger: the pure chain model — transactions, blocks, hashing, Merkle proofs, the state machine.

No I/O, clocks or randomness (import-linter enforced). Used by storage/, runtime/, transport/ and
consensus/."""
