;; Example contract in WebAssembly text on the WAT SDK (sdk/wat/consortium.wat, spliced in
;; at `;;@sdk` by build.py): a shared counter. Built by `make contracts` into
;; wasm/counter.wasm.
;;   init       (none) or start:u64     the counter starts at 0 or at start
;;   increment  (none) or by:u64        adds 1 or by; result and event "incremented": the new value
;;   value      (none)                  result: the value (u64 little-endian)
;; State: "count" -> u64. An increment that would overflow u64 aborts.
(module
;;@sdk
  (data (i32.const 64) "count")
  (data (i32.const 72) "incremented")
  (data (i32.const 96) "input: expected nothing or a u64")
  (data (i32.const 128) "counter overflow")

  ;; The optional u64 argument: $default without input, else the 8 input bytes.
  (func $arg (param $default i64) (result i64)
    (local $n i32)
    (local.set $n (call $input_len))
    (if (i32.eqz (local.get $n)) (then (return (local.get $default))))
    (if (i32.ne (local.get $n) (i32.const 8))
      (then (call $sdk_abort (i32.const 96) (i32.const 32))))
    (call $input_read (i32.const 256))
    (i64.load (i32.const 256)))

  (func (export "init")
    (call $sdk_put_u64 (i32.const 64) (i32.const 5) (call $arg (i64.const 0))))

  (func (export "increment")
    (local $old i64)
    (local $new i64)
    (local.set $old (call $sdk_get_u64 (i32.const 64) (i32.const 5)))
    (local.set $new (i64.add (local.get $old) (call $arg (i64.const 1))))
    ;; Unsigned wrap-around means overflow: the new value must not be below the old one.
    (if (i64.lt_u (local.get $new) (local.get $old))
      (then (call $sdk_abort (i32.const 128) (i32.const 16))))
    (call $sdk_put_u64 (i32.const 64) (i32.const 5) (local.get $new))
    (i64.store (i32.const 264) (local.get $new))
    (call $emit (i32.const 72) (i32.const 11) (i32.const 264) (i32.const 8))
    (call $sdk_result_u64 (local.get $new)))

  (func (export "value")
    (call $sdk_result_u64 (call $sdk_get_u64 (i32.const 64) (i32.const 5))))
)
