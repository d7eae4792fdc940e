"""The engine's fast call path (contracts/engine.py over contracts/capi.py): the pooling
engine gives exactly what the on-demand engine gives (fuel, reason, result, events, writes)
for every export of every test contract, a call never sees another call's memory, globals
or table, a pool slot is never leaked by a failing call, a host-side exception is the
node's fault (re-raised, never a receipt), and a module beyond the pool's limits still runs
(on the on-demand engine) with the same outcome."""

from __future__ import annotations

import random

import pytest
from consortium_node.contracts import engine as eng
from consortium_node.contracts.engine import WasmEngine
from consortium_node.ledger import contracts as cx
from consortium_node.ledger.hashing import sha256

from tests.support import wat
from tests.support.contract_env import CALLER, Env

pytestmark = pytest.mark.unit

LIMITS = cx.limits_of({}, 10_000_000)


def run(vm: WasmEngine, code: bytes, method: str, data: bytes, env: Env) -> cx.CallOutcome:
    return vm.call(sha256(code), code, method, data, env, LIMITS)


@pytest.fixture(scope="module")
def pooled() -> WasmEngine:
    return WasmEngine()


@pytest.fixture(scope="module")
def on_demand() -> WasmEngine:
    return WasmEngine(pooling=False)


def test_the_test_contracts_run_pooled(pooled: WasmEngine) -> None:
    for code in (wat.counter(), wat.token(), wat.bad(), wat.bench_token()):
        assert pooled.runs_pooled(sha256(code), code)


def _inputs(rng: random.Random) -> list[bytes]:
    to = bytes(rng.randrange(256) for _ in range(32))
    return [b"", rng.randbytes(8), to + rng.randrange(10**6).to_bytes(8, "little"), to]


def test_pooled_and_on_demand_agree_on_every_export(
    pooled: WasmEngine, on_demand: WasmEngine
) -> None:
    """Seeded: each export of each test contract with a few inputs and states, through
    both engines, gives equal outcomes and equal writes (a difference would fork a chain
    whose nodes ran different allocators)."""
    seed = 1602
    print(f"seed {seed}")
    rng = random.Random(seed)
    for code in (wat.counter(), wat.token(), wat.bad(), wat.bench_token()):
        methods = (*pooled.exports(sha256(code), code), "init", "no_such_method")
        for method in methods:
            for data in _inputs(rng):
                state = {CALLER: rng.randrange(10**9).to_bytes(8, "little"), b"n": b"\x05" * 8}
                a, b = Env(state), Env(state)
                out_a = run(pooled, code, method, data, a)
                out_b = run(on_demand, code, method, data, b)
                assert out_a == out_b, (method, data.hex())
                assert a.state == b.state, method


ISOLATION_WAT = """(module
  (import "consortium" "set_result" (func $set_result (param i32 i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (table 2 funcref)
  (data (i32.const 0) "AAAA")
  (func $one (result i32) (i32.const 1))
  (func (export "dirty")
    ;; result: the global, the memory word at 100, the data word at 0, the table slot's
    ;; null-ness, all as they were when the call started; then it dirties every one
    (i32.store (i32.const 200) (global.get $g))
    (i32.store (i32.const 204) (i32.load (i32.const 100)))
    (i32.store (i32.const 208) (i32.load (i32.const 0)))
    (i32.store (i32.const 212) (ref.is_null (table.get (i32.const 0))))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store (i32.const 100) (i32.const 0x77777777))
    (i32.store (i32.const 0) (i32.const 0x42424242))
    (i32.store (i32.const 60000) (i32.const 9))
    (table.set (i32.const 0) (ref.func $one))
    (drop (memory.grow (i32.const 3)))
    (call $set_result (i32.const 200) (i32.const 16)))
  (elem declare func $one)
)"""


@pytest.mark.parametrize("pooling", [True, False])
def test_every_call_starts_from_a_fresh_instance(pooling: bool) -> None:
    """Memory, data segments, globals, tables and memory size are the module's own at the
    start of every call, however the previous call left them (the pool reuses slots)."""
    vm = WasmEngine(pooling=pooling)
    code = wat.wasm(ISOLATION_WAT)
    fresh = (0).to_bytes(4, "little") * 2 + b"AAAA" + (1).to_bytes(4, "little")
    for _ in range(2 * eng.POOL_SLOTS + 1):
        out = run(vm, code, "dirty", b"", Env())
        assert out.ok and out.result == fresh, out


def test_failing_calls_never_leak_a_pool_slot(pooled: WasmEngine, on_demand: WasmEngine) -> None:
    """Every way a call can end, many more times than the pool has slots, then a call
    that must still run pooled and succeed."""
    for _ in range(3 * eng.POOL_SLOTS):
        for method in ("spin", "recurse", "membomb", "oob_put", "huge_result"):
            assert not run(pooled, wat.bad(), method, b"", Env()).ok
        assert not run(pooled, wat.counter(), "fail", b"", Env()).ok
    out = run(pooled, wat.counter(), "incr", b"", Env())
    assert out.ok and out == run(on_demand, wat.counter(), "incr", b"", Env())
    assert pooled.runs_pooled(sha256(wat.counter()), wat.counter())


class _Broken(Env):
    def get(self, key: bytes) -> bytes | None:
        raise OSError("disk gone")


def test_a_host_side_exception_is_reraised_not_a_receipt(
    pooled: WasmEngine, on_demand: WasmEngine
) -> None:
    with pytest.raises(OSError, match="disk gone"):
        run(pooled, wat.counter(), "incr", b"", _Broken())
    out = run(pooled, wat.counter(), "incr", b"", Env())  # the engine is still fine
    assert out.ok and out == run(on_demand, wat.counter(), "incr", b"", Env())


START_WAT = (
    "(module"
    + wat._IMPORTS
    + """
  (memory (export "memory") 1)
  (data (i32.const 0) "s")
  (func $start (call $put (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
  (start $start)
  (func (export "f") (drop (call $get (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8))))
)"""
)


@pytest.mark.parametrize("pooling", [True, False])
def test_a_start_function_may_call_the_host(pooling: bool) -> None:
    """A start function runs inside instantiation, before the engine has looked the
    memory up: its host calls find the memory through the caller (before this, the call
    raised AttributeError out of execute_block: a deployed contract could halt a chain)."""
    vm = WasmEngine(pooling=pooling)
    code = wat.wasm(START_WAT)
    assert vm.check_code(code, LIMITS) is None
    env = Env()
    out = run(vm, code, "f", b"", env)
    assert out.ok and env.state == {b"s": b"s"}
    # wasm fuel of both functions + two host calls (1000 each) + 2 key bytes + 1 value byte
    assert out.fuel_used == run(WasmEngine(pooling=not pooling), code, "f", b"", Env()).fuel_used
    assert out.fuel_used > 2003


def test_a_module_beyond_the_pool_runs_on_demand_with_the_same_outcome(
    pooled: WasmEngine, on_demand: WasmEngine
) -> None:
    """Two tables exceed the pool's per-module limit (1): the pooling engine refuses the
    module, so its calls run on the on-demand engine, where the store's limiter (one table)
    refuses the instance exactly as it always did."""
    code = wat.wasm(
        '(module (memory (export "memory") 1) (table 1 funcref) (table 1 funcref)'
        ' (func (export "f")))'
    )
    assert pooled.check_code(code, LIMITS) is None
    assert not pooled.runs_pooled(sha256(code), code)
    want = cx.CallOutcome(False, "table limit exceeded", 0)
    assert run(pooled, code, "f", b"", Env()) == want == run(on_demand, code, "f", b"", Env())


def test_pool_engine_accepts_what_the_chain_allows() -> None:
    """The pool's limits cover the chain's: the largest memory the parameters allow and
    the store limiter's table size instantiate on the pooling engine."""
    pages = cx.CONTRACT_PARAMS["contract_memory_pages"][2]
    code = wat.wasm(
        f'(module (memory (export "memory") {pages}) (table {eng.MAX_TABLE_ELEMENTS} funcref)'
        ' (func (export "f")))'
    )
    vm = WasmEngine()
    assert vm.runs_pooled(sha256(code), code)
    big = cx.Limits(**{**{f: getattr(LIMITS, f) for f in LIMITS.__slots__}, "memory_pages": pages})
    assert vm.call(sha256(code), code, "f", b"", Env(), big).ok


GROW_WAT = (
    "(module"
    + wat._IMPORTS
    + """
  (memory (export "memory") 1)
  (func (export "f")
    ;; a host call before the grow (the engine caches its view of the memory) ...
    (call $caller (i32.const 0))
    (drop (memory.grow (i32.const 2)))
    (i32.store (i32.const 70000) (i32.const 0x61626364))
    (i32.store (i32.const 196600) (i32.const 0x65666768))
    ;; ... and after it: the new pages are visible, the old ones still hold the caller
    (call $emit (i32.const 70000) (i32.const 4) (i32.const 0) (i32.const 32))
    (call $set_result (i32.const 196600) (i32.const 4))
    (call $set_result (i32.const 196600) (i32.const 9)))
)"""
)


@pytest.mark.parametrize("pooling", [True, False])
def test_host_calls_see_the_memory_after_it_grows(pooling: bool) -> None:
    """The host's view of the memory follows memory.grow within a call (new pages are
    readable; a range past the new end is still out of bounds)."""
    vm = WasmEngine(pooling=pooling)
    code = wat.wasm(GROW_WAT)
    out = run(vm, code, "f", b"", Env())
    assert out == cx.CallOutcome(False, "set_result: pointer out of bounds", out.fuel_used)
    ok = wat.wasm(
        GROW_WAT.replace("(i32.const 196600) (i32.const 9)", "(i32.const 0) (i32.const 0)")
    )
    out = run(vm, ok, "f", b"", Env())
    assert out.ok and out.events == (cx.Event(b"dcba", CALLER),) and out.result == b""
    first = wat.wasm(
        GROW_WAT.replace("\n    (call $set_result (i32.const 196600) (i32.const 9))", "")
    )
    assert run(vm, first, "f", b"", Env()).result == b"hgfe"
