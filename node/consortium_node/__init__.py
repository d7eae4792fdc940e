"""consortium_node: the consortium ledger + consensus node (`consortium-node`) and its CLI client
(`consortium`). Layout: ledger/ and consensus/ are the pure core; storage/ persists; transport/
speaks gRPC; runtime/ drives everything from one event loop."""
