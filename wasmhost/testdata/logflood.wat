;; logflood: logs one line per event with bb.log (capability "log") and
;; writes one line per batch to stdout through WASI fd_write; forwards nothing.
(module
  (import "bb" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\00\04\00\00\00\04\00\00\00\08\00\00\00\04\00\00")
  (data (i32.const 16) "flood")
  (data (i32.const 32) "batch done\n")
  ;; iovec at 48: {ptr=32, len=11}
  (data (i32.const 48) "\20\00\00\00\0b\00\00\00")
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param $n i32) (param $len i32) (result i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $log (i32.const 1) (i32.const 16) (i32.const 5))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (drop (call $fd_write (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 56)))
    (i32.const 0))
)
