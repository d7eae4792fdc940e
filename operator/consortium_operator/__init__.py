"""consortium_operator: the Kopf operator that reconciles `Consortium` resources into node pods.

It imports consortium_node first, which sets GRPC_ENABLE_FORK_SUPPORT before anything imports
grpc (see consortium_node's docstring)."""

import consortium_node as _consortium_node  # noqa: F401  -- gRPC fork support off, before grpc
