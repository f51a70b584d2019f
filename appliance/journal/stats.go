package journal

import (
	"sync/atomic"
	"time"
)

// fsyncBounds are the fsync latency histogram's bucket upper bounds.
var fsyncBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second,
}

// Histogram is a snapshot of a latency histogram with fixed buckets.
type Histogram struct {
	// Bounds are the buckets' inclusive upper bounds, ascending.
	Bounds []time.Duration
	// Counts[i] counts samples in (Bounds[i-1], Bounds[i]]; the final
	// element, Counts[len(Bounds)], counts samples above the last bound.
	Counts []uint64
	// Count is the number of samples and Sum their total.
	Count uint64
	Sum   time.Duration
}

// Cumulative returns the cumulative count per upper bound in seconds, the
// form prometheus.MustNewConstHistogram takes (the +Inf bucket is Count).
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var c uint64
	for i, b := range h.Bounds {
		c += h.Counts[i]
		out[b.Seconds()] = c
	}
	return out
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1),
// or 0 without samples; samples above the last bound report it doubled.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.5)
	rank = max(rank, 1)
	var c uint64
	for i, b := range h.Bounds {
		c += h.Counts[i]
		if c >= rank {
			return b
		}
	}
	return 2 * h.Bounds[len(h.Bounds)-1]
}

type histogram struct {
	counts [len(fsyncBounds) + 1]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(fsyncBounds) && d > fsyncBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: append([]time.Duration(nil), fsyncBounds[:]...), Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Count = h.count.Load()
	out.Sum = time.Duration(h.sum.Load())
	return out
}

type stats struct {
	records         atomic.Uint64
	commits         atomic.Uint64
	bytesWritten    atomic.Uint64
	fsyncs          atomic.Uint64
	writeErrors     atomic.Uint64
	fsyncErrors     atomic.Uint64
	segmentsCreated atomic.Uint64
	segmentsDeleted atomic.Uint64
	truncatedBytes  atomic.Int64
	recoveryNanos   atomic.Int64
	fsyncHist       histogram
}

func (s *stats) observeFsync(d time.Duration) {
	s.fsyncs.Add(1)
	s.fsyncHist.observe(d)
}

// Stats is a snapshot of the journal's counters and state, for metrics.
// Counters count since Open.
type Stats struct {
	RecordsAppended uint64        // records accepted by Append
	Commits         uint64        // Commit calls that had something to do (incl. background ones)
	BytesWritten    uint64        // bytes written to segment files (incl. rewrites after failures)
	Fsyncs          uint64        // fsyncs of segment files and the directory
	FsyncLatency    Histogram     // latency of those fsyncs
	WriteErrors     uint64        // failed writes
	FsyncErrors     uint64        // failed fsyncs
	SegmentsCreated uint64        // segments created
	SegmentsDeleted uint64        // segments deleted by retention
	Segments        int           // segments on disk
	RetainedBytes   int64         // bytes of durable records on disk
	Earliest        int64         // oldest retained sequence (see Earliest)
	LastSequence    int64         // highest sequence appended
	Durable         int64         // highest durable sequence
	Healthy         bool          // Err() == nil
	LastError       string        // Err() text, empty when healthy
	RecoveryTime    time.Duration // time Open took (scan, repair, index load)
	TruncatedBytes  int64         // bytes dropped from torn or corrupt tails at Open
}

// Stats returns a snapshot of the journal's metrics.
func (j *Journal) Stats() Stats {
	st := Stats{
		RecordsAppended: j.st.records.Load(),
		Commits:         j.st.commits.Load(),
		BytesWritten:    j.st.bytesWritten.Load(),
		Fsyncs:          j.st.fsyncs.Load(),
		FsyncLatency:    j.st.fsyncHist.snapshot(),
		WriteErrors:     j.st.writeErrors.Load(),
		FsyncErrors:     j.st.fsyncErrors.Load(),
		SegmentsCreated: j.st.segmentsCreated.Load(),
		SegmentsDeleted: j.st.segmentsDeleted.Load(),
		RecoveryTime:    time.Duration(j.st.recoveryNanos.Load()),
		TruncatedBytes:  j.st.truncatedBytes.Load(),
		LastSequence:    j.lastSeq.Load(),
		Durable:         j.durable.Load(),
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	st.Segments = len(j.segs)
	for _, s := range j.segs {
		st.RetainedBytes += s.size
	}
	st.Earliest = j.earliestLocked()
	st.Healthy = j.err == nil
	if j.err != nil {
		st.LastError = j.err.Error()
	}
	return st
}
