;; startloop: a start section that never returns (it must be bounded by
;; init_timeout like any other start-up code).
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\00\04\00\00\40\04\00\00\00\04\00\00")
  (func $start (loop $l (br $l)))
  (start $start)
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_process") (param i32 i32) (result i32) (i32.const 0))
)
