package wasmhost

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// captureHandler is a slog.Handler that keeps messages.
type captureHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newCapture() (*captureHandler, func() []string) {
	h := &captureHandler{mu: &sync.Mutex{}, msgs: new([]string)}
	return h, func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]string(nil), *h.msgs...)
	}
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func TestLogRateLimitAndStdout(t *testing.T) {
	capture, msgs := newCapture()
	h, err := NewHost(HostConfig{CacheDir: testCacheDir, Logger: slog.New(capture)})
	if err != nil {
		t.Fatal(err)
	}
	man, err := ParseManifest([]byte("name = \"logflood\"\ncapabilities = [\"log\"]"), "logflood.toml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := h.Load(context.Background(), man, mustRead(t, "testdata/logflood.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background(), nil)
	if err := m.Process(context.Background(), events(make([]string, 200)...), func(Output) {}); err != nil {
		t.Fatal(err)
	}
	flood, stdout := 0, 0
	for _, s := range msgs() {
		switch s {
		case "INFO flood":
			flood++
		case "INFO batch done":
			stdout++
		}
	}
	st := m.Stats()
	if flood < 40 || flood > 60 || st.LogsDropped < 100 || uint64(flood+stdout)+st.LogsDropped < 200 {
		t.Errorf("%d flood lines logged, %d suppressed: the log is not rate-limited as documented", flood, st.LogsDropped)
	}
	if stdout == 0 && st.LogsDropped == 0 {
		t.Error("WASI stdout did not reach the log")
	}
	if st.Dropped != 200 {
		t.Errorf("dropped %d", st.Dropped)
	}
}

// TestExampleEnricher exercises every host import through the Go SDK: kv,
// clock, metrics, log, and WASI stdout; the kv store outlives a reload.
func TestExampleEnricher(t *testing.T) {
	capture, msgs := newCapture()
	h, err := NewHost(HostConfig{Interpreter: true, Logger: slog.New(capture)})
	if err != nil {
		t.Fatal(err)
	}
	load := func(version string) *Module {
		man, err := ParseManifest([]byte(fmt.Sprintf(`name = "enricher"
version = %q
routes = ["invalid"]
capabilities = ["kv", "clock", "metrics", "log"]
[config]
invalid_route = "invalid"`, version)), "enricher.toml")
		if err != nil {
			t.Fatal(err)
		}
		m, err := h.Load(context.Background(), man, mustRead(t, "../modules/enricher.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := load("1.0.0")
	evs := events(`{"v":1}`, `{"v":2}`, `plain text`, `{"v":3}`)
	evs[0].Key, evs[1].Key, evs[2].Key, evs[3].Key = []byte("a"), []byte("a"), []byte("a"), []byte("b")
	var c collector
	if err := m.Process(context.Background(), evs, c.emit); err != nil {
		t.Fatal(err)
	}
	want := []string{`"key":"a","count":1`, `"key":"a","count":2`, "", `"key":"b","count":1`}
	if len(c.out) != 4 {
		t.Fatalf("outputs %+v", c.out)
	}
	for i, w := range want {
		o := c.out[i]
		if w == "" {
			if o.Kind != OutputForward || o.Route != "invalid" {
				t.Errorf("output %d = %+v, want forward to invalid", i, o)
			}
			continue
		}
		if o.Kind != OutputEmit || !strings.Contains(string(o.Data), w) || !strings.Contains(string(o.Data), `"enriched_at":1`) {
			t.Errorf("output %d = %s, want %s with a clock stamp", i, o.Data, w)
		}
	}
	if st := m.Stats(); st.Counters["enriched"] != 3 {
		t.Errorf("counters %v", st.Counters)
	}
	if err := m.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	logs := strings.Join(msgs(), "\n")
	if !strings.Contains(logs, "INFO enricher 1.0.0 ready") || !strings.Contains(logs, "INFO enricher: stdout works") {
		t.Errorf("guest log lines missing:\n%s", logs)
	}

	// A new version sees the same kv store.
	m2 := load("1.0.1")
	defer m2.Close(context.Background(), nil)
	c = collector{}
	if err := m2.Process(context.Background(), evs[:1], c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.out) != 1 || !strings.Contains(string(c.out[0].Data), `"count":3`) {
		t.Errorf("kv not kept across versions: %+v", c.out)
	}
}
