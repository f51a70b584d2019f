package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger discards output unless JOURNAL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("JOURNAL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// rec builds a deterministic record for seq whose content can be checked
// later with checkRec.
func rec(seq int64, size int) Record {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(seq*31 + int64(i))
	}
	return Record{
		Sequence:  seq,
		Timestamp: 1_700_000_000_000_000_000 + seq,
		Producer:  fmt.Appendf(nil, "p%d", seq%7),
		Key:       fmt.Appendf(nil, "k%d", seq),
		Data:      data,
		// Two records in three carry a producer sequence (format version 2),
		// the others are version 1: every test mixes both.
		ProducerSeq:    seq * 10,
		HasProducerSeq: seq%3 != 0,
	}
}

func sameRecord(a, b Record) bool {
	return a.Sequence == b.Sequence && a.Timestamp == b.Timestamp && bytes.Equal(a.Producer, b.Producer) &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Data, b.Data) &&
		a.HasProducerSeq == b.HasProducerSeq && (!a.HasProducerSeq || a.ProducerSeq == b.ProducerSeq)
}

// checkRec verifies a record produced by rec(seq, size) for any size.
func checkRec(t testing.TB, r Record) {
	t.Helper()
	want := rec(r.Sequence, len(r.Data))
	if !sameRecord(r, want) {
		t.Fatalf("record %d has wrong content: %+v", r.Sequence, r)
	}
}

func openT(t testing.TB, o Options) *Journal {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	j, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func appendAll(t testing.TB, j *Journal, recs ...Record) {
	t.Helper()
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatalf("Append(%d): %v", r.Sequence, err)
		}
	}
}

func readAll(t testing.TB, j *Journal) []Record {
	t.Helper()
	recs, err := j.ReadRange(max(j.Earliest(), 0), math.MaxInt64, math.MaxInt32)
	if err != nil {
		t.Fatalf("ReadRange: %v", err)
	}
	return recs
}

func seqs(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Sequence
	}
	return out
}

// faults injects failures into segment files opened through its opener.
type faults struct {
	mu        sync.Mutex
	writeErr  error
	partial   bool // write half of the bytes before failing
	syncErr   error
	createErr error
	readBytes atomic.Int64
}

func (fl *faults) set(fn func(*faults)) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fn(fl)
}

func (fl *faults) get() (writeErr error, partial bool, syncErr, createErr error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.writeErr, fl.partial, fl.syncErr, fl.createErr
}

func (fl *faults) open(name string, flag int, perm os.FileMode) (File, error) {
	if _, _, _, cerr := fl.get(); cerr != nil && flag&os.O_CREATE != 0 && strings.HasSuffix(name, segmentExt) {
		return nil, cerr
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fl: fl, seg: strings.HasSuffix(name, segmentExt)}, nil
}

type faultFile struct {
	*os.File
	fl  *faults
	seg bool
}

func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	if werr, partial, _, _ := f.fl.get(); werr != nil && f.seg {
		if partial && len(b) > 1 {
			n, _ := f.File.WriteAt(b[:len(b)/2], off)
			return n, werr
		}
		return 0, werr
	}
	return f.File.WriteAt(b, off)
}

func (f *faultFile) ReadAt(b []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(b, off)
	f.fl.readBytes.Add(int64(n))
	return n, err
}

func (f *faultFile) Sync() error {
	if _, _, serr, _ := f.fl.get(); serr != nil {
		return serr
	}
	return f.File.Sync()
}

var errInjected = errors.New("injected I/O error")

func clearFaults(f *faults) { f.writeErr, f.partial, f.syncErr, f.createErr = nil, false, nil, nil }
