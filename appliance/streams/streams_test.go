package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// FuzzDecodeFrame: stored frames never panic the decoder, and valid ones
// round-trip.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, &Output{Kind: KindEmit, Version: "1", Source: 7, Data: []byte(`{}`)}), "m")
	f.Add(appendFrame(nil, &Output{Kind: KindDeadLetter, Err: "boom", Source: -1}), "")
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255}, "x")
	f.Fuzz(func(t *testing.T, data []byte, module string) {
		r, err := decodeFrame(&journal.Record{Sequence: 3, Producer: []byte(module), Data: data})
		if err != nil {
			return
		}
		again := appendFrame(nil, &Output{Kind: r.Kind, Version: r.Version, Source: r.Source, Err: r.Err, Data: r.Data})
		if string(again) != string(data) {
			t.Fatalf("re-encoded frame differs: %x vs %x", again, data)
		}
	})
}
