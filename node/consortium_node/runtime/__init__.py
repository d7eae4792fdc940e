"""runtime: the node's single asyncio event loop — mempool admission, block building and
application, and the driver that turns consensus `Ready` batches into fsyncs, sends and
commits. Started by __main__ and by `consortium up`."""
