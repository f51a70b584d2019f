package wasmhost

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ErrorPolicy says what happens to an event the module fails on.
type ErrorPolicy string

// Error policies.
const (
	PolicyDeadLetter ErrorPolicy = "dead-letter"
	PolicyDrop       ErrorPolicy = "drop"
	PolicyHalt       ErrorPolicy = "halt"
)

// Capabilities a module may declare (ABI §4).
const (
	CapLog     = "log"
	CapMetrics = "metrics"
	CapKV      = "kv"
	CapClock   = "clock"
)

// Duration is a time.Duration written as a string in TOML ("250ms").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"250ms\", \"2s\")", b)
	}
	*d = Duration(v)
	return nil
}

// Manifest is a module's NAME.toml (ABI §7).
type Manifest struct {
	Name               string         `toml:"name"`
	Version            string         `toml:"version"`
	Wasm               string         `toml:"wasm"`
	ABIVersion         int            `toml:"abi_version"`
	Routes             []string       `toml:"routes"`
	After              []string       `toml:"after"`
	Capabilities       []string       `toml:"capabilities"`
	Instances          int            `toml:"instances"`
	MaxBatchEvents     int            `toml:"max_batch_events"`
	MaxBatchBytes      int            `toml:"max_batch_bytes"`
	MaxOutputsPerEvent int            `toml:"max_outputs_per_event"`
	MemoryLimitPages   int            `toml:"memory_limit_pages"`
	Timeout            Duration       `toml:"timeout"`
	InitTimeout        Duration       `toml:"init_timeout"`
	TimerInterval      Duration       `toml:"timer_interval"`
	ErrorPolicy        ErrorPolicy    `toml:"error_policy"`
	QuarantineAfter    int            `toml:"quarantine_after"`
	Config             map[string]any `toml:"config"`

	// Dir is the directory of the manifest file ("" if parsed from bytes);
	// Wasm is resolved against it.
	Dir string `toml:"-"`
}

// DefaultManifest returns a manifest for name with every default of ABI §7.
func DefaultManifest(name string) *Manifest {
	return &Manifest{
		Name:               name,
		Version:            "0.0.0",
		ABIVersion:         1,
		Instances:          1,
		MaxBatchEvents:     256,
		MaxBatchBytes:      1 << 20,
		MaxOutputsPerEvent: 16,
		MemoryLimitPages:   512,
		Timeout:            Duration(time.Second),
		InitTimeout:        Duration(10 * time.Second),
		ErrorPolicy:        PolicyDeadLetter,
		QuarantineAfter:    5,
	}
}

// tomlLineRE matches BurntSushi/toml's decoding errors.
var tomlLineRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidName reports whether s is a valid module or route name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// WasmPath is the path of the module binary.
func (m *Manifest) WasmPath() string { return filepath.Join(m.Dir, m.Wasm) }

// LoadManifest reads and parses the manifest file at path. The module name
// must equal the file's base name.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := ParseManifest(data, path)
	if err != nil {
		return nil, err
	}
	m.Dir = filepath.Dir(path)
	if base := strings.TrimSuffix(filepath.Base(path), ".toml"); base != m.Name {
		return nil, fmt.Errorf("%s: name %q must equal the file name %q", path, m.Name, base)
	}
	return m, nil
}

// ParseManifest parses manifest TOML; file names the source in errors. Every
// problem is reported at once; unknown keys are errors with their line.
func ParseManifest(data []byte, file string) (*Manifest, error) {
	if file == "" {
		file = "manifest"
	}
	m := DefaultManifest("")
	m.Version = ""
	md, err := toml.Decode(string(data), m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", file, pe.Position.Line, pe.Message)
		}
		if sm := tomlLineRE.FindStringSubmatch(err.Error()); sm != nil {
			return nil, fmt.Errorf("%s:%s: %s: %s", file, sm[1], sm[2], sm[3])
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "config" {
			continue
		}
		errs = append(errs, fmt.Errorf("%s:%d: unknown key %q", file, keyLine(data, k), k.String()))
	}
	problem := func(key, format string, args ...any) {
		line := keyLine(data, toml.Key{key})
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s", file, line, key, fmt.Sprintf(format, args...)))
	}
	if m.Name == "" {
		errs = append(errs, fmt.Errorf("%s: name is required", file))
	} else if !ValidName(m.Name) {
		problem("name", "%q is not a valid module name ([a-z0-9][a-z0-9_-]{0,62})", m.Name)
	}
	if m.Version == "" {
		m.Version = "0.0.0"
	}
	if len(m.Version) > 64 {
		problem("version", "longer than 64 characters")
	}
	if m.Wasm == "" {
		m.Wasm = m.Name + ".wasm"
	} else if strings.ContainsAny(m.Wasm, `/\`) || m.Wasm == "." || m.Wasm == ".." || !strings.HasSuffix(m.Wasm, ".wasm") {
		problem("wasm", "%q must be a file name ending in .wasm in the manifest's directory", m.Wasm)
	}
	if m.ABIVersion != 1 {
		problem("abi_version", "%d is not supported (this host speaks ABI version 1)", m.ABIVersion)
	}
	checkNames := func(key string, names []string) {
		seen := map[string]bool{}
		for _, n := range names {
			if !ValidName(n) {
				problem(key, "%q is not a valid name", n)
			}
			if seen[n] {
				problem(key, "%q listed twice", n)
			}
			seen[n] = true
		}
	}
	checkNames("routes", m.Routes)
	if len(m.Routes) > 255 {
		problem("routes", "at most 255 routes")
	}
	checkNames("after", m.After)
	for _, a := range m.After {
		if a == m.Name {
			problem("after", "a module cannot run after itself")
		}
	}
	checkNames("capabilities", m.Capabilities)
	for _, c := range m.Capabilities {
		switch c {
		case CapLog, CapMetrics, CapKV, CapClock:
		default:
			problem("capabilities", "unknown capability %q (want log, metrics, kv, clock)", c)
		}
	}
	rng := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			problem(key, "%d is out of range %d..%d", v, lo, hi)
		}
	}
	rng("instances", m.Instances, 1, 64)
	rng("max_batch_events", m.MaxBatchEvents, 1, 65536)
	rng("max_batch_bytes", m.MaxBatchBytes, 1024, 1<<30)
	rng("max_outputs_per_event", m.MaxOutputsPerEvent, 1, 4096)
	rng("memory_limit_pages", m.MemoryLimitPages, 1, 65536)
	rng("quarantine_after", m.QuarantineAfter, 1, 1000)
	durRng := func(key string, d Duration, lo, hi time.Duration, zeroOK bool) {
		if zeroOK && d == 0 {
			return
		}
		if time.Duration(d) < lo || time.Duration(d) > hi {
			problem(key, "%v is out of range %v..%v", time.Duration(d), lo, hi)
		}
	}
	durRng("timeout", m.Timeout, time.Millisecond, time.Hour, false)
	durRng("init_timeout", m.InitTimeout, time.Millisecond, time.Hour, false)
	durRng("timer_interval", m.TimerInterval, 10*time.Millisecond, 24*time.Hour, true)
	switch m.ErrorPolicy {
	case PolicyDeadLetter, PolicyDrop, PolicyHalt:
	default:
		problem("error_policy", "%q (want dead-letter, drop or halt)", m.ErrorPolicy)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// keyLine finds the line defining key in a TOML document (best effort; 0 if
// not found): a "name =" line or a "[...name]" table header.
func keyLine(data []byte, k toml.Key) int {
	if len(k) == 0 {
		return 0
	}
	last := k[len(k)-1]
	for i, line := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimSpace(string(line))
		if strings.HasPrefix(t, "[") {
			h := strings.Trim(t, "[] \t")
			if h == k.String() || strings.HasSuffix(h, "."+last) || h == last {
				return i + 1
			}
			continue
		}
		for _, cand := range []string{last, `"` + last + `"`} {
			if rest, ok := strings.CutPrefix(t, cand); ok {
				rest = strings.TrimSpace(rest)
				if strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, ".") {
					return i + 1
				}
			}
		}
	}
	return 0
}
