"""consortium_api: generated protobuf/gRPC code for the consortium wire API (see v1/*.proto).

Imported by consortium_node.transport (servers, peer clients) and by the CLI client."""
