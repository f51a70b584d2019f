;; wat-counter: a complete BadBatch handler module (ABI version 1) in plain WAT.
;; It forwards every input to the default output and adds the batch size to the
;; module counter "events" (capability "metrics").
(module
  (import "bb" "counter_add" (func $counter_add (param i32 i32 i64)))
  (memory (export "memory") 2)
  ;; buffer descriptor at 0: in = [64, 64+32768), out = [32832, 32832+32768)
  (data (i32.const 0) "\40\00\00\00\00\80\00\00\40\80\00\00\00\80\00\00")
  (data (i32.const 16) "events")
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param $n i32) (param $in_len i32) (result i32)
    (local $i i32) (local $o i32)
    (local.set $o (i32.const 32832))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      ;; no room for another 24-byte record: ask the host for a smaller batch
      (if (i32.gt_u (i32.add (local.get $o) (i32.const 24)) (i32.const 65600))
        (then (return (i32.const -2))))
      (i32.store (local.get $o) (i32.const 24))                          ;; size
      (i32.store (i32.add (local.get $o) (i32.const 4)) (i32.const 2))   ;; kind=forward, flags=0, route=0
      (i32.store (i32.add (local.get $o) (i32.const 8)) (local.get $i))  ;; input index
      (i64.store (i32.add (local.get $o) (i32.const 12)) (i64.const 0))  ;; key_len=0, data_len=0
      (i32.store (i32.add (local.get $o) (i32.const 20)) (i32.const 0))  ;; reserved
      (local.set $o (i32.add (local.get $o) (i32.const 24)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (call $counter_add (i32.const 16) (i32.const 6) (i64.extend_i32_u (local.get $n)))
    (i32.sub (local.get $o) (i32.const 32832)))
)
