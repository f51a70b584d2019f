;; initloop: bb_init never returns (bounded by init_timeout).
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\00\04\00\00\40\04\00\00\00\04\00\00")
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_init") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "bb_process") (param i32 i32) (result i32) (i32.const 0))
)
