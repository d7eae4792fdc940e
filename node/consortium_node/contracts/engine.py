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
at most MAX_TABLE_ELEMENTS, one memory, and the fuel limit; every call instantiates the
module afresh (it never sees another call's memory, globals or tables).

The call path is thin on purpose (a token transfer is ~8 host calls): the module's imports
are resolved once (`InstancePre`), calls run on a pooling-allocator engine (memory slots
reused and zeroed in place instead of mmap/munmap per call), and the host functions are
C-API "unchecked" callbacks over contracts/capi.py rather than wasmtime-py's generic
trampoline. None of this changes a fuel figure: fuel is counted by wasmtime per wasm
operator and by the schedule below, never by how the call is wrapped.

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
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from ..ledger.contracts import CallOutcome, Event, HostEnv, Limits
from ..ledger.tx import METHOD_RE, RESERVED_METHODS
from . import capi

ENGINE_VERSION = "wasmtime-" + importlib.metadata.version("wasmtime")
MAX_WASM_STACK = 512 * 1024  # bytes of native stack a call may use
MAX_TABLE_ELEMENTS = 10_000
MAX_ABORT_MESSAGE = 256
ABI_MODULE = "consortium"
# the pooling engine: instance slots (one call at a time needs one; the rest is headroom) and
# the bytes of a memory zeroed in place on reuse (the default contract memory, 16 pages)
POOL_SLOTS = 4
POOL_KEEP_RESIDENT = 16 * 65536

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


class _Call:
    """The state of the one call in progress (the engine runs one call at a time)."""

    __slots__ = ("env", "error", "events", "failure", "input", "limits", "mem", "result", "view")

    def __init__(self, env: HostEnv, input: bytes, limits: Limits) -> None:
        self.env = env
        self.input = input
        self.limits = limits
        self.mem = 0  # address of the instance's wasmtime_memory_t (0: not looked up yet)
        self.view: memoryview | None = None  # that memory, while its length is unchanged
        self.result = b""
        self.events: list[Event] = []
        self.failure = ""  # the reason a host function failed the call (a _Fail)
        self.error: BaseException | None = None  # anything else a host function raised


# One host call's i32 arguments, read as the unsigned numbers the ABI says they are, out of
# the wasmtime_val_raw_t slots (16 bytes each; an i32 is the slot's first 4 bytes, LE).
_ARG1 = struct.Struct("<I")
_ARG2 = struct.Struct("<I12xI")
_ARG4 = struct.Struct("<I12xI12xI12xI")
_N1, _N2, _N4 = 4, capi.VAL_RAW_SIZE + 4, 3 * capi.VAL_RAW_SIZE + 4
_RAW1, _RAW2, _RAW4 = (ctypes.c_char * _N1, ctypes.c_char * _N2, ctypes.c_char * _N4)
_EMPTY = memoryview(b"")
_HostFn = Callable[[_Call, int, int], None]  # (the call, caller, args) -> None


class WasmEngine:
    """wasmtime with the chain's determinism settings; one call at a time (not thread-safe:
    the runtime executes blocks and queries on its one event-loop thread).

    Two engines with the same settings: `_engine` (wasmtime's on-demand allocator) compiles,
    validates and caches every module, exactly as before; `_pool` (the pooling allocator,
    see capi.pooling_config) runs the calls of every module it accepts, deserialised from
    the same artefact, so the code that runs is the same machine code either way. A module
    beyond the pool's limits runs on `_engine`. Both give the same fuel, results and
    failures: the store's limiter (set per call from the chain's limits, which are within
    the pool's) is what refuses memory and tables, and a pool never has more than one
    store alive (each call's store is deleted before the call returns)."""

    def __init__(self, cache_dir: Path | None = None, *, pooling: bool = True) -> None:
        self._engine = wasmtime.Engine(_config())
        self._modules: dict[bytes, wasmtime.Module] = {}
        self._exports: dict[bytes, tuple[str, ...]] = {}
        self._functions: dict[bytes, frozenset[str]] = {}  # every exported function
        # code hash -> (engine address, InstancePre address, the InstancePre that owns it):
        # the module loaded and its imports resolved once per code hash
        self._runners: dict[bytes, tuple[int, int, wasmtime.InstancePre]] = {}
        self._cur: _Call | None = None
        self._cache_dir = cache_dir
        self._mac_key = _cache_key(cache_dir) if cache_dir is not None else b""
        self._pool = _pool_engine() if pooling else None  # pooling=False: tests compare
        # native buffers of the call path, reused by every call (one call at a time)
        self._fuel = ctypes.c_uint64()
        self._trap = ctypes.c_void_p()
        self._instance = ctypes.create_string_buffer(capi.INSTANCE_SIZE)
        self._mem_item = ctypes.create_string_buffer(capi.EXTERN_SIZE)
        self._fn_item = ctypes.create_string_buffer(capi.EXTERN_SIZE)
        self._args = ctypes.create_string_buffer(capi.VAL_RAW_SIZE)
        # the `kind` byte of each extern buffer, read in place (wasmtime_extern_t.kind)
        self._mem_kind = ctypes.c_uint8.from_buffer(self._mem_item)
        self._fn_kind = ctypes.c_uint8.from_buffer(self._fn_item)
        self._at = _Addresses(
            fuel=ctypes.addressof(self._fuel),
            trap=ctypes.addressof(self._trap),
            instance=ctypes.addressof(self._instance),
            mem_item=ctypes.addressof(self._mem_item),
            fn_item=ctypes.addressof(self._fn_item),
            args=ctypes.addressof(self._args),
        )
        hosts = self._host_functions()
        self._callbacks = {name: self._callback(fn) for name, fn in hosts.items()}
        self._linker = self._define(self._engine)
        self._pool_linker = None if self._pool is None else self._define(self._pool)

    def _define(self, engine: wasmtime.Engine) -> wasmtime.Linker:
        linker = wasmtime.Linker(engine)
        for name, cb in self._callbacks.items():
            params, results = ABI[name]
            ty = wasmtime.FuncType([_VT[p] for p in params], [_VT[r] for r in results])
            m, n = ABI_MODULE.encode(), name.encode()
            err = capi.linker_define_func_unchecked(
                capi.address(linker), m, len(m), n, len(n), capi.address(ty), cb, None, None
            )
            if err:
                raise capi.take_error(err)
        return linker

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

    def runs_pooled(self, code_hash: bytes, code: bytes) -> bool:
        """Do this module's calls run on the pooling engine (tests, the bench)?"""
        return self._runner(code_hash, code)[0] != capi.address(self._engine)

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
        engine, pre, _ = self._runner(code_hash, code)
        cur = _Call(env, input, limits)
        store = capi.store_new(engine, None, None)
        try:
            ctx = capi.store_context(store)
            capi.store_limiter(store, limits.memory_pages * 65536, MAX_TABLE_ELEMENTS, 1, 1, 1)
            _check(capi.set_fuel(ctx, limits.fuel))
            self._cur = cur
            reason = self._run(ctx, pre, export, cur)
            _check(capi.get_fuel(ctx, self._at.fuel))
        finally:
            self._cur = None
            capi.store_delete(store)  # the pool's slot is free again before we return
        if cur.error is not None:  # not a contract failure: a fault of this node's own
            raise cur.error
        used = limits.fuel - self._fuel.value
        if reason:
            return CallOutcome(False, reason, used)
        return CallOutcome(True, "", used, cur.result, tuple(cur.events))

    def _run(self, ctx: int, pre: int, export: str, cur: _Call) -> str:
        """Instantiates and calls `export` in store context `ctx`: "" or why it failed."""
        at, trap = self._at, self._trap
        trap.value = None
        err = capi.instance_pre_instantiate(pre, ctx, at.instance, at.trap)
        if err or trap.value:
            return _failure(cur, err, trap.value, instantiating=True)
        if capi.instance_export_get(ctx, at.instance, b"memory", 6, at.mem_item) and (
            self._mem_kind.value == capi.EXTERN_MEMORY
        ):
            cur.mem = at.mem_item + capi.EXTERN_OF
        name = export.encode()
        if not capi.instance_export_get(ctx, at.instance, name, len(name), at.fn_item) or (
            self._fn_kind.value != capi.EXTERN_FUNC
        ):
            return f"{export!r} is not a function"
        err = capi.func_call_unchecked(ctx, at.fn_item + capi.EXTERN_OF, at.args, 0, at.trap)
        if err or trap.value:
            return _failure(cur, err, trap.value, instantiating=False)
        return ""

    def _runner(self, code_hash: bytes, code: bytes) -> tuple[int, int, wasmtime.InstancePre]:
        r = self._runners.get(code_hash)
        if r is not None:
            return r
        module = self._module(code_hash, code)
        if self._pool is not None and self._pool_linker is not None:
            try:  # the same artefact, loaded into the pooling engine
                pooled = wasmtime.Module.deserialize(self._pool, module.serialize())
                pre = self._pool_linker.instantiate_pre(pooled)
                r = (capi.address(self._pool), capi.address(pre), pre)
            except wasmtime.WasmtimeError:
                r = None  # beyond the pool's limits (e.g. a huge table): on-demand runs it
        if r is None:
            pre = self._linker.instantiate_pre(module)
            r = (capi.address(self._engine), capi.address(pre), pre)
        self._runners[code_hash] = r
        return r

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
    def _callback(self, fn: _HostFn) -> Any:
        """The C callback of host function `fn`. Nothing may escape a ctypes callback (it
        would be printed and wasm would go on as if the call had returned): a _Fail fails
        the call with its reason, anything else is kept and re-raised by `call` once wasm
        has unwound; either way the callback returns a trap, so wasm stops right here."""

        def cb(_data: int | None, caller: int, args: int, _nargs: int) -> int:
            c = self._cur
            if c is None:  # only reachable through a call this engine started
                return int(capi.trap_new(b"host function outside a call", 29))
            try:
                fn(c, caller, args)
                return 0
            except _Fail as e:
                c.failure = e.reason
            except BaseException as e:  # re-raised by call, once wasm has unwound
                c.error = e
            return int(capi.trap_new(b"host", 4))

        return capi.HostCallback(cb)

    def _host_functions(self) -> dict[str, _HostFn]:  # noqa: C901 (one per import)
        fuel = self._fuel
        fuel_at = ctypes.addressof(fuel)  # the call path's one u64 buffer
        u8 = ctypes.c_ubyte

        def charge(ctx: int, limits: Limits, nbytes: int) -> None:
            """The host-call schedule: a base cost plus a cost per byte, taken from the same
            fuel counter as instructions (so out of fuel is one condition, reached at one
            point)."""
            cost = limits.host_call_fuel + nbytes * limits.host_byte_fuel
            capi.get_fuel(ctx, fuel_at)
            left = fuel.value
            if cost > left:
                capi.set_fuel(ctx, 0)
                raise _Fail(_OUT_OF_FUEL)
            capi.set_fuel(ctx, left - cost)

        def memory(c: _Call, caller: int, ctx: int) -> memoryview:
            """The calling instance's linear memory as a byte view. Its length is read in
            every host call; the base (and the view) only when the length changed. Invariant:
            within one instance the memory moves only in memory.grow, and a grow that can
            move it changes its length (never during a host call: the guest is suspended
            while the host function runs). The view lives in the _Call, dropped with the
            call, before the store (and the memory) is deleted."""
            if not c.mem:  # a host call from the start function, before call() looked it up
                if not capi.caller_export_get(caller, b"memory", 6, self._at.mem_item) or (
                    self._mem_kind.value != capi.EXTERN_MEMORY
                ):
                    raise _Fail("the contract exports no memory")
                c.mem = self._at.mem_item + capi.EXTERN_OF
            size = capi.memory_data_size(ctx, c.mem)
            view = c.view
            if view is None or len(view) != size:
                base = capi.memory_data(ctx, c.mem) or 0
                view = _EMPTY if not size else memoryview((u8 * size).from_address(base))
                c.view = view = view.cast("B")
            return view

        def read(mem: memoryview, ptr: int, n: int, what: str) -> bytes:
            if ptr + n > len(mem):  # a memoryview slice would silently truncate
                raise _Fail(f"{what}: pointer out of bounds")
            return bytes(mem[ptr : ptr + n])

        def write(mem: memoryview, ptr: int, data: bytes, what: str) -> None:
            if ptr + len(data) > len(mem):
                raise _Fail(f"{what}: pointer out of bounds")
            if data:
                mem[ptr : ptr + len(data)] = data

        def key_of(c: _Call, mem: memoryview, ptr: int, n: int, what: str) -> bytes:
            if not 0 < n <= c.limits.max_key_bytes:
                raise _Fail(f"{what}: key must be 1..{c.limits.max_key_bytes} bytes")
            return read(mem, ptr, n, what)

        def input_len(c: _Call, caller: int, args: int) -> None:
            charge(capi.caller_context(caller), c.limits, 0)
            ctypes.c_int32.from_address(args).value = len(c.input)

        def input_read(c: _Call, caller: int, args: int) -> None:
            (ptr,) = _ARG1.unpack_from(_RAW1.from_address(args))
            ctx = capi.caller_context(caller)
            charge(ctx, c.limits, len(c.input))
            write(memory(c, caller, ctx), ptr, c.input, "input_read")

        def get(c: _Call, caller: int, args: int) -> None:
            kptr, klen, vptr, vcap = _ARG4.unpack_from(_RAW4.from_address(args))
            ctx = capi.caller_context(caller)
            mem = memory(c, caller, ctx)
            key = key_of(c, mem, kptr, klen, "get")
            value = c.env.get(key)
            if value is None:
                charge(ctx, c.limits, len(key))
                ctypes.c_int32.from_address(args).value = -1
                return
            copied = len(value) <= vcap
            charge(ctx, c.limits, len(key) + (len(value) if copied else 0))
            if copied:
                write(mem, vptr, value, "get")
            ctypes.c_int32.from_address(args).value = len(value)

        def put(c: _Call, caller: int, args: int) -> None:
            kptr, klen, vptr, vlen = _ARG4.unpack_from(_RAW4.from_address(args))
            if vlen > c.limits.max_value_bytes:
                raise _Fail(f"put: value exceeds {c.limits.max_value_bytes} bytes")
            ctx = capi.caller_context(caller)
            mem = memory(c, caller, ctx)
            key = key_of(c, mem, kptr, klen, "put")
            charge(ctx, c.limits, len(key) + vlen)
            c.env.put(key, read(mem, vptr, vlen, "put"))

        def delete(c: _Call, caller: int, args: int) -> None:
            kptr, klen = _ARG2.unpack_from(_RAW2.from_address(args))
            ctx = capi.caller_context(caller)
            key = key_of(c, memory(c, caller, ctx), kptr, klen, "delete")
            charge(ctx, c.limits, len(key))
            c.env.delete(key)

        def emit(c: _Call, caller: int, args: int) -> None:
            tptr, tlen, dptr, dlen = _ARG4.unpack_from(_RAW4.from_address(args))
            lim = c.limits
            if len(c.events) >= lim.max_events:
                raise _Fail(f"emit: more than {lim.max_events} events")
            if tlen > lim.max_topic_bytes:
                raise _Fail(f"emit: topic exceeds {lim.max_topic_bytes} bytes")
            if tlen + dlen > lim.max_event_bytes:
                raise _Fail(f"emit: event exceeds {lim.max_event_bytes} bytes")
            ctx = capi.caller_context(caller)
            charge(ctx, lim, tlen + dlen)
            mem = memory(c, caller, ctx)
            topic = read(mem, tptr, tlen, "emit")
            c.events.append(Event(topic, read(mem, dptr, dlen, "emit")))

        def set_result(c: _Call, caller: int, args: int) -> None:
            ptr, n = _ARG2.unpack_from(_RAW2.from_address(args))
            if n > c.limits.max_result_bytes:
                raise _Fail(f"set_result: result exceeds {c.limits.max_result_bytes} bytes")
            ctx = capi.caller_context(caller)
            charge(ctx, c.limits, n)
            c.result = read(memory(c, caller, ctx), ptr, n, "set_result")

        def caller_key(c: _Call, caller: int, args: int) -> None:
            (ptr,) = _ARG1.unpack_from(_RAW1.from_address(args))
            ctx = capi.caller_context(caller)
            charge(ctx, c.limits, 32)
            write(memory(c, caller, ctx), ptr, c.env.caller.ljust(32, b"\x00")[:32], "caller")

        def height(c: _Call, caller: int, args: int) -> None:
            charge(capi.caller_context(caller), c.limits, 0)
            ctypes.c_int64.from_address(args).value = c.env.height

        def abort(c: _Call, caller: int, args: int) -> None:
            ptr, n = _ARG2.unpack_from(_RAW2.from_address(args))
            shown = min(n, MAX_ABORT_MESSAGE)
            ctx = capi.caller_context(caller)
            charge(ctx, c.limits, shown)
            raw = read(memory(c, caller, ctx), ptr, shown, "abort")
            raise _Fail(f"aborted: {raw.decode('utf-8', errors='replace')}")

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


@dataclass(frozen=True, slots=True)
class _Addresses:
    """Native addresses of the engine's reusable buffers (owned by the WasmEngine)."""

    fuel: int
    trap: int
    instance: int
    mem_item: int
    fn_item: int
    args: int


def _check(err: int | None) -> None:
    """A C-API call of ours that cannot fail on a valid store (fuel is enabled): raise."""
    if err:
        raise capi.take_error(err)


def _failure(cur: _Call, err: int | None, trap: int | None, instantiating: bool) -> str:
    """Why a call failed, from the error or trap wasmtime returned (both are freed). A host
    function's own reason wins: its trap is the one the host function returned."""
    e = capi.take_error(err) if err else None
    t = capi.take_trap(trap) if trap else None
    if cur.failure:
        return cur.failure
    if t is not None:
        return _trap_reason(t)
    assert e is not None
    text = str(e)
    if instantiating and "concurrent" in text:  # a pool slot leaked: our fault, not the call's
        raise RuntimeError(f"contract engine: {text}")
    return _error_reason(e)


def _pool_engine() -> wasmtime.Engine | None:
    """The pooling engine (the chain's settings + capi.pooling_config), or None where this
    host cannot reserve its address space (the on-demand engine then runs every call)."""
    config = _config()
    capi.pooling_config(config, slots=POOL_SLOTS, keep_resident=POOL_KEEP_RESIDENT)
    try:
        return wasmtime.Engine(config)
    except wasmtime.WasmtimeError:
        return None


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
