;; badimport: imports a function the host does not provide.
(module
  (import "env" "launch_missiles" (func $f (param i32)))
  (memory (export "memory") 1)
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param i32 i32) (result i32) (i32.const 0))
)
