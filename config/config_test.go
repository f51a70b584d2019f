package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testHost() (string, error) { return "testhost", nil }

// writeTOML writes content to a file in a fresh temp dir and returns its path.
func writeTOML(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "badbatch.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, args, env []string) *Loaded {
	t.Helper()
	l, err := load(args, env, testHost)
	if err != nil {
		t.Fatalf("load(%q, %q): %v", args, env, err)
	}
	return l
}

func TestDefaultIsValid(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default() is invalid: %v", err)
	}
	if !strings.HasSuffix(d.Node.ID, "-8080") {
		t.Errorf("default node id %q does not end in -8080", d.Node.ID)
	}
	l := mustLoad(t, nil, nil)
	want := defaults("testhost")
	if !reflect.DeepEqual(l.Config, want) {
		t.Errorf("Load with nothing = %+v, want defaults %+v", l.Config, want)
	}
	if l.File != "" || l.CheckOnly || l.ShowHelp || l.ShowVersion {
		t.Errorf("unexpected Loaded flags: %+v", l)
	}
}

func TestExampleFileLoadsAsDefaults(t *testing.T) {
	l := mustLoad(t, []string{"--config", "badbatch.example.toml"}, nil)
	if want := defaults("testhost"); !reflect.DeepEqual(l.Config, want) {
		for _, c := range Diff(want, l.Config) {
			t.Errorf("example file sets %s = %s, but the default is %s", c.Key, c.New, c.Old)
		}
	}
	if l.File != "badbatch.example.toml" {
		t.Errorf("File = %q", l.File)
	}
}

// TestExampleFileMentionsEveryKey walks the schema's struct tags so the
// example cannot go stale: every key must appear in its section, either set
// or commented out ("# key = ...").
func TestExampleFileMentionsEveryKey(t *testing.T) {
	data, err := os.ReadFile("badbatch.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	cur := ""
	for line := range strings.SplitSeq(string(data), "\n") {
		if m := regexp.MustCompile(`^\[([a-z_]+)\]\s*$`).FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		sections[cur] += line + "\n"
	}
	for _, key := range Keys() {
		sec, name, _ := strings.Cut(key, ".")
		re := regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(name) + `\s*=`)
		if !re.MatchString(sections[sec]) {
			t.Errorf("badbatch.example.toml does not mention %s in [%s]", name, sec)
		}
	}
	if len(Keys()) != 50 {
		t.Errorf("schema walk found only %d keys", len(Keys()))
	}
}

func TestPrecedence(t *testing.T) {
	file := writeTOML(t, `
[server]
port = 9001
[ring]
wait_strategy = "yielding"
buffer_size = 2048
[api]
publish_tokens = ["file-token"]
[cluster]
seeds = ["10.0.0.1:7946"]
[log]
level = "warn"
`)
	tests := []struct {
		name      string
		args, env []string
		port      int
		strategy  string
		size      int
		tokens    []string
		seeds     []string
		level     string
	}{
		{"defaults", nil, nil, 8080, "blocking", 1024, []string{}, []string{}, "info"},
		{"file", []string{"--config", file}, nil, 9001, "yielding", 2048, []string{"file-token"}, []string{"10.0.0.1:7946"}, "warn"},
		{"file via BADBATCH_CONFIG", nil, []string{"BADBATCH_CONFIG=" + file}, 9001, "yielding", 2048, []string{"file-token"}, []string{"10.0.0.1:7946"}, "warn"},
		{"env over file", []string{"--config", file},
			[]string{"BADBATCH_SERVER_PORT=9002", "BADBATCH_RING_WAIT_STRATEGY=busy-spin", "BADBATCH_API_PUBLISH_TOKENS=a, b,", "BADBATCH_CLUSTER_SEEDS=h1:1,h2:2", "HOME=/x"},
			9002, "busy-spin", 2048, []string{"a", "b"}, []string{"h1:1", "h2:2"}, "warn"},
		{"env over defaults", nil, []string{"BADBATCH_RING_BUFFER_SIZE=4096", "BADBATCH_LOG_LEVEL=debug"}, 8080, "blocking", 4096, []string{}, []string{}, "debug"},
		{"flags over env over file", []string{"--config", file, "-p", "9003", "--wait-strategy=sleeping", "-s", "f1:1,f2:2", "--log-level", "error"},
			[]string{"BADBATCH_SERVER_PORT=9002", "BADBATCH_RING_WAIT_STRATEGY=busy-spin", "BADBATCH_RING_BUFFER_SIZE=512"},
			9003, "sleeping", 512, []string{"file-token"}, []string{"f1:1", "f2:2"}, "error"},
		{"long flags", []string{"--port=9004", "--buffer-size", "64", "--seed-nodes", "a:1", "--seed-nodes", "b:2"}, nil, 9004, "blocking", 64, []string{}, []string{"a:1", "b:2"}, "info"},
		{"unchanged flags do not override", []string{"--config", file, "-c"}, nil, 9001, "yielding", 2048, []string{"file-token"}, []string{"10.0.0.1:7946"}, "warn"},
		{"--config beats BADBATCH_CONFIG", []string{"--config", file}, []string{"BADBATCH_CONFIG=/nonexistent.toml"}, 9001, "yielding", 2048, []string{"file-token"}, []string{"10.0.0.1:7946"}, "warn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.args, tc.env).Config
			if c.Server.Port != tc.port || c.Ring.WaitStrategy != tc.strategy || c.Ring.BufferSize != tc.size || c.Log.Level != tc.level {
				t.Errorf("got port %d strategy %q size %d level %q; want %d %q %d %q",
					c.Server.Port, c.Ring.WaitStrategy, c.Ring.BufferSize, c.Log.Level, tc.port, tc.strategy, tc.size, tc.level)
			}
			if !reflect.DeepEqual(c.API.PublishTokens, tc.tokens) {
				t.Errorf("tokens = %q, want %q", c.API.PublishTokens, tc.tokens)
			}
			if !reflect.DeepEqual(c.Cluster.Seeds, tc.seeds) {
				t.Errorf("seeds = %q, want %q", c.Cluster.Seeds, tc.seeds)
			}
		})
	}
}

func TestClusterFlag(t *testing.T) {
	if c := mustLoad(t, []string{"-c"}, nil).Config; !c.Cluster.Enabled {
		t.Error("-c did not enable the cluster")
	}
	if c := mustLoad(t, []string{"--cluster"}, nil).Config; !c.Cluster.Enabled {
		t.Error("--cluster did not enable the cluster")
	}
	file := writeTOML(t, "[cluster]\nenabled = true\n")
	if c := mustLoad(t, []string{"--config", file, "--cluster=false"}, nil).Config; c.Cluster.Enabled {
		t.Error("--cluster=false did not override the file")
	}
	if c := mustLoad(t, []string{"--config", file}, []string{"BADBATCH_CLUSTER_ENABLED=false"}).Config; c.Cluster.Enabled {
		t.Error("BADBATCH_CLUSTER_ENABLED=false did not override the file")
	}
	if c := mustLoad(t, []string{"-n", "edge-7", "--data-dir", "/var/lib/bb", "--modules-dir", "/opt/mods"}, nil).Config; c.Node.ID != "edge-7" || c.Node.DataDir != "/var/lib/bb" || c.Modules.Dir != "/opt/mods" {
		t.Errorf("-n/--data-dir/--modules-dir: %+v %+v", c.Node, c.Modules)
	}
}

func TestPortDerivedDefaults(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string
		file      string
		id, dir   string
		bindPort  int
	}{
		{"default port", nil, nil, "", "testhost-8080", "./data", 7946},
		{"flag port", []string{"-p", "8081"}, nil, "", "testhost-8081", "./data-8081", 7947},
		{"env port", nil, []string{"BADBATCH_SERVER_PORT=8082"}, "", "testhost-8082", "./data-8082", 7948},
		{"file port", nil, nil, "[server]\nport = 9000\n", "testhost-9000", "./data-9000", 8866},
		{"explicit values kept", []string{"-p", "8081"}, nil, "[node]\nid = \"n1\"\ndata_dir = \"/srv/bb\"\n[cluster]\nbind_port = 7000\n", "n1", "/srv/bb", 7000},
		{"explicit ./data kept on another port", []string{"-p", "8081", "--data-dir", "./data"}, nil, "", "testhost-8081", "./data", 7947},
		{"low port keeps 7946", []string{"-p", "80"}, nil, "", "testhost-80", "./data-80", 7946},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeTOML(t, tc.file)}, args...)
			}
			c := mustLoad(t, args, tc.env).Config
			if c.Node.ID != tc.id || c.Node.DataDir != tc.dir || c.Cluster.BindPort != tc.bindPort {
				t.Errorf("got id %q dir %q bind_port %d; want %q %q %d", c.Node.ID, c.Node.DataDir, c.Cluster.BindPort, tc.id, tc.dir, tc.bindPort)
			}
		})
	}
}

// wantErr is one expected problem: where it is and a fragment of its text.
type wantErr struct {
	line int
	key  string
	frag string
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []wantErr
	}{
		{"unknown key with its line", "[server]\nhost = \"127.0.0.1\"\nprot = 9000\n",
			[]wantErr{{3, "server.prot", `unknown key "prot" in [server] (did you mean "port"?)`}}},
		{"unknown section", "\n\n[sever]\nport = 1\n", []wantErr{{3, "sever", "unknown section [sever] (did you mean [server]?)"}}},
		{"unknown dotted key at top level", "ring.bufer_size = 8\n", []wantErr{{1, "ring.bufer_size", `did you mean "buffer_size"`}}},
		{"bare integer duration", "[modules]\ndebounce = 250\n", []wantErr{{2, "modules.debounce", `write e.g. "250ms"`}}},
		{"duration without unit in a string", "[server]\nread_timeout = \"30\"\n", []wantErr{{2, "server.read_timeout", `has no unit: write e.g. "30ms"`}}},
		{"bad duration", "[server]\nidle_timeout = \"soon\"\n", []wantErr{{2, "server.idle_timeout", "invalid duration"}}},
		{"negative duration", "[server]\nidle_timeout = \"-1s\"\n", []wantErr{{2, "server.idle_timeout", "must not be negative"}}},
		{"zero shutdown timeout", "[server]\nshutdown_timeout = \"0s\"\n", []wantErr{{2, "server.shutdown_timeout", "greater than zero"}}},
		{"non power of two", "[ring]\nbuffer_size = 1000\n", []wantErr{{2, "ring.buffer_size", "1000 is not a power of two between 2 and 1073741824 (try 512 or 1024)"}}},
		{"buffer too big", "[ring]\nbuffer_size = 2147483648\n", []wantErr{{2, "ring.buffer_size", "out of range"}}},
		{"buffer of one", "[ring]\nbuffer_size = 1\n", []wantErr{{2, "ring.buffer_size", "not a power of two between 2"}}},
		{"bad wait strategy", "[ring]\nwait_strategy = \"fast\"\n", []wantErr{{2, "ring.wait_strategy", `"fast" is not one of blocking, yielding, busy-spin, sleeping`}}},
		{"port out of range", "[server]\nport = 70000\n", []wantErr{{2, "server.port", "port 70000 is out of range 1..65535"}}},
		{"port zero", "[server]\nport = 0\n", []wantErr{{2, "server.port", "out of range"}}},
		{"port as string", "[server]\nport = \"8080\"\n", []wantErr{{2, "server.port", `must be an integer, not the string "8080"`}}},
		{"float for int", "[api]\nmax_batch = 1.5\n", []wantErr{{2, "api.max_batch", "must be an integer, not the float 1.5"}}},
		{"bool as string", "[journal]\nenabled = \"yes\"\n", []wantErr{{2, "journal.enabled", "must be true or false"}}},
		{"size with decimal unit", "[server]\nbody_limit = \"16MB\"\n", []wantErr{{2, "server.body_limit", `invalid size unit "MB"`}}},
		{"negative size", "[journal]\nretention_bytes = -1\n", []wantErr{{2, "journal.retention_bytes", "must not be negative"}}},
		{"size as bool", "[ring]\nmax_event_size = true\n", []wantErr{{2, "ring.max_event_size", "must be a size"}}},
		{"size too big", "[server]\nbody_limit = \"5GiB\"\n", []wantErr{{2, "server.body_limit", "body limit 5GiB must be between 1 byte and 4GiB"}}},
		{"event size zero", "[ring]\nmax_event_size = 0\n", []wantErr{{2, "ring.max_event_size", "must be between 1 byte and 1GiB"}}},
		{"string list as string", "[api]\nadmin_tokens = \"x\"\n", []wantErr{{2, "api.admin_tokens", "must be an array of strings"}}},
		{"list with a number", "[cluster]\nseeds = [\"a:1\", 2]\n", []wantErr{{2, "cluster.seeds", "element 1 must be a string"}}},
		{"bad fsync", "[journal]\nfsync = \"always\"\n", []wantErr{{2, "journal.fsync", `"always" is not one of batch, interval, never`}}},
		{"bad ack", "[journal]\ndefault_ack = \"maybe\"\n", []wantErr{{2, "journal.default_ack", "not one of memory, durable, processed"}}},
		{"durable without journal", "[journal]\nenabled = false\n", []wantErr{{2, "journal.enabled", `default ack "durable" needs journal.enabled = true`}}},
		{"segment smaller than event", "[ring]\nmax_event_size = \"1MiB\"\n[journal]\nsegment_size = \"512KiB\"\n", []wantErr{{4, "journal.segment_size", "segment size 512KiB is smaller than ring.max_event_size 1MiB"}}},
		{"bad log level and format", "[log]\nlevel = \"verbose\"\nformat = \"xml\"\n", []wantErr{{2, "log.level", "not one of debug, info, warn, error"}, {3, "log.format", "not one of text, json"}}},
		{"bad preset", "[cluster]\npreset = \"moon\"\n", []wantErr{{2, "cluster.preset", "not one of lan, wan, local"}}},
		{"bad seeds", "[cluster]\nseeds = [\"10.0.0.1\", \"h:0\", \"[::1]:7946\", \"bad host:1\", \"http://a:1/\", \"ftp://x:1\", \"a:b:c\", \"node-2\", \"[::1]\", \"http://h\", \":7946\"]\n", []wantErr{
			{2, "cluster.seeds", `port "0" is not in 1..65535`},
			{2, "cluster.seeds", `seed "bad host:1"`},
			{2, "cluster.seeds", `seed "ftp://x:1"`},
			{2, "cluster.seeds", `seed "a:b:c" must be host:port, host, or http://host:port`},
			{2, "cluster.seeds", `seed ":7946" has no host`}}},
		{"probe timeout not below interval", "[cluster]\nprobe_interval = \"1s\"\nprobe_timeout = \"2s\"\n", []wantErr{{3, "cluster.probe_timeout", "must be shorter than probe_interval 1s"}}},
		{"bad keyring", "[cluster]\nkeyring = [\"not base64!\", \"c2hvcnQ=\", \"MDEyMzQ1Njc4OWFiY2RlZg==\", \"MDEyMzQ1Njc4OWFiY2RlZg==\"]\n", []wantErr{
			{2, "cluster.keyring", "key 1 is not valid base64"},
			{2, "cluster.keyring", "key 2 decodes to 5 bytes; AES keys are 16, 24 or 32 bytes"},
			{2, "cluster.keyring", "key 4 repeats key 3"}}},
		{"bind addr not an IP", "[cluster]\nbind_addr = \"localhost\"\n", []wantErr{{2, "cluster.bind_addr", "must be an IP address"}}},
		{"cluster port clash", "[cluster]\nenabled = true\nbind_port = 8080\n", []wantErr{{3, "cluster.bind_port", "same as the HTTP server port"}}},
		{"host with port", "[server]\nhost = \"0.0.0.0:80\"\n", []wantErr{{2, "server.host", "must not include a port"}}},
		{"bad host name", "[server]\nhost = \"-bad-\"\n", []wantErr{{2, "server.host", "not a valid IP address or host name"}}},
		{"empty token", "[api]\npublish_tokens = [\"\"]\n", []wantErr{{2, "api.publish_tokens", "token 1 is empty"}}},
		{"node id with spaces", "[node]\nid = \"my node\"\n", []wantErr{{2, "node.id", "must not contain spaces"}}},
		{"section not a table", "server = 5\n", []wantErr{{1, "server", "[server] must be a table, not the integer 5"}}},
		{"array of tables", "[[ring]]\nbuffer_size = 8\n", []wantErr{{1, "ring", "must be a table, not an array of tables"}}},
		{"key used as table", "[server.port]\nx = 1\n", []wantErr{{1, "server.port", "must be an integer, not a table"}}},
		{"inline table for a value", "[ring]\nbuffer_size = {n = 8}\n", []wantErr{{2, "ring.buffer_size", "must be an integer, not a table"}}},
		{"syntax error with line", "[server]\nport = 8080\nhost = \n", []wantErr{{3, "server.host", "expected value"}}},
		{"duplicate key", "[server]\nport = 1\nport = 2\n", []wantErr{{3, "server.port", "already been defined"}}},
		{"several errors at once", `# comment
[server]
port = 0
read_timeout = 30

[ring]
buffer_size = 1000
colour = "blue"

[nope]
x = 1

[log]
level = "loud"
`, []wantErr{
			{3, "server.port", "out of range"},
			{4, "server.read_timeout", `"250ms"`},
			{7, "ring.buffer_size", "not a power of two"},
			{8, "ring.colour", "unknown key"},
			{10, "nope", "unknown section"},
			{14, "log.level", "not one of"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTOML(t, tc.toml)
			_, err := load([]string{"--config", path}, nil, testHost)
			checkErrs(t, err, path, tc.want)
			if errors.Is(err, ErrUsage) {
				t.Errorf("a file error must not be a usage error: %v", err)
			}
		})
	}
}

// checkErrs asserts err is exactly the expected problems, in any order,
// each located in file (when file != "").
func checkErrs(t *testing.T, err error, file string, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %d", len(want))
	}
	got := Errors(err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if used[i] || g.Key != w.key || g.Line != w.line || !strings.Contains(g.Error(), w.frag) {
				continue
			}
			if file != "" && g.File != file {
				t.Errorf("error %q: File = %q, want %q", g, g.File, file)
			}
			used[i], found = true, true
			break
		}
		if !found {
			t.Errorf("missing error at line %d key %q containing %q; got:\n%v", w.line, w.key, w.frag, err)
		}
	}
	if file != "" && !strings.Contains(err.Error(), file) {
		t.Errorf("message does not name the file: %v", err)
	}
}

func TestErrorsInReadingOrder(t *testing.T) {
	path := writeTOML(t, "[server]\nport = 0\nread_timeout = 30\n[ring]\nbuffer_size = 1000\ncolour = \"x\"\n[nope]\n")
	_, err := load([]string{"--config", path, "-w", "x"}, []string{"BADBATCH_LOG_LEVEL=loud"}, testHost)
	es := Errors(err)
	var got []string
	for _, e := range es {
		got = append(got, e.Flag+e.Env+strconv.Itoa(e.Line))
	}
	want := []string{"-w/--wait-strategy0", "BADBATCH_LOG_LEVEL0", "2", "3", "5", "6", "7"}
	if !slices.Equal(got, want) {
		t.Errorf("order %v, want %v:\n%v", got, want, err)
	}
}

func TestErrorMessageFormat(t *testing.T) {
	path := writeTOML(t, "[ring]\nbuffer_size = 1000\n")
	_, err := load([]string{"--config", path}, nil, testHost)
	want := path + ":2: ring.buffer_size: 1000 is not a power of two"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want prefix %q", err, want)
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := load([]string{"--config", path}, nil, testHost)
	if !errors.Is(err, os.ErrNotExist) || err.Error() != path+": cannot read config file: no such file or directory" {
		t.Errorf("got %v; want a not-exist error naming %s", err, path)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		flag string
		frag string
	}{
		{[]string{"-b", "1000"}, "-b/--buffer-size", "1000 is not a power of two between 2 and 1073741824 (try 512 or 1024)"},
		{[]string{"--buffer-size=3"}, "-b/--buffer-size", "try 2 or 4"},
		{[]string{"-b", "many"}, "-b/--buffer-size", `must be an integer, got "many"`},
		{[]string{"-p", "abc"}, "-p/--port", `must be an integer, got "abc"`},
		{[]string{"-p", "0"}, "-p/--port", "out of range 1..65535"},
		{[]string{"--port", "65536"}, "-p/--port", "out of range"},
		{[]string{"-w", "fast"}, "-w/--wait-strategy", `"fast" is not one of`},
		{[]string{"-s", "no host:port"}, "-s/--seed-nodes", "not a valid IP address or host name"},
		{[]string{"-n", "a b"}, "-n/--node-id", "must not contain spaces"},
		{[]string{"--log-level", "loud"}, "--log-level", "not one of debug"},
		{[]string{"--cluster=maybe"}, "-c/--cluster", "must be true or false"},
		{[]string{"--data-dir", ""}, "--data-dir", "must not be empty"},
		{[]string{"--frobnicate"}, "--frobnicate", "unknown flag"},
		{[]string{"-x"}, "-x", "unknown flag"},
		{[]string{"-cx"}, "-x", "unknown flag"},
		{[]string{"-b"}, "-b/--buffer-size", "needs a value"},
		{[]string{"--port"}, "-p/--port", "needs a value"},
		{[]string{"--check-config=perhaps"}, "--check-config", "invalid value"},
		{[]string{"--config", ""}, "--config", "needs a file name"},
		{[]string{"serve"}, "", `unexpected argument "serve"`},
		{[]string{"-c", "false"}, "", `unexpected argument "false"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			l, err := load(tc.args, nil, testHost)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrUsage) {
				t.Errorf("not a usage error: %v", err)
			}
			es := Errors(err)
			if len(es) != 1 || es[0].Flag != tc.flag || !strings.Contains(es[0].Msg, tc.frag) {
				t.Errorf("got %#v (%v); want flag %q with %q", es, err, tc.flag, tc.frag)
			}
			if tc.flag != "" && !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("message %q does not name the flag", err)
			}
			if l == nil || !strings.Contains(l.Usage, "--buffer-size") {
				t.Error("Usage not available on error")
			}
		})
	}
}

func TestSeveralFlagErrorsAtOnce(t *testing.T) {
	_, err := load([]string{"-p", "abc", "-b", "3", "-w", "fast"}, nil, testHost)
	es := Errors(err)
	if len(es) != 3 || !errors.Is(err, ErrUsage) {
		t.Fatalf("want 3 usage errors, got %v", err)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		env  string
		name string
		frag string
	}{
		{"BADBATCH_SERVER_PORT=nine", "BADBATCH_SERVER_PORT", `must be an integer, got "nine"`},
		{"BADBATCH_SERVER_PORT=", "BADBATCH_SERVER_PORT", "must be an integer"},
		{"BADBATCH_RING_BUFFER_SIZE=1000", "BADBATCH_RING_BUFFER_SIZE", "not a power of two"},
		{"BADBATCH_RING_WAIT_STRATEGY=lazy", "BADBATCH_RING_WAIT_STRATEGY", `"lazy" is not one of`},
		{"BADBATCH_MODULES_DEBOUNCE=250", "BADBATCH_MODULES_DEBOUNCE", `write e.g. "250ms"`},
		{"BADBATCH_SERVER_BODY_LIMIT=lots", "BADBATCH_SERVER_BODY_LIMIT", "invalid size"},
		{"BADBATCH_JOURNAL_ENABLED=nah", "BADBATCH_JOURNAL_ENABLED", "must be true or false"},
		{"BADBATCH_CLUSTER_SEEDS=a:1,b:x", "BADBATCH_CLUSTER_SEEDS", `seed "b:x": port "x" is not in 1..65535`},
		{"BADBATCH_SERVER_PROT=9000", "BADBATCH_SERVER_PROT", "unknown configuration variable (did you mean BADBATCH_SERVER_PORT?)"},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			_, err := load(nil, []string{"PATH=/bin", tc.env}, testHost)
			es := Errors(err)
			if len(es) != 1 || es[0].Env != tc.name || !strings.Contains(es[0].Msg, tc.frag) {
				t.Fatalf("got %v; want %s with %q", err, tc.name, tc.frag)
			}
			if !strings.HasPrefix(err.Error(), "environment "+tc.name) {
				t.Errorf("message %q does not start with the variable", err)
			}
			if errors.Is(err, ErrUsage) {
				t.Error("an environment error must not be a usage error")
			}
		})
	}
	// BADBATCH_* names outside the configuration's sections belong to others.
	mustLoad(t, nil, []string{"BADBATCH_SOAK=1", "BADBATCH_CONFIG="})
}

func TestFlagOverridesBadEnv(t *testing.T) {
	// A bad value that is overridden is still reported: the environment is broken.
	_, err := load([]string{"-p", "9000"}, []string{"BADBATCH_SERVER_PORT=x"}, testHost)
	if es := Errors(err); len(es) != 1 || es[0].Env != "BADBATCH_SERVER_PORT" {
		t.Errorf("got %v", err)
	}
}

func TestMixedSourcesAllReported(t *testing.T) {
	path := writeTOML(t, "[ring]\nbuffer_size = 1000\n[log]\nformat = \"xml\"\n")
	_, err := load([]string{"--config", path, "-w", "fast"}, []string{"BADBATCH_SERVER_PORT=x"}, testHost)
	es := Errors(err)
	if len(es) != 4 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	var file, env, flag int
	for _, e := range es {
		switch {
		case e.Flag != "":
			flag++
		case e.Env != "":
			env++
		case e.File == path && e.Line > 0:
			file++
		}
	}
	if file != 2 || env != 1 || flag != 1 || !errors.Is(err, ErrUsage) {
		t.Errorf("file %d env %d flag %d usage %v: %v", file, env, flag, errors.Is(err, ErrUsage), err)
	}
}

func TestHelpVersionCheck(t *testing.T) {
	broken := writeTOML(t, "this is not toml")
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--config", broken, "-h"}} {
		l, err := load(args, []string{"BADBATCH_SERVER_PORT=x"}, testHost)
		if err != nil || !l.ShowHelp {
			t.Errorf("%q: ShowHelp %v err %v", args, l.ShowHelp, err)
		}
	}
	for _, args := range [][]string{{"-V"}, {"--version"}} {
		if l, err := load(args, nil, testHost); err != nil || !l.ShowVersion {
			t.Errorf("%q: ShowVersion %v err %v", args, l.ShowVersion, err)
		}
	}
	if l := mustLoad(t, []string{"--check-config"}, nil); !l.CheckOnly {
		t.Error("--check-config did not set CheckOnly")
	}
	u := Usage()
	for _, s := range []string{"-p, --port", "-b, --buffer-size", "-w, --wait-strategy", "-c, --cluster", "-s, --seed-nodes",
		"-n, --node-id", "-h, --help", "-V, --version", "--config", "--data-dir", "--modules-dir", "--check-config", "--log-level",
		"BADBATCH_SERVER_PORT", "(default 8080)", "(default 1024)"} {
		if !strings.Contains(u, s) {
			t.Errorf("usage lacks %q:\n%s", s, u)
		}
	}
	if strings.Contains(u, "true|false") {
		t.Errorf("usage shows pflag's [=true|false] noise:\n%s", u)
	}
}

func TestRedactedAndTOMLRoundTrip(t *testing.T) {
	path := writeTOML(t, `
[api]
publish_tokens = ["pub-secret-1", "pub-secret-2"]
admin_tokens = ["admin-secret"]
[cluster]
keyring = ["MDEyMzQ1Njc4OWFiY2RlZg=="]
seeds = ["10.1.1.1:7946"]
[server]
port = 8081
body_limit = 1000
[journal]
retention_age = "90m"
`)
	l := mustLoad(t, []string{"--config", path}, nil)
	r := l.Config.Redacted()
	if l.Config.API.PublishTokens[0] != "pub-secret-1" {
		t.Fatal("Redacted modified the original")
	}
	out, err := r.TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"pub-secret", "admin-secret", "MDEyMzQ1"} {
		if strings.Contains(string(out), s) {
			t.Errorf("secret %q leaked into:\n%s", s, out)
		}
	}
	if !reflect.DeepEqual(r.API.PublishTokens, []string{Redacted, Redacted}) || r.Cluster.Keyring[0] != Redacted {
		t.Errorf("redaction lost the count: %+v %+v", r.API, r.Cluster.Keyring)
	}
	if !strings.Contains(string(out), `retention_age = "1h30m"`) || !strings.Contains(string(out), `body_limit = "1000"`) {
		t.Errorf("durations/sizes not written as strings:\n%s", out)
	}
	// The unredacted output loads back to the same configuration.
	full, err := l.Config.TOML()
	if err != nil {
		t.Fatal(err)
	}
	back := mustLoad(t, []string{"--config", writeTOML(t, string(full))}, nil)
	if !reflect.DeepEqual(back.Config, l.Config) {
		t.Errorf("TOML round trip changed the config: %v", Diff(l.Config, back.Config))
	}
	// The redacted one loads too (it is the --check-config output); the
	// keyring is then invalid base64 by design, so only check tokens.
	if _, err := load([]string{"--config", writeTOML(t, string(out))}, nil, testHost); err == nil || !strings.Contains(err.Error(), "cluster.keyring") {
		t.Errorf("redacted keyring unexpectedly valid or other error: %v", err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bb.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[log]\nlevel = \"info\"\n[api]\nmax_batch = 10\n[ring]\nbuffer_size = 64\n")
	l := mustLoad(t, []string{"--config", path, "-b", "128"}, []string{"BADBATCH_API_READ_LIMIT=7"})
	write("[log]\nlevel = \"debug\"\n[api]\nmax_batch = 20\n[ring]\nbuffer_size = 256\n[server]\nport = 8090\n")
	c, err := l.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" || c.API.MaxBatch != 20 || c.Ring.BufferSize != 128 || c.API.ReadLimit != 7 || c.Node.DataDir != "./data-8090" {
		t.Errorf("reload: %+v %+v %+v", c.Log, c.API, c.Ring)
	}
	changes := Diff(l.Config, c)
	live := map[string]bool{}
	for _, ch := range changes {
		live[ch.Key] = ch.Live
	}
	want := map[string]bool{"node.id": false, "node.data_dir": false, "server.port": false, "api.max_batch": true, "cluster.bind_port": false, "log.level": true}
	if !reflect.DeepEqual(live, want) {
		t.Errorf("Diff = %+v, want keys %v", changes, want)
	}
	write("[log]\nlevel = \"loud\"\n")
	if _, err := l.Reload(); err == nil || !strings.Contains(err.Error(), path+":2: log.level") {
		t.Errorf("invalid reload: %v", err)
	}
	if l.Config.Log.Level != "info" {
		t.Error("Reload modified the Loaded config")
	}
}

func TestDiffSecrets(t *testing.T) {
	a, b := Default(), Default()
	b.API.AdminTokens = []string{"s3cret"}
	ch := Diff(a, b)
	if len(ch) != 1 || ch[0].Key != "api.admin_tokens" || !ch[0].Live || strings.Contains(ch[0].New, "s3cret") {
		t.Errorf("Diff = %+v", ch)
	}
	b.API.AdminTokens = nil
	if ch := Diff(a, b); len(ch) != 0 {
		t.Errorf("nil and empty lists differ: %+v", ch)
	}
	a.API.AdminTokens, b.API.AdminTokens = []string{"x"}, []string{"y"}
	if ch := Diff(a, b); len(ch) != 1 || strings.Contains(ch[0].Old+ch[0].New, "x") && !strings.Contains(ch[0].Old, Redacted) {
		t.Errorf("Diff of rotated secret = %+v", ch)
	}
}

// TestLineNumbers pins the reflection read of BurntSushi/toml's key
// positions: a toml upgrade that changes MetaData must fail here.
func TestLineNumbers(t *testing.T) {
	path := writeTOML(t, "# 1\n[server]\n\n\nport = 0\n[ring]\nwait_strategy = \"x\"\n")
	_, err := load([]string{"--config", path}, nil, testHost)
	es := Errors(err)
	if len(es) != 2 || es[0].Line != 5 || es[1].Line != 7 {
		t.Fatalf("lines: %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Ring.BufferSize = 100
	c.Server.ReadTimeout = D(-time.Second)
	es := Errors(c.Validate())
	if len(es) != 2 || es[0].Key != "server.read_timeout" || es[1].Key != "ring.buffer_size" {
		t.Errorf("Validate: %v", es)
	}
	if !strings.HasPrefix(es[1].Error(), "ring.buffer_size: 100 is not a power of two") {
		t.Errorf("message %q", es[1])
	}
}

func TestEnvNamesAndKeys(t *testing.T) {
	for k, want := range map[string]string{
		"server.port":        "BADBATCH_SERVER_PORT",
		"ring.wait_strategy": "BADBATCH_RING_WAIT_STRATEGY",
		"api.publish_tokens": "BADBATCH_API_PUBLISH_TOKENS",
		"nope.nope":          "",
	} {
		if got := EnvName(k); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", k, got, want)
		}
	}
	// Every key can be set from the environment with its default's text.
	def := defaults("testhost")
	var env []string
	for i := range theSchema.fields {
		f := &theSchema.fields[i]
		v := f.format(&def)
		if f.typ == stringsType {
			v = strings.Trim(v, "[]")
		}
		env = append(env, f.env+"="+v)
	}
	if c := mustLoad(t, nil, env).Config; !reflect.DeepEqual(c, def) {
		t.Errorf("defaults via env differ: %v", Diff(def, c))
	}
}

func TestReloadOnZeroLoaded(t *testing.T) {
	var l Loaded // built by hand, not by Load: defaults, real host name
	c, err := l.Reload()
	if err != nil || c.Ring.BufferSize != 1024 || c.Node.ID == "" {
		t.Errorf("Reload on a zero Loaded: %+v, %v", c.Ring, err)
	}
}

func TestLoadUsesRealHostname(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		t.Skip("no host name")
	}
	l, err := Load([]string{"-p", "8081"}, []string{"PATH=/usr/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Node.ID != h+"-8081" {
		t.Errorf("node id %q, want %q", l.Config.Node.ID, h+"-8081")
	}
	if Default().Node.ID != h+"-8080" {
		t.Errorf("Default node id %q", Default().Node.ID)
	}
	if got := hostname(func() (string, error) { return "", errors.New("no") }); got != "badbatch" {
		t.Errorf("hostname fallback %q", got)
	}
}

func TestErrorsFlattening(t *testing.T) {
	a, b := &Error{Key: "a", Msg: "x"}, &Error{Key: "b", Msg: "y"}
	wrapped := fmt.Errorf("reload: %w", errors.Join(a, fmt.Errorf("ctx: %w", b), errors.New("other")))
	got := Errors(wrapped)
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Errors = %v", got)
	}
	if Errors(nil) != nil {
		t.Error("Errors(nil) != nil")
	}
}

func TestEnumAccessorsAreCopies(t *testing.T) {
	for _, get := range []func() []string{WaitStrategies, FsyncPolicies, AckLevels, Presets} {
		v := get()
		v[0] = "changed"
		if get()[0] == "changed" {
			t.Error("accessor returned the package's slice")
		}
	}
}

// TestExampleFileLiveMarkers checks that the "(live)" notes in the example
// file match the schema's reload:"live" tags (what Diff reports as Live).
func TestExampleFileLiveMarkers(t *testing.T) {
	data, err := os.ReadFile("badbatch.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	sec := ""
	keyRe := regexp.MustCompile(`^#?\s*([a-z_]+)\s*=`)
	marked := map[string]bool{}
	for i, line := range lines {
		if m := regexp.MustCompile(`^\[([a-z_]+)\]`).FindStringSubmatch(line); m != nil {
			sec = m[1]
			continue
		}
		m := keyRe.FindStringSubmatch(line)
		if m == nil || sec == "" {
			continue
		}
		key := sec + "." + m[1]
		if _, ok := theSchema.byKey[key]; !ok {
			continue
		}
		for j := i - 1; j >= 0 && strings.HasPrefix(lines[j], "#") && !keyRe.MatchString(lines[j]); j-- {
			if strings.Contains(lines[j], "(live)") {
				marked[key] = true
			}
		}
	}
	for _, f := range theSchema.fields {
		if marked[f.key] != f.live {
			t.Errorf("%s: example file says live=%v, schema tag says %v", f.key, marked[f.key], f.live)
		}
	}
}
