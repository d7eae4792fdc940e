// The consortium contract SDK for AssemblyScript: thin wrappers over the host ABI of
// docs/CONTRACTS.md (module "consortium"). Contracts import what they need from here; every
// wrapper is one host call (host calls cost fuel by the bytes they move, so the SDK never
// calls the host behind the caller's back — except get(), which asks twice when the value
// is larger than its first 128-byte buffer).
//
// Build with `--runtime stub --use abort=sdk/assemblyscript/consortium/onAbort`: the stub
// runtime never frees (an instance lives for one call), and AssemblyScript's own assertion
// failures (bounds checks, `assert`) become the ABI's abort with a readable message instead
// of an unknown `env.abort` import, which a node refuses at deploy.

// @ts-ignore: decorator
@external("consortium", "input_len") declare function host_input_len(): i32;
// @ts-ignore: decorator
@external("consortium", "input_read") declare function host_input_read(ptr: usize): void;
// @ts-ignore: decorator
@external("consortium", "get") declare function host_get(kptr: usize, klen: i32, vptr: usize, vcap: i32): i32;
// @ts-ignore: decorator
@external("consortium", "put") declare function host_put(kptr: usize, klen: i32, vptr: usize, vlen: i32): void;
// @ts-ignore: decorator
@external("consortium", "delete") declare function host_delete(kptr: usize, klen: i32): void;
// @ts-ignore: decorator
@external("consortium", "emit") declare function host_emit(tptr: usize, tlen: i32, dptr: usize, dlen: i32): void;
// @ts-ignore: decorator
@external("consortium", "set_result") declare function host_set_result(ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("consortium", "caller") declare function host_caller(ptr: usize): void;
// @ts-ignore: decorator
@external("consortium", "height") declare function host_height(): i64;
// @ts-ignore: decorator
@external("consortium", "abort") declare function host_abort(ptr: usize, len: i32): void;

/** Length of an account: an Ed25519 public key. */
export const ADDRESS_LEN: i32 = 32;

/** The call's input bytes (the deploy's init input inside `init`). */
export function input(): Uint8Array {
  const n = host_input_len();
  const buf = new Uint8Array(n);
  if (n > 0) host_input_read(buf.dataStart);
  return buf;
}

/** The value stored under `key` in this contract's state, or null when absent. */
export function get(key: Uint8Array): Uint8Array | null {
  let buf = new Uint8Array(128);
  const n = host_get(key.dataStart, key.length, buf.dataStart, buf.length);
  if (n < 0) return null;
  if (n > buf.length) {
    // The value was not copied (it did not fit): ask again with a buffer of its size.
    buf = new Uint8Array(n);
    host_get(key.dataStart, key.length, buf.dataStart, n);
    return buf;
  }
  return buf.subarray(0, n);
}

/** Store `value` under `key` (kept only if the call succeeds). */
export function put(key: Uint8Array, value: Uint8Array): void {
  host_put(key.dataStart, key.length, value.dataStart, value.length);
}

/** Remove `key` from this contract's state. */
export function remove(key: Uint8Array): void {
  host_delete(key.dataStart, key.length);
}

/** Emit an event with a UTF-8 topic and binary data (kept only if the call succeeds). */
export function emit(topic: string, data: Uint8Array): void {
  const t = Uint8Array.wrap(String.UTF8.encode(topic));
  host_emit(t.dataStart, t.length, data.dataStart, data.length);
}

/** Set the call's result bytes (the last call wins). */
export function setResult(data: Uint8Array): void {
  host_set_result(data.dataStart, data.length);
}

/** The 32-byte public key of the transaction's signer (all zeros for an anonymous query). */
export function caller(): Uint8Array {
  const buf = new Uint8Array(ADDRESS_LEN);
  host_caller(buf.dataStart);
  return buf;
}

/** The height of the block being executed (for a query: the last committed height). */
export function height(): u64 {
  return <u64>host_height();
}

/** Fail the call with `message`: nothing it wrote or emitted is kept. Does not return. */
export function abort(message: string): void {
  const m = Uint8Array.wrap(String.UTF8.encode(message));
  host_abort(m.dataStart, m.length);
  unreachable();
}

/** `--use abort=…` target: AssemblyScript's own failures (bounds, assert) end the call cleanly. */
export function onAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = message !== null ? message : "assertion failed";
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  abort(text);
}

/** Fail the call with `message` unless `condition` holds. */
export function require(condition: bool, message: string): void {
  if (!condition) abort(message);
}

// ---- byte helpers: fixed little-endian layouts, as the examples' inputs use ----------------

/** The u64 little-endian at `offset` of `b` (aborts with `what` when `b` is too short). */
export function readU64(b: Uint8Array, offset: i32, what: string = "input"): u64 {
  require(offset >= 0 && offset + 8 <= b.length, what + ": expected 8 bytes at offset " + offset.toString());
  return load<u64>(b.dataStart + <usize>offset);
}

/** The 32-byte address at `offset` of `b` (aborts with `what` when `b` is too short). */
export function readAddress(b: Uint8Array, offset: i32, what: string = "input"): Uint8Array {
  require(offset >= 0 && offset + ADDRESS_LEN <= b.length, what + ": expected a 32-byte address at offset " + offset.toString());
  return b.slice(offset, offset + ADDRESS_LEN);
}

/** `v` as 8 little-endian bytes. */
export function u64Bytes(v: u64): Uint8Array {
  const b = new Uint8Array(8);
  store<u64>(b.dataStart, v);
  return b;
}

/** The u64 stored under `key`, 0 when absent. */
export function getU64(key: Uint8Array): u64 {
  const v = get(key);
  if (v === null) return 0;
  return readU64(v, 0, "stored value");
}

/** Store `v` under `key`; a zero removes the key (state keeps no zero balances). */
export function putU64(key: Uint8Array, v: u64): void {
  if (v == 0) remove(key);
  else put(key, u64Bytes(v));
}

/** The concatenation of `parts`. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (let i = 0; i < parts.length; i++) n += parts[i].length;
  const out = new Uint8Array(n);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    out.set(parts[i], at);
    at += parts[i].length;
  }
  return out;
}

/** A state key: a one-letter prefix followed by `parts`. */
export function key(prefix: string, parts: Uint8Array[]): Uint8Array {
  const all = new Array<Uint8Array>(0);
  all.push(Uint8Array.wrap(String.UTF8.encode(prefix)));
  for (let i = 0; i < parts.length; i++) all.push(parts[i]);
  return concat(all);
}

/** Whether `a` and `b` hold the same bytes. */
export function equal(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  return memory.compare(a.dataStart, b.dataStart, <usize>a.length) == 0;
}
