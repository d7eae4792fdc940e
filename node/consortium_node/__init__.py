"""consortium_node: the consortium ledger + consensus node (`consortium-node`) and its CLI client
(`consortium`). Layout: ledger/ and consensus/ are the pure core; storage/ persists; transport/
speaks gRPC; runtime/ drives everything from one event loop.

Importing this package turns gRPC's fork support off for the process (unless
GRPC_ENABLE_FORK_SUPPORT is already set). With it on, grpcio 1.80 and later, including the
pinned 1.85.3, can make a child of a process with active gRPC channels abort between fork and
exec: gRPC's post-fork child handler hits EBADF on its epoll fd (grpc/grpc#43055, open). CI
saw this as a README block that exited with -6 in 0.0 s, under "Other threads are currently
calling into gRPC, skipping fork() handlers". Our processes start children only to exec them
(nodes, kubectl, shells), and loadgen's worker processes are spawned, not forked. So no
child of ours uses gRPC after a fork, and the handlers are not needed. gRPC reads the
variable when grpc is imported: every entry point (node, CLI, operator, bench, tests) imports
this package before grpc."""

import os as _os

_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
