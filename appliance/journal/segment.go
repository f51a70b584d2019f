package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	segmentExt = ".seg"
	indexExt   = ".idx"
	tmpExt     = ".tmp"
	indexMagic = "BBJIDX01"
)

// indexEntry maps a sequence to the file offset of its frame.
type indexEntry struct {
	seq int64
	off int64
}

// segment describes one segment file. Fields other than path and base are
// guarded by Journal.mu; a sealed segment's fields never change again.
type segment struct {
	path   string
	base   int64 // first sequence (also the file name)
	sealed bool
	// size is the end of the valid records: for a sealed segment its final
	// size, for the active one the end of what has been written.
	size    int64
	lastSeq int64 // -1 while the segment holds no record
	minTs   int64
	maxTs   int64
	index   []indexEntry
}

func segmentName(base int64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

func indexPathFor(segPath string) string { return strings.TrimSuffix(segPath, segmentExt) + indexExt }

// parseSegmentName returns the base sequence encoded in a segment file name.
func parseSegmentName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, segmentExt)
	if !ok || stem == "" {
		return 0, false
	}
	for _, c := range stem {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(stem, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// lookup returns the offset to start reading at to find seq: the offset of
// the last indexed record with a sequence <= seq, or the first record.
func (s *segment) lookup(seq int64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].seq > seq })
	if i == 0 {
		return segmentHeaderSize
	}
	return s.index[i-1].off
}

// note records a committed record in the segment's metadata.
func (s *segment) note(seq, ts int64) {
	if s.lastSeq < 0 {
		s.minTs, s.maxTs = ts, ts
	} else {
		s.minTs = min(s.minTs, ts)
		s.maxTs = max(s.maxTs, ts)
	}
	s.lastSeq = seq
}

// frameReader reads consecutive frames from a File with positioned reads,
// buffering in chunks. It never reads at or past end.
type frameReader struct {
	f       File
	off     int64 // offset of the next frame
	end     int64
	maxBody int
	buf     []byte
	bufOff  int64 // file offset of buf[0]
	chunk   int   // next read size: starts small for short reads, doubles
}

const (
	firstReadChunk = 16 << 10
	maxReadChunk   = 256 << 10
)

func newFrameReader(f File, off, end int64, maxBody int) *frameReader {
	return &frameReader{f: f, off: off, end: end, maxBody: maxBody, bufOff: off, chunk: firstReadChunk}
}

// fill makes sure buf covers [r.off, r.off+need) if the file has it.
func (r *frameReader) fill(need int) error {
	have := r.bufOff + int64(len(r.buf)) - r.off
	if have >= int64(need) {
		return nil
	}
	// Drop consumed bytes, keep the partial frame at the front.
	keep := r.buf[r.off-r.bufOff:]
	want := max(need, r.chunk)
	r.chunk = min(2*r.chunk, maxReadChunk)
	if rem := r.end - r.off; int64(want) > rem {
		want = int(rem)
	}
	if cap(r.buf) < want {
		nb := make([]byte, len(keep), want)
		copy(nb, keep)
		r.buf = nb
	} else {
		r.buf = r.buf[:copy(r.buf, keep)]
	}
	r.bufOff = r.off
	for int64(len(r.buf)) < int64(want) {
		n, err := r.f.ReadAt(r.buf[len(r.buf):want], r.bufOff+int64(len(r.buf)))
		r.buf = r.buf[:len(r.buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read at %d: %w", r.bufOff+int64(len(r.buf)), err)
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}

// next returns the frame at r.off and advances past it. The record aliases
// the reader's buffer until the next call. At end it returns io.EOF; a frame
// cut short by end returns errTorn; an invalid frame returns errCorrupt.
func (r *frameReader) next() (Record, int64, error) {
	if r.off >= r.end {
		return Record{}, r.off, io.EOF
	}
	if err := r.fill(frameHeaderSize); err != nil {
		return Record{}, r.off, err
	}
	b := r.buf[r.off-r.bufOff:]
	if len(b) >= frameHeaderSize {
		length := binary.LittleEndian.Uint32(b)
		if length >= bodyFixedSize && uint64(length) <= uint64(r.maxBody) {
			if err := r.fill(frameHeaderSize + int(length)); err != nil {
				return Record{}, r.off, err
			}
			b = r.buf[r.off-r.bufOff:]
		}
	}
	rec, n, err := decodeFrame(b, r.maxBody)
	if err != nil {
		return Record{}, r.off, err
	}
	at := r.off
	r.off += int64(n)
	return rec, at, nil
}

// scanResult is what scanning a segment file found.
type scanResult struct {
	base    int64
	good    int64 // end of the last valid record
	fileLen int64
	stopErr error // why the scan stopped before fileLen (nil when it did not)
	lastSeq int64
	minTs   int64
	maxTs   int64
	records int64
	index   []indexEntry
}

// scanSegment validates every frame of a segment file, building its sparse
// index, and reports where the valid records end. prevSeq is the last
// sequence of the previous segment (-1 for none): sequences must increase.
func scanSegment(f File, base int64, prevSeq int64, indexEvery int64, maxBody int) (scanResult, error) {
	res := scanResult{base: base, lastSeq: -1}
	fi, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("stat: %w", err)
	}
	res.fileLen = fi.Size()
	hdr := make([]byte, segmentHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("read header: %w", err)
	}
	hbase, herr := decodeSegmentHeader(hdr[:n])
	if herr == nil && hbase != base {
		herr = fmt.Errorf("%w: header base %d does not match file name base %d", errCorrupt, hbase, base)
	}
	if herr != nil {
		res.stopErr = fmt.Errorf("segment header: %w", herr)
		return res, nil
	}
	res.good = segmentHeaderSize
	r := newFrameReader(f, segmentHeaderSize, res.fileLen, maxBody)
	lastIdx := int64(-1)
	for {
		rec, at, err := r.next()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			if errors.Is(err, errTorn) || errors.Is(err, errCorrupt) {
				res.stopErr = fmt.Errorf("at offset %d: %w", at, err)
				return res, nil
			}
			return res, err
		}
		switch {
		case res.records == 0 && rec.Sequence != base:
			res.stopErr = fmt.Errorf("at offset %d: %w: first sequence %d does not match segment base %d", at, errCorrupt, rec.Sequence, base)
			return res, nil
		case rec.Sequence <= prevSeq:
			res.stopErr = fmt.Errorf("at offset %d: %w: sequence %d not after %d", at, errCorrupt, rec.Sequence, prevSeq)
			return res, nil
		}
		if lastIdx < 0 || at-lastIdx >= indexEvery {
			res.index = append(res.index, indexEntry{seq: rec.Sequence, off: at})
			lastIdx = at
		}
		if res.records == 0 {
			res.minTs, res.maxTs = rec.Timestamp, rec.Timestamp
		} else {
			res.minTs = min(res.minTs, rec.Timestamp)
			res.maxTs = max(res.maxTs, rec.Timestamp)
		}
		prevSeq = rec.Sequence
		res.lastSeq = rec.Sequence
		res.records++
		res.good = r.off
	}
}

// Index files persist a sealed segment's metadata and sparse index so that
// Open need not rescan it:
//
//	magic "BBJIDX01" base:i64 size:i64 lastSeq:i64 minTs:i64 maxTs:i64 n:u32 n*(seq:i64 off:i64) crc:u32
//
// The CRC32C covers everything before it. An index that fails validation,
// or whose size differs from the segment file's, is ignored and the segment
// is scanned instead.
func encodeIndex(s *segment) []byte {
	b := make([]byte, 0, 8+5*8+4+16*len(s.index)+4)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.base))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.lastSeq))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.minTs))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.maxTs))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.index)))
	for _, e := range s.index {
		b = binary.LittleEndian.AppendUint64(b, uint64(e.seq))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.off))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeIndex(b []byte, base, fileLen int64) (*segment, error) {
	const fixed = 8 + 5*8 + 4
	if len(b) < fixed+4 || string(b[:8]) != indexMagic {
		return nil, errors.New("bad index header")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("index crc mismatch")
	}
	s := &segment{sealed: true}
	s.base = int64(binary.LittleEndian.Uint64(b[8:]))
	s.size = int64(binary.LittleEndian.Uint64(b[16:]))
	s.lastSeq = int64(binary.LittleEndian.Uint64(b[24:]))
	s.minTs = int64(binary.LittleEndian.Uint64(b[32:]))
	s.maxTs = int64(binary.LittleEndian.Uint64(b[40:]))
	n := int(binary.LittleEndian.Uint32(b[48:]))
	if s.base != base {
		return nil, fmt.Errorf("index base %d does not match segment %d", s.base, base)
	}
	if s.size != fileLen {
		return nil, fmt.Errorf("index covers %d bytes but segment has %d", s.size, fileLen)
	}
	if len(body) != fixed+16*n || n == 0 || s.lastSeq < base {
		return nil, errors.New("index entry count does not match its length")
	}
	s.index = make([]indexEntry, n)
	for i := range s.index {
		p := fixed + 16*i
		s.index[i] = indexEntry{seq: int64(binary.LittleEndian.Uint64(b[p:])), off: int64(binary.LittleEndian.Uint64(b[p+8:]))}
		if s.index[i].off < segmentHeaderSize || s.index[i].off >= s.size || (i > 0 && s.index[i].seq <= s.index[i-1].seq) {
			return nil, errors.New("index entries out of order or out of range")
		}
	}
	if s.index[0].seq != base || s.index[0].off != segmentHeaderSize {
		return nil, errors.New("index does not start at the first record")
	}
	return s, nil
}

// readWhole reads a small file through the opener.
func readWhole(open Opener, path string) ([]byte, error) {
	f, err := open(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 1<<30 {
		return nil, fmt.Errorf("%s: implausibly large (%d bytes)", path, fi.Size())
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(b)) {
		return nil, err
	}
	return b, nil
}

// writeAtomic writes data to path via a temporary file, fsyncs it (when
// sync is set), renames it over path and fsyncs the directory.
func writeAtomic(open Opener, path string, data []byte, sync bool) error {
	tmp := path + tmpExt
	f, err := open(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if sync {
		if err := syncDir(open, filepath.Dir(path)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory so that created, renamed and removed entries
// survive a power loss.
func syncDir(open Opener, dir string) error {
	d, err := open(dir, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	err = d.Sync()
	cerr := d.Close()
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	if cerr != nil {
		return fmt.Errorf("close dir %s: %w", dir, cerr)
	}
	return nil
}
