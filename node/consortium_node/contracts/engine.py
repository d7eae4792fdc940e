"""The wasmtime engine behind ledger.contracts.ContractVM: deterministic, metered, sandboxed.

Built once per node by runtime (and by tests and the simulator) and injected into
execute_block; also used by the node's QueryContract. docs/CONTRACTS.md is the ABI.

Determinism (the same fuel, result and writes on every node running this engine version):
  - fuel metering on (wasmtime counts instructions); host calls are charged on top by the
    chain's byte-based schedule (`Limits.host_call_fuel` + `host_byte_fuel` per byte), by
    lowering the store's remaining fuel inside the host function, so one counter is exact;
  - NaN canonicalisation on (float results are bit-identical across CPUs);
  - threads, SIMD, relaxed SIMD, multi-memory, memory64 and GC off (nondeterministic or not
    needed); an explicit maximum wasm stack (deep recursion traps the same everywhere);
  - no WASI, no clock, no randomness: the only imports a module may have are the ABI's.
A fresh store per call carries the call's limits: memory pages, one instance, one table of
at most MAX_TABLE_ELEMENTS, one memory, and the fuel limit.

Failure never escapes as an exception: every trap, out-of-fuel, abort, limit or bad host
pointer becomes `CallOutcome(ok=False, reason=...)` with the fuel used until then; reasons are
fixed sentences (never wasmtime's backtrace text) so they are equal on every node.

Compiled modules are cached in memory and on disk (`cache_dir`), keyed by (engine version,
code hash). `Module.deserialize` runs native code without checking it, so a node loads only
artefacts it wrote itself: each file is `HMAC-SHA256(key, engine | code hash | artefact) |
artefact` with a 32-byte key generated once by this node into its own data dir (mode 0600).
An artefact copied from another node or a backup, a different engine build, or a file
altered on disk fails the MAC and is recompiled from the on-chain code (and rewritten)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from ..ledger.contracts import CallOutcome, Event, HostEnv, Limits
from ..ledger.tx import METHOD_RE, RESERVED_METHODS

ENGINE_VERSION = "wasmtime-" + importlib.metadata.version("wasmtime")
MAX_WASM_STACK = 512 * 1024  # bytes of native stack a call may use
MAX_TABLE_ELEMENTS = 10_000
MAX_ABORT_MESSAGE = 256
ABI_MODULE = "consortium"

_I32, _I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
# name -> (params, results): the whole host ABI (docs/CONTRACTS.md)
ABI: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "input_len": ((), ("i32",)),
    "input_read": (("i32",), ()),
    "get": (("i32", "i32", "i32", "i32"), ("i32",)),
    "put": (("i32", "i32", "i32", "i32"), ()),
    "delete": (("i32", "i32"), ()),
    "emit": (("i32", "i32", "i32", "i32"), ()),
    "set_result": (("i32", "i32"), ()),
    "caller": (("i32",), ()),
    "height": ((), ("i64",)),
    "abort": (("i32", "i32"), ()),
}
_VT = {"i32": _I32, "i64": _I64}


class _Fail(Exception):
    """Raised inside a host function: the call fails with `reason` (a wasm trap)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_OUT_OF_FUEL = "out of fuel"


def _config() -> wasmtime.Config:
    c = wasmtime.Config()
    c.consume_fuel = True
    c.cranelift_nan_canonicalization = True
    c.wasm_threads = False
    c.wasm_simd = False
    c.wasm_relaxed_simd = False
    c.wasm_multi_memory = False
    c.wasm_memory64 = False
    for opt in ("wasm_gc", "wasm_function_references", "wasm_component_model"):
        if hasattr(c, opt):  # newer proposals: off where this wasmtime can turn them off
            setattr(c, opt, False)
    c.max_wasm_stack = MAX_WASM_STACK
    return c


def _sig(t: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    if not isinstance(t, wasmtime.FuncType):
        return None
    return tuple(str(p) for p in t.params), tuple(str(r) for r in t.results)


@dataclass
class _Call:
    """The state of the one call in progress (the engine runs one call at a time)."""

    env: HostEnv
    input: bytes
    limits: Limits
    memory: Any = None
    result: bytes = b""
    events: list[Event] = field(default_factory=list)


class WasmEngine:
    """wasmtime with the chain's determinism settings; one call at a time (not thread-safe:
    the runtime executes blocks and queries on its one event-loop thread)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._engine = wasmtime.Engine(_config())
        self._modules: dict[bytes, wasmtime.Module] = {}
        self._exports: dict[bytes, tuple[str, ...]] = {}
        self._functions: dict[bytes, frozenset[str]] = {}  # every exported function
        self._pre: dict[bytes, wasmtime.InstancePre] = {}  # imports resolved once per module
        self._cur: _Call | None = None
        self._cache_dir = cache_dir
        self._mac_key = _cache_key(cache_dir) if cache_dir is not None else b""
        self._linker = wasmtime.Linker(self._engine)
        for name, fn in self._host_functions().items():
            params, results = ABI[name]
            ty = wasmtime.FuncType([_VT[p] for p in params], [_VT[r] for r in results])
            self._linker.define_func(ABI_MODULE, name, ty, fn, access_caller=True)

    @property
    def engine(self) -> str:
        return ENGINE_VERSION

    # -- validation ------------------------------------------------------------------------
    def check_code(self, code: bytes, limits: Limits) -> str | None:
        if len(code) > limits.max_code_bytes:
            return f"contract code is {len(code)} bytes, limit {limits.max_code_bytes}"
        try:
            module = self._compile(code)
        except wasmtime.WasmtimeError:
            return (
                "code is not a valid WebAssembly module for this chain (threads, SIMD, "
                "multi-memory and memory64 are disabled)"
            )
        return _shape_problem(module, limits)

    def exports(self, code_hash: bytes, code: bytes) -> tuple[str, ...]:
        if code_hash not in self._exports:
            module = self._module(code_hash, code)
            self._exports[code_hash] = tuple(
                sorted(
                    e.name
                    for e in module.exports
                    if isinstance(e.type, wasmtime.FuncType) and e.name not in RESERVED_METHODS
                )
            )
        return self._exports[code_hash]

    def has_export(self, code_hash: bytes, code: bytes, name: str) -> bool:
        fns = self._functions.get(code_hash)
        if fns is None:
            module = self._module(code_hash, code)
            fns = frozenset(
                e.name for e in module.exports if isinstance(e.type, wasmtime.FuncType) and e.name
            )
            self._functions[code_hash] = fns
        return name in fns

    # -- execution -------------------------------------------------------------------------
    def call(
        self,
        code_hash: bytes,
        code: bytes,
        export: str,
        input: bytes,
        env: HostEnv,
        limits: Limits,
    ) -> CallOutcome:
        if not self.has_export(code_hash, code, export):
            return CallOutcome(False, f"the contract has no method {export!r}", 0)
        pre = self._pre.get(code_hash)
        if pre is None:
            pre = self._pre[code_hash] = self._linker.instantiate_pre(self._module(code_hash, code))
        store = wasmtime.Store(self._engine)
        store.set_limits(
            memory_size=limits.memory_pages * 65536,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=1,
            tables=1,
            memories=1,
        )
        store.set_fuel(limits.fuel)
        cur = _Call(env, input, limits)
        self._cur = cur
        reason = ""
        try:
            instance = pre.instantiate(store)
            exports = instance.exports(store)
            cur.memory = exports["memory"]
            fn = exports[export]
            if not isinstance(fn, wasmtime.Func):
                raise _Fail(f"{export!r} is not a function")
            fn(store)
        except _Fail as e:
            reason = e.reason
        except wasmtime.Trap as t:
            reason = _trap_reason(t)
        except wasmtime.WasmtimeError as e:
            reason = _error_reason(e)
        finally:
            self._cur = None
        used = limits.fuel - store.get_fuel()
        if reason:
            return CallOutcome(False, reason, used)
        return CallOutcome(True, "", used, cur.result, tuple(cur.events))

    # -- compiled modules ------------------------------------------------------------------
    def _compile(self, code: bytes) -> wasmtime.Module:
        return wasmtime.Module(self._engine, code)

    def _module(self, code_hash: bytes, code: bytes) -> wasmtime.Module:
        m = self._modules.get(code_hash)
        if m is not None:
            return m
        m = self._load(code_hash)
        if m is None:
            m = self._compile(code)
            self._store(code_hash, m)
        self._modules[code_hash] = m
        return m

    def load_cached(self, code_hash: bytes) -> bool:
        """Is there a cached artefact of `code_hash` that this node wrote (MAC checks)?"""
        return self._load(code_hash) is not None

    def _path(self, code_hash: bytes) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / ENGINE_VERSION / (code_hash.hex() + ".cwasm")

    def _mac(self, code_hash: bytes, artefact: bytes) -> bytes:
        msg = ENGINE_VERSION.encode() + b"\x00" + code_hash + artefact
        return hmac.new(self._mac_key, msg, hashlib.sha256).digest()

    def _load(self, code_hash: bytes) -> wasmtime.Module | None:
        path = self._path(code_hash)
        if path is None or not path.exists():
            return None
        blob = path.read_bytes()
        mac, artefact = blob[:32], blob[32:]
        if not hmac.compare_digest(mac, self._mac(code_hash, artefact)):
            return None  # not written by this node (or altered): recompile, never load
        try:
            return wasmtime.Module.deserialize(self._engine, artefact)
        except wasmtime.WasmtimeError:
            return None

    def _store(self, code_hash: bytes, module: wasmtime.Module) -> None:
        path = self._path(code_hash)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        artefact = bytes(module.serialize())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self._mac(code_hash, artefact) + artefact)
        os.replace(tmp, path)

    # -- the host ABI ----------------------------------------------------------------------
    def _host_functions(self) -> dict[str, Callable[..., Any]]:  # noqa: C901 (one per import)
        def call_of() -> _Call:
            c = self._cur
            if c is None:  # only reachable through a call this engine started
                raise _Fail("host function called outside a contract call")
            return c

        def input_len(caller: Any) -> int:
            c = call_of()
            _charge(caller, c.limits, 0)
            return len(c.input)

        def input_read(caller: Any, ptr: int) -> None:
            c = call_of()
            _charge(caller, c.limits, len(c.input))
            _write(caller, c, ptr, c.input, "input_read")

        def get(caller: Any, kptr: int, klen: int, vptr: int, vcap: int) -> int:
            c = call_of()
            key = _key(caller, c, kptr, klen, "get")
            value = c.env.get(key)
            if value is None:
                _charge(caller, c.limits, len(key))
                return -1
            copied = len(value) <= _u32(vcap)
            _charge(caller, c.limits, len(key) + (len(value) if copied else 0))
            if copied:
                _write(caller, c, vptr, value, "get")
            return len(value)

        def put(caller: Any, kptr: int, klen: int, vptr: int, vlen: int) -> None:
            c = call_of()
            if _u32(vlen) > c.limits.max_value_bytes:
                raise _Fail(f"put: value exceeds {c.limits.max_value_bytes} bytes")
            key = _key(caller, c, kptr, klen, "put")
            _charge(caller, c.limits, len(key) + _u32(vlen))
            c.env.put(key, _read(caller, c, vptr, vlen, "put"))

        def delete(caller: Any, kptr: int, klen: int) -> None:
            c = call_of()
            key = _key(caller, c, kptr, klen, "delete")
            _charge(caller, c.limits, len(key))
            c.env.delete(key)

        def emit(caller: Any, tptr: int, tlen: int, dptr: int, dlen: int) -> None:
            c = call_of()
            lim = c.limits
            if len(c.events) >= lim.max_events:
                raise _Fail(f"emit: more than {lim.max_events} events")
            if _u32(tlen) > lim.max_topic_bytes:
                raise _Fail(f"emit: topic exceeds {lim.max_topic_bytes} bytes")
            if _u32(tlen) + _u32(dlen) > lim.max_event_bytes:
                raise _Fail(f"emit: event exceeds {lim.max_event_bytes} bytes")
            _charge(caller, lim, _u32(tlen) + _u32(dlen))
            topic = _read(caller, c, tptr, tlen, "emit")
            c.events.append(Event(topic, _read(caller, c, dptr, dlen, "emit")))

        def set_result(caller: Any, ptr: int, n: int) -> None:
            c = call_of()
            if _u32(n) > c.limits.max_result_bytes:
                raise _Fail(f"set_result: result exceeds {c.limits.max_result_bytes} bytes")
            _charge(caller, c.limits, _u32(n))
            c.result = _read(caller, c, ptr, n, "set_result")

        def caller_key(caller: Any, ptr: int) -> None:
            c = call_of()
            _charge(caller, c.limits, 32)
            _write(caller, c, ptr, c.env.caller.ljust(32, b"\x00")[:32], "caller")

        def height(caller: Any) -> int:
            c = call_of()
            _charge(caller, c.limits, 0)
            return c.env.height

        def abort(caller: Any, ptr: int, n: int) -> None:
            c = call_of()
            shown = min(_u32(n), MAX_ABORT_MESSAGE)
            _charge(caller, c.limits, shown)
            msg = _read(caller, c, ptr, shown, "abort").decode("utf-8", errors="replace")
            raise _Fail(f"aborted: {msg}")

        return {
            "input_len": input_len,
            "input_read": input_read,
            "get": get,
            "put": put,
            "delete": delete,
            "emit": emit,
            "set_result": set_result,
            "caller": caller_key,
            "height": height,
            "abort": abort,
        }


def _u32(v: int) -> int:
    """An i32 argument as the unsigned 32-bit number it stands for (pointers, lengths)."""
    return v & 0xFFFFFFFF


def _charge(caller: Any, limits: Limits, nbytes: int) -> None:
    """The host-call schedule: a base cost plus a cost per byte, taken from the same fuel
    counter as instructions (so out of fuel is one condition, reached at one point)."""
    cost = limits.host_call_fuel + nbytes * limits.host_byte_fuel
    # wasmtime-py's Caller has no fuel methods, but Store's take any Storelike (they call
    # `_context()`, which a Caller has): the caller's context is the running call's store
    left = wasmtime.Store.get_fuel(caller)
    if cost > left:
        wasmtime.Store.set_fuel(caller, 0)
        raise _Fail(_OUT_OF_FUEL)
    wasmtime.Store.set_fuel(caller, left - cost)


def _bounds(caller: Any, c: _Call, ptr: int, n: int, what: str) -> tuple[int, int]:
    """The address of guest range [ptr, ptr + n) in host memory, after the bounds check.
    The base is read afresh on every access: memory.grow may move it between host calls
    (never during one: the guest is suspended while the host function runs)."""
    start, size = _u32(ptr), _u32(n)
    if start + size > c.memory.data_len(caller):
        raise _Fail(f"{what}: pointer out of bounds")
    return ctypes.addressof(c.memory.data_ptr(caller).contents) + start, size


def _read(caller: Any, c: _Call, ptr: int, n: int, what: str) -> bytes:
    addr, size = _bounds(caller, c, ptr, n, what)
    return ctypes.string_at(addr, size) if size else b""


def _write(caller: Any, c: _Call, ptr: int, data: bytes, what: str) -> None:
    addr, _ = _bounds(caller, c, ptr, len(data), what)
    if data:
        ctypes.memmove(addr, data, len(data))


def _key(caller: Any, c: _Call, ptr: int, n: int, what: str) -> bytes:
    if not 0 < _u32(n) <= c.limits.max_key_bytes:
        raise _Fail(f"{what}: key must be 1..{c.limits.max_key_bytes} bytes")
    return _read(caller, c, ptr, n, what)


def _shape_problem(module: wasmtime.Module, limits: Limits) -> str | None:
    """The ABI's shape: imports only the host functions (exact types), exports a memory and
    methods of type () -> (), nothing the chain cannot call."""
    for imp in module.imports:
        want = ABI.get(imp.name or "") if imp.module == ABI_MODULE else None
        if want is None or _sig(imp.type) != want:
            return f"import {imp.module}.{imp.name} is outside the contract ABI"
    memory = None
    for e in module.exports:
        if e.name == "memory" and isinstance(e.type, wasmtime.MemoryType):
            memory = e.type
        elif isinstance(e.type, wasmtime.FuncType):
            if not METHOD_RE.fullmatch(e.name):
                return f"export {e.name!r} is not a method name ({METHOD_RE.pattern})"
            if _sig(e.type) != ((), ()):
                return f"method {e.name!r} must have type () -> ()"
        elif isinstance(e.type, wasmtime.MemoryType):
            return f"export {e.name!r}: a contract has one memory, exported as 'memory'"
    if memory is None:
        return "a contract must export its memory as 'memory'"
    if memory.limits.min > limits.memory_pages:
        return f"the memory needs {memory.limits.min} pages, the chain allows {limits.memory_pages}"
    return None


def _trap_reason(t: wasmtime.Trap) -> str:
    code = t.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return _OUT_OF_FUEL
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return "stack overflow (the call recursed too deeply)"
    if code is None:
        return "trap"
    return "trap: " + code.name.lower().replace("_", " ")


def _error_reason(e: wasmtime.WasmtimeError) -> str:
    """Instantiation errors (a fixed sentence each: wasmtime's text is not part of state)."""
    text = str(e)
    if "memory" in text and ("limit" in text or "minimum" in text):
        return "memory limit exceeded"
    if "table" in text:
        return "table limit exceeded"
    return "the contract could not be instantiated"


def _cache_key(cache_dir: Path) -> bytes:
    """This node's MAC key for its compiled-module cache, created once (0600)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "cache.key"
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    key = path.read_bytes()
    if len(key) != 32:
        raise OSError(f"{path} is not a 32-byte key: remove it to let the node make a new one")
    return key
