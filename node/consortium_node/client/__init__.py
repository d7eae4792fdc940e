"""The client SDK of a consortium node: what the `consortium` CLI, the operator, `consortium
up`, the tests and the benchmarks use to talk to a node. It talks gRPC to a node's `Ledger`
service; of the node it imports only `crypto` and the pure `ledger` core
(tests/unit/cli/test_client_room.py checks).

One module per job (import from the module, this package re-exports nothing):

- `errors`    `ClientError` / `NodeUnavailable` and the translation of gRPC failures into one
              readable line naming the node.
- `tx`        transaction payloads, `build_body`, `tx_id_of` (SHA-256 of the signed bytes),
              `verify_tx`, `parse_hex`.
- `keys`      `Signer`: a client's Ed25519 key (the key-file format is `crypto.Ed25519Key`'s)
              that builds and signs transactions.
- `discovery` where the node and the TLS material are: contexts file, TLS directory, the data
              directory `consortium up` writes.
- `rpc`       `Client` (one channel, one method per RPC, deadlines) and `connect()`.
- `loadgen`   the load generator behind `consortium bench` and `bench/`.
- `gov`       governance: `gov_action` (a change as a GovAction) and `EndorsementFile`, the
              detached endorsement file of the offline path.
"""
