"""A lean binding of the wasmtime C-API functions on a contract call's hot path.

Used only by contracts/engine.py (WasmEngine.call and its host functions). wasmtime-py's
object layer costs more than the work it wraps on this path: every host call went through
its generic trampoline (a `Caller` object, a `Val` per argument and result, a `FuncType`
read per `Func.__call__`), every call built a dict of all the instance's exports, and every
memory access made two typed-pointer round trips. Here each function is a ctypes prototype
over the same shared library wasmtime-py loaded (`wasmtime._ffi.dll`) whose arguments are
plain addresses (`c_void_p`, passed as ints), and the host functions are "unchecked"
callbacks that read their i32 arguments straight out of the `wasmtime_val_raw_t` array.

The functions are `PYFUNCTYPE` prototypes: the GIL stays held across these short calls
(a `CFUNCTYPE` call releases and re-acquires it, which under the node's gRPC threads can
hand the interpreter to another thread in the middle of a contract call).

Nothing here changes what wasmtime computes: the same engine configuration, the same
modules, the same fuel counter; only the Python wrapping around them is thinner. Every
address handed to these functions is owned by the caller (engine.py keeps the ctypes
buffers and the wasmtime-py objects that own the native handles alive for as long as the
address is used)."""

from __future__ import annotations

import ctypes
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_V = ctypes.c_void_p
_SZ = ctypes.c_size_t
_I64 = ctypes.c_int64


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    """A fresh prototype over the library's symbol (never wasmtime-py's own function
    object: changing its restype/argtypes would change wasmtime-py's behaviour)."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ffi.dll))


store_new = _fn("wasmtime_store_new", _V, _V, _V, _V)  # (engine, data, finalizer) -> store
store_context = _fn("wasmtime_store_context", _V, _V)
store_delete = _fn("wasmtime_store_delete", None, _V)
# (store, memory bytes, table elements, instances, tables, memories); -1 = no limit
store_limiter = _fn("wasmtime_store_limiter", None, _V, _I64, _I64, _I64, _I64, _I64)
set_fuel = _fn("wasmtime_context_set_fuel", _V, _V, ctypes.c_uint64)  # -> error | NULL
get_fuel = _fn("wasmtime_context_get_fuel", _V, _V, _V)  # (ctx, *u64) -> error | NULL
# (instance_pre, ctx, *instance, **trap) -> error | NULL
instance_pre_instantiate = _fn("wasmtime_instance_pre_instantiate", _V, _V, _V, _V, _V)
# (ctx, *instance, name, len, *extern) -> found
instance_export_get = _fn(
    "wasmtime_instance_export_get", ctypes.c_bool, _V, _V, ctypes.c_char_p, _SZ, _V
)
# (ctx, *func, *args_and_results, len, **trap) -> error | NULL
func_call_unchecked = _fn("wasmtime_func_call_unchecked", _V, _V, _V, _V, _SZ, _V)
caller_context = _fn("wasmtime_caller_context", _V, _V)
# (caller, name, len, *extern) -> found
caller_export_get = _fn("wasmtime_caller_export_get", ctypes.c_bool, _V, ctypes.c_char_p, _SZ, _V)
memory_data = _fn("wasmtime_memory_data", _V, _V, _V)  # (ctx, *memory) -> base address
memory_data_size = _fn("wasmtime_memory_data_size", _SZ, _V, _V)  # (ctx, *memory) -> bytes
trap_new = _fn("wasmtime_trap_new", _V, ctypes.c_char_p, _SZ)  # -> an owned wasm_trap_t
# (linker, module, len, name, len, functype, callback, data, finalizer) -> error | NULL
HostCallback = ctypes.CFUNCTYPE(_SZ, _V, _V, _V, _SZ)  # (data, caller, args, nargs) -> trap
linker_define_func_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked",
    _V,
    _V,
    ctypes.c_char_p,
    _SZ,
    ctypes.c_char_p,
    _SZ,
    _V,
    HostCallback,
    _V,
    _V,
)

EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value
EXTERN_SIZE = ctypes.sizeof(ffi.wasmtime_extern_t)
EXTERN_OF = ffi.wasmtime_extern_t.of.offset  # the handle inside a wasmtime_extern_t
INSTANCE_SIZE = ctypes.sizeof(ffi.wasmtime_instance_t)
VAL_RAW_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)  # one argument/result slot (16 bytes)


def address(obj: Any) -> int:
    """The native address behind a wasmtime-py object that owns a C handle."""
    return ctypes.addressof(obj.ptr().contents)


def take_error(err: int) -> Any:
    """An owned wasmtime_error_t* as wasmtime-py's WasmtimeError (freed when collected)."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


def take_trap(trap: int) -> Any:
    """An owned wasm_trap_t* as wasmtime-py's Trap (freed when collected)."""
    return wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))


def pooling_config(config: Any, slots: int, keep_resident: int) -> None:
    """Switches `config` (a wasmtime.Config) to the pooling instance allocator: `slots`
    instances, memories and tables pre-reserved and reused; the first `keep_resident`
    bytes of a memory are zeroed with memset on reuse instead of being unmapped (a fresh
    memory costs mmap + page faults + munmap per call otherwise). Every other pooling limit
    keeps wasmtime's default: a module beyond them is refused by the pooling engine, and
    engine.py then runs it on the on-demand engine (so the limits never decide a result)."""
    pc = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pc, slots)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pc, slots)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pc, slots)
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pc, slots)
        ffi.wasmtime_pooling_allocation_config_total_gc_heaps_set(pc, slots)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pc, keep_resident)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(pc, 64 * 1024)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pc)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pc)
