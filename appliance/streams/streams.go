// Package streams holds the appliance's named output streams: where the
// outputs of WASM handler modules land (one stream per route, "default" for
// a module's default output, "dead-letter" for events a module failed on).
//
// Each stream is an appliance/journal.Journal under <dir>/<name>, so outputs
// survive a restart and are retained (and evicted) like the input journal.
// A stream has its own sequence space (0, 1, 2, ...; after a restart it
// continues after the last record). Records carry the module that produced
// them, its version, the kind of output and the input event's sequence
// (source), framed inside the journal record's data (see Record).
//
// A forward (a module passing its input on unchanged) is stored by
// reference: the record holds the input event's sequence, not a second copy
// of its key and data, and Read fills them in from the input journal
// (Options.Source). A by-reference record whose input event the input
// journal no longer holds (retention) is read with SourceMissing set and no
// data; by-reference records only become readable once their input event
// is durable too.
//
// Appends are ordered per stream by a mutex, so the handler stage and the
// registry's timer and flush outputs may write concurrently. Commit writes
// the appended records (one write per stream per batch); records become
// readable once durable (fsynced by the journal's interval fsync, 10 ms).
package streams

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/badbatch/badbatch/appliance/journal"
)

// Reserved stream names.
const (
	// Default receives the outputs a module writes to its default output.
	Default = "default"
	// DeadLetter receives events a module failed on, with the error.
	DeadLetter = "dead-letter"
)

// Kind is the kind of an output record.
type Kind uint8

// Output kinds (the numbers match wasmhost.OutputKind).
const (
	KindEmit       Kind = 1
	KindForward    Kind = 2
	KindDeadLetter Kind = 5
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindEmit:
		return "emit"
	case KindForward:
		return "forward"
	case KindDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidName reports whether s is a valid stream name (the module route
// rule: [a-z0-9][a-z0-9_-]{0,62}).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ErrNoStream is returned for a stream that does not exist.
var ErrNoStream = errors.New("no such stream")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("streams: closed")

// Output is one record to append.
type Output struct {
	Kind      Kind
	Module    string
	Version   string
	Source    int64 // the input event's sequence; -1 for timer and flush outputs
	Timestamp int64 // Unix nanoseconds
	Key       []byte
	Data      []byte
	Err       string // dead letters: why
	// Ref stores the output by reference: it is input event Source itself,
	// unchanged (a forward). Only Source is stored and Key and Data are
	// ignored; Read takes them from the input journal (Options.Source).
	Ref bool
}

// Record is one stored output. Its byte slices are owned by the Record.
type Record struct {
	Sequence  int64
	Timestamp int64
	Kind      Kind
	Module    string
	Version   string
	Source    int64
	Key       []byte
	Data      []byte
	Err       string
	// Ref: the record was stored by reference to input event Source (see
	// Output.Ref); Key and Data were read from the input journal.
	Ref bool
	// SourceMissing: a by-reference record whose input event is no longer
	// available (evicted by the input journal's retention, or no input
	// journal); Key and Data are empty.
	SourceMissing bool
}

// SourceReader reads the input journal that by-reference records point
// into (*journal.Journal implements it).
type SourceReader interface {
	ReadRange(from, to int64, limit int) ([]journal.Record, error)
	Durable() int64
	Earliest() int64
}

// Record framing inside journal.Record.Data (little endian):
//
//	format:u8 kind:u8 source:i64 version_len:u8 err_len:u16 | version err data
//
// format 1 stores the output's data inline (journal.Record.Key holds its
// key); format 2 stores it by reference to input event source: no key, no
// data. journal.Record.Producer holds the module name.
const (
	frameFormat    = 1
	frameFormatRef = 2
	frameHeader    = 1 + 1 + 8 + 1 + 2
	maxErrLen      = 1024
)

// appendHead appends o's frame header, version and error (everything but
// the data) to b.
func appendHead(b []byte, o *Output) []byte {
	ver := o.Version
	if len(ver) > 255 {
		ver = ver[:255]
	}
	msg := o.Err
	if len(msg) > maxErrLen {
		msg = msg[:maxErrLen]
	}
	format := byte(frameFormat)
	if o.Ref {
		format = frameFormatRef
	}
	b = append(b, format, byte(o.Kind))
	b = binary.LittleEndian.AppendUint64(b, uint64(o.Source))
	b = append(b, byte(len(ver)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, ver...)
	return append(b, msg...)
}

func decodeFrame(r *journal.Record) (Record, error) {
	d := r.Data
	if len(d) < frameHeader || (d[0] != frameFormat && d[0] != frameFormatRef) {
		return Record{}, fmt.Errorf("stream record %d: bad frame", r.Sequence)
	}
	vl := int(d[10])
	el := int(binary.LittleEndian.Uint16(d[11:]))
	if el > maxErrLen || len(d) < frameHeader+vl+el {
		return Record{}, fmt.Errorf("stream record %d: truncated frame", r.Sequence)
	}
	p := frameHeader
	out := Record{
		Sequence:  r.Sequence,
		Timestamp: r.Timestamp,
		Kind:      Kind(d[1]),
		Source:    int64(binary.LittleEndian.Uint64(d[2:])),
		Module:    string(r.Producer),
		Key:       r.Key,
		Version:   string(d[p : p+vl]),
	}
	p += vl
	out.Err = string(d[p : p+el])
	p += el
	out.Data = d[p:]
	if d[0] == frameFormatRef {
		if p != len(d) || out.Source < 0 {
			return Record{}, fmt.Errorf("stream record %d: by-reference frame with data or without a source", r.Sequence)
		}
		out.Ref, out.Data, out.Key = true, nil, nil
	}
	return out, nil
}

// Options configures a Set.
type Options struct {
	// Dir holds one sub-directory per stream (e.g. <data_dir>/streams).
	Dir string
	// SegmentSize, RetentionBytes and RetentionAge are passed to each
	// stream's journal (zero: the journal's defaults, unlimited retention).
	SegmentSize    int64
	RetentionBytes int64
	RetentionAge   time.Duration
	// MaxRecordSize bounds one output (zero: 16 MiB).
	MaxRecordSize int
	// FsyncInterval is how often appended records are fsynced and become
	// readable (zero: 10ms).
	FsyncInterval time.Duration
	// Source is the input journal by-reference records point into; nil
	// when there is none (by-reference records then read as
	// SourceMissing, and the appliance stores every output inline).
	Source SourceReader
	Logger        *slog.Logger
}

// Set is the node's output streams.
type Set struct {
	opts Options
	log  *slog.Logger

	mu      sync.RWMutex
	streams map[string]*Stream
	closed  bool

	appendErrors atomic.Uint64
}

// Stream is one output stream.
type Stream struct {
	name string
	j    *journal.Journal

	src SourceReader

	mu      sync.Mutex // orders appends
	next    int64
	buf     []byte           // frame heads of the records being appended
	recs    []journal.Record // the records being appended
	pending bool

	appended atomic.Uint64
}

// Open opens every stream found under opts.Dir (creating the directory).
func Open(opts Options) (*Set, error) {
	if opts.Dir == "" {
		return nil, errors.New("streams: a directory is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 10 * time.Millisecond
	}
	if opts.MaxRecordSize <= 0 {
		opts.MaxRecordSize = 16 << 20
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("streams: create %s: %w", opts.Dir, err)
	}
	s := &Set{opts: opts, log: opts.Logger, streams: map[string]*Stream{}}
	ents, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("streams: list %s: %w", opts.Dir, err)
	}
	for _, e := range ents {
		if !e.IsDir() || !ValidName(e.Name()) {
			continue
		}
		if _, err := s.Ensure(e.Name()); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Ensure returns stream name, creating it if needed.
func (s *Set) Ensure(name string) (*Stream, error) {
	s.mu.RLock()
	st, ok := s.streams[name]
	closed := s.closed
	s.mu.RUnlock()
	if ok {
		return st, nil
	}
	if closed {
		return nil, ErrClosed
	}
	if !ValidName(name) {
		return nil, fmt.Errorf("streams: invalid stream name %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if st, ok := s.streams[name]; ok {
		return st, nil
	}
	j, err := journal.Open(journal.Options{
		Dir:            filepath.Join(s.opts.Dir, name),
		Fsync:          journal.FsyncInterval,
		FsyncInterval:  s.opts.FsyncInterval,
		SegmentSize:    s.opts.SegmentSize,
		RetentionBytes: s.opts.RetentionBytes,
		RetentionAge:   s.opts.RetentionAge,
		MaxRecordSize:  s.opts.MaxRecordSize + frameHeader + 255 + maxErrLen + 2*256,
		Logger:         s.log.With("stream", name),
	})
	if err != nil {
		return nil, fmt.Errorf("streams: open %s: %w", name, err)
	}
	st = &Stream{name: name, j: j, src: s.opts.Source, next: j.LastSequence() + 1}
	s.streams[name] = st
	return st, nil
}

// Get returns stream name if it exists.
func (s *Set) Get(name string) (*Stream, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.streams[name]
	return st, ok
}

// All returns the open streams sorted by name.
func (s *Set) All() []*Stream {
	s.mu.RLock()
	out := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Stream) int { return strings.Compare(a.name, b.name) })
	return out
}

// Append appends o to stream name (created if needed) and returns its
// sequence. Errors are also counted (AppendErrors).
func (s *Set) Append(name string, o *Output) (int64, error) {
	st, err := s.Ensure(name)
	if err != nil {
		s.appendErrors.Add(1)
		return -1, err
	}
	seq, err := st.Append(o)
	if err != nil {
		s.appendErrors.Add(1)
	}
	return seq, err
}

// AppendTo appends o to st (a stream of this set), counting errors like
// Append; it skips the lookup by name.
func (s *Set) AppendTo(st *Stream, o *Output) (int64, error) {
	seq, err := st.Append(o)
	if err != nil {
		s.appendErrors.Add(1)
	}
	return seq, err
}

// AppendBatchTo appends outs to st (a stream of this set) like
// Stream.AppendBatch, counting the outputs it could not append.
func (s *Set) AppendBatchTo(st *Stream, outs []Output) (int64, error) {
	first, n, err := st.AppendBatch(outs)
	if err != nil {
		s.appendErrors.Add(uint64(len(outs) - n))
	}
	return first, err
}

// AppendErrors counts outputs that could not be appended.
func (s *Set) AppendErrors() uint64 { return s.appendErrors.Load() }

// Commit writes every stream's appended records.
func (s *Set) Commit() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []error
	for _, st := range s.streams {
		if err := st.Commit(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WaitDurable waits until every record appended so far to any stream is
// durable (ctx bounds the wait).
func (s *Set) WaitDurable(ctx context.Context) error {
	var errs []error
	for _, st := range s.All() {
		last := st.Last()
		if last < 0 {
			continue
		}
		if err := st.j.WaitDurable(ctx, last); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", st.name, err))
		}
	}
	return errors.Join(errs...)
}

// Close commits, fsyncs and closes every stream.
func (s *Set) Close() error {
	s.mu.Lock()
	s.closed = true
	sts := s.streams
	s.mu.Unlock()
	var errs []error
	for _, st := range sts {
		st.mu.Lock()
		if err := st.j.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", st.name, err))
		}
		st.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Name is the stream's name.
func (st *Stream) Name() string { return st.name }

// Append appends o and returns its sequence in the stream. The record is
// written by the next Commit and readable once durable.
func (st *Stream) Append(o *Output) (int64, error) {
	seq, _, err := st.AppendBatch(unsafe.Slice(o, 1))
	return seq, err
}

// AppendBatch appends outs in order under one lock and returns the
// sequence of the first (the others follow it) and how many were appended:
// on an error, outs[:n] stay appended.
func (st *Stream) AppendBatch(outs []Output) (first int64, n int, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	first = st.next
	st.buf = st.buf[:0]
	for i := range outs {
		st.buf = appendHead(st.buf, &outs[i])
	}
	st.recs = slices.Grow(st.recs[:0], len(outs))[:len(outs)]
	off := 0
	for i := range outs {
		o := &outs[i]
		n := frameHeader + min(len(o.Version), 255) + min(len(o.Err), maxErrLen)
		r := journal.Record{Sequence: st.next + int64(i), Timestamp: o.Timestamp,
			Producer: unsafe.Slice(unsafe.StringData(o.Module), len(o.Module)), // only read (copied) by the journal
			Head:     st.buf[off : off+n : off+n]}
		off += n
		if !o.Ref {
			r.Key, r.Data = o.Key, o.Data
			if len(r.Key) > math.MaxUint16 {
				r.Key = r.Key[:math.MaxUint16]
			}
		}
		st.recs[i] = r
	}
	defer clear(st.recs) // drop the references to the callers' bytes
	recs := st.recs
	for len(recs) > 0 {
		k, err := st.j.AppendBatch(recs)
		n += k
		st.next += int64(k)
		st.appended.Add(uint64(k))
		if k > 0 {
			st.pending = true
		}
		recs = recs[k:]
		if err == nil {
			break
		}
		if !errors.Is(err, journal.ErrUnavailable) {
			return first, n, fmt.Errorf("stream %s: %w", st.name, err)
		}
		// Failing and its buffer is full: try to write out what is buffered.
		if cerr := st.j.Commit(); cerr != nil {
			return first, n, fmt.Errorf("stream %s: %w", st.name, cerr)
		}
	}
	return first, n, nil
}

// Commit writes the records appended since the last Commit.
func (st *Stream) Commit() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.pending {
		return nil
	}
	st.pending = false
	if err := st.j.Commit(); err != nil {
		return fmt.Errorf("stream %s: %w", st.name, err)
	}
	return nil
}

// Last is the sequence of the last appended record (-1 when empty).
func (st *Stream) Last() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.next - 1
}

// Durable is the last readable sequence (-1 when none).
func (st *Stream) Durable() int64 { return st.j.Durable() }

// Earliest is the oldest retained sequence (Durable()+1 when nothing is
// readable). Records appended but not yet durable do not count: the
// journal's own Earliest already looks past them while the stream's first
// segment is not written yet.
func (st *Stream) Earliest() int64 { return min(st.j.Earliest(), st.j.Durable()+1) }

// Appended counts records appended since the stream was opened.
func (st *Stream) Appended() uint64 { return st.appended.Load() }

// WaitDurable waits until seq is readable (see journal.WaitDurable).
func (st *Stream) WaitDurable(ctx context.Context, seq int64) error {
	if err := st.j.WaitDurable(ctx, seq); err != nil {
		return fmt.Errorf("stream %s: %w", st.name, err)
	}
	return nil
}

// GoneError says a read asked for records retention already deleted.
type GoneError struct{ From, Earliest int64 }

// Error implements error.
func (e *GoneError) Error() string {
	return fmt.Sprintf("sequence %d is no longer held by the stream; earliest available is %d", e.From, e.Earliest)
}

// Read calls fn for up to limit durable records in from..to, in order, and
// returns the sequence after the last one delivered. A from below the
// retained range is a *GoneError. By-reference records get the key and data
// of their input event; the read stops before one whose input event is not
// durable yet (a later read returns it).
func (st *Stream) Read(from, to int64, limit int, fn func(*Record) error) (int64, error) {
	if from < 0 || to < from || limit < 1 {
		return from, fmt.Errorf("streams: invalid range from=%d to=%d limit=%d", from, to, limit)
	}
	if from > st.j.Durable() && from >= st.Earliest() {
		return from, nil // nothing readable there yet
	}
	recs, err := st.j.ReadRange(from, to, limit)
	if err != nil {
		var ev *journal.EvictedError
		if errors.As(err, &ev) {
			return from, &GoneError{From: from, Earliest: ev.Earliest}
		}
		return from, fmt.Errorf("stream %s: %w", st.name, err)
	}
	out := make([]Record, 0, len(recs))
	for i := range recs {
		r, err := decodeFrame(&recs[i])
		if err != nil {
			if len(out) == 0 {
				return from, err
			}
			break // deliver the good records first; the next read reports it
		}
		out = append(out, r)
	}
	out, err = st.resolve(out)
	if err != nil {
		return from, err
	}
	next := from
	for i := range out {
		if err := fn(&out[i]); err != nil {
			return next, err
		}
		next = out[i].Sequence + 1
	}
	return next, nil
}

// resolve fills in the key and data of by-reference records from the
// input journal and returns recs cut before the first one whose input
// event is not durable yet.
func (st *Stream) resolve(recs []Record) ([]Record, error) {
	lo, hi, refs := int64(math.MaxInt64), int64(-1), 0
	for i := range recs {
		r := &recs[i]
		if !r.Ref {
			continue
		}
		if st.src == nil {
			r.SourceMissing = true
			continue
		}
		if r.Source > st.src.Durable() {
			recs = recs[:i]
			break
		}
		lo, hi, refs = min(lo, r.Source), max(hi, r.Source), refs+1
	}
	if refs == 0 {
		return recs, nil
	}
	// Forwards point at increasing input sequences, mostly without gaps:
	// one range read serves them all. Sparse references are read one by one.
	var src []journal.Record
	lo = max(lo, st.src.Earliest())
	if hi >= lo {
		if span := hi - lo + 1; span <= int64(4*refs+64) {
			rs, err := st.src.ReadRange(lo, hi, int(span))
			if err != nil && !errors.Is(err, journal.ErrEvicted) {
				return nil, fmt.Errorf("stream %s: read input events %d..%d: %w", st.name, lo, hi, err)
			}
			src = rs
		} else {
			for i := range recs {
				r := &recs[i]
				if !r.Ref || r.Source < lo {
					continue
				}
				rs, err := st.src.ReadRange(r.Source, r.Source, 1)
				if err != nil && !errors.Is(err, journal.ErrEvicted) {
					return nil, fmt.Errorf("stream %s: read input event %d: %w", st.name, r.Source, err)
				}
				src = append(src, rs...)
			}
			slices.SortFunc(src, func(a, b journal.Record) int { return cmp.Compare(a.Sequence, b.Sequence) })
		}
	}
	for i := range recs {
		r := &recs[i]
		if !r.Ref || r.SourceMissing {
			continue
		}
		k, ok := slices.BinarySearchFunc(src, r.Source, func(e journal.Record, seq int64) int { return cmp.Compare(e.Sequence, seq) })
		if !ok {
			r.SourceMissing = true
			continue
		}
		r.Key, r.Data = src[k].Key, src[k].Data
	}
	return recs, nil
}

// Info summarises a stream.
type Info struct {
	Name     string `json:"name"`
	Earliest int64  `json:"earliest"`
	Last     int64  `json:"last_sequence"`
	Durable  int64  `json:"durable_sequence"`
	Appended uint64 `json:"appended_since_start"`
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error,omitempty"`
}

// Info returns the stream's summary.
func (st *Stream) Info() Info {
	in := Info{Name: st.name, Earliest: st.Earliest(), Last: st.Last(), Durable: st.Durable(), Appended: st.Appended(), Healthy: true}
	if err := st.j.Err(); err != nil {
		in.Healthy, in.Error = false, err.Error()
	}
	return in
}
