package journal

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no dir", Options{}, "dir is required"},
		{"bad policy", Options{Dir: "x", Fsync: "sometimes"}, "unknown fsync policy"},
		{"small segment", Options{Dir: "x", SegmentSize: 10}, "below the minimum"},
		{"negative retention", Options{Dir: "x", RetentionBytes: -1}, "negative"},
		{"record size", Options{Dir: "x", MaxRecordSize: 3}, "max record size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%+v) = %v, want error containing %q", tc.o, err, tc.want)
			}
		})
	}
	for _, s := range []string{"", "batch", "interval", "never"} {
		if _, err := ParseFsyncPolicy(s); err != nil {
			t.Errorf("ParseFsyncPolicy(%q): %v", s, err)
		}
	}
}

func TestAppendCommitReopen(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncInterval, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			dir := t.TempDir()
			j := openT(t, Options{Dir: dir, Fsync: policy, FsyncInterval: time.Millisecond})
			if j.LastSequence() != -1 || j.Durable() != -1 || j.Earliest() != 0 {
				t.Fatalf("empty journal: last %d durable %d earliest %d", j.LastSequence(), j.Durable(), j.Earliest())
			}
			var want []Record
			for s := int64(0); s < 50; s++ {
				r := rec(s*2, int(s)) // gaps are allowed
				want = append(want, r)
				appendAll(t, j, r)
				if s%10 == 9 {
					if err := j.Commit(); err != nil {
						t.Fatal(err)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := j.WaitDurable(ctx, 98); err != nil {
				t.Fatalf("WaitDurable: %v", err)
			}
			if err := j.Append(rec(98, 1)); !errors.Is(err, ErrSequence) {
				t.Fatalf("duplicate sequence: %v", err)
			}
			if err := j.Append(Record{Sequence: 100, Producer: make([]byte, 70000)}); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("oversized producer: %v", err)
			}
			got := readAll(t, j)
			if len(got) != len(want) {
				t.Fatalf("read %d records, want %d", len(got), len(want))
			}
			for i := range got {
				if !sameRecord(got[i], want[i]) {
					t.Fatalf("record %d differs", i)
				}
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := j.Append(rec(200, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close: %v", err)
			}

			j = openT(t, Options{Dir: dir, Fsync: policy})
			defer j.Close()
			if j.LastSequence() != 98 || j.Durable() != 98 {
				t.Fatalf("reopened: last %d durable %d", j.LastSequence(), j.Durable())
			}
			if err := j.Append(rec(50, 1)); !errors.Is(err, ErrSequence) {
				t.Fatalf("sequence below recovered last: %v", err)
			}
			appendAll(t, j, rec(99, 3))
			if err := j.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := j.WaitDurable(ctx, 99); err != nil { // interval: the background fsync publishes it
				t.Fatal(err)
			}
			if got := readAll(t, j); len(got) != 51 || got[50].Sequence != 99 {
				t.Fatalf("after reopen+append: %v", seqs(got))
			}
		})
	}
}

func TestDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, Options{Dir: dir})
	defer j.Close()
	if _, err := Open(Options{Dir: dir, Logger: testLogger()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// writeSegment writes recs with a batch-policy journal and returns the
// segment's path and the offset at which each record starts.
func writeSegment(t *testing.T, dir string, recs []Record) (string, []int64) {
	t.Helper()
	j := openT(t, Options{Dir: dir})
	appendAll(t, j, recs...)
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	offs := []int64{segmentHeaderSize}
	for _, r := range recs {
		offs = append(offs, offs[len(offs)-1]+int64(frameSize(&r)))
	}
	return filepath.Join(dir, segmentName(recs[0].Sequence)), offs
}

func TestTornTailEveryOffset(t *testing.T) {
	src := t.TempDir()
	recs := []Record{rec(10, 5), rec(11, 50), rec(12, 0), rec(13, 40)}
	path, offs := writeSegment(t, src, recs)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(full)) != offs[len(offs)-1] {
		t.Fatalf("segment is %d bytes, expected %d", len(full), offs[len(offs)-1])
	}
	last := offs[len(recs)-1]
	// Cutting anywhere inside the last record keeps exactly the first three;
	// cutting inside the header leaves no segment at all.
	cuts := []int64{0, 1, 8, 15, 16}
	for c := last; c <= int64(len(full)); c++ {
		cuts = append(cuts, c)
	}
	for _, cut := range cuts {
		dir := t.TempDir()
		p := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(p, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		j := openT(t, Options{Dir: dir, Fsync: FsyncNever})
		var wantN int
		switch {
		case cut == int64(len(full)):
			wantN = 4
		case cut >= last:
			wantN = 3
		case cut > segmentHeaderSize:
			t.Fatalf("unexpected cut %d", cut)
		}
		got := readAll(t, j)
		if len(got) != wantN {
			t.Fatalf("cut at %d: recovered %v, want %d records", cut, seqs(got), wantN)
		}
		for i := range got {
			if !sameRecord(got[i], recs[i]) {
				t.Fatalf("cut at %d: record %d differs", cut, i)
			}
		}
		wantLast := int64(-1)
		if wantN > 0 {
			wantLast = recs[wantN-1].Sequence
		}
		if j.LastSequence() != wantLast || j.Durable() != wantLast {
			t.Fatalf("cut at %d: last %d durable %d, want %d", cut, j.LastSequence(), j.Durable(), wantLast)
		}
		st := j.Stats()
		if dropped := cut - offs[wantN]; wantN > 0 && st.TruncatedBytes != dropped {
			t.Fatalf("cut at %d: TruncatedBytes %d, want %d", cut, st.TruncatedBytes, dropped)
		}
		// Numbering continues, and the new record lands right after the
		// last complete one (the torn bytes are gone).
		appendAll(t, j, rec(20, 7))
		if err := j.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, Options{Dir: dir, Fsync: FsyncNever})
		got = readAll(t, j)
		if len(got) != wantN+1 || got[wantN].Sequence != 20 {
			t.Fatalf("cut at %d: after append and reopen got %v", cut, seqs(got))
		}
		if j.Stats().TruncatedBytes != 0 {
			t.Fatalf("cut at %d: second recovery truncated again", cut)
		}
		j.Close()
	}
}

func TestCorruptCRC(t *testing.T) {
	recs := []Record{rec(0, 30), rec(1, 30), rec(2, 30), rec(3, 30)}
	for _, victim := range []int{3, 1} {
		dir := t.TempDir()
		path, offs := writeSegment(t, dir, recs)
		b, _ := os.ReadFile(path)
		b[offs[victim]+frameHeaderSize+bodyFixedSize+5] ^= 0x40 // inside the record's payload
		os.WriteFile(path, b, 0o644)
		j := openT(t, Options{Dir: dir})
		got := readAll(t, j)
		if !slices.Equal(seqs(got), []int64{0, 1, 2, 3}[:victim]) {
			t.Fatalf("corrupt record %d: recovered %v", victim, seqs(got))
		}
		if fi, _ := os.Stat(path); fi.Size() != offs[victim] {
			t.Fatalf("segment not truncated at the corrupt record: size %d want %d", fi.Size(), offs[victim])
		}
		j.Close()
	}
}

// multiSegment writes n records of size bytes into small segments.
func multiSegment(t *testing.T, o Options, n int, size int) *Journal {
	t.Helper()
	j := openT(t, o)
	for s := 0; s < n; s++ {
		appendAll(t, j, rec(int64(s), size))
		if s%7 == 6 || s == n-1 {
			if err := j.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return j
}

func TestSegmentRollAndIndexReads(t *testing.T) {
	dir := t.TempDir()
	fl := &faults{}
	o := Options{Dir: dir, SegmentSize: 2048, IndexInterval: 300, Opener: fl.open}
	j := multiSegment(t, o, 300, 100)
	st := j.Stats()
	if st.Segments < 10 || st.SegmentsCreated != uint64(st.Segments) {
		t.Fatalf("expected many segments, got %+v", st)
	}
	// Every segment is named by its first sequence and no sealed one is far
	// above the roll size (at most one batch over).
	ents, _ := os.ReadDir(dir)
	var segFiles, idxFiles int
	for _, e := range ents {
		if base, ok := parseSegmentName(e.Name()); ok {
			segFiles++
			rs, err := j.ReadRange(base, base, 1)
			if err != nil || len(rs) != 1 || rs[0].Sequence != base {
				t.Fatalf("segment %s: first record %v %v", e.Name(), rs, err)
			}
			if fi, _ := e.Info(); fi.Size() > 2048+7*200 {
				t.Fatalf("segment %s is %d bytes", e.Name(), fi.Size())
			}
		}
		if strings.HasSuffix(e.Name(), indexExt) {
			idxFiles++
		}
	}
	if segFiles != st.Segments || idxFiles != segFiles-1 {
		t.Fatalf("%d segment files, %d index files, stats %d segments", segFiles, idxFiles, st.Segments)
	}
	check := func(j *Journal) {
		t.Helper()
		for _, tc := range []struct {
			from, to int64
			limit    int
			want     []int64
		}{
			{0, 4, 100, []int64{0, 1, 2, 3, 4}},
			{5, 5, 100, []int64{5}},
			{95, 105, 3, []int64{95, 96, 97}},
			{290, math.MaxInt64, 100, []int64{290, 291, 292, 293, 294, 295, 296, 297, 298, 299}},
			{299, 1000, 10, []int64{299}},
			{300, 1000, 10, []int64{}},
			{10, 9, 10, []int64{}},
		} {
			got, err := j.ReadRange(tc.from, tc.to, tc.limit)
			if err != nil {
				t.Fatalf("ReadRange(%d,%d,%d): %v", tc.from, tc.to, tc.limit, err)
			}
			if !slices.Equal(seqs(got), tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("ReadRange(%d,%d,%d) = %v, want %v", tc.from, tc.to, tc.limit, seqs(got), tc.want)
			}
			for _, r := range got {
				checkRec(t, r)
			}
		}
		// Every window across segment boundaries.
		for from := int64(0); from < 300; from += 13 {
			got, err := j.ReadRange(from, from+40, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != int(min(41, 300-from)) || got[0].Sequence != from {
				t.Fatalf("window from %d: %v", from, seqs(got))
			}
		}
	}
	check(j)
	if st := j.Stats(); st.Fsyncs == 0 || st.FsyncLatency.Count != st.Fsyncs || st.BytesWritten == 0 || st.Durable != 299 || st.Earliest != 0 || !st.Healthy {
		t.Fatalf("stats %+v", st)
	}
	if _, err := j.ReadRange(-1, 3, 1); err == nil {
		t.Fatal("negative from accepted")
	}
	if _, err := j.ReadRange(0, 3, 0); err == nil {
		t.Fatal("zero limit accepted")
	}
	j.Close()
	// Reopen: sealed segments come from their persisted indexes, so Open
	// reads little more than the final segment.
	fl.readBytes.Store(0)
	j = openT(t, o)
	defer j.Close()
	if n := fl.readBytes.Load(); n > 4*2048+16*100 {
		t.Fatalf("Open read %d bytes: sealed segments were rescanned", n)
	}
	check(j)
	if j.LastSequence() != 299 {
		t.Fatalf("last %d", j.LastSequence())
	}
}

// A point read must seek with the index, not scan from the segment start.
func TestIndexedReadIsBounded(t *testing.T) {
	fl := &faults{}
	o := Options{Dir: t.TempDir(), Fsync: FsyncNever, SegmentSize: 8 << 20, Opener: fl.open}
	j := multiSegment(t, o, 20000, 100) // ~2.9 MB in one segment
	defer j.Close()
	if j.Stats().Segments != 1 {
		t.Fatalf("expected a single segment")
	}
	for _, seq := range []int64{0, 9999, 19999} {
		fl.readBytes.Store(0)
		got, err := j.ReadRange(seq, seq, 1)
		if err != nil || len(got) != 1 || got[0].Sequence != seq {
			t.Fatalf("ReadRange(%d): %v %v", seq, seqs(got), err)
		}
		if n := fl.readBytes.Load(); n > firstReadChunk {
			t.Fatalf("reading sequence %d read %d bytes (segment is ~2.9MB)", seq, n)
		}
	}
}

func TestSealedSegmentCorruption(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentSize: 1024}
	j := multiSegment(t, o, 60, 100)
	j.Close()
	first := filepath.Join(dir, segmentName(0))
	// A stale index (size mismatch) is ignored and the segment rescanned.
	os.WriteFile(indexPathFor(first), []byte("garbage"), 0o644)
	j = openT(t, o)
	if len(readAll(t, j)) != 60 {
		t.Fatal("rescan after bad index lost records")
	}
	j.Close()
	// Damage in a sealed segment: Open refuses...
	b, _ := os.ReadFile(first)
	b[segmentHeaderSize+frameHeaderSize+bodyFixedSize+200] ^= 1
	os.WriteFile(first, b, 0o644)
	os.Remove(indexPathFor(first))
	if _, err := Open(Options{Dir: dir, SegmentSize: 1024, Logger: testLogger()}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a corrupt sealed segment: %v", err)
	}
	// ...unless asked to repair: the damaged segment is cut, later ones kept.
	o.RepairCorrupt = true
	j = openT(t, o)
	defer j.Close()
	got := readAll(t, j)
	if len(got) == 0 || got[0].Sequence != 0 || got[len(got)-1].Sequence != 59 || len(got) >= 60 {
		t.Fatalf("repaired journal: %v", seqs(got))
	}
	for _, r := range got {
		checkRec(t, r)
	}
}

func TestRetentionByBytes(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentSize: 1024, RetentionBytes: 4096}
	j := multiSegment(t, o, 200, 100)
	defer j.Close()
	if _, err := j.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.RetainedBytes > 4096 || st.SegmentsDeleted == 0 {
		t.Fatalf("retention by bytes: %+v", st)
	}
	earliest := j.Earliest()
	if earliest <= 0 || earliest != st.Earliest {
		t.Fatalf("earliest %d", earliest)
	}
	_, err := j.ReadRange(0, 10, 10)
	var ev *EvictedError
	if !errors.As(err, &ev) || !errors.Is(err, ErrEvicted) || ev.Earliest != earliest {
		t.Fatalf("read below earliest: %v", err)
	}
	got, err := j.ReadRange(earliest, math.MaxInt64, 1000)
	if err != nil || got[0].Sequence != earliest || got[len(got)-1].Sequence != 199 {
		t.Fatalf("retained range: %v %v", seqs(got), err)
	}
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name()); ok {
			n++
		}
	}
	if n != st.Segments {
		t.Fatalf("%d segment files on disk, %d in the journal", n, st.Segments)
	}
	// Replay clamps to earliest.
	var replayed []int64
	if err := j.Replay(0, func(r Record) error { replayed = append(replayed, r.Sequence); return nil }); err != nil {
		t.Fatal(err)
	}
	if replayed[0] != earliest || len(replayed) != len(got) {
		t.Fatalf("replay from 0: %d records from %d", len(replayed), replayed[0])
	}
}

func TestRetentionByAge(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	o := Options{Dir: t.TempDir(), SegmentSize: 1024, RetentionAge: time.Hour, Now: clock}
	j := openT(t, o)
	defer j.Close()
	old := now.Add(-2 * time.Hour).UnixNano()
	for s := int64(0); s < 100; s++ {
		r := rec(s, 100)
		r.Timestamp = old + s
		if s >= 50 {
			r.Timestamp = now.UnixNano()
		}
		appendAll(t, j, r)
		if err := j.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	e := j.Earliest()
	if e == 0 || e > 50 {
		t.Fatalf("earliest after age retention %d, want in (0, 50]", e)
	}
	// A segment is deleted only when its newest record is old, so the
	// segment holding 49 and 50 (if any) survives: all of 50..99 remain.
	got, err := j.ReadRange(e, math.MaxInt64, 1000)
	if err != nil || got[len(got)-1].Sequence != 99 || got[0].Sequence > 50 {
		t.Fatalf("after age retention: %v %v", seqs(got), err)
	}
	// Everything old, later: only the active segment survives.
	now = now.Add(3 * time.Hour)
	if _, err := j.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Segments != 1 {
		t.Fatalf("active segment must survive: %+v", st)
	}
}

func TestCheckpoints(t *testing.T) {
	dir := t.TempDir()
	j := multiSegment(t, Options{Dir: dir, SegmentSize: 1024}, 40, 50)
	if j.Checkpoint("wasm.filter") != -1 {
		t.Fatal("unknown stage must report -1")
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", strings.Repeat("x", 200), "sp ace"} {
		if err := j.SaveCheckpoint(bad, 1); err == nil {
			t.Fatalf("stage %q accepted", bad)
		}
	}
	if err := j.SaveCheckpoint("wasm.filter", 17); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint("router-2", 30); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint("router-2", 33); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j = openT(t, Options{Dir: dir, SegmentSize: 1024})
	defer j.Close()
	if a, b := j.Checkpoint("wasm.filter"), j.Checkpoint("router-2"); a != 17 || b != 33 {
		t.Fatalf("checkpoints after reopen: %d %d", a, b)
	}
	if m := j.Checkpoints(); len(m) != 2 {
		t.Fatalf("Checkpoints() = %v", m)
	}
	var got []int64
	err := j.Replay(j.Checkpoint("wasm.filter")+1, func(r Record) error {
		checkRec(t, r)
		got = append(got, r.Sequence)
		return nil
	})
	if err != nil || len(got) != 22 || got[0] != 18 || got[21] != 39 {
		t.Fatalf("replay: %v %v", got, err)
	}
	stop := errors.New("stop")
	n := 0
	err = j.Replay(0, func(Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("replay stop: %v after %d", err, n)
	}
	// A damaged checkpoint file is reported and ignored (replay from start).
	j.Close()
	os.WriteFile(filepath.Join(dir, "router-2"+checkpointExt), []byte("33 00000000\n"), 0o644)
	j = openT(t, Options{Dir: dir})
	if j.Checkpoint("router-2") != -1 || j.Checkpoint("wasm.filter") != 17 {
		t.Fatal("damaged checkpoint not ignored")
	}
	j.Close()
}

func TestWaitDurable(t *testing.T) {
	j := openT(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := j.WaitDurable(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on nothing: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- j.WaitDurable(context.Background(), 2) }()
	appendAll(t, j, rec(0, 1), rec(1, 1), rec(2, 1))
	select {
	case err := <-done:
		t.Fatalf("woke before commit: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() { done <- j.WaitDurable(context.Background(), 10) }()
	time.Sleep(10 * time.Millisecond)
	j.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter on Close: %v", err)
	}
}

func TestAppendZeroAlloc(t *testing.T) {
	j := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncNever})
	defer j.Close()
	r := rec(0, 100)
	seq := int64(0)
	for ; seq < 2000; seq++ {
		r.Sequence = seq
		appendAll(t, j, r)
	}
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(500, func() {
		r.Sequence = seq
		seq++
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %.1f times per record", allocs)
	}
}

// TestAppendBatchWithHead: AppendBatch appends in order under one lock,
// stops at the first bad record (reporting how many went in), and a
// record's Head is read back as the first bytes of its Data.
func TestAppendBatchWithHead(t *testing.T) {
	j := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncBatch})
	defer j.Close()
	recs := []Record{
		{Sequence: 0, Timestamp: 1, Producer: []byte("p"), Key: []byte("k0"), Head: []byte("HEAD:"), Data: []byte("zero")},
		{Sequence: 1, Timestamp: 2, Head: []byte("only-head")},
		{Sequence: 3, Timestamp: 3, Data: []byte("three")},
		{Sequence: 3, Timestamp: 4, Data: []byte("duplicate")},
		{Sequence: 9, Timestamp: 5, Data: []byte("never appended")},
	}
	n, err := j.AppendBatch(recs)
	if n != 3 || !errors.Is(err, ErrSequence) {
		t.Fatalf("AppendBatch = %d, %v; want 3, ErrSequence", n, err)
	}
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := j.ReadRange(0, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"HEAD:zero", "only-head", "three"}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if string(r.Data) != want[i] || r.Sequence != recs[i].Sequence || r.Head != nil {
			t.Errorf("record %d: seq %d data %q head %q; want seq %d data %q", i, r.Sequence, r.Data, r.Head, recs[i].Sequence, want[i])
		}
	}
	if string(got[0].Key) != "k0" || string(got[0].Producer) != "p" {
		t.Errorf("record 0 key %q producer %q", got[0].Key, got[0].Producer)
	}
}
