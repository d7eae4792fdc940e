"""transport: everything that speaks gRPC — the client Ledger server, peer streams, and the
protobuf <-> domain codec. The only package that imports grpc (import-linter enforced)."""
