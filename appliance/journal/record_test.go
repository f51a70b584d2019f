package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 70000)
	cases := []struct {
		name string
		r    Record
	}{
		{"empty", Record{Sequence: 0, Timestamp: 1}},
		{"all fields", Record{Sequence: 42, Timestamp: -5, Producer: []byte("sensor-1"), Key: []byte("k"), Data: []byte(`{"t":1}`)}},
		{"only data", Record{Sequence: 1 << 62, Timestamp: 7, Data: []byte{0, 1, 2}}},
		{"large", Record{Sequence: 9, Timestamp: 9, Producer: bytes.Repeat([]byte("p"), 65535), Key: big[:1000], Data: big}},
		{"producer sequence", Record{Sequence: 10, Timestamp: 3, Producer: []byte("dev"), Key: []byte("k"), Data: []byte("1"), ProducerSeq: 12345, HasProducerSeq: true}},
		{"producer sequence zero", Record{Sequence: 11, Timestamp: 3, ProducerSeq: 0, HasProducerSeq: true}},
		{"producer sequence negative, no producer", Record{Sequence: 12, Timestamp: 3, ProducerSeq: -7, HasProducerSeq: true, Data: []byte("x")}},
		{"producer sequence and large key", Record{Sequence: 13, Timestamp: 3, ProducerSeq: 1 << 40, HasProducerSeq: true, Key: big[:5000], Data: big[:10]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("xyz")
			b := appendFrame(append([]byte(nil), prefix...), &tc.r)
			if !bytes.Equal(b[:3], prefix) {
				t.Fatal("appendFrame clobbered the existing bytes")
			}
			got, n, err := decodeFrame(b[3:], DefaultMaxRecordSize)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if n != len(b)-3 || n != frameSize(&tc.r) {
				t.Fatalf("frame size %d, encoded %d, frameSize %d", n, len(b)-3, frameSize(&tc.r))
			}
			if !sameRecord(got, tc.r) {
				t.Fatalf("got %+v want %+v", got, tc.r)
			}
			c := got.clone()
			b[len(b)-1] ^= 0xFF // the clone must not alias the buffer
			if !sameRecord(c, tc.r) {
				t.Fatal("clone aliases the frame buffer")
			}
		})
	}
}

func TestFrameDetectsDamage(t *testing.T) {
	r := Record{Sequence: 3, Timestamp: 4, Producer: []byte("p"), Key: []byte("key"), Data: []byte("payload")}
	good := appendFrame(nil, &r)
	// Every single-bit flip anywhere in the frame must be detected (CRC32C
	// detects all 1-bit errors; a flipped length is torn, too big or a CRC
	// mismatch).
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), good...)
			b[i] ^= 1 << bit
			if _, _, err := decodeFrame(b, DefaultMaxRecordSize); err == nil {
				t.Fatalf("flip of byte %d bit %d not detected", i, bit)
			}
		}
	}
	// Every strict prefix is torn or corrupt, never valid.
	for n := range len(good) {
		_, _, err := decodeFrame(good[:n], DefaultMaxRecordSize)
		if !errors.Is(err, errTorn) && !errors.Is(err, errCorrupt) {
			t.Fatalf("prefix %d: err %v", n, err)
		}
	}
	// A length above the bound is corrupt even though the CRC was not checked.
	if _, _, err := decodeFrame(good, 10); !errors.Is(err, errCorrupt) {
		t.Fatalf("oversized length: %v", err)
	}
}

func TestSegmentName(t *testing.T) {
	for _, tc := range []struct {
		name string
		base int64
		ok   bool
	}{
		{segmentName(0), 0, true},
		{segmentName(1234567), 1234567, true},
		{"00000000000000000001.idx", 0, false},
		{"-1.seg", 0, false},
		{".seg", 0, false},
		{"99999999999999999999999.seg", 0, false},
		{"12a.seg", 0, false},
	} {
		base, ok := parseSegmentName(tc.name)
		if ok != tc.ok || (ok && base != tc.base) {
			t.Errorf("parseSegmentName(%q) = %d, %v", tc.name, base, ok)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	var h histogram
	for i := 0; i < 90; i++ {
		h.observe(80 * 1000) // 80µs -> 100µs bucket
	}
	for i := 0; i < 10; i++ {
		h.observe(3_000_000) // 3ms -> 5ms bucket
	}
	s := h.snapshot()
	if s.Count != 100 || s.Quantile(0.5).Microseconds() != 100 || s.Quantile(0.99).Milliseconds() != 5 {
		t.Fatalf("count %d p50 %v p99 %v", s.Count, s.Quantile(0.5), s.Quantile(0.99))
	}
	if c := s.Cumulative(); c[0.0001] != 90 || c[0.005] != 100 {
		t.Fatalf("cumulative %v", c)
	}
}

// appendFrameV1 is the version-1 encoder exactly as first released (no
// producer sequence), kept here to prove that old journals stay readable.
func appendFrameV1(dst []byte, seq, ts int64, producer, key, data []byte) []byte {
	body := make([]byte, 0, bodyFixedSize+len(producer)+len(key)+len(data))
	body = binary.LittleEndian.AppendUint64(body, uint64(seq))
	body = binary.LittleEndian.AppendUint64(body, uint64(ts))
	body = binary.LittleEndian.AppendUint16(body, uint16(len(producer)))
	body = binary.LittleEndian.AppendUint32(body, uint32(len(key)))
	body = append(append(append(body, producer...), key...), data...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

func TestFrameVersions(t *testing.T) {
	v1 := appendFrameV1(nil, 5, 6, []byte("prod"), []byte("key"), []byte(`{"a":1}`))
	got, n, err := decodeFrame(v1, DefaultMaxRecordSize)
	if err != nil || n != len(v1) {
		t.Fatalf("version-1 frame: %v (n=%d of %d)", err, n, len(v1))
	}
	want := Record{Sequence: 5, Timestamp: 6, Producer: []byte("prod"), Key: []byte("key"), Data: []byte(`{"a":1}`)}
	if !sameRecord(got, want) || got.HasProducerSeq {
		t.Fatalf("version-1 frame decoded as %+v", got)
	}
	// A record without a producer sequence is still written as version 1,
	// byte for byte.
	if enc := appendFrame(nil, &want); !bytes.Equal(enc, v1) {
		t.Fatalf("record without producer sequence not encoded as version 1:\n%x\n%x", enc, v1)
	}
	// Version 2 is 8 bytes longer and sets the flag.
	want.ProducerSeq, want.HasProducerSeq = 77, true
	v2 := appendFrame(nil, &want)
	if len(v2) != len(v1)+pseqSize || binary.LittleEndian.Uint32(v2[frameHeaderSize+18:])&flagProducerSeq == 0 {
		t.Fatalf("version-2 frame %x", v2)
	}
	// A version-2 flag on a body too short for the producer sequence is
	// corrupt, even with a valid CRC.
	short := make([]byte, frameHeaderSize+bodyFixedSize+4)
	binary.LittleEndian.PutUint32(short[0:], bodyFixedSize+4)
	binary.LittleEndian.PutUint32(short[frameHeaderSize+18:], flagProducerSeq)
	binary.LittleEndian.PutUint32(short[4:], crc32.Checksum(short[frameHeaderSize:], castagnoli))
	if _, _, err := decodeFrame(short, DefaultMaxRecordSize); !errors.Is(err, errCorrupt) {
		t.Fatalf("short version-2 body: %v", err)
	}
	// Every bit flip in a version-2 frame is detected too.
	for i := range v2 {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), v2...)
			b[i] ^= 1 << bit
			if _, _, err := decodeFrame(b, DefaultMaxRecordSize); err == nil {
				t.Fatalf("flip of byte %d bit %d not detected", i, bit)
			}
		}
	}
}

// TestVersion1JournalUpgrade: a journal written entirely in the version-1
// format (a sealed segment without an index and an active one) opens,
// reads back without producer sequences, keeps appending version-2 records
// to its active segment, and after a reopen serves the mixture.
func TestVersion1JournalUpgrade(t *testing.T) {
	dir := t.TempDir()
	writeSeg := func(base int64, n int) {
		seg := make([]byte, segmentHeaderSize)
		encodeSegmentHeader(seg, base)
		for s := base; s < base+int64(n); s++ {
			seg = appendFrameV1(seg, s, 1000+s, []byte("old"), nil, fmt.Appendf(nil, `"v1-%d"`, s))
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(base)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeSeg(0, 10)
	writeSeg(10, 5)
	j := openT(t, Options{Dir: dir})
	if j.LastSequence() != 14 {
		t.Fatalf("last sequence %d", j.LastSequence())
	}
	for s := int64(15); s < 20; s++ {
		appendAll(t, j, Record{Sequence: s, Producer: []byte("new"), Data: fmt.Appendf(nil, `"v2-%d"`, s), ProducerSeq: s * 100, HasProducerSeq: true})
	}
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, Options{Dir: dir})
	defer j.Close()
	got := readAll(t, j)
	if len(got) != 20 {
		t.Fatalf("read %d records: %v", len(got), seqs(got))
	}
	for i, r := range got {
		s := int64(i)
		switch {
		case r.Sequence != s:
			t.Fatalf("record %d has sequence %d", i, r.Sequence)
		case s < 15 && (r.HasProducerSeq || string(r.Data) != fmt.Sprintf(`"v1-%d"`, s) || string(r.Producer) != "old" || r.Timestamp != 1000+s):
			t.Fatalf("version-1 record %d: %+v", s, r)
		case s >= 15 && (!r.HasProducerSeq || r.ProducerSeq != s*100 || string(r.Data) != fmt.Sprintf(`"v2-%d"`, s)):
			t.Fatalf("version-2 record %d: %+v", s, r)
		}
	}
}
