;; hostile: a test module (ABI version 1) whose behaviour per input is chosen by
;; the first byte of the event's data:
;;   'T' trap (unreachable)            'L' endless loop
;;   'O' grow memory until refused, then trap (out of memory)
;;   'B' malformed output (record size 7)        'X' return -1 (batch failed)
;;   'E' error record "bad event"      'H' output never fits (return -2)
;;   'D' explicit drop                 'M' emit a copy of the data + forward to route 1
;;   'U' claim an output longer than the output buffer
;;   anything else (or empty data): forward to the default output.
;; Data that is a JSON string ("T...", as published over the REST API) selects
;; by the string's first character.
(module
  (memory (export "memory") 3)
  ;; descriptor: in = [64, 64+65536), out = [65600, 65600+65536)
  (data (i32.const 0) "\40\00\00\00\00\00\01\00\40\00\01\00\00\00\01\00")
  (data (i32.const 16) "bad event")
  (global $out i32 (i32.const 65600))
  (func (export "bb_abi_version") (result i32) (i32.const 1))
  (func (export "bb_buffers") (result i32) (i32.const 0))
  (func (export "bb_init") (param i32 i32) (result i32) (i32.const 0))

  ;; write an output header at $o; returns $o + align8(24 + klen + dlen)
  (func $hdr (param $o i32) (param $kind i32) (param $route i32) (param $input i32)
             (param $dlen i32) (result i32)
    (local $size i32)
    (local.set $size (i32.and (i32.add (i32.add (i32.const 24) (local.get $dlen)) (i32.const 7))
                              (i32.const -8)))
    (i32.store (local.get $o) (local.get $size))
    (i32.store8 (i32.add (local.get $o) (i32.const 4)) (local.get $kind))
    (i32.store8 (i32.add (local.get $o) (i32.const 5)) (i32.const 0))
    (i32.store16 (i32.add (local.get $o) (i32.const 6)) (local.get $route))
    (i32.store (i32.add (local.get $o) (i32.const 8)) (local.get $input))
    (i32.store (i32.add (local.get $o) (i32.const 12)) (i32.const 0))
    (i32.store (i32.add (local.get $o) (i32.const 16)) (local.get $dlen))
    (i32.store (i32.add (local.get $o) (i32.const 20)) (i32.const 0))
    ;; zero the padding
    (memory.fill (i32.add (i32.add (local.get $o) (i32.const 24)) (local.get $dlen))
                 (i32.const 0)
                 (i32.sub (local.get $size) (i32.add (i32.const 24) (local.get $dlen))))
    (i32.add (local.get $o) (local.get $size)))

  (func (export "bb_process") (param $n i32) (param $in_len i32) (result i32)
    (local $i i32) (local $p i32) (local $o i32) (local $data i32) (local $dlen i32) (local $c i32)
    (local.set $p (i32.const 64))
    (local.set $o (global.get $out))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $dlen (i32.load (i32.add (local.get $p) (i32.const 32))))
      (local.set $data (i32.add (i32.add (local.get $p) (i32.const 40))
                                (i32.add (i32.load (i32.add (local.get $p) (i32.const 24)))
                                         (i32.load (i32.add (local.get $p) (i32.const 28))))))
      (local.set $c (i32.const 0))
      (if (local.get $dlen) (then (local.set $c (i32.load8_u (local.get $data)))))
      ;; a JSON string ("T...") selects by its first character
      (if (i32.and (i32.eq (local.get $c) (i32.const 34)) (i32.gt_u (local.get $dlen) (i32.const 1)))
        (then (local.set $c (i32.load8_u (i32.add (local.get $data) (i32.const 1))))))
      (block $sw
        (if (i32.eq (local.get $c) (i32.const 84)) (then unreachable))          ;; 'T'
        (if (i32.eq (local.get $c) (i32.const 76)) (then (loop $forever (br $forever)))) ;; 'L'
        (if (i32.eq (local.get $c) (i32.const 79)) (then                        ;; 'O'
          (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable))
        (if (i32.eq (local.get $c) (i32.const 66)) (then                        ;; 'B'
          (i32.store (global.get $out) (i32.const 7))
          (return (i32.const 24))))
        (if (i32.eq (local.get $c) (i32.const 88)) (then (return (i32.const -1)))) ;; 'X'
        (if (i32.eq (local.get $c) (i32.const 85)) (then (return (i32.const 0x7fffffff)))) ;; 'U'
        (if (i32.eq (local.get $c) (i32.const 72)) (then (return (i32.const -2)))) ;; 'H'
        (if (i32.eq (local.get $c) (i32.const 69)) (then                        ;; 'E'
          (memory.copy (i32.add (local.get $o) (i32.const 24)) (i32.const 16) (i32.const 9))
          (local.set $o (call $hdr (local.get $o) (i32.const 4) (i32.const 0) (local.get $i) (i32.const 9)))
          (br $sw)))
        (if (i32.eq (local.get $c) (i32.const 68)) (then                        ;; 'D'
          (local.set $o (call $hdr (local.get $o) (i32.const 3) (i32.const 0) (local.get $i) (i32.const 0)))
          (br $sw)))
        (if (i32.eq (local.get $c) (i32.const 77)) (then                        ;; 'M'
          (if (i32.gt_u (i32.add (i32.add (local.get $o) (local.get $dlen)) (i32.const 64))
                        (i32.const 131136))
            (then (return (i32.const -2))))
          (memory.copy (i32.add (local.get $o) (i32.const 24)) (local.get $data) (local.get $dlen))
          (local.set $o (call $hdr (local.get $o) (i32.const 1) (i32.const 0) (local.get $i) (local.get $dlen)))
          (local.set $o (call $hdr (local.get $o) (i32.const 2) (i32.const 1) (local.get $i) (i32.const 0)))
          (br $sw)))
        ;; default: forward
        (if (i32.gt_u (i32.add (local.get $o) (i32.const 24)) (i32.const 131136))
          (then (return (i32.const -2))))
        (local.set $o (call $hdr (local.get $o) (i32.const 2) (i32.const 0) (local.get $i) (i32.const 0))))
      (local.set $p (i32.add (local.get $p) (i32.load (local.get $p))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.sub (local.get $o) (global.get $out)))
)
