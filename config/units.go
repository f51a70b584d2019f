package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that is written in TOML as a string with a
// unit ("250ms", "30s", "168h"). A bare integer is rejected: in TOML it would
// silently mean nanoseconds, which is never what an operator means.
type Duration struct{ time.Duration }

// D returns d as a Duration; a convenience for code and tests that build a
// Config directly.
func D(d time.Duration) Duration { return Duration{d} }

// ParseDuration parses a duration string with a unit ("250ms", "1m30s").
// "0" is accepted and means zero. Any other number without a unit is an
// error whose message tells the operator what to write instead.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Duration{}, fmt.Errorf("empty duration: write e.g. \"250ms\"")
	}
	if isInteger(t) && strings.Trim(t, "+-0") != "" {
		return Duration{}, fmt.Errorf("duration %q has no unit: write e.g. \"%sms\" or \"%ss\"", s, t, t)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return Duration{}, fmt.Errorf("invalid duration %q: write e.g. \"250ms\", \"30s\" or \"1h30m\"", s)
	}
	return Duration{d}, nil
}

// String formats d compactly ("168h" rather than "168h0m0s"); the result
// parses back to the same value with ParseDuration.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler (TOML output as a string).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. BurntSushi/toml hands a
// bare TOML integer to this method as its decimal text, which is rejected.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ByteSize is a size in bytes. In TOML it is either a plain integer (bytes)
// or a string with a binary unit: "512B", "64KiB", "16MiB", "1GiB", "1TiB".
type ByteSize int64

// Binary size units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

var byteUnits = []struct {
	name string
	mult ByteSize
}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}}

// ParseByteSize parses "64KiB", "16MiB", "1GiB", "512B" or a plain number of
// bytes. Units are 1024-based and matched case-insensitively; decimal units
// such as "MB" are rejected as ambiguous rather than guessed.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: write a number of bytes or e.g. \"64KiB\", \"16MiB\", \"1GiB\"", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	unit := strings.TrimSpace(t[i:])
	mult := ByteSize(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if mult == 0 {
		return 0, fmt.Errorf("invalid size unit %q in %q: use B, KiB, MiB, GiB or TiB (1024-based), e.g. \"64KiB\"", unit, s)
	}
	if ByteSize(n) > ByteSize(math.MaxInt64)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n) * mult, nil
}

// String formats b with the largest unit that divides it exactly ("16MiB");
// sizes that are not a whole number of KiB are plain byte counts.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range byteUnits[:len(byteUnits)-1] {
		if b%u.mult == 0 {
			return strconv.FormatInt(int64(b/u.mult), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText implements encoding.TextMarshaler (TOML output as a string).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func isInteger(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
