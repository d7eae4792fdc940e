  ;; The consortium contract SDK for WebAssembly text: the host ABI's imports under short
  ;; names plus a few helpers. build.py splices this file in place of the line `;;@sdk` of a
  ;; contract's .wat (WAT has no include), so a contract writes `call $get` and
  ;; `call $sdk_get_u64` instead of repeating the import block.
  ;;
  ;; Memory layout it assumes: one exported memory (declared here, 1 page); bytes 0..64 are
  ;; the SDK's scratch (its helpers clobber them); a contract keeps its data at 64 and above.
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
  (memory (export "memory") 1)

  ;; Fail the call with the UTF-8 message at ptr/len; never returns.
  (func $sdk_abort (param $ptr i32) (param $len i32)
    (call $abort (local.get $ptr) (local.get $len))
    unreachable)

  ;; The call input copied to $ptr (the caller ensures room); returns its length.
  (func $sdk_input (param $ptr i32) (result i32)
    (local $n i32)
    (local.set $n (call $input_len))
    (if (local.get $n) (then (call $input_read (local.get $ptr))))
    (local.get $n))

  ;; The u64 under the key at kptr/klen, 0 when absent; aborts unless it is 8 bytes.
  (func $sdk_get_u64 (param $kptr i32) (param $klen i32) (result i64)
    (local $n i32)
    (local.set $n (call $get (local.get $kptr) (local.get $klen) (i32.const 0) (i32.const 8)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i64.const 0))))
    (if (i32.ne (local.get $n) (i32.const 8))
      (then (call $sdk_abort (i32.const 16) (i32.const 27))))
    (i64.load (i32.const 0)))

  ;; Store v as 8 little-endian bytes under the key at kptr/klen.
  (func $sdk_put_u64 (param $kptr i32) (param $klen i32) (param $v i64)
    (i64.store (i32.const 0) (local.get $v))
    (call $put (local.get $kptr) (local.get $klen) (i32.const 0) (i32.const 8)))

  ;; Set the call's result to v as 8 little-endian bytes.
  (func $sdk_result_u64 (param $v i64)
    (i64.store (i32.const 8) (local.get $v))
    (call $set_result (i32.const 8) (i32.const 8)))

  ;; Scratch message for $sdk_get_u64 (27 bytes at 16).
  (data (i32.const 16) "stored value is not 8 bytes")
