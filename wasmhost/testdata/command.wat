;; command: exports _start (a WASI command, not a reactor).
(module
  (memory (export "memory") 1)
  (func (export "_start"))
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param i32 i32) (result i32) (i32.const 0))
)
