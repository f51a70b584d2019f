package journal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecover appends arbitrary bytes to a valid segment and checks that
// recovery never panics, keeps every original record, and keeps only
// complete, checksummed records after them: the recovered file is exactly
// the framing of the recovered records (nothing partial survives), and the
// journal keeps working afterwards.
func FuzzRecover(f *testing.F) {
	base := []Record{rec(5, 10), rec(6, 0), rec(7, 33)}
	next := rec(8, 4)
	valid := appendFrame(nil, &next)
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(make([]byte, 64))
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:9])
	f.Add(append(append([]byte(nil), valid...), valid[:5]...))
	bad := append([]byte(nil), valid...)
	bad[len(bad)-1] ^= 1
	f.Add(bad)
	old := rec(6, 4) // a valid frame with a sequence that does not increase
	f.Add(appendFrame(nil, &old))
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint32(huge, 1<<31)
	f.Add(huge)
	// A frame whose producer+key lengths exceed its body, with a valid CRC.
	liar := make([]byte, frameHeaderSize+bodyFixedSize)
	binary.LittleEndian.PutUint32(liar[0:], bodyFixedSize)
	binary.LittleEndian.PutUint64(liar[8:], 9)
	binary.LittleEndian.PutUint16(liar[24:], 100)
	binary.LittleEndian.PutUint32(liar[4:], crc32.Checksum(liar[8:], castagnoli))
	f.Add(liar)

	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		seg := make([]byte, segmentHeaderSize)
		encodeSegmentHeader(seg, base[0].Sequence)
		for i := range base {
			seg = appendFrame(seg, &base[i])
		}
		origLen := len(seg)
		path := filepath.Join(dir, segmentName(base[0].Sequence))
		if err := os.WriteFile(path, append(seg, tail...), 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: testLogger(), MaxRecordSize: 1 << 20})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		got := readAll(t, j)
		if len(got) < len(base) {
			t.Fatalf("lost original records: %v", seqs(got))
		}
		for i := range base {
			if !sameRecord(got[i], base[i]) {
				t.Fatalf("original record %d changed", i)
			}
		}
		// Re-encode what was recovered: it must be byte-identical to the
		// file, which must be a prefix of what was written.
		want := seg[:segmentHeaderSize:segmentHeaderSize]
		for i := range got {
			want = appendFrame(want, &got[i])
		}
		onDisk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, want) {
			t.Fatalf("recovered file (%d bytes) is not the framing of the %d recovered records (%d bytes)", len(onDisk), len(got), len(want))
		}
		if written := append(seg[:origLen:origLen], tail...); !bytes.HasPrefix(written, onDisk) {
			t.Fatal("recovered file is not a prefix of what was written")
		}
		// The journal continues after the last recovered record.
		last := got[len(got)-1].Sequence
		if j.LastSequence() != last {
			t.Fatalf("LastSequence %d, last recovered %d", j.LastSequence(), last)
		}
		if last < 1<<62 {
			appendAll(t, j, rec(last+1, 3))
			if err := j.Commit(); err != nil {
				t.Fatal(err)
			}
			if got2 := readAll(t, j); len(got2) != len(got)+1 {
				t.Fatalf("append after recovery: %v", seqs(got2))
			}
		}
	})
}

// FuzzDecodeIndex: a persisted index is read from disk; whatever it holds,
// decoding never panics and an accepted index re-encodes to the same bytes.
func FuzzDecodeIndex(f *testing.F) {
	s := &segment{base: 10, size: 5000, lastSeq: 40, minTs: 1, maxTs: 2,
		index: []indexEntry{{10, segmentHeaderSize}, {20, 1000}, {30, 3000}}}
	good := encodeIndex(s)
	f.Add(good, int64(10), int64(5000))
	f.Add(good[:len(good)-1], int64(10), int64(5000))
	f.Add([]byte(indexMagic), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, base, size int64) {
		got, err := decodeIndex(b, base, size)
		if err != nil {
			return
		}
		if got.base != base || got.size != size || !bytes.Equal(encodeIndex(got), b) {
			t.Fatalf("accepted index does not round-trip: %+v", got)
		}
	})
}

// FuzzDecodeCheckpoint: checkpoint files are read from disk; decoding never
// panics and an accepted checkpoint re-encodes to the same bytes.
func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add("stage", encodeCheckpoint("stage", 42))
	f.Add("stage", encodeCheckpoint("other", 42))
	f.Add("s", []byte("-1 00000000\n"))
	f.Add("s", []byte("1 2 3\n"))
	f.Fuzz(func(t *testing.T, stage string, b []byte) {
		seq, err := decodeCheckpoint(stage, b)
		if err != nil {
			return
		}
		if seq < -1 {
			t.Fatalf("accepted sequence %d", seq)
		}
		if !bytes.Equal(encodeCheckpoint(stage, seq), b) {
			t.Fatalf("accepted non-canonical checkpoint %q for %q", b, stage)
		}
	})
}

// FuzzDecodeRecord: whatever bytes a segment holds, decoding a frame never
// panics, and an accepted frame (version 1 or 2) re-encodes to exactly the
// same bytes, so no two encodings of a record exist and nothing partial is
// accepted.
func FuzzDecodeRecord(f *testing.F) {
	v2 := Record{Sequence: 3, Timestamp: 4, Producer: []byte("p"), Key: []byte("k"), Data: []byte("d"), ProducerSeq: 9, HasProducerSeq: true}
	v1 := Record{Sequence: 5, Timestamp: 6, Data: []byte(`{"x":1}`)}
	f.Add(appendFrame(nil, &v2))
	f.Add(appendFrame(nil, &v1))
	f.Add(appendFrameV1(nil, 7, 8, []byte("prod"), []byte("key"), []byte("data")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeFrame(b, 1<<20)
		if err != nil {
			return
		}
		if n > len(b) || r.Sequence < 0 {
			t.Fatalf("accepted frame of %d bytes from %d, sequence %d", n, len(b), r.Sequence)
		}
		if enc := appendFrame(nil, &r); !bytes.Equal(enc, b[:n]) {
			t.Fatalf("accepted frame does not round-trip:\n%x\n%x", b[:n], enc)
		}
	})
}
