package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Errors reported by the journal. Match them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Journal.
	ErrClosed = errors.New("journal: closed")
	// ErrSequence is returned by Append for a sequence that is negative or
	// not greater than the previous one.
	ErrSequence = errors.New("journal: sequence out of order")
	// ErrTooLarge is returned by Append for a record above MaxRecordSize or
	// a producer id above 65535 bytes.
	ErrTooLarge = errors.New("journal: record too large")
	// ErrEvicted is returned (inside an *EvictedError) when a read asks for
	// sequences that retention has deleted.
	ErrEvicted = errors.New("journal: range evicted")
	// ErrCorrupt reports an invalid record where a valid one must be.
	ErrCorrupt = errors.New("journal: corrupt data")
	// ErrUnavailable is returned by WaitDurable while the journal cannot
	// write or fsync; it wraps the I/O error.
	ErrUnavailable = errors.New("journal: unavailable")
	// ErrLocked is returned by Open when another Journal holds the directory.
	ErrLocked = errors.New("journal: directory locked")
)

// EvictedError reports a read below the earliest retained sequence.
type EvictedError struct {
	From     int64 // the sequence asked for
	Earliest int64 // the earliest sequence still available
}

// Error implements error.
func (e *EvictedError) Error() string {
	return fmt.Sprintf("journal: sequence %d evicted, earliest available is %d", e.From, e.Earliest)
}

// Unwrap makes errors.Is(err, ErrEvicted) true.
func (e *EvictedError) Unwrap() error { return ErrEvicted }

// pendEntry is a sparse-index candidate among the pending records; pos is
// relative to the start of the pending region.
type pendEntry struct {
	seq int64
	pos int64
}

// Journal is a durable, append-only, segmented event log. See the package
// documentation for its guarantees.
//
// Append and Commit are meant to be called from one goroutine (the
// journal's disruptor consumer), but are safe to call concurrently. All
// other methods are safe for concurrent use.
type Journal struct {
	opts Options
	log  *slog.Logger
	open Opener

	releaseLock func() error
	closing     atomic.Bool
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	kick        chan struct{} // asks the maintainer to run retention

	// Writer state, guarded by amu. Every write, truncate and fsync of the
	// active segment happens under amu.
	amu     sync.Mutex
	wclosed bool
	file    File   // active segment file; nil when there is none yet
	buf     []byte // bytes of the active file from bufOff on, then pending records
	bufOff  int64  // file offset of buf[0]
	wlen    int    // buf[:wlen] has been written to the file (maybe not fsynced)
	// buf[pendStart:] holds records appended since the last successful write.
	pendStart   int
	pendFirst   int64 // sequence of the first pending record, -1 if none
	pendLast    int64
	pendMinTs   int64
	pendMaxTs   int64
	pendIdx     []pendEntry
	lastIdxOff  int64 // (estimated) file offset of the newest index entry, -1 for none
	writtenSeq  int64 // last sequence written to the file
	needRewrite bool  // a write or fsync failed: truncate to bufOff and rewrite buf
	dirDirty    bool  // a segment was created and the directory not yet fsynced

	// Published state, guarded by mu; read by readers, waiters and Stats.
	mu       sync.RWMutex
	closed   bool
	segs     []*segment // ascending by base; the last one may be active
	active   *segment
	err      error         // current I/O failure, nil when healthy
	notify   chan struct{} // closed and replaced whenever durable or err changes
	durable  atomic.Int64
	lastSeq  atomic.Int64 // highest sequence accepted by Append
	retainMu sync.Mutex   // serializes retention runs

	ckMu        sync.Mutex
	checkpoints map[string]int64

	full atomic.Pointer[string] // see Full

	st stats
}

// Open opens (creating if needed) the journal in opts.Dir and recovers it:
// every segment's tail is validated, a torn or corrupt tail record in the
// final segment is truncated (and logged), and LastSequence reports the last
// record that survived. Appends must continue after LastSequence.
func Open(opts Options) (*Journal, error) {
	start := time.Now()
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: create dir: %w", err)
	}
	release, err := lockDir(filepath.Join(o.Dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{
		opts:        o,
		log:         o.Logger,
		open:        o.Opener,
		releaseLock: release,
		kick:        make(chan struct{}, 1),
		notify:      make(chan struct{}),
		pendFirst:   -1,
		lastIdxOff:  -1,
		checkpoints: make(map[string]int64),
	}
	if err := j.recover(); err != nil {
		j.closeFiles()
		release()
		return nil, fmt.Errorf("journal: recover %s: %w", o.Dir, err)
	}
	if err := j.loadCheckpoints(); err != nil {
		j.closeFiles()
		release()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if _, err := j.EnforceRetention(); err != nil {
		j.log.Warn("journal: retention failed", "err", err)
	}
	j.st.recoveryNanos.Store(int64(time.Since(start)))
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	j.wg.Add(1)
	go j.maintain(ctx)
	j.log.Info("journal: opened", "dir", o.Dir, "segments", len(j.segs), "last_sequence", j.lastSeq.Load(),
		"earliest", j.Earliest(), "fsync", string(o.Fsync), "recovery", time.Since(start))
	return j, nil
}

func (j *Journal) closeFiles() {
	if j.file != nil {
		j.file.Close()
		j.file = nil
	}
}

// Append buffers rec for the next Commit. It copies rec's bytes into a
// reusable buffer (no allocation once the buffer has grown to a batch's
// size) and does no I/O. rec.Sequence must be greater than every sequence
// appended before (and than LastSequence after Open).
//
// When the buffer would exceed Options.MaxBuffered, a healthy journal
// commits (writes and fsyncs) what is buffered first, so a huge batch is
// committed in chunks. A failing journal instead returns ErrUnavailable
// without buffering the record: the caller should retry Commit until it
// succeeds (backpressure on the ring) and then append the record again.
func (j *Journal) Append(rec Record) error {
	j.amu.Lock()
	defer j.amu.Unlock()
	if j.wclosed {
		return ErrClosed
	}
	return j.appendLocked(&rec)
}

// AppendBatch appends recs in order under one lock, with Append's rules
// for each record, and returns how many were appended: on an error,
// recs[:n] are appended and recs[n] is the record that failed.
func (j *Journal) AppendBatch(recs []Record) (n int, err error) {
	j.amu.Lock()
	defer j.amu.Unlock()
	if j.wclosed {
		return 0, ErrClosed
	}
	for i := range recs {
		if err := j.appendLocked(&recs[i]); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

// appendLocked appends one record; j.amu is held.
func (j *Journal) appendLocked(rec *Record) error {
	if rec.Sequence < 0 || rec.Sequence <= j.lastSeq.Load() {
		return fmt.Errorf("%w: %d after %d", ErrSequence, rec.Sequence, j.lastSeq.Load())
	}
	if len(rec.Producer) > maxProducerLen {
		return fmt.Errorf("%w: producer id of %d bytes (max %d)", ErrTooLarge, len(rec.Producer), maxProducerLen)
	}
	size := frameSize(rec)
	if body := size - frameHeaderSize; body > j.opts.MaxRecordSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, body, j.opts.MaxRecordSize)
	}
	if len(j.buf)+size > j.opts.MaxBuffered {
		if j.Err() != nil {
			return j.bufferFull()
		}
		// Healthy but the batch is huge: commit (and fsync) what is
		// buffered so far to make room.
		if err := j.commitLocked(true); err != nil {
			return fmt.Errorf("%w: buffer full and commit failed: %w", ErrUnavailable, err)
		}
		if len(j.buf)+size > j.opts.MaxBuffered {
			return j.bufferFull()
		}
	}
	if rec.Timestamp == 0 {
		rec.Timestamp = j.opts.Now().UnixNano()
	}
	est := j.bufOff + int64(len(j.buf))
	if j.lastIdxOff < 0 || est-j.lastIdxOff >= j.opts.IndexInterval {
		j.pendIdx = append(j.pendIdx, pendEntry{seq: rec.Sequence, pos: int64(len(j.buf) - j.pendStart)})
		j.lastIdxOff = est
	}
	j.buf = appendFrame(j.buf, rec)
	if j.pendFirst < 0 {
		j.pendFirst = rec.Sequence
		j.pendMinTs, j.pendMaxTs = rec.Timestamp, rec.Timestamp
	} else {
		j.pendMinTs = min(j.pendMinTs, rec.Timestamp)
		j.pendMaxTs = max(j.pendMaxTs, rec.Timestamp)
	}
	j.pendLast = rec.Sequence
	j.lastSeq.Store(rec.Sequence)
	j.st.records.Add(1)
	return nil
}

// bufferFull reports why Append cannot buffer more. amu must be held.
func (j *Journal) bufferFull() error {
	cause := j.Err()
	if cause == nil {
		cause = errors.New("commit more often")
	}
	return fmt.Errorf("%w: %d bytes buffered and not durable (max %d): %w", ErrUnavailable, len(j.buf), j.opts.MaxBuffered, cause)
}

// Commit writes every record appended since the last successful Commit
// with one write and, under FsyncBatch, one fsync, then publishes the new
// durable sequence (see Durable and WaitDurable).
//
// On failure the records stay buffered, Durable does not advance, Err
// reports the failure and WaitDurable fails fast; the next Commit (or the
// background retry) truncates the segment to its last fsynced offset and
// rewrites everything since, so the journal recovers once the fault clears.
func (j *Journal) Commit() error {
	j.amu.Lock()
	defer j.amu.Unlock()
	return j.commitLocked(false)
}

func (j *Journal) hasPending() bool { return len(j.buf) > j.pendStart }

// commitLocked writes pending records; forceSync also fsyncs under
// FsyncInterval. amu must be held.
func (j *Journal) commitLocked(forceSync bool) error {
	if j.wclosed {
		return ErrClosed
	}
	pending := j.hasPending()
	unsynced := j.wlen > 0 || j.dirDirty
	if !pending && !j.needRewrite && !(forceSync && unsynced) {
		return nil
	}
	j.st.commits.Add(1)
	if j.needRewrite && j.file != nil {
		if err := j.file.Truncate(j.bufOff); err != nil {
			return j.fail("truncate", err)
		}
		j.wlen = 0
	}
	if pending && j.file != nil && j.bufOff+int64(j.pendStart) > segmentHeaderSize &&
		j.bufOff+int64(len(j.buf)) > j.opts.SegmentSize {
		if err := j.roll(); err != nil {
			return err
		}
	}
	if pending && j.file == nil {
		if err := j.createSegment(); err != nil {
			return err
		}
	}
	if j.wlen < len(j.buf) {
		if err := j.writeBuf(len(j.buf)); err != nil {
			return err
		}
	}
	j.needRewrite = false
	if pending {
		j.publishWritten()
	}
	switch {
	case j.opts.Fsync == FsyncBatch, forceSync && j.opts.Fsync == FsyncInterval:
		return j.syncLocked()
	case j.opts.Fsync == FsyncNever:
		j.markSynced()
	}
	return nil
}

// writeBuf writes buf[wlen:upto] at its file offset.
func (j *Journal) writeBuf(upto int) error {
	n, err := j.file.WriteAt(j.buf[j.wlen:upto], j.bufOff+int64(j.wlen))
	j.st.bytesWritten.Add(uint64(n))
	if err != nil {
		j.st.writeErrors.Add(1)
		return j.fail("write", err)
	}
	j.wlen = upto
	return nil
}

// publishWritten moves the just-written pending records into the active
// segment's metadata and index.
func (j *Journal) publishWritten() {
	first := j.bufOff + int64(j.pendStart)
	j.mu.Lock()
	s := j.active
	for _, e := range j.pendIdx {
		if n := len(s.index); n > 0 && s.index[n-1].seq >= e.seq {
			continue
		}
		s.index = append(s.index, indexEntry{seq: e.seq, off: first + e.pos})
	}
	if s.lastSeq < 0 {
		s.minTs, s.maxTs = j.pendMinTs, j.pendMaxTs
	} else {
		s.minTs = min(s.minTs, j.pendMinTs)
		s.maxTs = max(s.maxTs, j.pendMaxTs)
	}
	s.lastSeq = j.pendLast
	if n := len(s.index); n > 0 {
		j.lastIdxOff = s.index[n-1].off
	}
	j.mu.Unlock()
	j.writtenSeq = j.pendLast
	j.pendStart = len(j.buf)
	j.pendFirst = -1
	j.pendIdx = j.pendIdx[:0]
}

// syncLocked fsyncs the active file (and the directory if a segment was
// created) and publishes everything written as durable.
func (j *Journal) syncLocked() error {
	if j.file != nil {
		if err := j.timedSync(j.file); err != nil {
			return j.fail("fsync", err)
		}
	}
	if j.dirDirty {
		start := time.Now()
		err := syncDir(j.open, j.opts.Dir)
		j.st.observeFsync(time.Since(start))
		if err != nil {
			j.st.fsyncErrors.Add(1)
			return j.fail("fsync directory", err)
		}
		j.dirDirty = false
	}
	j.markSynced()
	return nil
}

func (j *Journal) timedSync(f File) error {
	start := time.Now()
	err := f.Sync()
	j.st.observeFsync(time.Since(start))
	if err != nil {
		j.st.fsyncErrors.Add(1)
	}
	return err
}

// markSynced publishes buf[:wlen] as durable and drops it from the buffer.
func (j *Journal) markSynced() {
	synced := j.bufOff + int64(j.wlen)
	j.mu.Lock()
	if j.active != nil {
		j.active.size = synced
	}
	j.publishLocked(j.writtenSeq, nil)
	j.mu.Unlock()
	if j.wlen > 0 {
		n := copy(j.buf, j.buf[j.wlen:])
		j.buf = j.buf[:n]
		j.pendStart -= j.wlen
		j.bufOff = synced
		j.wlen = 0
	}
}

// publishLocked sets the durable sequence and the error state and wakes
// waiters. mu must be held.
func (j *Journal) publishLocked(durable int64, err error) {
	changed := j.durable.Load() != durable || (j.err == nil) != (err == nil)
	j.durable.Store(durable)
	if j.err != nil && err == nil {
		j.log.Info("journal: recovered from I/O error", "previous_error", j.err, "durable", durable)
	}
	j.err = err
	if changed {
		close(j.notify)
		j.notify = make(chan struct{})
	}
}

// fail records an I/O failure: nothing after the last fsync is trusted any
// more, so the next attempt truncates and rewrites it.
func (j *Journal) fail(op string, err error) error {
	err = fmt.Errorf("journal: %s: %w", op, err)
	j.needRewrite = true
	j.mu.Lock()
	first := j.err == nil
	j.publishLocked(j.durable.Load(), err)
	j.mu.Unlock()
	if first {
		j.log.Error("journal: I/O failure, not acknowledging until it clears", "err", err, "durable", j.durable.Load())
	}
	return err
}

// roll seals the active segment: its written bytes are fsynced (unless
// FsyncNever), its index persisted, and the pending records go to a new
// segment.
func (j *Journal) roll() error {
	if j.wlen < j.pendStart {
		if err := j.writeBuf(j.pendStart); err != nil {
			return err
		}
	}
	if j.opts.Fsync != FsyncNever {
		if err := j.syncLocked(); err != nil {
			return err
		}
	} else {
		j.markSynced()
	}
	// Everything before pendStart is now synced and was dropped from buf.
	s := j.active
	j.mu.RLock()
	idx := encodeIndexSized(s, j.bufOff)
	j.mu.RUnlock()
	if err := writeAtomic(j.open, indexPathFor(s.path), idx, false); err != nil {
		j.log.Warn("journal: could not persist segment index (it will be rebuilt on open)", "segment", s.path, "err", err)
	}
	j.mu.Lock()
	s.size = j.bufOff
	s.sealed = true
	j.active = nil
	j.mu.Unlock()
	if err := j.file.Close(); err != nil {
		j.log.Warn("journal: close sealed segment", "segment", s.path, "err", err)
	}
	j.file = nil
	j.bufOff = 0
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return nil
}

// encodeIndexSized encodes s's index as if its size were size.
func encodeIndexSized(s *segment, size int64) []byte {
	c := *s
	c.size = size
	return encodeIndex(&c)
}

// createSegment creates the segment for the pending records and puts its
// header in front of them.
func (j *Journal) createSegment() error {
	base := j.pendFirst
	path := filepath.Join(j.opts.Dir, segmentName(base))
	f, err := j.open(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return j.fail("create segment", err)
	}
	// buf holds only pending records here (bufOff == 0, pendStart == 0).
	n := len(j.buf)
	j.buf = append(j.buf, make([]byte, segmentHeaderSize)...)
	copy(j.buf[segmentHeaderSize:], j.buf[:n])
	encodeSegmentHeader(j.buf, base)
	j.pendStart = segmentHeaderSize
	j.bufOff, j.wlen = 0, 0
	if len(j.pendIdx) == 0 || j.pendIdx[0].pos != 0 {
		j.pendIdx = append(j.pendIdx, pendEntry{})
		copy(j.pendIdx[1:], j.pendIdx)
		j.pendIdx[0] = pendEntry{seq: base, pos: 0}
	}
	j.file = f
	j.dirDirty = j.opts.Fsync != FsyncNever
	s := &segment{path: path, base: base, lastSeq: -1, size: 0}
	j.mu.Lock()
	j.segs = append(j.segs, s)
	j.active = s
	j.mu.Unlock()
	j.st.segmentsCreated.Add(1)
	return nil
}

// Durable returns the highest sequence that is durable under the fsync
// policy (fsynced for batch and interval, written for never), or -1.
func (j *Journal) Durable() int64 { return j.durable.Load() }

// LastSequence returns the highest sequence accepted by Append (after Open:
// the last record recovered), or -1 for an empty journal.
func (j *Journal) LastSequence() int64 { return j.lastSeq.Load() }

// Err returns the current I/O failure, or nil while the journal is healthy.
// It clears once a retried write and fsync succeed.
func (j *Journal) Err() error {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.err
}

// WaitDurable blocks until seq is durable (returns nil), ctx is done
// (returns ctx.Err()), the journal is failing (returns an error wrapping
// ErrUnavailable and the cause) or closed (ErrClosed). It is woken by each
// Commit's publication, not by polling.
func (j *Journal) WaitDurable(ctx context.Context, seq int64) error {
	for {
		if j.durable.Load() >= seq {
			return nil
		}
		j.mu.RLock()
		if j.durable.Load() >= seq {
			j.mu.RUnlock()
			return nil
		}
		if j.closed {
			j.mu.RUnlock()
			return ErrClosed
		}
		if j.err != nil {
			err := j.err
			j.mu.RUnlock()
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		ch := j.notify
		j.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maintain is the journal's background goroutine: interval fsyncs, retries
// after I/O failures, and retention. It ends when Close cancels ctx.
func (j *Journal) maintain(ctx context.Context) {
	defer j.wg.Done()
	var syncC <-chan time.Time
	if j.opts.Fsync == FsyncInterval {
		t := time.NewTicker(j.opts.FsyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	retry := time.NewTicker(j.opts.RetryInterval)
	defer retry.Stop()
	ret := time.NewTicker(j.opts.RetentionCheckInterval)
	defer ret.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-syncC:
			j.amu.Lock()
			if !j.wclosed {
				// Errors are recorded in Err and retried on the next tick.
				_ = j.commitLocked(true)
			}
			j.amu.Unlock()
		case <-retry.C:
			if j.Err() == nil {
				continue
			}
			j.amu.Lock()
			if !j.wclosed {
				if err := j.commitLocked(true); err == nil {
					j.log.Info("journal: background retry succeeded", "durable", j.Durable())
				}
			}
			j.amu.Unlock()
		case <-ret.C:
			j.runRetention()
		case <-j.kick:
			j.runRetention()
		}
	}
}

func (j *Journal) runRetention() {
	if _, err := j.EnforceRetention(); err != nil {
		j.log.Warn("journal: retention failed", "err", err)
	}
}

// Close commits and fsyncs what is buffered (under every policy), stops the
// background goroutine and closes the files. Waiters get ErrClosed. Close
// is idempotent; it returns the final commit's error, if any.
func (j *Journal) Close() error {
	if !j.closing.CompareAndSwap(false, true) {
		return nil
	}
	j.cancel()
	j.wg.Wait()

	j.amu.Lock()
	err := j.commitLocked(true)
	if err == nil && j.file != nil && j.opts.Fsync == FsyncNever {
		if serr := j.timedSync(j.file); serr != nil {
			err = fmt.Errorf("journal: fsync on close: %w", serr)
		}
	}
	j.wclosed = true
	if j.file != nil {
		if cerr := j.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("journal: close segment: %w", cerr)
		}
		j.file = nil
	}
	j.amu.Unlock()

	j.mu.Lock()
	j.closed = true
	close(j.notify)
	j.notify = make(chan struct{})
	j.mu.Unlock()
	if lerr := j.releaseLock(); lerr != nil && err == nil {
		err = fmt.Errorf("journal: release lock: %w", lerr)
	}
	return err
}
