package wasmhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	interpHostOnce sync.Once
	interpHost     *Host
)

// loadExample loads a Go example module from ../modules with its committed
// manifest, overridden by extra TOML lines. Functional tests of Go guests
// use wazero's interpreter: compiling a 3 MB Go guest with the race
// detector on takes ~20 s, interpreting it takes ~2 s. TestGoGuestCompiled
// and the benchmarks run a Go guest compiled.
func loadExample(t *testing.T, name, manifest string) *Module {
	t.Helper()
	interpHostOnce.Do(func() {
		var err error
		interpHost, err = NewHost(HostConfig{Interpreter: true,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		if err != nil {
			panic(err)
		}
	})
	man, err := ParseManifest([]byte(manifest), name+".toml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := interpHost.Load(context.Background(), man, mustRead(t, "../modules/"+name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background(), nil) })
	return m
}

func TestCommittedManifestsParse(t *testing.T) {
	for _, name := range []string{"passthrough", "filter", "router", "aggregator", "enricher", "wat-counter", "examples/filter-as/filter-as"} {
		if _, err := LoadManifest("../modules/" + name + ".toml"); err != nil {
			t.Error(err)
		}
	}
}

// filterWasm is where each filter example's binary is.
var filterWasm = map[string]string{"filter": "../modules/filter.wasm", "filter-as": "../modules/examples/filter-as/filter-as.wasm"}

// TestExampleFilter: the Go filter and its AssemblyScript port decide the
// same way: drop values, other fields, nested members, escapes, values of
// a drop value's length, and payloads that are not JSON objects (kept, or
// dropped with drop_invalid).
func TestExampleFilter(t *testing.T) {
	payloads := []string{`{"level":"info","msg":"a"}`, `{"level":"debug"}`, `{"msg":"x","level" : "trace"}`,
		`not json`, `{"nested":{"level":"debug"},"level":"warn"}`, `{"level":"debuG"}`, `{"lever":"debug"}`,
		`{"level":"tracer"}`, `{"level":"traca"}`, `{"a":"q\"uote","b":[1,{"level":"debug"}],"level":"debug"}`,
		` {"level":"trace"} `, `[]`, ``, `{"level":1}`, `{"level":"debug`}
	for name, wasm := range filterWasm {
		for _, dropInvalid := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/drop_invalid=%v", name, dropInvalid), func(t *testing.T) {
				man, err := ParseManifest([]byte(fmt.Sprintf("name = %q\n[config]\nfield = \"level\"\ndrop = [\"debug\", \"trace\"]\ndrop_invalid = %v", name, dropInvalid)), name+".toml")
				if err != nil {
					t.Fatal(err)
				}
				loadExample(t, "passthrough", `name = "passthrough"`) // make sure interpHost exists
				m, err := interpHost.Load(context.Background(), man, mustRead(t, wasm))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close(context.Background(), nil)
				var c collector
				if err := m.Process(context.Background(), events(payloads...), c.emit); err != nil {
					t.Fatal(err)
				}
				var got []int
				for _, o := range c.out {
					if o.Kind != OutputForward {
						t.Errorf("unexpected %+v", o)
					}
					got = append(got, o.Input)
				}
				// Values of a drop value's length that differ in a byte,
				// other fields and longer values pass; a non-string value
				// passes; payloads without the member (not JSON, an array,
				// empty, unterminated) pass unless drop_invalid.
				want := "[0 3 4 5 6 7 8 11 12 13 14]"
				if dropInvalid {
					want = "[0 4 5 7 8 13]"
				}
				if fmt.Sprint(got) != want {
					t.Errorf("forwarded %v, want %s", got, want)
				}
			})
		}
	}
}

func TestExampleFilterRejectsBadConfig(t *testing.T) {
	loadExample(t, "passthrough", `name = "passthrough"`) // make sure interpHost exists
	for name, wasm := range filterWasm {
		for _, manifest := range []string{
			"name = %q",
			"name = %q\n[config]\nfield = \"\"",
			"name = %q\n[config]\nfield = \"level\"\ndrop = [\"" + strings.Repeat("x", 64) + "\"]",
		} {
			man, err := ParseManifest([]byte(fmt.Sprintf(manifest, name)), name+".toml")
			if err != nil {
				t.Fatal(err)
			}
			// (The guest's reason goes to the module's log.)
			if _, err := interpHost.Load(context.Background(), man, mustRead(t, wasm)); err == nil || !strings.Contains(err.Error(), "bb_init refused") {
				t.Errorf("%s with %q: %v", name, manifest, err)
			}
		}
	}
}

func TestExampleRouter(t *testing.T) {
	m := loadExample(t, "router", `name = "router"
routes = ["alerts", "archive"]
[config]
field = "level"
enrich = true
[config.routes]
error = "alerts"
audit = "archive"`)
	var c collector
	evs := events(`{"level":"error","m":1}`, `{"level":"info"}`, `{"level":"audit"}`, `{"nolevel":1}`)
	if err := m.Process(context.Background(), evs, c.emit); err != nil {
		t.Fatal(err)
	}
	type o struct {
		kind  OutputKind
		route string
		input int
	}
	want := []o{{OutputForward, "alerts", 0}, {OutputEmit, "", 0}, {OutputForward, "", 1},
		{OutputForward, "archive", 2}, {OutputEmit, "", 2}, {OutputDeadLetter, "", 3}}
	if len(c.out) != len(want) {
		t.Fatalf("outputs %+v", c.out)
	}
	for i, w := range want {
		g := c.out[i]
		if g.Kind != w.kind || g.Route != w.route || g.Input != w.input {
			t.Errorf("output %d = %v %q %d, want %+v", i, g.Kind, g.Route, g.Input, w)
		}
	}
	var enriched struct {
		RoutedBy string          `json:"routed_by"`
		Route    string          `json:"route"`
		Event    json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(c.out[1].Data, &enriched); err != nil || enriched.Route != "alerts" ||
		string(enriched.Event) != `{"level":"error","m":1}` || string(c.out[1].Key) != "error" {
		t.Errorf("enriched %s key %q: %v", c.out[1].Data, c.out[1].Key, err)
	}
	if c.out[5].Err == nil {
		t.Error("no reason on dead letter")
	}
}

func TestExampleAggregatorTimerAndFlush(t *testing.T) {
	m := loadExample(t, "aggregator", `name = "aggregator"
timer_interval = "20ms"
[config]
field = "value"`)
	evs := events(`{"value":1}`, `{"value":3}`, `{"value":10}`)
	evs[0].Key, evs[1].Key, evs[2].Key = []byte("a"), []byte("a"), []byte("b")
	var c collector
	if err := m.Process(context.Background(), evs, c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.out) != 0 {
		t.Fatalf("aggregator emitted before its timer: %+v", c.out)
	}
	time.Sleep(30 * time.Millisecond)
	m.Tick(context.Background(), c.emit)
	if len(c.out) != 2 {
		t.Fatalf("timer outputs %+v", c.out)
	}
	if string(c.out[0].Key) != "a" || string(c.out[0].Data) != `{"key":"a","count":2,"sum":4,"avg":2}` || c.out[0].Input != -1 {
		t.Errorf("window a: key %q %s", c.out[0].Key, c.out[0].Data)
	}
	c = collector{}
	if err := m.Process(context.Background(), evs[2:], c.emit); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background(), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.out) != 1 || string(c.out[0].Data) != `{"key":"b","count":1,"sum":10,"avg":10}` {
		t.Errorf("flush outputs %+v", c.out)
	}
}

// TestGoGuestCompiled runs a Go guest with the compiler, as in production.
func TestGoGuestCompiled(t *testing.T) {
	m := loadModule(t, "../modules/passthrough.wasm", `name = "passthrough"`)
	evs := make([]Event, 300)
	for i := range evs {
		evs[i] = Event{Seq: uint64(i), Data: []byte(`{"i":1}`)}
	}
	n := 0
	if err := m.Process(context.Background(), evs, func(o Output) {
		if o.Kind == OutputForward && o.Input == n {
			n++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != 300 {
		t.Errorf("%d forwards in order, want 300", n)
	}
	if st := m.Stats(); st.Calls != 2 {
		t.Errorf("%d calls for 300 events with max_batch_events 256", st.Calls)
	}
}

// TestRepoModulesDirLoads loads ../modules as the daemon does by default
// (interpreted here, to keep the race-enabled run short).
func TestRepoModulesDirLoads(t *testing.T) {
	loadExample(t, "passthrough", `name = "passthrough"`) // creates interpHost
	r, err := NewRegistry(RegistryConfig{Dir: "../modules", Host: interpHost})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	if err := r.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range r.Status() {
		if !st.Loaded || st.LoadError != "" || st.State != "running" {
			t.Errorf("%+v", st)
		}
		names = append(names, st.Name)
	}
	if fmt.Sprint(names) != "[aggregator enricher filter passthrough router wat-counter]" {
		t.Errorf("modules %v", names)
	}
	g, err := r.Graph()
	if err != nil || fmt.Sprint(g) != "[[aggregator enricher filter passthrough wat-counter] [router]]" {
		t.Errorf("graph %v %v", g, err)
	}
}

// TestExampleFilterSaysWhy: a filter refusing its configuration says why
// in the module's log (its stderr).
func TestExampleFilterSaysWhy(t *testing.T) {
	var logs syncWriter
	h, err := NewHost(HostConfig{Interpreter: true, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	for name, wasm := range filterWasm {
		man, err := ParseManifest([]byte(fmt.Sprintf("name = %q\n[config]\ndrop = [\"debug\"]", name)), name+".toml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Load(context.Background(), man, mustRead(t, wasm)); err == nil {
			t.Fatalf("%s loaded without config field", name)
		}
	}
	for _, want := range []string{`filter-as: config \"field\" is required`, `init: config \"field\" is required`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("module log lacks %s:\n%s", want, logs.String())
		}
	}
}

// syncWriter is a goroutine-safe log sink.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
