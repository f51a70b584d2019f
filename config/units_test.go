package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"0", 0, ""},
		{"1024", 1024, ""},
		{"512B", 512, ""},
		{"64KiB", 64 * KiB, ""},
		{"64kib", 64 * KiB, ""},
		{" 16 MiB ", 16 * MiB, ""},
		{"1GiB", GiB, ""},
		{"2TiB", 2 * TiB, ""},
		{"16MB", 0, `invalid size unit "MB"`},
		{"1.5GiB", 0, "invalid size unit"},
		{"-1", 0, "invalid size"},
		{"", 0, "invalid size"},
		{"KiB", 0, "invalid size"},
		{"99999999999999999999", 0, "too large"},
		{"9000000TiB", 0, "too large"},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseByteSize(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for b, want := range map[ByteSize]string{0: "0", 1000: "1000", KiB: "1KiB", 16 * MiB: "16MiB", GiB: "1GiB", 1536: "1536", 3 * TiB: "3TiB", MiB + KiB: "1025KiB"} {
		if got := b.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(b), got, want)
		}
		if back, err := ParseByteSize(b.String()); err != nil || back != b {
			t.Errorf("round trip of %d: %v, %v", int64(b), back, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"250ms", 250 * time.Millisecond, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{"-1s", -time.Second, ""}, // parsed; validation rejects negatives per key
		{"250", 0, `has no unit: write e.g. "250ms"`},
		{"+5", 0, "has no unit"},
		{"", 0, "empty duration"},
		{"soon", 0, "invalid duration"},
		{"5 s", 0, "invalid duration"},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Duration != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 168 * time.Hour: "168h", 2 * time.Minute: "2m", 90 * time.Minute: "1h30m",
		time.Hour + 5*time.Second: "1h0m5s", 250 * time.Millisecond: "250ms", 1500 * time.Millisecond: "1.5s",
	} {
		if got := D(d).String(); got != want {
			t.Errorf("D(%v).String() = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(D(d).String()); err != nil || back.Duration != d {
			t.Errorf("round trip of %v: %v, %v", d, back, err)
		}
	}
}

// TestTextUnmarshalers covers decoding Duration and ByteSize directly with
// BurntSushi/toml (for packages that embed them in their own TOML, such as
// module manifests): a bare integer duration is still rejected.
func TestTextUnmarshalers(t *testing.T) {
	var v struct {
		D Duration `toml:"d"`
		B ByteSize `toml:"b"`
	}
	if err := decodeString("d = \"2s\"\nb = \"1KiB\"\n", &v); err != nil || v.D.Duration != 2*time.Second || v.B != KiB {
		t.Errorf("got %+v, %v", v, err)
	}
	if err := decodeString("b = 4096\n", &v); err != nil || v.B != 4096 {
		t.Errorf("integer size: %+v, %v", v, err)
	}
	if err := decodeString("d = 250\n", &v); err == nil || !strings.Contains(err.Error(), `"250ms"`) {
		t.Errorf("bare integer duration accepted or unclear: %v", err)
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "64KiB", "16 MiB", "1GiB", "16MB", "-1", "99999999999999999999TiB", "1.5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d < 0", s, b)
		}
		if back, err := ParseByteSize(b.String()); err != nil || back != b {
			t.Fatalf("round trip of %q (%d): %v, %v", s, b, back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"250ms", "0", "250", "1h30m", "-5s", "1.5s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Fatalf("round trip of %q (%v): %v, %v", s, d, back, err)
		}
	})
}
