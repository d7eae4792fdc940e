"""Benchmarks behind `make bench`: our BFT and Raft consortia against etcd and PySyncObj on
the same machine in the same run, the BFT scale table, and the operator's scale figures.

Entry point: `python -m bench.run` (see bench/README.md)."""
