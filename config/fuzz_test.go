package config

import (
	"os"
	"path/filepath"
	"reflect"
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
