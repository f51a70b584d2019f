package journal

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// benchDir is where benchmarks write: $BADBATCH_BENCH_DIR (to measure the
// disk the appliance will use) or a temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("BADBATCH_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "journal-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// BenchmarkAppendCommit measures group commit: one op is a batch of n
// 100-byte records appended and committed (one write, and one fsync under
// fsync=batch). ns/record and records/s are reported; allocs/op is per
// batch (Append itself does not allocate: see BenchmarkAppend).
func BenchmarkAppendCommit(b *testing.B) {
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncNever} {
		for _, n := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("fsync=%s/batch=%d", policy, n), func(b *testing.B) {
				j, err := Open(Options{Dir: benchDir(b), Fsync: policy, RetentionBytes: 256 << 20, Logger: testLogger()})
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				r := rec(0, 100)
				seq := int64(0)
				b.ReportAllocs()
				b.SetBytes(int64(n * frameSize(&r)))
				for b.Loop() {
					for i := 0; i < n; i++ {
						r.Sequence = seq
						seq++
						if err := j.Append(r); err != nil {
							b.Fatal(err)
						}
					}
					if err := j.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				el := b.Elapsed()
				b.ReportMetric(float64(el.Nanoseconds())/float64(seq), "ns/record")
				b.ReportMetric(float64(seq)/el.Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkAppend measures Append alone (one op = one 100-byte record; a
// Commit with fsync=never every 1024 records keeps the buffer bounded).
func BenchmarkAppend(b *testing.B) {
	j, err := Open(Options{Dir: benchDir(b), Fsync: FsyncNever, RetentionBytes: 256 << 20, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	r := rec(0, 100)
	seq := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		r.Sequence = seq
		seq++
		if err := j.Append(r); err != nil {
			b.Fatal(err)
		}
		if seq%1024 == 0 {
			if err := j.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkReadRange reads 100 records from the middle of a 100k-record
// journal through the sparse index.
func BenchmarkReadRange(b *testing.B) {
	j, err := Open(Options{Dir: benchDir(b), Fsync: FsyncNever, SegmentSize: 4 << 20, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	for s := int64(0); s < 100_000; s++ {
		if err := j.Append(rec(s, 100)); err != nil {
			b.Fatal(err)
		}
		if s%1000 == 999 {
			if err := j.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		from := int64(i*7919) % 99_900
		got, err := j.ReadRange(from, from+99, 100)
		if err != nil || len(got) != 100 {
			b.Fatalf("%d records, %v", len(got), err)
		}
	}
}

// BenchmarkFsync measures this machine's fsync latency the way the journal
// pays it: append a 128-byte write to a file, then fsync it. It reports
// percentiles (µs) so the README can quote them next to the journal's
// figures. Point BADBATCH_BENCH_DIR at the journal's disk.
func BenchmarkFsync(b *testing.B) {
	f, err := os.OpenFile(benchDir(b)+"/fsync.bench", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 128)
	var lat []time.Duration
	off := int64(0)
	for b.Loop() {
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off += int64(len(buf))
		start := time.Now()
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.90), "p90-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.999), "p99.9-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
}

// BenchmarkRecover measures Open (recovery) of a journal with 4 sealed
// 16 MiB segments (loaded from their persisted indexes) and a 16 MiB final
// segment that is scanned and CRC-checked record by record.
func BenchmarkRecover(b *testing.B) {
	dir := benchDir(b)
	o := Options{Dir: dir, Fsync: FsyncNever, SegmentSize: 16 << 20, Logger: testLogger()}
	j, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	r := rec(0, 1000)
	extra := int64(-1) // records still to write once the fifth segment exists
	for s := int64(0); extra != 0; s++ {
		if extra < 0 && j.Stats().Segments == 5 {
			extra = 15_000 // ~15.5 MB into the final segment
		}
		if extra > 0 {
			extra--
		}
		r.Sequence = s
		if err := j.Append(r); err != nil {
			b.Fatal(err)
		}
		if s%1000 == 999 {
			if err := j.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	st := j.Stats()
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d segments, %d bytes, last sequence %d", st.Segments, st.RetainedBytes, st.LastSequence)
	b.ResetTimer()
	for b.Loop() {
		j, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(j.Stats().RecoveryTime.Microseconds())/1e3, "recovery-ms")
		j.Close()
	}
}
