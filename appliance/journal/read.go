package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// readPlan is one segment's part of a read, captured under mu.
type readPlan struct {
	path       string
	start, end int64
}

// Earliest returns the oldest sequence still retained. When no record is
// retained it returns LastSequence()+1 (0 for a new journal): every
// sequence below Earliest has been deleted by retention (or never existed).
func (j *Journal) Earliest() int64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.earliestLocked()
}

func (j *Journal) earliestLocked() int64 {
	for _, s := range j.segs {
		if s.lastSeq >= 0 {
			return s.base
		}
	}
	return j.lastSeq.Load() + 1
}

// ReadRange returns up to limit durable records with from <= Sequence <= to,
// in order (pass math.MaxInt64 as to for no upper bound). It seeks with the
// sparse index, so its cost is proportional to the range read, not to the
// journal's size. Only durable records (see Durable) are returned.
//
// A from below Earliest returns an *EvictedError (errors.Is ErrEvicted).
// The returned records own their memory.
func (j *Journal) ReadRange(from, to int64, limit int) ([]Record, error) {
	if from < 0 {
		return nil, fmt.Errorf("journal: read from negative sequence %d", from)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("journal: read limit %d must be positive", limit)
	}
	var out []Record
	err := j.iterate(from, to, limit, false, func(r Record) error {
		out = append(out, r.clone())
		return nil
	})
	return out, err
}

// Replay calls fn, in order, for every durable record with a sequence >=
// from (through the durable sequence at the time of the call). The record
// passed to fn is only valid during the call. If from is below Earliest,
// replay starts at Earliest and the gap is logged; fn's first error stops
// the replay and is returned wrapped.
//
// The daemon uses it at start to feed a stage everything after its
// checkpoint: Replay(j.Checkpoint(stage)+1, fn) — at-least-once delivery.
func (j *Journal) Replay(from int64, fn func(Record) error) error {
	if from < 0 {
		from = 0
	}
	return j.iterate(from, 1<<63-1, 0, true, fn)
}

// ReplayN is Replay bounded to limit records, without raising from: a
// from below Earliest returns an *EvictedError (errors.Is ErrEvicted).
func (j *Journal) ReplayN(from int64, limit int, fn func(Record) error) error {
	if from < 0 {
		from = 0
	}
	return j.iterate(from, 1<<63-1, limit, false, fn)
}

// iterate walks durable records in [from, to]; limit <= 0 means no limit.
// With clamp set, a from below Earliest is raised to Earliest.
func (j *Journal) iterate(from, to int64, limit int, clamp bool, fn func(Record) error) error {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return ErrClosed
	}
	durable := j.durable.Load()
	to = min(to, durable)
	if earliest := j.earliestLocked(); from < earliest {
		if !clamp {
			j.mu.RUnlock()
			return &EvictedError{From: from, Earliest: earliest}
		}
		if from <= durable {
			j.log.Warn("journal: replay starts after evicted sequences", "requested", from, "earliest", earliest)
		}
		from = earliest
	}
	if from > to {
		j.mu.RUnlock()
		return nil
	}
	// The last segment whose base is <= from holds from (or the next record).
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].base > from }) - 1
	i = max(i, 0)
	var plan []readPlan
	for k := i; k < len(j.segs); k++ {
		s := j.segs[k]
		if s.base > to {
			break
		}
		if s.lastSeq < 0 || s.size <= segmentHeaderSize {
			continue
		}
		start := int64(segmentHeaderSize)
		if k == i {
			start = s.lookup(from)
		}
		if start < s.size {
			plan = append(plan, readPlan{path: s.path, start: start, end: s.size})
		}
	}
	j.mu.RUnlock()

	n := 0
	for _, p := range plan {
		done, err := j.readSegment(p, from, to, limit, &n, fn)
		if err != nil || done {
			return err
		}
	}
	return nil
}

func (j *Journal) readSegment(p readPlan, from, to int64, limit int, n *int, fn func(Record) error) (done bool, err error) {
	f, err := j.open(p.path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// Retention deleted it after we planned the read.
			return true, &EvictedError{From: from, Earliest: j.Earliest()}
		}
		return true, fmt.Errorf("journal: open %s: %w", p.path, err)
	}
	defer f.Close()
	r := newFrameReader(f, p.start, p.end, j.opts.MaxRecordSize)
	for {
		rec, at, err := r.next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			if errors.Is(err, errTorn) || errors.Is(err, errCorrupt) {
				return true, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, p.path, at, err)
			}
			return true, fmt.Errorf("journal: read %s: %w", p.path, err)
		}
		if rec.Sequence < from {
			continue
		}
		if rec.Sequence > to {
			return true, nil
		}
		if err := fn(rec); err != nil {
			return true, fmt.Errorf("journal: replay of sequence %d: %w", rec.Sequence, err)
		}
		*n++
		if limit > 0 && *n >= limit {
			return true, nil
		}
	}
}
