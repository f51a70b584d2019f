package disruptor

import (
	"sync/atomic"

	"github.com/klauspost/cpuid/v2"
)

// CacheLinePad is the number of bytes of padding placed on each side of every
// hot counter. 128 bytes covers 64-byte lines plus the adjacent-line
// prefetcher on x86 and the 128-byte lines of some arm64 cores. It is a
// compile-time constant; [PaddingReport] checks it against the detected line.
const CacheLinePad = 128

// InitialSequence is the value of a sequence before anything was published
// or consumed.
const InitialSequence int64 = -1

// Sequence is an atomic int64 padded on both sides so that it never shares a
// cache line with another hot value. The zero value is a sequence at 0; use
// [NewSequence] for [InitialSequence].
type Sequence struct {
	_ [CacheLinePad]byte
	v atomic.Int64
	_ [CacheLinePad - 8]byte
}

// NewSequence returns a sequence holding initial.
func NewSequence(initial int64) *Sequence {
	s := &Sequence{}
	s.v.Store(initial)
	return s
}

// Get returns the current value (an acquire load).
func (s *Sequence) Get() int64 { return s.v.Load() }

// Set stores v (a release store).
func (s *Sequence) Set(v int64) { s.v.Store(v) }

// CompareAndSet atomically sets the value to next if it equals expected.
func (s *Sequence) CompareAndSet(expected, next int64) bool {
	return s.v.CompareAndSwap(expected, next)
}

// Add atomically adds delta and returns the new value.
func (s *Sequence) Add(delta int64) int64 { return s.v.Add(delta) }

// PaddingInfo reports how the compile-time padding compares with the cache
// line of the running CPU.
type PaddingInfo struct {
	// Pad is the padding in bytes on each side of a Sequence ([CacheLinePad]).
	Pad int `json:"pad_bytes"`
	// CacheLine is the detected L1 data cache line size in bytes (0 if unknown).
	CacheLine int `json:"cache_line_bytes"`
	// Sufficient is true when Pad is at least one detected cache line.
	Sufficient bool `json:"sufficient"`
}

// PaddingReport compares [CacheLinePad] with the cache line size that cpuid
// detects on this machine.
func PaddingReport() PaddingInfo {
	line := cpuid.CPU.CacheLine
	return PaddingInfo{Pad: CacheLinePad, CacheLine: line, Sufficient: line <= CacheLinePad}
}

// SequenceGroup is a fixed set of sequences read as their minimum.
type SequenceGroup []*Sequence

// Get returns the minimum of the group (math.MaxInt64 when it is empty).
func (g SequenceGroup) Get() int64 {
	if len(g) == 1 {
		return g[0].Get()
	}
	return minimumSequence(g, int64(^uint64(0)>>1))
}

func minimumSequence(seqs []*Sequence, min int64) int64 {
	for _, s := range seqs {
		if v := s.Get(); v < min {
			min = v
		}
	}
	return min
}
