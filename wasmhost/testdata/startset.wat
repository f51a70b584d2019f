;; startset: its start function writes the buffer descriptor, so the module
;; only works if the start function ran before bb_buffers.
(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func $start
    (i64.store (i32.const 0) (i64.const 0x0000040000000040))
    (i64.store (i32.const 8) (i64.const 0x0000040000000440))
    (global.set $g (i32.const 1)))
  (start $start)
  (func (export "bb_abi_version") (result i32) (global.get $g))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param $n i32) (param i32) (result i32)
    (local $i i32) (local $o i32)
    (local.set $o (i32.const 1088))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (local.get $o) (i32.const 24))
      (i32.store (i32.add (local.get $o) (i32.const 4)) (i32.const 2))
      (i32.store (i32.add (local.get $o) (i32.const 8)) (local.get $i))
      (i64.store (i32.add (local.get $o) (i32.const 12)) (i64.const 0))
      (i32.store (i32.add (local.get $o) (i32.const 20)) (i32.const 0))
      (local.set $o (i32.add (local.get $o) (i32.const 24)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.sub (local.get $o) (i32.const 1088)))
)
