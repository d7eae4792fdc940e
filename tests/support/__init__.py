"""Support shared by the test tiers and the benchmarks (`bench/`): not tests themselves.

- `wait`       the one bounded wait (`wait_for`): poll observable state until it holds.
- `ports`      free TCP ports on 127.0.0.1.
- `kube`       the one kubectl wrapper (`Kubectl`) and where the kubectl binary is.
- `apiserver`  a throwaway etcd + kube-apiserver on 127.0.0.1 (the operator's integration
               tier and `bench/operator_scale.py`).
- `lint_contracts`  the import-linter `allowlist` contract type (`make lint`).
- `engines`    the consensus fakes (keyring, FakeApp) the engine unit tests and sims share.

Imported as `tests.support.<module>` (the repository root is on `sys.path`: pytest's
`pythonpath = ["."]`, `python -m bench.run` from the root)."""
