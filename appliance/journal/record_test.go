package journal

import (
	"bytes"
	"errors"
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
