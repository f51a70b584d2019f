//go:build (amd64 || arm64) && !race

package disruptor

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v at addr with release semantics only (LMAX's
// putOrdered / lazySet). It is used for the single writer of a sequence
// (a producer cursor, a consumer's progress), whose readers use atomic
// loads. Under the race detector the portable atomic store is used instead,
// so that the detector sees the synchronisation.
//
//go:noescape
func storeRelease(addr *int64, v int64)

// SetRelease stores v with release semantics only: cheaper than Set (no
// full fence), correct when one goroutine writes the sequence and others
// read it with Get.
func (s *Sequence) SetRelease(v int64) {
	storeRelease((*int64)(unsafe.Pointer(&s.v)), v)
}

// spinPause is the CPU's spin-wait hint (PAUSE, YIELD).
func spinPause()

//go:noescape
func storeRelease32(addr *int32, v int32)

// setAvailable marks a multi-producer slot published with a release store.
func setAvailable(a *atomic.Int32, lap int32) {
	storeRelease32((*int32)(unsafe.Pointer(a)), lap)
}
