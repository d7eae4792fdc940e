"""Run a contract the way the chain does, without a chain: a test helper for the example
contracts of examples/contracts/ (tests/unit/contracts/).

Each call goes through the ledger's own call path — `ledger.contracts.run_call` on the node's
`contracts.engine.WasmEngine` (the chain's determinism settings, its host ABI and byte-based
fuel schedule at the default chain parameters) — over an in-memory state; a successful call's
writes are merged, a failed one keeps nothing, exactly as a block does. What this skips is
only the transaction around the call (signature, nonce, the Invoke's admission checks) and the
governance around a deploy: tests/integration/test_contract_cli.py covers those on real
nodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from consortium_node.contracts.engine import WasmEngine
from consortium_node.ledger import contracts as lc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"
WASM = EXAMPLES / "wasm"  # the committed builds of `make contracts`
ADDRESS_LEN = 32
DEFAULT_FUEL = 10_000_000


def example(name: str) -> bytes:
    """The committed module examples/contracts/wasm/<name>.wasm."""
    return (WASM / f"{name}.wasm").read_bytes()


@dataclass(frozen=True)
class Outcome:
    """What a call returned: ok, the failure reason, fuel used, result and events."""

    ok: bool
    reason: str
    fuel_used: int
    result: bytes
    events: tuple[tuple[bytes, bytes], ...]


class _State:
    """The chain state as a plain dict (Reader/PrefixReader of ledger.contracts)."""

    def __init__(self) -> None:
        self.kv: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(key)

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        yield from sorted(self.kv.items())


@dataclass
class Harness:
    """One deployed contract `name` and its state; `call` runs one export as a block would.
    The `init` export is called like any other (DeployContract runs it through the same
    run_call)."""

    code: bytes
    name: str = "example"
    vm: WasmEngine = field(default_factory=WasmEngine)

    def __post_init__(self) -> None:
        problem = self.vm.check_code(self.code, lc.limits_of(_State(), DEFAULT_FUEL))
        if problem is not None:
            raise ValueError(f"not deployable: {problem}")
        self._state = _State()
        self.info = lc.new_info(self.vm, self.name, self.code, 1, None)

    @property
    def state(self) -> dict[bytes, bytes]:
        """The contract's own state (its keys, without the chain's x/s/<name> prefix)."""
        prefix = lc.state_key(self.name, b"")
        return {k[len(prefix) :]: v for k, v in self._state.kv.items() if k.startswith(prefix)}

    def call(
        self,
        method: str,
        data: bytes = b"",
        *,
        caller: bytes = bytes(ADDRESS_LEN),
        height: int = 1,
        fuel: int = DEFAULT_FUEL,
    ) -> Outcome:
        out, writes = lc.run_call(
            self._state, self.vm, self.info, self.code, method, data, caller, height, fuel
        )
        for key, value in writes.items():  # empty unless the call succeeded
            if value is None:
                self._state.kv.pop(key, None)
            else:
                self._state.kv[key] = value
        events = tuple((e.topic, e.data) for e in out.events)
        return Outcome(out.ok, out.reason, out.fuel_used, out.result, events)
