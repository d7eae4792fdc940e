"""A TEST HARNESS for example contracts — a test tool, not the product.

It runs a contract module on the `wasmtime` Python package with the host ABI of the
contract issue (module "consortium": input_len, input_read, get, put, delete, emit,
set_result, caller, height, abort) so that tests/unit/contracts/ can exercise and meter the
examples of examples/contracts/ while the node's own engine (node/consortium_node/contracts/,
built on the `wasm` branch) is not merged yet. The chain's engine is the reference: once it
lands, the golden fuel numbers move onto it and this harness only serves as a cross-check.

Semantics kept from the ABI: one fresh instance per call; fuel = wasmtime instruction fuel
plus, per host call, HOST_BASE + HOST_PER_BYTE * bytes read or written; a failed call (trap,
abort, out of fuel, out-of-bounds pointer) keeps none of its writes or events and reports the
reason and the fuel used. Determinism settings as the issue asks: NaN canonicalisation on,
threads/SIMD/relaxed SIMD/multi-memory off, an explicit max stack.

Called by tests/unit/contracts/test_examples.py and test_fuel_golden.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"
WASM = EXAMPLES / "wasm"  # the committed builds of `make contracts`

# The harness's host-call schedule (the chain fixes its own on chain; see the module doc).
HOST_BASE = 100
HOST_PER_BYTE = 1
MAX_RESULT = 4096
MAX_STACK = 512 * 1024
MAX_MEMORY = 16 * 65536
ADDRESS_LEN = 32


def example(name: str) -> bytes:
    """The committed module examples/contracts/wasm/<name>.wasm."""
    return (WASM / f"{name}.wasm").read_bytes()


class CallFailed(Exception):
    """Raised inside a host function to end the call with a reason (becomes a failed receipt)."""


@dataclass(frozen=True)
class Outcome:
    """What a call returned: ok, the failure reason, fuel used, result and events."""

    ok: bool
    reason: str
    fuel_used: int
    result: bytes
    events: tuple[tuple[bytes, bytes], ...]


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.cranelift_nan_canonicalization = True
    config.wasm_threads = False
    config.wasm_simd = False
    config.wasm_relaxed_simd = False
    config.wasm_multi_memory = False
    config.max_wasm_stack = MAX_STACK
    return wasmtime.Engine(config)


class _Host:
    """The host side of one call: the ABI's functions over a store, buffered writes."""

    def __init__(
        self,
        store: wasmtime.Store,
        state: dict[bytes, bytes],
        data: bytes,
        caller: bytes,
        height: int,
    ) -> None:
        self.store, self.state, self.data = store, state, data
        self.caller_key, self.block_height = caller, height
        self.writes: dict[bytes, bytes | None] = {}
        self.events: list[tuple[bytes, bytes]] = []
        self.result = b""
        self.memory: wasmtime.Memory | None = None

    def charge(self, n_bytes: int) -> None:
        cost = HOST_BASE + HOST_PER_BYTE * n_bytes
        left = self.store.get_fuel()
        if cost > left:
            self.store.set_fuel(0)
            raise CallFailed("out of fuel")
        self.store.set_fuel(left - cost)

    def _mem(self, ptr: int, length: int) -> wasmtime.Memory:
        mem = self.memory
        if mem is None or ptr < 0 or length < 0 or ptr + length > mem.data_len(self.store):
            raise CallFailed("pointer out of bounds")
        return mem

    def read(self, ptr: int, length: int) -> bytes:
        return bytes(self._mem(ptr, length).read(self.store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> None:
        self._mem(ptr, len(data)).write(self.store, data, ptr)

    def input_len(self) -> int:
        self.charge(0)
        return len(self.data)

    def input_read(self, ptr: int) -> None:
        self.charge(len(self.data))
        self.write(ptr, self.data)

    def get(self, kptr: int, klen: int, vptr: int, vcap: int) -> int:
        key = self.read(kptr, klen)
        value = self.writes[key] if key in self.writes else self.state.get(key)
        copied = value if value is not None and len(value) <= vcap else b""
        self.charge(klen + len(copied))
        if value is None:
            return -1
        if copied:
            self.write(vptr, copied)
        return len(value)

    def put(self, kptr: int, klen: int, vptr: int, vlen: int) -> None:
        self.charge(klen + vlen)
        self.writes[self.read(kptr, klen)] = self.read(vptr, vlen)

    def delete(self, kptr: int, klen: int) -> None:
        self.charge(klen)
        self.writes[self.read(kptr, klen)] = None

    def emit(self, tptr: int, tlen: int, dptr: int, dlen: int) -> None:
        self.charge(tlen + dlen)
        self.events.append((self.read(tptr, tlen), self.read(dptr, dlen)))

    def set_result(self, ptr: int, length: int) -> None:
        self.charge(length)
        if length > MAX_RESULT:
            raise CallFailed("result too large")
        self.result = self.read(ptr, length)

    def caller(self, ptr: int) -> None:
        self.charge(ADDRESS_LEN)
        self.write(ptr, self.caller_key)

    def height(self) -> int:
        self.charge(0)
        return self.block_height

    def abort(self, ptr: int, length: int) -> None:
        self.charge(length)
        raise CallFailed(self.read(ptr, length).decode("utf-8", "replace"))

    def imports(self, module: wasmtime.Module) -> list[wasmtime.Func]:
        """One host function per import, in the module's order; refuses imports outside the ABI."""
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        signatures: dict[str, tuple[list[wasmtime.ValType], list[wasmtime.ValType]]] = {
            "input_len": ([], [i32]),
            "input_read": ([i32], []),
            "get": ([i32] * 4, [i32]),
            "put": ([i32] * 4, []),
            "delete": ([i32] * 2, []),
            "emit": ([i32] * 4, []),
            "set_result": ([i32] * 2, []),
            "caller": ([i32], []),
            "height": ([], [i64]),
            "abort": ([i32] * 2, []),
        }
        funcs = []
        for imp in module.imports:
            name = str(imp.name)
            if imp.module != "consortium" or name not in signatures:
                raise ValueError(f"import {imp.module}.{imp.name} is outside the ABI")
            params, results = signatures[name]
            fn: Callable[..., object] = getattr(self, name)
            funcs.append(wasmtime.Func(self.store, wasmtime.FuncType(params, results), fn))
        return funcs


@dataclass
class Harness:
    """One contract's code and state; `call` runs one method as a transaction would."""

    code: bytes
    state: dict[bytes, bytes] = field(default_factory=dict)
    engine: wasmtime.Engine = field(default_factory=_engine)

    def __post_init__(self) -> None:
        self.module = wasmtime.Module(self.engine, self.code)

    def call(
        self,
        method: str,
        data: bytes = b"",
        *,
        caller: bytes = bytes(ADDRESS_LEN),
        height: int = 1,
        fuel: int = 10_000_000,
    ) -> Outcome:
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=MAX_MEMORY, instances=1, tables=1)
        store.set_fuel(fuel)
        host = _Host(store, self.state, data, caller, height)
        failure = ""
        try:
            instance = wasmtime.Instance(store, self.module, host.imports(self.module))
            exports = instance.exports(store)
            mem, fn = exports["memory"], exports[method]
            assert isinstance(mem, wasmtime.Memory) and isinstance(fn, wasmtime.Func)
            host.memory = mem
            fn(store)
        except CallFailed as failed:  # wasmtime-py re-raises a host function's exception
            failure = str(failed)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            failure = _reason(err)
        fuel_used = fuel - store.get_fuel()
        if failure:
            return Outcome(False, failure, fuel_used, b"", ())
        # success: the buffered writes become state (None = deleted)
        for key, value in host.writes.items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        return Outcome(True, "", fuel_used, host.result, tuple(host.events))


def _reason(err: Exception) -> str:
    """A wasmtime trap as one line: out of fuel, or the trap's own message."""
    text = str(err)
    if "all fuel consumed" in text:
        return "out of fuel"
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return type(err).__name__
