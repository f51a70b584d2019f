package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/badbatch/badbatch/appliance/journal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string) *Set {
	t.Helper()
	s, err := Open(Options{Dir: dir, SegmentSize: 1024, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for i := range 5 {
		o := Output{Kind: KindEmit, Module: "router", Version: "1.0.0", Source: int64(100 + i), Timestamp: int64(i),
			Key: []byte("k"), Data: fmt.Appendf(nil, `{"i":%d}`, i)}
		if i == 4 {
			o.Kind, o.Err = KindDeadLetter, "trap: unreachable"
		}
		seq, err := s.Append("alerts", &o)
		if err != nil || seq != int64(i) {
			t.Fatalf("append %d: seq %d err %v", i, seq, err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	st, ok := s.Get("alerts")
	if !ok {
		t.Fatal("stream alerts missing")
	}
	var got []Record
	next, err := st.Read(1, 10, 3, func(r *Record) error { got = append(got, *r); return nil })
	if err != nil || next != 4 || len(got) != 3 {
		t.Fatalf("read: next %d err %v got %d", next, err, len(got))
	}
	if r := got[0]; r.Sequence != 1 || r.Module != "router" || r.Version != "1.0.0" || r.Source != 101 ||
		string(r.Data) != `{"i":1}` || string(r.Key) != "k" || r.Kind != KindEmit {
		t.Errorf("record %+v", r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the stream is found again and numbering continues.
	s = open(t, dir)
	defer s.Close()
	st, ok = s.Get("alerts")
	if !ok || st.Last() != 4 {
		t.Fatalf("reopened stream: ok %v last %d", ok, st.Last())
	}
	var dl Record
	if _, err := st.Read(4, 4, 1, func(r *Record) error { dl = *r; return nil }); err != nil {
		t.Fatal(err)
	}
	if dl.Kind != KindDeadLetter || dl.Err != "trap: unreachable" {
		t.Errorf("dead letter %+v", dl)
	}
	if seq, err := s.Append("alerts", &Output{Kind: KindForward, Module: "m", Data: []byte("1")}); err != nil || seq != 5 {
		t.Errorf("append after reopen: %d %v", seq, err)
	}
}

func TestBadNamesAndRanges(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	for _, n := range []string{"", "../x", "A", "a/b", "-x", "x y"} {
		if _, err := s.Ensure(n); err == nil {
			t.Errorf("Ensure(%q) accepted", n)
		}
	}
	st, err := s.Ensure(Default)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][3]int64{{-1, 2, 1}, {3, 2, 1}, {0, 1, 0}} {
		if _, err := st.Read(r[0], r[1], int(r[2]), func(*Record) error { return nil }); err == nil {
			t.Errorf("Read%v accepted", r)
		}
	}
}

func TestGoneAfterRetention(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SegmentSize: 1024, RetentionBytes: 2048, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 300)
	for i := range data {
		data[i] = 'x'
	}
	for range 40 {
		if _, err := s.Append("big", &Output{Kind: KindEmit, Module: "m", Data: data}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Get("big")
	deadline := time.Now().Add(10 * time.Second)
	for st.Earliest() == 0 && time.Now().Before(deadline) {
		// Retention runs after segment rolls in the journal's background goroutine.
		if err := st.WaitDurable(ctx, st.Last()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Earliest() == 0 {
		t.Fatal("retention never evicted anything")
	}
	_, err = st.Read(0, 5, 5, func(*Record) error { return nil })
	var gone *GoneError
	if !errors.As(err, &gone) || gone.Earliest != st.Earliest() {
		t.Fatalf("read of evicted range: %v", err)
	}
}

// appendFrame is the whole frame Stream.AppendBatch writes for o.
func appendFrame(b []byte, o *Output) []byte {
	b = appendHead(b, o)
	if o.Ref {
		return b
	}
	return append(b, o.Data...)
}

// FuzzDecodeFrame: stored frames never panic the decoder, and valid ones
// round-trip.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, &Output{Kind: KindEmit, Version: "1", Source: 7, Data: []byte(`{}`)}), "m", int64(3))
	f.Add(appendFrame(nil, &Output{Kind: KindForward, Version: "2", Source: 9, Ref: true}), "m", int64(3))
	f.Add(appendFrame(nil, &Output{Kind: KindDeadLetter, Err: "boom", Source: -1}), "", int64(0))
	f.Add(appendRunSources(nil, &Output{Kind: KindForward, Version: "3", Source: 5, Ref: true}, []int64{5, 6, 300}), "filter", int64(10))
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255}, "x", int64(1))
	f.Add([]byte{3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0}, "x", int64(1))
	f.Fuzz(func(t *testing.T, data []byte, module string, seq int64) {
		if seq < 0 {
			return
		}
		rs, err := decodeFrame(nil, &journal.Record{Sequence: seq, Producer: []byte(module), Data: data})
		if err != nil {
			if len(rs) != 0 {
				t.Fatalf("error %v with %d records", err, len(rs))
			}
			return
		}
		if len(rs) == 0 || rs[len(rs)-1].Sequence != seq {
			t.Fatalf("%d records, the last one is not the journal record's sequence %d", len(rs), seq)
		}
		var again []byte
		if data[0] == frameFormatRun {
			sources := make([]int64, len(rs))
			for i, r := range rs {
				if !r.Ref || r.Module != module || r.Sequence != seq-int64(len(rs)-1-i) {
					t.Fatalf("run record %d: %+v", i, r)
				}
				sources[i] = r.Source
			}
			again = appendRunSources(nil, &Output{Kind: rs[0].Kind, Version: rs[0].Version, Source: rs[0].Source, Ref: true}, sources)
		} else {
			r := rs[0]
			again = appendFrame(nil, &Output{Kind: r.Kind, Version: r.Version, Source: r.Source, Err: r.Err, Data: r.Data, Ref: r.Ref})
		}
		if string(again) != string(data) {
			t.Fatalf("re-encoded frame differs: %x vs %x", again, data)
		}
	})
}

// inputJournal opens an input journal with opts (Dir, Fsync and Logger
// filled in) holding durable events 0..n-1: key k<i>, data {"i":<i>},
// timestamp i+1. The test closes it.
func inputJournal(t *testing.T, opts journal.Options, n int64) *journal.Journal {
	t.Helper()
	opts.Dir, opts.Fsync, opts.Logger = t.TempDir(), journal.FsyncBatch, slog.New(slog.DiscardHandler)
	in, err := journal.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	for i := range n {
		if err := in.Append(journal.Record{Sequence: i, Timestamp: i + 1, Key: fmt.Appendf(nil, "k%d", i), Data: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Commit(); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestForwardByReference: forwards are stored as references to the input
// journal and read back with the input event's key and data, in batches of
// contiguous and of sparse sources; a reference to an event retention
// evicted reads as SourceMissing; a read stops before a reference whose
// input event is not durable yet; without an input journal every
// reference reads as SourceMissing.
func TestForwardByReference(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := inputJournal(t, journal.Options{SegmentSize: 4096, RetentionBytes: 16384}, 200)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Source: in, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Stream records: forwards of 0..99 (contiguous), then of every 50th
	// input (sparse), with an inline emit between them.
	var outs []Output
	for i := range int64(100) {
		outs = append(outs, Output{Kind: KindForward, Module: "filter", Version: "v1", Source: i, Timestamp: i, Ref: true,
			Key: []byte("ignored"), Data: []byte("ignored")})
	}
	outs = append(outs, Output{Kind: KindEmit, Module: "enricher", Version: "v2", Source: 100, Data: []byte(`{"new":true}`)})
	for i := int64(0); i < 200; i += 50 {
		outs = append(outs, Output{Kind: KindForward, Module: "filter", Version: "v1", Source: i, Ref: true})
	}
	st, err := s.Ensure(Default)
	if err != nil {
		t.Fatal(err)
	}
	if first, n, err := st.AppendBatch(outs); err != nil || first != 0 || n != len(outs) {
		t.Fatalf("AppendBatch: first %d, n %d, %v", first, n, err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(r *Record, wantSrc int64) {
		t.Helper()
		if !r.Ref || r.SourceMissing || r.Source != wantSrc || r.Kind != KindForward || r.Module != "filter" || r.Version != "v1" ||
			string(r.Key) != fmt.Sprintf("k%d", wantSrc) || string(r.Data) != fmt.Sprintf(`{"i":%d}`, wantSrc) {
			t.Errorf("record %d: %+v (key %q data %q), want the input event %d", r.Sequence, r, r.Key, r.Data, wantSrc)
		}
	}
	var got []Record
	next, err := st.Read(0, 1000, 1000, func(r *Record) error { got = append(got, *r); return nil })
	if err != nil || next != int64(len(outs)) || len(got) != len(outs) {
		t.Fatalf("read: next %d, %d records, %v; want %d", next, len(got), err, len(outs))
	}
	for i := range 100 {
		check(&got[i], int64(i))
	}
	if r := got[100]; r.Ref || string(r.Data) != `{"new":true}` || r.Module != "enricher" {
		t.Errorf("inline emit: %+v", r)
	}
	for i, src := range []int64{0, 50, 100, 150} {
		check(&got[101+i], src)
	}
	// Sparse sources only (one read per reference).
	got = got[:0]
	if _, err := st.Read(101, 104, 10, func(r *Record) error { got = append(got, *r); return nil }); err != nil || len(got) != 4 {
		t.Fatalf("sparse read: %d records, %v", len(got), err)
	}
	for i, src := range []int64{0, 50, 100, 150} {
		check(&got[i], src)
	}

	// A forward of input 200, which is appended but not durable yet: the
	// read stops before it, and returns it once it is.
	if err := in.Append(journal.Record{Sequence: 200, Key: []byte("k200"), Data: []byte(`{"i":200}`)}); err != nil {
		t.Fatal(err)
	}
	seq, err := st.Append(&Output{Kind: KindForward, Module: "filter", Version: "v1", Source: 200, Ref: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := st.WaitDurable(ctx, seq); err != nil {
		t.Fatal(err)
	}
	n := 0
	if next, err := st.Read(seq, seq, 1, func(*Record) error { n++; return nil }); err != nil || n != 0 || next != seq {
		t.Fatalf("read of a reference to a non-durable input: %d records, next %d, %v", n, next, err)
	}
	if err := in.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(seq, seq, 1, func(r *Record) error { check(r, 200); n++; return nil }); err != nil || n != 1 {
		t.Fatalf("read after the input became durable: %d records, %v", n, err)
	}

	// Retention evicts the input's first segments: references to them read
	// as SourceMissing, the stream record itself is still there.
	for i := int64(201); i < 400; i++ {
		if err := in.Append(journal.Record{Sequence: i, Data: []byte(`{"filler":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if in.Earliest() <= 150 {
		t.Fatalf("retention kept the input from %d: the test needs 0..150 evicted", in.Earliest())
	}
	got = got[:0]
	if _, err := st.Read(0, seq, 1000, func(r *Record) error { got = append(got, *r); return nil }); err != nil || len(got) != int(seq+1) {
		t.Fatalf("read after input eviction: %d records, %v", len(got), err)
	}
	missing := 0
	for i := range got {
		switch r := &got[i]; {
		case !r.Ref:
		case r.Source < in.Earliest():
			missing++
			if !r.SourceMissing || r.Data != nil {
				t.Errorf("reference to evicted input %d: %+v", r.Source, r)
			}
		default:
			check(r, r.Source)
		}
	}
	if missing == 0 {
		t.Error("no reference to an evicted input was checked")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen the streams without an input journal: references cannot be
	// resolved and say so.
	s2, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	st2, _ := s2.Get(Default)
	got = got[:0]
	if _, err := st2.Read(0, 0, 1, func(r *Record) error { got = append(got, *r); return nil }); err != nil || len(got) != 1 {
		t.Fatalf("read without input journal: %d records, %v", len(got), err)
	}
	if r := got[0]; !r.Ref || !r.SourceMissing || r.Data != nil || r.Source != 0 {
		t.Errorf("reference without an input journal: %+v", r)
	}
}

// TestForwardRuns: consecutive forwards of one module version are stored
// as run records (several outputs in one journal record); every read
// window (starting, ending or limited inside a run) returns exactly the
// outputs asked for, Durable/Last/Earliest are output sequences, and a
// reopened stream continues after the last run.
func TestForwardRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := inputJournal(t, journal.Options{}, 2000)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Source: in, SegmentSize: 2048, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.Ensure(Default)
	// 600 forwards of every third input (runs of maxRun and a remainder),
	// an inline emit, then 50 forwards of another module.
	var want []int64 // source of each output (-1: the emit)
	var outs []Output
	for i := range int64(600) {
		outs = append(outs, Output{Kind: KindForward, Module: "filter", Version: "v1", Source: 3 * i, Timestamp: 7, Ref: true})
		want = append(want, 3*i)
	}
	outs = append(outs, Output{Kind: KindEmit, Module: "filter", Version: "v1", Source: 1800, Timestamp: 7, Data: []byte(`{"emitted":1}`)})
	want = append(want, -1)
	for i := range int64(50) {
		outs = append(outs, Output{Kind: KindForward, Module: "router", Version: "v9", Source: 1900 + i, Timestamp: 8, Ref: true})
		want = append(want, 1900+i)
	}
	if first, n, err := st.AppendBatch(outs); err != nil || first != 0 || n != len(outs) {
		t.Fatalf("AppendBatch: %d %d %v", first, n, err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	last := int64(len(outs) - 1)
	if err := st.WaitDurable(ctx, last); err != nil {
		t.Fatal(err)
	}
	if st.Last() != last || st.Durable() != last || st.Earliest() != 0 {
		t.Fatalf("last %d durable %d earliest %d; want %d %d 0", st.Last(), st.Durable(), st.Earliest(), last, last)
	}
	if recs, _ := st.j.ReadRange(st.j.Earliest(), math.MaxInt64, 1000); len(recs) != 5 {
		t.Errorf("%d journal records for 651 outputs; want 5 (runs of 256, 256, 88, the emit, a run of 50)", len(recs))
	}
	checkWindow := func(st *Stream, from, to int64, limit int) {
		t.Helper()
		var got []Record
		next, err := st.Read(from, to, limit, func(r *Record) error { got = append(got, *r); return nil })
		if err != nil {
			t.Fatalf("read %d..%d limit %d: %v", from, to, limit, err)
		}
		wantN := min(int64(limit), min(to, last)-from+1)
		if int64(len(got)) != wantN || (wantN > 0 && next != from+wantN) {
			t.Fatalf("read %d..%d limit %d: %d records, next %d; want %d", from, to, limit, len(got), next, wantN)
		}
		for i, r := range got {
			seq := from + int64(i)
			src := want[seq]
			if r.Sequence != seq || r.Source != src && src >= 0 {
				t.Fatalf("read %d..%d: record %d is seq %d source %d; want seq %d source %d", from, to, i, r.Sequence, r.Source, seq, src)
			}
			if src < 0 {
				if r.Ref || string(r.Data) != `{"emitted":1}` {
					t.Fatalf("emit: %+v", r)
				}
				continue
			}
			if !r.Ref || r.SourceMissing || string(r.Data) != fmt.Sprintf(`{"i":%d}`, src) || string(r.Key) != fmt.Sprintf("k%d", src) {
				t.Fatalf("output %d: %+v data %q", seq, r, r.Data)
			}
		}
	}
	for _, w := range []struct {
		from, to int64
		limit    int
	}{
		{0, last, 1000}, {0, 0, 1}, {255, 256, 10}, {100, 700, 1000}, {300, 310, 3}, {599, 601, 10},
		{640, 5000, 1000}, {650, 650, 1}, {1, last, 1}, {257, 512, 256},
	} {
		checkWindow(st, w.from, w.to, w.limit)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Dir: dir, Source: in, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	st2, _ := s2.Get(Default)
	if st2.Last() != last || st2.Durable() != last {
		t.Fatalf("reopened: last %d durable %d; want %d", st2.Last(), st2.Durable(), last)
	}
	checkWindow(st2, 200, 300, 1000)
	seq, err := st2.Append(&Output{Kind: KindForward, Module: "filter", Version: "v1", Source: 1999, Timestamp: 9, Ref: true})
	if err != nil || seq != last+1 {
		t.Fatalf("append after reopen: seq %d, %v; want %d", seq, err, last+1)
	}
}

// TestRunEviction: when retention drops the first records, Earliest is
// the first output of the first run left, a read inside it works and a
// read before it is gone.
func TestRunEviction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := inputJournal(t, journal.Options{}, 10)
	s, err := Open(Options{Dir: t.TempDir(), Source: in, SegmentSize: 1024, RetentionBytes: 3000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, _ := s.Ensure(Default)
	for b := range int64(40) {
		outs := make([]Output, 10)
		for i := range outs {
			outs[i] = Output{Kind: KindForward, Module: "m", Version: "v", Source: 0, Timestamp: b, Ref: true}
		}
		// Same source repeated: not increasing, so no run here...
		if _, _, err := st.AppendBatch(outs); err != nil {
			t.Fatal(err)
		}
		// ...and a run of 10 distinct sources.
		for i := range outs {
			outs[i].Source = int64(i)
		}
		if _, _, err := st.AppendBatch(outs); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.WaitDurable(ctx, st.Last()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.j.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	e := st.Earliest()
	if e == 0 || e > st.Last() {
		t.Fatalf("earliest %d after retention (last %d)", e, st.Last())
	}
	if je := st.j.Earliest(); e > je || je-e >= 10 {
		t.Fatalf("earliest output %d, first journal record %d: not the start of its record", e, je)
	}
	n := 0
	if _, err := st.Read(e, e+25, 100, func(r *Record) error {
		if r.Sequence != e+int64(n) {
			t.Errorf("record %d has sequence %d", n, r.Sequence)
		}
		n++
		return nil
	}); err != nil || n != 26 {
		t.Fatalf("read from earliest %d: %d records, %v", e, n, err)
	}
	var gone *GoneError
	if _, err := st.Read(e-1, e+5, 10, func(*Record) error { return nil }); !errors.As(err, &gone) || gone.Earliest != e {
		t.Fatalf("read before earliest: %v", err)
	}
}

// TestAppendForwardsSameAsBatch: AppendForwards stores exactly what
// AppendBatch stores for the same forwards (records, runs, sequences), and
// refuses sources that do not increase.
func TestAppendForwardsSameAsBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := inputJournal(t, journal.Options{}, 2000)
	s, err := Open(Options{Dir: t.TempDir(), Source: in, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var sources []int64
	var outs []Output
	for i := int64(0); i < 600; i++ {
		sources = append(sources, 3*i+i%2)
		outs = append(outs, Output{Kind: KindForward, Module: "filter", Version: "v1", Source: 3*i + i%2, Timestamp: 42, Ref: true})
	}
	a, _ := s.Ensure("a")
	b, _ := s.Ensure("b")
	if _, n, err := a.AppendBatch(outs); err != nil || n != 600 {
		t.Fatal(n, err)
	}
	if first, err := s.AppendForwardsTo(b, "filter", "v1", 42, sources); err != nil || first != 0 {
		t.Fatal(first, err)
	}
	if _, _, err := b.AppendForwards("filter", "v1", 42, []int64{5, 5}); err == nil {
		t.Error("non-increasing sources accepted")
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	read := func(st *Stream) []Record {
		var got []Record
		if _, err := st.Read(0, 10000, 10000, func(r *Record) error { got = append(got, *r); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	ra, rb := read(a), read(b)
	if len(ra) != 600 || len(rb) != 600 {
		t.Fatalf("%d and %d records", len(ra), len(rb))
	}
	for i := range ra {
		x, y := ra[i], rb[i]
		if x.Sequence != y.Sequence || x.Source != y.Source || x.Module != y.Module || x.Version != y.Version ||
			x.Timestamp != y.Timestamp || !y.Ref || string(x.Data) != string(y.Data) || string(y.Data) != fmt.Sprintf(`{"i":%d}`, sources[i]) {
			t.Fatalf("record %d: batch %+v, forwards %+v", i, x, y)
		}
	}
	ja, _ := a.j.ReadRange(a.j.Earliest(), math.MaxInt64, 100)
	jb, _ := b.j.ReadRange(b.j.Earliest(), math.MaxInt64, 100)
	if len(ja) != 3 || len(jb) != 3 {
		t.Errorf("%d and %d journal records for 600 forwards, want 3 runs each", len(ja), len(jb))
	}
}
