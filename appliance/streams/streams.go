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
// A forward (a module passing its input on unchanged) may be stored by
// reference: the record holds the input event's sequence, not a second copy
// of its key and data, and Read fills them in from the input journal
// (Options.Source). The writer must only refer to input events that are
// durable (the appliance does so, and stores forwards inline when the input
// journal is off or never fsyncs), so a reference never outlives its event
// through a power loss and an input sequence is never reused under it. A by-reference record whose input event the input
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
	"math/bits"
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
//	format:u8 kind:u8 source:i64 version_len:u8 err_len:u16 | version err rest
//
// journal.Record.Producer holds the module name. By format:
//
//   - 1: one output with its data inline: rest is the data and
//     journal.Record.Key its key.
//   - 2: one output stored by reference to input event source: no rest.
//   - 3: a run of count forwards by reference, of one module version at one
//     time, stored as one journal record: rest is count:u16 followed by
//     count-1 uvarint deltas between successive sources (each >= 1);
//     source is the first one's. The run's outputs have the stream
//     sequences journal.Record.Sequence-count+1 .. journal.Record.Sequence:
//     a journal record is keyed by its last output, so the journal's
//     durable and last sequences are the stream's.
const (
	frameFormat    = 1
	frameFormatRef = 2
	frameFormatRun = 3
	frameHeader    = 1 + 1 + 8 + 1 + 2
	maxErrLen      = 1024
	// maxRun bounds the forwards of one run record (and so how far before
	// a read's start the record holding it can begin).
	maxRun = 256
)

// appendHead appends o's frame header, version and error (everything but
// the data) to b.
func appendHead(b []byte, o *Output) []byte {
	format := byte(frameFormat)
	if o.Ref {
		format = frameFormatRef
	}
	return appendHeadFormat(b, o, format)
}

func appendHeadFormat(b []byte, o *Output, format byte) []byte {
	ver := o.Version
	if len(ver) > 255 {
		ver = ver[:255]
	}
	msg := o.Err
	if len(msg) > maxErrLen {
		msg = msg[:maxErrLen]
	}
	b = append(b, format, byte(o.Kind))
	b = binary.LittleEndian.AppendUint64(b, uint64(o.Source))
	b = append(b, byte(len(ver)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, ver...)
	return append(b, msg...)
}

// appendRunSources appends the frame of a run record to b: the forwards
// of sources (increasing, the first is head.Source) described by head.
func appendRunSources(b []byte, head *Output, sources []int64) []byte {
	b = appendHeadFormat(b, head, frameFormatRun)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(sources)))
	for i := 1; i < len(sources); i++ {
		b = binary.AppendUvarint(b, uint64(sources[i]-sources[i-1]))
	}
	return b
}

// runLength is how many outputs from outs[0] one run record can hold:
// forwards by reference of one module version at one time, without error,
// with increasing sources; 1 when outs[0] cannot start a run.
func runLength(outs []Output) int {
	o := &outs[0]
	if !o.Ref || o.Kind != KindForward || o.Err != "" || o.Source < 0 {
		return 1
	}
	n := 1
	for n < len(outs) && n < maxRun {
		p := &outs[n]
		if !p.Ref || p.Kind != o.Kind || p.Err != "" || p.Module != o.Module || p.Version != o.Version ||
			p.Timestamp != o.Timestamp || p.Source <= outs[n-1].Source {
			break
		}
		n++
	}
	return n
}

// decodeFrame appends the outputs stored in journal record r to dst.
func decodeFrame(dst []Record, r *journal.Record) ([]Record, error) {
	d := r.Data
	if len(d) < frameHeader || d[0] < frameFormat || d[0] > frameFormatRun {
		return dst, fmt.Errorf("stream record %d: bad frame", r.Sequence)
	}
	vl := int(d[10])
	el := int(binary.LittleEndian.Uint16(d[11:]))
	if el > maxErrLen || len(d) < frameHeader+vl+el {
		return dst, fmt.Errorf("stream record %d: truncated frame", r.Sequence)
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
	switch d[0] {
	case frameFormat:
		return append(dst, out), nil
	case frameFormatRef:
		if p != len(d) || out.Source < 0 {
			return dst, fmt.Errorf("stream record %d: by-reference frame with data or without a source", r.Sequence)
		}
		out.Ref, out.Data, out.Key = true, nil, nil
		return append(dst, out), nil
	}
	rest := d[p:]
	if len(rest) < 2 || out.Source < 0 || len(r.Key) != 0 || el != 0 {
		return dst, fmt.Errorf("stream record %d: bad forward run", r.Sequence)
	}
	count := int64(binary.LittleEndian.Uint16(rest))
	rest = rest[2:]
	if count < 1 || count > maxRun || r.Sequence-count+1 < 0 {
		return dst, fmt.Errorf("stream record %d: forward run of %d", r.Sequence, count)
	}
	out.Ref, out.Data, out.Key = true, nil, nil
	out.Sequence = r.Sequence - count + 1
	start := len(dst)
	dst = append(dst, out)
	for i := int64(1); i < count; i++ {
		delta, n := binary.Uvarint(rest)
		// Only the canonical (shortest) encoding: a frame has one byte form.
		if n <= 0 || n != (max(bits.Len64(delta), 1)+6)/7 || delta == 0 || delta > math.MaxInt64-uint64(out.Source) {
			return dst[:start], fmt.Errorf("stream record %d: bad forward run delta", r.Sequence)
		}
		rest = rest[n:]
		out.Sequence++
		out.Source += int64(delta)
		dst = append(dst, out)
	}
	if len(rest) != 0 {
		return dst[:start], fmt.Errorf("stream record %d: %d stray bytes after a forward run", r.Sequence, len(rest))
	}
	return dst, nil
}

// runStart is the first stream sequence held by the journal record with
// sequence seq (seq itself unless it is a run).
func (st *Stream) runStart(seq int64) int64 {
	if c := st.earliestCache.Load(); c != nil && c[0] == seq {
		return c[1]
	}
	start := seq
	if recs, err := st.j.ReadRange(seq, seq, 1); err == nil && len(recs) == 1 {
		if outs, err := decodeFrame(nil, &recs[0]); err == nil && len(outs) > 0 {
			start = outs[0].Sequence
		}
	}
	st.earliestCache.Store(&[2]int64{seq, start})
	return start
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
	Logger *slog.Logger
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

	src           SourceReader
	earliestCache atomic.Pointer[[2]int64] // runStart of the first record: {its sequence, start}

	mu      sync.Mutex // orders appends
	next    int64
	buf     []byte           // frame heads of the records being appended
	recs    []journal.Record // the records being appended
	runs    []runRef         // the outputs each of recs holds
	srcs    []int64          // the sources of a run being framed
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

// AppendForwardsTo appends forwards to st (a stream of this set) like
// Stream.AppendForwards, counting the outputs it could not append.
func (s *Set) AppendForwardsTo(st *Stream, module, version string, ts int64, sources []int64) (int64, error) {
	first, n, err := st.AppendForwards(module, version, ts, sources)
	if err != nil {
		s.appendErrors.Add(uint64(len(sources) - n))
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
// on an error, outs[:n] stay appended. Consecutive forwards by reference
// of one module version are stored as one run record.
func (st *Stream) AppendBatch(outs []Output) (first int64, n int, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	first = st.next
	// Frame heads first (st.buf may move while it grows), then records.
	st.buf = st.buf[:0]
	st.runs = st.runs[:0]
	for i := 0; i < len(outs); {
		c := runLength(outs[i:])
		if c > 1 {
			st.srcs = st.srcs[:0]
			for _, o := range outs[i : i+c] {
				st.srcs = append(st.srcs, o.Source)
			}
			st.buf = appendRunSources(st.buf, &outs[i], st.srcs)
		} else {
			st.buf = appendHead(st.buf, &outs[i])
		}
		st.runs = append(st.runs, runRef{count: c, end: len(st.buf)})
		i += c
	}
	st.recs = slices.Grow(st.recs[:0], len(st.runs))[:len(st.runs)]
	defer clear(st.recs) // drop the references to the callers' bytes
	off, i := 0, 0
	seq := st.next
	for k, run := range st.runs {
		o := &outs[i]
		seq += int64(run.count)
		r := journal.Record{Sequence: seq - 1, Timestamp: o.Timestamp,
			Producer: unsafe.Slice(unsafe.StringData(o.Module), len(o.Module)), // only read (copied) by the journal
			Head:     st.buf[off:run.end:run.end]}
		off = run.end
		if !o.Ref {
			r.Key, r.Data = o.Key, o.Data
			if len(r.Key) > math.MaxUint16 {
				r.Key = r.Key[:math.MaxUint16]
			}
		}
		st.recs[k] = r
		i += run.count
	}
	n, err = st.appendRecords()
	return first, n, err
}

// appendRecords appends st.recs (holding st.runs outputs) to the journal
// and returns how many outputs went in; st.mu is held.
func (st *Stream) appendRecords() (n int, err error) {
	recs, runs := st.recs, st.runs
	for len(recs) > 0 {
		k, err := st.j.AppendBatch(recs)
		outsIn := 0
		for _, run := range runs[:k] {
			outsIn += run.count
		}
		n += outsIn
		st.next += int64(outsIn)
		st.appended.Add(uint64(outsIn))
		if k > 0 {
			st.pending = true
		}
		recs, runs = recs[k:], runs[k:]
		if err == nil {
			break
		}
		if !errors.Is(err, journal.ErrUnavailable) {
			return n, fmt.Errorf("stream %s: %w", st.name, err)
		}
		// Failing and its buffer is full: try to write out what is buffered.
		if cerr := st.j.Commit(); cerr != nil {
			return n, fmt.Errorf("stream %s: %w", st.name, cerr)
		}
	}
	return n, nil
}

// AppendForwards appends forwards by reference of input events sources
// (increasing) by one module version at time ts, as AppendBatch would
// append the equivalent Outputs, without building them.
func (st *Stream) AppendForwards(module, version string, ts int64, sources []int64) (first int64, n int, err error) {
	if len(sources) == 0 {
		return st.Last() + 1, 0, nil
	}
	for i, src := range sources {
		if src < 0 || i > 0 && src <= sources[i-1] {
			return st.Last() + 1, 0, fmt.Errorf("stream %s: forward sources must be non-negative and increasing", st.name)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	first = st.next
	st.buf = st.buf[:0]
	st.runs = st.runs[:0]
	head := Output{Kind: KindForward, Version: version, Ref: true}
	for i := 0; i < len(sources); i += maxRun {
		run := sources[i:min(i+maxRun, len(sources))]
		head.Source = run[0]
		if len(run) == 1 {
			st.buf = appendHead(st.buf, &head)
		} else {
			st.buf = appendRunSources(st.buf, &head, run)
		}
		st.runs = append(st.runs, runRef{count: len(run), end: len(st.buf)})
	}
	st.recs = slices.Grow(st.recs[:0], len(st.runs))[:len(st.runs)]
	defer clear(st.recs)
	off := 0
	seq := st.next
	producer := unsafe.Slice(unsafe.StringData(module), len(module)) // only read (copied) by the journal
	for k, run := range st.runs {
		seq += int64(run.count)
		st.recs[k] = journal.Record{Sequence: seq - 1, Timestamp: ts, Producer: producer, Head: st.buf[off:run.end:run.end]}
		off = run.end
	}
	n, err = st.appendRecords()
	return first, n, err
}

// runRef is one record AppendBatch writes: how many outputs it holds and
// where its frame head ends in Stream.buf.
type runRef struct{ count, end int }

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
func (st *Stream) Earliest() int64 {
	e, d := st.j.Earliest(), st.j.Durable()
	if e > d {
		return d + 1
	}
	return st.runStart(e)
}

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
	earliest := st.Earliest()
	if from < earliest {
		return from, &GoneError{From: from, Earliest: earliest}
	}
	if from > st.j.Durable() {
		return from, nil // nothing readable there yet
	}
	// A journal record is keyed by its last output: the first one with a
	// sequence >= from holds from, and records up to to+maxRun-1 may still
	// hold outputs <= to.
	jto := to
	if jto <= math.MaxInt64-maxRun {
		jto += maxRun - 1
	}
	recs, err := st.j.ReadRange(max(from, st.j.Earliest()), jto, limit)
	if err != nil {
		var ev *journal.EvictedError
		if errors.As(err, &ev) {
			return from, &GoneError{From: from, Earliest: st.Earliest()}
		}
		return from, fmt.Errorf("stream %s: %w", st.name, err)
	}
	out := make([]Record, 0, len(recs))
	for i := range recs {
		if out, err = decodeFrame(out, &recs[i]); err != nil {
			if len(out) == 0 {
				return from, err
			}
			break // deliver the good records first; the next read reports it
		}
	}
	// Keep from..to, at most limit.
	lo := 0
	for lo < len(out) && out[lo].Sequence < from {
		lo++
	}
	out = out[lo:]
	hi := 0
	for hi < len(out) && hi < limit && out[hi].Sequence <= to {
		hi++
	}
	out = out[:hi]
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
