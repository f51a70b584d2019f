package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func decodeString(s string, v any) error {
	_, err := toml.Decode(s, v)
	return err
}

// FuzzLoad feeds arbitrary bytes as the TOML file. Load must never panic;
// every error must name the file; a file that loads must produce a valid
// configuration whose TOML() output loads back to the same configuration.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("badbatch.example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		"[server]\nport = 9000\n",
		"[ring]\nbuffer_size = 1000\n",
		"[modules]\ndebounce = 250\n",
		"[sever]\nport = 1\n",
		"server = 5\n",
		"[[ring]]\n",
		"[server.port]\nx=1\n",
		"ring.buffer_size = {a = 1}\n",
		"[cluster]\nseeds = [\"a:1\", 2]\nkeyring = [\"x\"]\n",
		"[api]\npublish_tokens = [\"a\"]\nmax_batch = -1\n",
		"[journal]\nenabled = false\ndefault_ack = \"memory\"\nsegment_size = \"1KiB\"\n",
		"a = \"\"\"\nmulti\nline\"\"\"\n[log]\nlevel=1979-05-27T07:32:00Z\n",
		"\"quoted.key\" = 1\n[\"server\"]\n\"port\" = 80\n",
		"[server]\nport = 0x1F90\nbody_limit = 9223372036854775807\n",
		"[ring]\nmax_event_size = \"8TiB\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := load([]string{"--config", path}, nil, testHost)
		if err != nil {
			es := Errors(err)
			if len(es) == 0 {
				t.Fatalf("error is not a *config.Error: %v", err)
			}
			for _, e := range es {
				if e.File != path || e.Flag != "" || e.Env != "" || e.Msg == "" {
					t.Fatalf("error without the file or message: %#v", e)
				}
			}
			return
		}
		if err := l.Config.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		out, err := l.Config.TOML()
		if err != nil {
			t.Fatalf("TOML: %v", err)
		}
		back := filepath.Join(t.TempDir(), "back.toml")
		if err := os.WriteFile(back, out, 0o600); err != nil {
			t.Fatal(err)
		}
		l2, err := load([]string{"--config", back}, nil, testHost)
		if err != nil {
			t.Fatalf("TOML() output does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(l.Config, l2.Config) {
			t.Fatalf("round trip changed: %v", Diff(l.Config, l2.Config))
		}
	})
}

// FuzzCommandLine feeds arbitrary flags (split on NUL) and one environment
// variable's value. Load must never panic, and every error must say which
// flag or variable (or, for a stray argument, that it is a usage error).
func FuzzCommandLine(f *testing.F) {
	for _, s := range []struct{ args, env string }{
		{"-p\x009000", "9000"},
		{"-b\x001000", "1000"},
		{"--buffer-size=64\x00-c\x00-s\x00a:1,b:2", "a,b"},
		{"-w\x00fast\x00-n\x00x y", ""},
		{"--bogus\x00-x\x00--", "250"},
		{"-cV\x00--check-config=false", "16MiB"},
		{"--config\x00\x00-h", "true"},
		{"--log-level\x00loud\x00stray", "-1s"},
	} {
		f.Add(s.args, s.env)
	}
	f.Fuzz(func(t *testing.T, argStr, envVal string) {
		var args []string
		if argStr != "" {
			args = strings.Split(argStr, "\x00")
		}
		for i, a := range args { // keep --config away from real files
			if a == "--config" || strings.HasPrefix(a, "--config=") {
				args[i] = "--check-config"
			}
		}
		env := []string{
			"BADBATCH_SERVER_PORT=" + envVal, "BADBATCH_CLUSTER_SEEDS=" + envVal,
			"BADBATCH_SERVER_BODY_LIMIT=" + envVal, "BADBATCH_MODULES_DEBOUNCE=" + envVal,
			"BADBATCH_RING_PIN_CPUS=" + envVal, "BADBATCH_LOG_LEVEL=" + envVal,
		}
		l, err := load(args, env, testHost)
		if l == nil || l.Usage == "" {
			t.Fatal("no Loaded or Usage")
		}
		if err == nil {
			if !l.ShowHelp && !l.ShowVersion {
				if verr := l.Config.Validate(); verr != nil {
					t.Fatalf("loaded config does not validate: %v", verr)
				}
			}
			return
		}
		es := Errors(err)
		if len(es) == 0 {
			t.Fatalf("error is not a *config.Error: %v", err)
		}
		for _, e := range es {
			if e.Msg == "" || (e.Flag == "" && e.Env == "" && !errors.Is(e, ErrUsage)) {
				t.Fatalf("error without a flag or variable: %#v (%v)", e, e)
			}
			if e.Flag != "" && !errors.Is(e, ErrUsage) {
				t.Fatalf("flag error is not a usage error: %v", e)
			}
		}
	})
}
