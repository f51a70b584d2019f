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
func (j *Journal) EnforceRetention() (int, error) {
	if j.opts.RetentionBytes <= 0 && j.opts.RetentionAge <= 0 {
		return 0, nil
	}
	j.retainMu.Lock()
	defer j.retainMu.Unlock()
	cutoff := j.opts.Now().Add(-j.opts.RetentionAge).UnixNano()

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
		total -= s.size
		n++
	}
	victims := append([]*segment(nil), j.segs[:n]...)
	if n > 0 {
		j.segs = append([]*segment(nil), j.segs[n:]...)
	}
	earliest := j.earliestLocked()
	j.mu.Unlock()

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
