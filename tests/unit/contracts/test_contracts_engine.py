"""The wasmtime adapter (contracts/engine.py) against the ABI of docs/CONTRACTS.md: deploy-time
validation, the host functions and their bounds checks, the fuel schedule (exact figures: a
wasmtime or schedule change that moves them must fail here), every "Bad input" item of
issue 16 as a clean failed call, and the compiled-module cache that loads only artefacts
this node wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from consortium_node.contracts.engine import ENGINE_VERSION, WasmEngine
from consortium_node.ledger import contracts as cx
from consortium_node.ledger.hashing import sha256

from tests.support import wat
from tests.support.contract_env import CALLER, Env

pytestmark = pytest.mark.unit

LIMITS = cx.limits_of({}, 10_000_000)  # the chain's default parameters


@pytest.fixture(scope="module")
def vm() -> WasmEngine:
    return WasmEngine()


def call(
    vm: WasmEngine,
    code: bytes,
    method: str,
    data: bytes = b"",
    env: Env | None = None,
    limits: cx.Limits = LIMITS,
) -> cx.CallOutcome:
    return vm.call(sha256(code), code, method, data, env or Env(), limits)


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_engine_version_is_the_one_genesis_records() -> None:
    """A new chain records the engine this release runs; the adapter is that version."""
    assert ENGINE_VERSION == cx.CONTRACTS_ENGINE == WasmEngine().engine


def test_default_schedule() -> None:
    assert (LIMITS.host_call_fuel, LIMITS.host_byte_fuel, LIMITS.memory_pages) == (1000, 1, 16)


def test_counter_exact_fuel_results_and_events(vm: WasmEngine) -> None:
    """Golden fuel: instructions + 1000 per host call + 1 per byte moved."""
    env, c = Env(), wat.counter()
    assert call(vm, c, "init", u64(5), env) == cx.CallOutcome(True, "", 3029)
    out = call(vm, c, "incr", b"", env)
    assert out == cx.CallOutcome(True, "", 4068, u64(6), (cx.Event(b"tick", u64(6)),))
    assert call(vm, c, "get", b"", env) == cx.CallOutcome(True, "", 2033, u64(6))
    assert call(vm, c, "reset", b"", env).fuel_used == 1005
    assert env.state == {}
    assert call(vm, c, "get", b"", env) == cx.CallOutcome(True, "", 2028, u64(0))


def test_caller_and_height(vm: WasmEngine) -> None:
    out = call(vm, wat.counter(), "whoami", b"", Env(height=123))
    assert out.ok and out.result == CALLER + u64(123) and out.fuel_used == 3081


def test_token_exact_fuel(vm: WasmEngine) -> None:
    env, t = Env(), wat.token()
    alice, bob = CALLER, b"\x02" * 32
    assert call(vm, t, "init", u64(1000), env).fuel_used == 4102
    out = call(vm, t, "transfer", bob + u64(300), env)
    assert out.ok and out.fuel_used == 8350
    assert out.events == (cx.Event(b"transfer", bob + u64(300)),)
    assert env.state == {alice: u64(700), bob: u64(300)}
    short = call(vm, t, "transfer", bob + u64(3000), env)
    assert short == cx.CallOutcome(False, "aborted: insufficient", 5157)
    assert call(vm, t, "balance", bob, env) == cx.CallOutcome(True, "", 4103, u64(300))


def test_host_calls_are_charged_from_the_same_fuel(vm: WasmEngine) -> None:
    """Doubling the per-call charge raises fuel used by exactly 1000 per host call."""
    dear = cx.Limits(**{**_fields(LIMITS), "host_call_fuel": 2000})
    env = Env()
    call(vm, wat.counter(), "init", u64(5), env)
    # incr makes 4 host calls (get, put, emit, set_result)
    assert call(vm, wat.counter(), "incr", b"", env, dear).fuel_used == 4068 + 4 * 1000


def _fields(lim: cx.Limits) -> dict[str, int]:
    return {f: getattr(lim, f) for f in lim.__slots__}


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("spin", "out of fuel"),
        ("recurse", "stack overflow (the call recursed too deeply)"),
        ("membomb", "trap: unreachable"),  # memory.grow fails at the 16-page limit
        ("huge_result", "set_result: result exceeds 65536 bytes"),
        ("huge_event", "emit: event exceeds 16384 bytes"),
        ("many_events", "emit: more than 64 events"),
        ("huge_key", "put: key must be 1..256 bytes"),
        ("oob_put", "put: pointer out of bounds"),
        ("oob_get", "get: pointer out of bounds"),
        ("oob_caller", "caller: pointer out of bounds"),
        ("oob_emit", "emit: pointer out of bounds"),
        ("oob_result", "set_result: pointer out of bounds"),
        ("oob_abort", "abort: pointer out of bounds"),
        ("oob_load", "trap: memory out of bounds"),
        ("no_such_method", "the contract has no method 'no_such_method'"),
    ],
)
def test_bad_calls_fail_cleanly(vm: WasmEngine, method: str, reason: str) -> None:
    out = call(vm, wat.bad(), method)
    assert not out.ok and out.reason == reason
    assert out.result == b"" and out.events == ()
    assert 0 <= out.fuel_used <= LIMITS.fuel


def test_out_of_fuel_uses_exactly_the_limit(vm: WasmEngine) -> None:
    out = call(vm, wat.bad(), "spin")
    assert out.fuel_used == LIMITS.fuel
    small = cx.Limits(**{**_fields(LIMITS), "fuel": 500})  # less than one host call
    assert call(vm, wat.counter(), "incr", b"", None, small) == cx.CallOutcome(
        False, "out of fuel", 500
    )


def test_input_read_out_of_bounds(vm: WasmEngine) -> None:
    out = call(vm, wat.bad(), "oob_input", b"0123456789")
    assert out == cx.CallOutcome(False, "input_read: pointer out of bounds", 1013)


def test_memory_limit_is_per_call(vm: WasmEngine) -> None:
    """A contract whose memory needs more than the chain allows fails to instantiate
    (it passed validation under a larger limit)."""
    big = cx.Limits(**{**_fields(LIMITS), "memory_pages": 1000})
    code = wat.wasm(wat.BIG_MEMORY_WAT.replace("1000))", '1000) (func (export "f")))'))
    assert vm.check_code(code, big) is None
    assert call(vm, code, "f") == cx.CallOutcome(False, "memory limit exceeded", 0)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (wat.WASI_WAT, "import wasi_snapshot_preview1.clock_time_get is outside the contract ABI"),
        (wat.WRONG_TYPE_IMPORT_WAT, "import consortium.height is outside the contract ABI"),
        (wat.NO_MEMORY_WAT, "a contract must export its memory as 'memory'"),
        (wat.BIG_MEMORY_WAT, "the memory needs 1000 pages, the chain allows 16"),
        (wat.PARAM_METHOD_WAT, "method 'f' must have type () -> ()"),
        (wat.SIMD_WAT, "code is not a valid WebAssembly module for this chain"),
        (wat.THREADS_WAT, "code is not a valid WebAssembly module for this chain"),
    ],
)
def test_deploy_validation_refuses(vm: WasmEngine, source: str, problem: str) -> None:
    got = vm.check_code(wat.wasm(source), LIMITS)
    assert got is not None and got.startswith(problem)


def test_invalid_wasm_and_size_cap(vm: WasmEngine) -> None:
    assert (vm.check_code(b"\x00asm junk", LIMITS) or "").startswith("code is not a valid")
    tiny = cx.Limits(**{**_fields(LIMITS), "max_code_bytes": 100})
    assert vm.check_code(wat.counter(), tiny) == (
        f"contract code is {len(wat.counter())} bytes, limit 100"
    )
    for code in (wat.counter(), wat.token(), wat.bad()):
        assert vm.check_code(code, LIMITS) is None


def test_exports_exclude_init(vm: WasmEngine) -> None:
    c = wat.counter()
    assert vm.exports(sha256(c), c) == ("fail", "get", "incr", "reset", "whoami")
    assert vm.has_export(sha256(c), c, "init")
    assert not vm.has_export(sha256(wat.token()), wat.token(), "upgrade")


def test_cache_loads_only_what_this_node_wrote(tmp_path: Path) -> None:
    c, h = wat.counter(), sha256(wat.counter())
    first = WasmEngine(cache_dir=tmp_path)
    assert call(first, c, "get").ok
    artefact = tmp_path / ENGINE_VERSION / (h.hex() + ".cwasm")
    assert artefact.exists() and (tmp_path / "cache.key").stat().st_mode & 0o777 == 0o600
    assert WasmEngine(cache_dir=tmp_path).load_cached(h)
    # another node's artefact (another key) is never loaded
    other = tmp_path / "other"
    WasmEngine(cache_dir=other)
    (other / ENGINE_VERSION).mkdir(parents=True)
    (other / ENGINE_VERSION / artefact.name).write_bytes(artefact.read_bytes())
    assert not WasmEngine(cache_dir=other).load_cached(h)
    # an altered artefact is refused, recompiled from the code and rewritten
    blob = bytearray(artefact.read_bytes())
    blob[-1] ^= 1
    artefact.write_bytes(bytes(blob))
    again = WasmEngine(cache_dir=tmp_path)
    assert not again.load_cached(h)
    assert call(again, c, "get").ok
    assert WasmEngine(cache_dir=tmp_path).load_cached(h)
