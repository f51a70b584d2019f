package journal

import (
	"errors"
	"fmt"
	"os"
)

// EnforceRetention deletes the oldest whole segments while the journal is
// over Options.RetentionBytes or their newest record is older than
// Options.RetentionAge. The active segment is never deleted. It runs in
// the background after every roll and every RetentionCheckInterval; the
// daemon may also call it. It returns how many segments it deleted.
//
// A segment holding records that a Hold has not consumed yet is kept: age
// never deletes it, and the size cap deletes it only when every hold that
// needs it allows DropWhenFull (each such hold is then reported to OnDrop
// with the range it lost). Otherwise the journal stays over its cap and
// Full names the hold until it catches up.
func (j *Journal) EnforceRetention() (int, error) {
	if j.opts.RetentionBytes <= 0 && j.opts.RetentionAge <= 0 {
		return 0, nil
	}
	j.retainMu.Lock()
	defer j.retainMu.Unlock()
	cutoff := j.opts.Now().Add(-j.opts.RetentionAge).UnixNano()
	var holds []Hold
	if j.opts.Holds != nil {
		holds = j.opts.Holds()
	}
	type drop struct {
		h           Hold
		first, last int64
	}
	var drops []drop
	blocker := ""

	j.mu.Lock()
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	n := 0
	for n < len(j.segs) {
		s := j.segs[n]
		if !s.sealed || s == j.active {
			break
		}
		over := j.opts.RetentionBytes > 0 && total > j.opts.RetentionBytes
		old := j.opts.RetentionAge > 0 && s.maxTs < cutoff
		if !over && !old {
			break
		}
		var needed []Hold
		for _, h := range holds {
			if h.From <= s.lastSeq {
				needed = append(needed, h)
			}
		}
		if len(needed) > 0 {
			if !over {
				break // age alone never deletes unconsumed records
			}
			refuse := ""
			for _, h := range needed {
				if !h.DropWhenFull {
					refuse = h.Name
					break
				}
			}
			if refuse != "" {
				blocker = refuse
				break
			}
			for _, h := range needed {
				drops = append(drops, drop{h, max(h.From, s.base), s.lastSeq})
			}
		}
		total -= s.size
		n++
	}
	victims := append([]*segment(nil), j.segs[:n]...)
	if n > 0 {
		j.segs = append([]*segment(nil), j.segs[n:]...)
	}
	earliest := j.earliestLocked()
	j.mu.Unlock()
	j.full.Store(&blocker)
	for _, d := range drops {
		j.log.Warn("journal: retention deleted records a reader had not consumed (journal full)", "reader", d.h.Name, "first", d.first, "last", d.last)
		if j.opts.OnDrop != nil {
			j.opts.OnDrop(d.h, d.first, d.last)
		}
	}

	var errs []error
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.path, err))
		}
		if err := os.Remove(indexPathFor(s.path)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove index of %s: %w", s.path, err))
		}
		j.st.segmentsDeleted.Add(1)
		j.log.Info("journal: retention deleted segment", "segment", s.path, "first", s.base, "last", s.lastSeq, "bytes", s.size, "earliest_now", earliest)
	}
	if len(victims) > 0 && j.opts.Fsync != FsyncNever {
		if err := syncDir(j.open, j.opts.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return len(victims), fmt.Errorf("journal: retention: %w", errors.Join(errs...))
	}
	return len(victims), nil
}

// Full returns the name of the hold that keeps the journal over
// Options.RetentionBytes (it refuses to lose unconsumed records), or ""
// when the journal is within its cap or nothing blocks retention. It is
// updated by every retention run.
func (j *Journal) Full() string {
	if p := j.full.Load(); p != nil {
		return *p
	}
	return ""
}
