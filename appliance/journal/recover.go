package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// recover loads every segment in the directory. Sealed segments with a
// valid persisted index are trusted as indexed; the others, and always the
// final segment, are scanned record by record.
func (j *Journal) recover() error {
	entries, err := os.ReadDir(j.opts.Dir)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	var bases []int64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpExt) {
			j.log.Info("journal: removing leftover temporary file", "file", name)
			if err := os.Remove(filepath.Join(j.opts.Dir, name)); err != nil {
				return fmt.Errorf("remove %s: %w", name, err)
			}
			continue
		}
		if base, ok := parseSegmentName(name); ok && e.Type().IsRegular() {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	prev := int64(-1)
	for i, base := range bases {
		last := i == len(bases)-1
		path := filepath.Join(j.opts.Dir, segmentName(base))
		if base <= prev {
			return fmt.Errorf("%w: segment %s starts at %d, not after the previous segment's last sequence %d", ErrCorrupt, path, base, prev)
		}
		if !last {
			if s, ok := j.loadIndex(path, base); ok {
				j.segs = append(j.segs, s)
				prev = s.lastSeq
				continue
			}
		}
		s, err := j.recoverSegment(path, base, prev, last)
		if err != nil {
			return err
		}
		if s == nil {
			continue
		}
		j.segs = append(j.segs, s)
		prev = s.lastSeq
	}
	j.lastSeq.Store(prev)
	j.durable.Store(prev)
	j.writtenSeq = prev
	if j.active != nil {
		if n := len(j.active.index); n > 0 {
			j.lastIdxOff = j.active.index[n-1].off
		}
	}
	return nil
}

// loadIndex returns a sealed segment from its persisted index if that index
// is valid and matches the segment file.
func (j *Journal) loadIndex(path string, base int64) (*segment, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false
	}
	b, err := readWhole(j.open, indexPathFor(path))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("journal: unreadable segment index, rescanning", "segment", path, "err", err)
		}
		return nil, false
	}
	s, err := decodeIndex(b, base, fi.Size())
	if err != nil {
		j.log.Warn("journal: invalid segment index, rescanning", "segment", path, "err", err)
		return nil, false
	}
	s.path = path
	return s, true
}

// recoverSegment scans one segment and repairs its tail. It returns nil
// (and removes the file) for a segment without any valid record.
func (j *Journal) recoverSegment(path string, base, prev int64, last bool) (*segment, error) {
	flag := os.O_RDONLY
	if last || j.opts.RepairCorrupt {
		flag = os.O_RDWR
	}
	f, err := j.open(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	res, err := scanSegment(f, base, prev, j.opts.IndexInterval, j.opts.MaxRecordSize)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("scan %s: %w", path, err)
	}
	if res.stopErr != nil {
		if !last && !j.opts.RepairCorrupt {
			f.Close()
			return nil, fmt.Errorf("%w: sealed segment %s: %v (set RepairCorrupt to truncate it there and keep the later segments)", ErrCorrupt, path, res.stopErr)
		}
		dropped := res.fileLen - res.good
		j.log.Warn("journal: dropping torn or corrupt tail (never reported durable)",
			"segment", path, "offset", res.good, "dropped_bytes", dropped, "reason", res.stopErr.Error(),
			"last_sequence", res.lastSeq, "final_segment", last)
		j.st.truncatedBytes.Add(dropped)
		if res.records > 0 {
			if err := f.Truncate(res.good); err != nil {
				f.Close()
				return nil, fmt.Errorf("truncate %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, fmt.Errorf("fsync %s: %w", path, err)
			}
		}
	}
	if res.records == 0 {
		f.Close()
		j.log.Warn("journal: removing segment without a valid record", "segment", path, "bytes", res.fileLen)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove %s: %w", path, err)
		}
		os.Remove(indexPathFor(path))
		if err := syncDir(j.open, j.opts.Dir); err != nil {
			return nil, err
		}
		return nil, nil
	}
	s := &segment{
		path: path, base: base, size: res.good, lastSeq: res.lastSeq,
		minTs: res.minTs, maxTs: res.maxTs, index: res.index, sealed: !last,
	}
	if last {
		j.file = f
		j.active = s
		j.bufOff = res.good
		return s, nil
	}
	f.Close()
	if err := writeAtomic(j.open, indexPathFor(path), encodeIndex(s), false); err != nil {
		j.log.Warn("journal: could not persist segment index", "segment", path, "err", err)
	}
	return s, nil
}
