;; badversion: claims ABI version 2.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\00\04\00\00\40\04\00\00\00\04\00\00")
  (func (export "bb_abi_version") (result i32) (i32.const 2))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param i32 i32) (result i32) (i32.const 0))
)
