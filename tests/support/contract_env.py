"""An in-memory host environment for contract engine calls (what the ledger passes to
WasmEngine.call: state get/put/delete, the caller and the block height). Used by
tests/unit/contracts."""

from __future__ import annotations

CALLER = bytes(range(32))


class Env:
    """A contract's state as a dict (a copy of `state`), called by CALLER at `height`."""

    def __init__(self, state: dict[bytes, bytes] | None = None, height: int = 7) -> None:
        self.state = dict(state or {})
        self.caller = CALLER
        self.height = height

    def get(self, key: bytes) -> bytes | None:
        return self.state.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.state[key] = value

    def delete(self, key: bytes) -> None:
        self.state.pop(key, None)
