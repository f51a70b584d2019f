//go:build !(amd64 || arm64) || race

package disruptor

import "sync/atomic"

// SetRelease stores v with release semantics only: cheaper than Set (no
// full fence) where the architecture allows, correct when one goroutine
// writes the sequence and others read it with Get. On this build it is Set.
func (s *Sequence) SetRelease(v int64) { s.v.Store(v) }

// spinPause is the CPU's spin-wait hint; none on this build.
func spinPause() {}

// setAvailable marks a multi-producer slot published.
func setAvailable(a *atomic.Int32, lap int32) { a.Store(lap) }
