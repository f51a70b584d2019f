//go:build wasip1

package sdk

import "unsafe"

// Log levels of Log.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

//go:wasmimport bb log
func hostLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport bb counter_add
func hostCounterAdd(ptr unsafe.Pointer, n int32, delta int64)

//go:wasmimport bb kv_get
func hostKVGet(kp unsafe.Pointer, kn int32, vp unsafe.Pointer, vcap int32) int32

//go:wasmimport bb kv_set
func hostKVSet(kp unsafe.Pointer, kn int32, vp unsafe.Pointer, vn int32) int32

//go:wasmimport bb kv_delete
func hostKVDelete(kp unsafe.Pointer, kn int32) int32

//go:wasmimport bb now
func hostNow() int64

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// Log writes a line to the module's log (capability "log").
func Log(level int32, msg string) { hostLog(level, strPtr(msg), int32(len(msg))) }

// CounterAdd adds delta to the module counter name (capability "metrics").
func CounterAdd(name string, delta int64) { hostCounterAdd(strPtr(name), int32(len(name)), delta) }

// KVGet copies the value of key into dst and returns its length; ok is false
// if the key is absent. If the value is longer than dst, nothing is copied
// and n is the length needed (capability "kv").
func KVGet(key, dst []byte) (n int, ok bool) {
	r := hostKVGet(bytesPtr(key), int32(len(key)), bytesPtr(dst), int32(len(dst)))
	if r < 0 {
		return 0, false
	}
	return int(r), true
}

// KVSet stores value under key; false if the host refused (capability "kv").
func KVSet(key, value []byte) bool {
	return hostKVSet(bytesPtr(key), int32(len(key)), bytesPtr(value), int32(len(value))) == 0
}

// KVDelete removes key; false if it was absent (capability "kv").
func KVDelete(key []byte) bool { return hostKVDelete(bytesPtr(key), int32(len(key))) == 0 }

// Now returns the host's Unix time in nanoseconds (capability "clock").
func Now() int64 { return hostNow() }
