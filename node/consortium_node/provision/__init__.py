"""The provisioning core: a Consortium spec becomes a genesis, per-node configs and a PKI plan.

Pure (no I/O, no clock, no randomness source): keys, certificates' private keys and the time
come in as arguments, so the same inputs give byte-identical outputs wherever they are used.
The executors are thin consumers that do the I/O:

- the operator (consortium_operator: Secrets, ConfigMaps, StatefulSets on Kubernetes),
- `consortium up` / `consortium demo` (consortium_node.localnet: files and local processes),
- `consortium-node dev` (consortium_node.__main__: a one-organisation solo chain).

Modules: `spec` (the model and its validation), `genesis` (genesis from spec), `nodeconfig`
(NodeConfig documents, serialised with `NodeConfig.to_dict()`), `pki` (which CA or
certificate is due, for whom, with which names), `local` (the specs `up` and `dev` run)."""
