"""Test contracts in WAT (compiled with wasmtime.wat2wasm): a counter, a token, and one
contract per item of issue 16's "Bad input" list. Used by tests/unit/contracts,
tests/unit/ledger/test_ledger_contracts.py, tests/integration/test_contracts.py, the
whole-node simulator (tests/sim/nodesim.py) and the contract bench.

Every contract imports only module "consortium" (docs/CONTRACTS.md) unless it is the test of
that rule."""

from __future__ import annotations

import functools

import wasmtime

_IMPORTS = """
  (import "consortium" "input_len" (func $input_len (result i32)))
  (import "consortium" "input_read" (func $input_read (param i32)))
  (import "consortium" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "consortium" "put" (func $put (param i32 i32 i32 i32)))
  (import "consortium" "delete" (func $delete (param i32 i32)))
  (import "consortium" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "consortium" "set_result" (func $set_result (param i32 i32)))
  (import "consortium" "caller" (func $caller (param i32)))
  (import "consortium" "height" (func $height (result i64)))
  (import "consortium" "abort" (func $abort (param i32 i32)))
"""

# key "n" (u64 little-endian) += 1; result and event "tick" carry the new value.
# `init` sets the counter to the u64 in its input (if 8 bytes), `get` returns it, `reset`
# deletes it, `fail` writes then aborts (its write must not survive).
COUNTER_WAT = (
    "(module"
    + _IMPORTS
    + """
  (memory (export "memory") 1)
  (data (i32.const 0) "n")
  (data (i32.const 16) "tick")
  (data (i32.const 32) "boom")
  (func $load (result i64)
    (if (i32.eq (call $get (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8)) (i32.const -1))
      (then (i64.store (i32.const 8) (i64.const 0))))
    (i64.load (i32.const 8)))
  (func (export "init")
    (if (i32.eq (call $input_len) (i32.const 8))
      (then
        (call $input_read (i32.const 8))
        (call $put (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8)))))
  (func (export "incr")
    (i64.store (i32.const 8) (i64.add (call $load) (i64.const 1)))
    (call $put (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8))
    (call $emit (i32.const 16) (i32.const 4) (i32.const 8) (i32.const 8))
    (call $set_result (i32.const 8) (i32.const 8)))
  (func (export "get")
    (drop (call $load))
    (call $set_result (i32.const 8) (i32.const 8)))
  (func (export "reset")
    (call $delete (i32.const 0) (i32.const 1)))
  (func (export "fail")
    (i64.store (i32.const 8) (i64.const 99))
    (call $put (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 8))
    (call $emit (i32.const 16) (i32.const 4) (i32.const 8) (i32.const 8))
    (call $abort (i32.const 32) (i32.const 4)))
  (func (export "whoami")
    (call $caller (i32.const 64))
    (i64.store (i32.const 96) (call $height))
    (call $set_result (i32.const 64) (i32.const 40)))
)"""
)

# A token: balances under key = the 32-byte account. `init` mints the u64 of its input to the
# deployer (the proposer); `transfer` input = to (32 bytes) | amount (u64 LE): aborts
# "insufficient" when the caller's balance is short; emits "transfer" with the input.
# `balance` input = account (32 bytes) -> u64 LE result.
TOKEN_WAT = (
    "(module"
    + _IMPORTS
    + """
  (memory (export "memory") 1)
  (data (i32.const 200) "insufficient")
  (data (i32.const 220) "transfer")
  (data (i32.const 240) "bad input")
  ;; 0..32 caller, 32..72 input (to | amount), 80..88 scratch balance, 96..104 scratch
  (func $bal (param $k i32) (result i64)
    (if (i32.eq (call $get (local.get $k) (i32.const 32) (i32.const 80) (i32.const 8)) (i32.const -1))
      (then (i64.store (i32.const 80) (i64.const 0))))
    (i64.load (i32.const 80)))
  (func $set (param $k i32) (param $v i64)
    (i64.store (i32.const 96) (local.get $v))
    (call $put (local.get $k) (i32.const 32) (i32.const 96) (i32.const 8)))
  (func (export "init")
    (call $caller (i32.const 0))
    (if (i32.eq (call $input_len) (i32.const 8))
      (then
        (call $input_read (i32.const 32))
        (call $set (i32.const 0) (i64.load (i32.const 32))))))
  (func (export "transfer")
    (local $amount i64) (local $from i64)
    (if (i32.ne (call $input_len) (i32.const 40))
      (then (call $abort (i32.const 240) (i32.const 9))))
    (call $input_read (i32.const 32))
    (call $caller (i32.const 0))
    (local.set $amount (i64.load (i32.const 64)))
    (local.set $from (call $bal (i32.const 0)))
    (if (i64.lt_u (local.get $from) (local.get $amount))
      (then (call $abort (i32.const 200) (i32.const 12))))
    (call $set (i32.const 0) (i64.sub (local.get $from) (local.get $amount)))
    (call $set (i32.const 32) (i64.add (call $bal (i32.const 32)) (local.get $amount)))
    (call $emit (i32.const 220) (i32.const 8) (i32.const 32) (i32.const 40)))
  (func (export "balance")
    (if (i32.ne (call $input_len) (i32.const 32))
      (then (call $abort (i32.const 240) (i32.const 9))))
    (call $input_read (i32.const 32))
    (drop (call $bal (i32.const 32)))
    (call $set_result (i32.const 80) (i32.const 8)))
)"""
)

# The bench's token transfer (bench/run.py): `transfer` of TOKEN_WAT's shape — input to |
# amount, two gets, two puts, one emit — except that an account never seen starts with a
# faucet balance of 10^12, so fresh bench keys can send without a mint per key.
BENCH_TOKEN_WAT = TOKEN_WAT.replace(
    "(then (i64.store (i32.const 80) (i64.const 0))))",
    "(then (i64.store (i32.const 80) (i64.const 1000000000000))))",
)

# Misbehaving contracts (issue 16, "Bad input"): each export is one misbehaviour.
BAD_WAT = (
    "(module"
    + _IMPORTS
    + """
  (memory (export "memory") 1)
  (func (export "spin") (loop $l (br $l)))
  (func $rec (export "recurse") (call $rec))
  (func (export "membomb")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  (func (export "huge_result") (call $set_result (i32.const 0) (i32.const 131072)))
  (func (export "huge_event")
    (call $emit (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 60000)))
  (func (export "many_events")
    (local $i i32)
    (loop $l
      (call $emit (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000)))))
  (func (export "oob_put") (call $put (i32.const 0) (i32.const 1) (i32.const 131000) (i32.const 8)))
  (func (export "oob_get")
    (drop (call $get (i32.const -1) (i32.const 4) (i32.const 0) (i32.const 8))))
  (func (export "oob_input") (call $input_read (i32.const 65535)))
  (func (export "oob_caller") (call $caller (i32.const 65530)))
  (func (export "oob_emit") (call $emit (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 0)))
  (func (export "oob_result") (call $set_result (i32.const 65000) (i32.const 1000)))
  (func (export "oob_abort") (call $abort (i32.const 65535) (i32.const 100)))
  (func (export "oob_load") (drop (i32.load (i32.const 70000))))
  (func (export "huge_key") (call $put (i32.const 0) (i32.const 300) (i32.const 0) (i32.const 1)))
  (func (export "write_then_spin")
    (call $put (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
    (loop $l (br $l)))
)"""
)

# Refused at deploy.
WASI_WAT = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1))"""
WRONG_TYPE_IMPORT_WAT = """(module
  (import "consortium" "height" (func (result i32)))
  (memory (export "memory") 1))"""
NO_MEMORY_WAT = """(module (func (export "f")))"""
BIG_MEMORY_WAT = """(module (memory (export "memory") 1000))"""
PARAM_METHOD_WAT = """(module (memory (export "memory") 1) (func (export "f") (param i32)))"""
SIMD_WAT = """(module (memory (export "memory") 1)
  (func (export "f") (drop (i32x4.splat (i32.const 1)))))"""
THREADS_WAT = """(module (memory (export "memory") 1 1 shared))"""
# a minimal valid contract with no `init` (for the upgrade path)
COUNTER_V2_WAT = COUNTER_WAT.replace(
    "(i64.const 1)))\n    (call $put", "(i64.const 10)))\n    (call $put"
)


@functools.cache
def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def counter() -> bytes:
    return wasm(COUNTER_WAT)


def counter_v2() -> bytes:
    """The counter whose `incr` adds 10 (an upgrade)."""
    return wasm(COUNTER_V2_WAT)


def token() -> bytes:
    return wasm(TOKEN_WAT)


def bench_token() -> bytes:
    return wasm(BENCH_TOKEN_WAT)


def bad() -> bytes:
    return wasm(BAD_WAT)
