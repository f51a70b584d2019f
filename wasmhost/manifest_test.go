package wasmhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseManifestDefaults(t *testing.T) {
	m, err := ParseManifest([]byte(`name = "x"`), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultManifest("x")
	if m.Version != "0.0.0" || m.Wasm != "x.wasm" || m.Instances != d.Instances || m.MaxBatchEvents != 256 ||
		m.Timeout != Duration(time.Second) || m.ErrorPolicy != PolicyDeadLetter || m.QuarantineAfter != 5 ||
		m.MemoryLimitPages != 512 || m.MaxOutputsPerEvent != 16 {
		t.Errorf("defaults: %+v", m)
	}
}

func TestParseManifestFull(t *testing.T) {
	src := `name = "router"
version = "1.2.3"
wasm = "router-v2.wasm"
routes = ["alerts", "archive"]
after = ["filter"]
capabilities = ["log", "kv"]
instances = 2
max_batch_events = 128
max_batch_bytes = 65536
max_outputs_per_event = 4
memory_limit_pages = 64
timeout = "250ms"
init_timeout = "5s"
timer_interval = "1s"
error_policy = "halt"
quarantine_after = 3

[config]
field = "level"
[config.routes]
error = "alerts"
`
	m, err := ParseManifest([]byte(src), "router.toml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Timeout != Duration(250*time.Millisecond) || m.TimerInterval != Duration(time.Second) ||
		len(m.Routes) != 2 || m.After[0] != "filter" || m.ErrorPolicy != PolicyHalt ||
		m.Config["field"] != "level" || m.Wasm != "router-v2.wasm" || m.Instances != 2 {
		t.Errorf("%+v", m)
	}
}

func TestParseManifestErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown key with line", "name = \"x\"\n\ntimout = \"1s\"\n", `x.toml:3: unknown key "timout"`},
		{"unknown table", "name = \"x\"\n[limits]\npages = 3\n", `x.toml:3: unknown key "limits.pages"`},
		{"missing name", `version = "1"`, "name is required"},
		{"bad name", `name = "../etc"`, "not a valid module name"},
		{"integer duration", "name = \"x\"\ntimeout = 5", "x.toml:2"},
		{"bad duration", "name = \"x\"\ntimeout = \"5 parsecs\"", "invalid duration"},
		{"policy", "name = \"x\"\nerror_policy = \"retry\"", "x.toml:2: error_policy"},
		{"capability", "name = \"x\"\ncapabilities = [\"net\"]", `unknown capability "net"`},
		{"wasm path", "name = \"x\"\nwasm = \"../y.wasm\"", "wasm"},
		{"abi", "name = \"x\"\nabi_version = 2", "abi_version"},
		{"dup route", "name = \"x\"\nroutes = [\"a\", \"a\"]", `"a" listed twice`},
		{"self after", "name = \"x\"\nafter = [\"x\"]", "after itself"},
		{"range", "name = \"x\"\ninstances = 0\nmemory_limit_pages = 70000", "instances: 0 is out of range"},
		{"syntax", "name = \"x\"\nroutes = [", "x.toml:2"},
		{"timer too fast", "name = \"x\"\ntimer_interval = \"1ms\"", "timer_interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.src), "x.toml")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// every problem at once
	_, err := ParseManifest([]byte("name = \"x\"\ninstances = 0\nerror_policy = \"no\"\nbogus = 1\n"), "x.toml")
	if err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Errorf("want three problems, got %v", err)
	}
}

func TestLoadManifestNameMustMatchFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(p, []byte(`name = "b"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadManifest(p); err == nil || !strings.Contains(err.Error(), "must equal the file name") {
		t.Errorf("err = %v", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		`name = "x"`,
		"name = \"router\"\nroutes = [\"a\"]\ntimeout = \"1s\"\n[config]\nk = 1\n",
		"name = \"x\"\n[config.a.b]\nc = [1, 2]\n",
		"name = 5", "[[x]]\n", "timeout = \"-1s\"\nname=\"y\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, "f.toml")
		if err != nil {
			if m != nil {
				t.Fatal("manifest returned with an error")
			}
			return
		}
		if !ValidName(m.Name) || m.Instances < 1 || m.Timeout <= 0 || m.MaxBatchEvents < 1 ||
			strings.ContainsAny(m.Wasm, `/\`) {
			t.Fatalf("invalid manifest accepted: %+v", m)
		}
	})
}
