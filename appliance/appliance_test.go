package appliance

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's client keeps idle connections' goroutines until CloseIdleConnections.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// fasthttp's process-wide date updater (started once, never stopped).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's idle-worker cleaner sees the closed stop channel only
		// after its current sleep (MaxIdleWorkerDuration, 10s): it ends, later.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// The benchmark's fasthttp client: same pattern for idle connections.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		// memberlist's Shutdown does not wait for a probe in flight (its ack
		// timer ends it within a probe interval; see appliance/cluster).
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// node is an appliance running in-process on a loopback port.
type node struct {
	t    *testing.T
	a    *Appliance
	url  string
	logs *syncBuffer
	stop func() error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Node.ID = "test-node"
	cfg.Node.DataDir = t.TempDir()
	cfg.Modules.Dir = t.TempDir()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.ShutdownTimeout = config.D(20 * time.Second)
	return cfg
}

func start(t *testing.T, cfg config.Config, opts ...Option) *node {
	t.Helper()
	return launch(t, cfg, true, opts...)
}

// launch runs an appliance with cfg on a loopback port (modules compiled
// into the package's shared cache) until the test ends; with checkRun,
// Run's result must be nil (else the test judges n.stop's result).
func launch(t *testing.T, cfg config.Config, checkRun bool, opts ...Option) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, logger, append([]Option{WithListener(ln), WithWasmCacheDir(wasmTestCache)}, opts...)...)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run ended before ready: %v\n%s", err, logs.String())
	}
	n := &node{t: t, a: a, url: "http://" + ln.Addr().String(), logs: logs}
	var once sync.Once
	var runErr error
	n.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			_ = ln.Close()
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := n.stop(); err != nil && checkRun {
			t.Errorf("Run: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
		if t.Failed() {
			t.Logf("node logs:\n%s", logs.String())
		}
	})
	return n
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %q", err, r.body)
	}
	return m
}

func (n *node) do(method, path string, body []byte, hdr ...string) resp {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

func (n *node) postJSON(path, body string, hdr ...string) resp {
	n.t.Helper()
	return n.do("POST", path, []byte(body), append([]string{"Content-Type", "application/json"}, hdr...)...)
}

func wantCode(t *testing.T, r resp, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %s", r.code, code, r.body)
	}
}

// TestSeedReadmeExamples runs the seed README's HTTP examples verbatim.
func TestSeedReadmeExamples(t *testing.T) {
	n := start(t, testConfig(t))
	// POST /api/v1/events, Content-Type: application/json, the README body.
	r := n.postJSON("/api/v1/events", "{\n  \"data\": \"your_event_data\",\n  \"sequence\": 12345\n}")
	wantCode(t, r, 200)
	if m := r.json(t); m["sequence"] != 0.0 || m["ack"] != "durable" { // journal.default_ack
		t.Errorf("publish answer %s", r.body)
	}
	for i := 1; i <= 200; i++ {
		wantCode(t, n.postJSON("/api/v1/events", fmt.Sprintf(`{"data":%d}`, i)), 200)
	}
	// GET /api/v1/events?from=100&to=200
	r = n.do("GET", "/api/v1/events?from=100&to=200", nil)
	wantCode(t, r, 200)
	var evs struct {
		Events []struct {
			Sequence  int64           `json:"sequence"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		} `json:"events"`
		Count, Next int64
	}
	if err := json.Unmarshal(r.body, &evs); err != nil {
		t.Fatal(err)
	}
	if evs.Count != 101 || evs.Events[0].Sequence != 100 || string(evs.Events[0].Data) != "100" || evs.Events[100].Sequence != 200 || evs.Next != 201 {
		t.Errorf("range read: count %d next %d first %+v", evs.Count, evs.Next, evs.Events[0])
	}
	if time.Since(evs.Events[0].Timestamp) > time.Minute {
		t.Errorf("timestamp %v", evs.Events[0].Timestamp)
	}
	// GET /api/v1/status
	r = n.do("GET", "/api/v1/status", nil)
	wantCode(t, r, 200)
	var st struct {
		Ring pipeline.Status `json:"ring"`
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ring.Capacity != 1024 || st.Ring.Cursor != 200 || st.Ring.EventsIn != 201 || st.Ring.WaitStrategy != "blocking" || len(st.Ring.Consumers) != 3 || st.Ring.Consumers[0].Name != "journal" || st.Ring.Consumers[1].Name != "wasm" {
		t.Errorf("status %s", r.body)
	}
	// GET /api/v1/cluster/nodes
	r = n.do("GET", "/api/v1/cluster/nodes", nil)
	wantCode(t, r, 200)
	var cl struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(r.body, &cl); err != nil || len(cl.Nodes) != 1 || cl.Nodes[0]["id"] != "test-node" || cl.Nodes[0]["self"] != true || cl.Nodes[0]["state"] != "alive" {
		t.Errorf("cluster nodes %s (%v)", r.body, err)
	}
	// GET /health
	r = n.do("GET", "/health", nil)
	wantCode(t, r, 200)
	if r.json(t)["status"] != "alive" {
		t.Errorf("health %s", r.body)
	}
	// GET /metrics
	r = n.do("GET", "/metrics", nil)
	wantCode(t, r, 200)
	for _, want := range []string{
		"badbatch_events_published_total 201", "badbatch_ring_capacity 1024", "badbatch_build_info{",
		"badbatch_publish_to_consume_latency_seconds_bucket", "badbatch_http_request_duration_seconds_bucket{code=\"200\",method=\"POST\",route=\"/api/v1/events\"",
		"go_goroutines", "badbatch_process_cpu_seconds_total", "badbatch_journal_durable_sequence 200", "badbatch_journal_healthy 1", "badbatch_consumer_lag{consumer=\"tail\"}", "badbatch_ready 1",
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// GET /api/v1/node/info
	r = n.do("GET", "/api/v1/node/info", nil)
	wantCode(t, r, 200)
	info := r.json(t)
	cpu, _ := info["cpu"].(map[string]any)
	clu, _ := info["cluster"].(map[string]any)
	if info["node_id"] != "test-node" || info["padding_bytes"] != 128.0 || cpu["logical_cores"] == nil || cpu["cache_line_bytes"] == nil ||
		clu["enabled"] != false || !strings.Contains(fmt.Sprint(clu["gossip_addr"]), ":7946") || info["go_version"] == "" || info["pinning"] == nil {
		t.Errorf("node info %s", r.body)
	}
}

func TestBatchesNDJSONGzipAndIdempotency(t *testing.T) {
	n := start(t, testConfig(t))
	r := n.postJSON("/api/v1/events?ack=memory", `[{"data":{"t":1},"producer":"dev1","sequence":1},{"data":2,"producer":"dev1","sequence":2},{"data":3}]`)
	wantCode(t, r, 200)
	if string(r.body) != `{"ack":"memory","accepted":3,"duplicates":0,"rejected":0,"results":[{"sequence":0},{"sequence":1},{"sequence":2}]}` {
		t.Errorf("batch answer %s", r.body)
	}
	// Retry of the same batch, producer from the header this time, plus one new event: duplicates keep their sequences.
	r = n.do("POST", "/api/v1/events?ack=memory", []byte("{\"data\":2,\"sequence\":2}\n\n{\"data\":{\"t\":1},\"sequence\":1}\n{\"data\":4,\"sequence\":3}\n"),
		"Content-Type", "application/x-ndjson", "X-Producer-ID", "dev1")
	wantCode(t, r, 200)
	if string(r.body) != `{"ack":"memory","accepted":1,"duplicates":2,"rejected":0,"results":[{"sequence":1,"duplicate":true},{"sequence":0,"duplicate":true},{"sequence":3}]}` {
		t.Errorf("ndjson retry answer %s", r.body)
	}
	// Single-event retry.
	r = n.postJSON("/api/v1/events?ack=durable", `{"data":2,"producer":"dev1","sequence":2}`)
	wantCode(t, r, 200)
	if string(r.body) != `{"sequence":1,"duplicate":true,"ack":"durable"}` {
		t.Errorf("single retry answer %s", r.body)
	}
	// gzip body.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`[{"data":"zipped","key":"k\"1"}]`))
	_ = zw.Close()
	r = n.do("POST", "/api/v1/events", gz.Bytes(), "Content-Type", "application/json", "Content-Encoding", "gzip")
	wantCode(t, r, 200)
	r = n.do("GET", "/api/v1/events?from=0", nil)
	wantCode(t, r, 200)
	var got struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 5 || got.Events[4]["data"] != "zipped" || got.Events[4]["key"] != `k"1` || got.Events[0]["producer"] != "dev1" || got.Events[0]["producer_sequence"] != 1.0 {
		t.Errorf("stored events %s", r.body)
	}
	if st := n.a.Pipeline().Status(); st.EventsIn != 5 || st.Duplicates != 3 {
		t.Errorf("in %d dups %d, want 5 and 3", st.EventsIn, st.Duplicates)
	}
}

// TestBadInput is the bad-input table for the publish and read endpoints.
func TestBadInput(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.BodyLimit = 4096
	cfg.Ring.MaxEventSize = 256
	cfg.API.MaxBatch = 3
	n := start(t, cfg)
	big := `{"data":"` + strings.Repeat("x", 300) + `"}`
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write([]byte(`{"data":"` + strings.Repeat("a", 10000) + `"}`))
	_ = zw.Close()
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		hdr     []string
		code    int
		contain string
	}{
		{"malformed json", "POST", "/api/v1/events", `{"data":`, []string{"Content-Type", "application/json"}, 400, "invalid event"},
		{"wrong type sequence", "POST", "/api/v1/events", `{"data":1,"sequence":"x"}`, []string{"Content-Type", "application/json"}, 400, "sequence"},
		{"wrong type producer", "POST", "/api/v1/events", `{"data":1,"producer":7}`, []string{"Content-Type", "application/json"}, 400, "producer"},
		{"empty body", "POST", "/api/v1/events", ``, []string{"Content-Type", "application/json"}, 400, "empty body"},
		{"unknown field", "POST", "/api/v1/events", `{"data":1,"foo":2}`, []string{"Content-Type", "application/json"}, 400, "unknown field"},
		{"missing data", "POST", "/api/v1/events", `{"sequence":1}`, []string{"Content-Type", "application/json"}, 400, "missing"},
		{"batch error index", "POST", "/api/v1/events", `[{"data":1},{"data":1,"bad":1}]`, []string{"Content-Type", "application/json"}, 400, `"index":1`},
		{"huge body", "POST", "/api/v1/events", `{"data":"` + strings.Repeat("y", 5000) + `"}`, []string{"Content-Type", "application/json"}, 413, "body_limit"},
		{"event too large", "POST", "/api/v1/events", big, []string{"Content-Type", "application/json"}, 413, "max_event_size"},
		{"gzip bomb", "POST", "/api/v1/events", bomb.String(), []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, 413, "decompressed"},
		{"bad gzip", "POST", "/api/v1/events", "not gzip", []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, 400, "gzip"},
		{"too many", "POST", "/api/v1/events", `[{"data":1},{"data":2},{"data":3},{"data":4}]`, []string{"Content-Type", "application/json"}, 413, "max_batch"},
		{"wrong content type", "POST", "/api/v1/events", `{"data":1}`, []string{"Content-Type", "text/plain"}, 415, "Content-Type"},
		{"form content type", "POST", "/api/v1/events", `{"data":1}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "Content-Type"},
		{"brotli", "POST", "/api/v1/events", `{"data":1}`, []string{"Content-Type", "application/json", "Content-Encoding", "br"}, 415, "Content-Encoding"},
		{"ack bogus", "POST", "/api/v1/events?ack=sometimes", `{"data":1}`, []string{"Content-Type", "application/json"}, 400, "invalid ack"},
		{"long producer header", "POST", "/api/v1/events", `{"data":1}`, []string{"Content-Type", "application/json", "X-Producer-ID", strings.Repeat("p", 300)}, 400, "X-Producer-ID"},
		{"range reversed", "GET", "/api/v1/events?from=5&to=2", ``, nil, 400, "invalid range"},
		{"range negative", "GET", "/api/v1/events?from=-1", ``, nil, 400, "from"},
		{"range not a number", "GET", "/api/v1/events?from=abc", ``, nil, 400, "from"},
		{"limit zero", "GET", "/api/v1/events?limit=0", ``, nil, 400, "limit"},
		{"stream bad from", "GET", "/api/v1/events/stream?from=x", ``, nil, 400, "from"},
		{"not found", "GET", "/api/v2/nothing", ``, nil, 404, "no such endpoint"},
		{"method not allowed", "DELETE", "/api/v1/events", ``, nil, 405, "not allowed"},
		{"method not allowed status", "POST", "/api/v1/status", `{}`, []string{"Content-Type", "application/json"}, 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" || tt.method == "POST" {
				body = []byte(tt.body)
			}
			r := n.do(tt.method, tt.path, body, tt.hdr...)
			if r.code != tt.code {
				t.Fatalf("status %d, want %d: %s", r.code, tt.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			m := r.json(t)
			if _, ok := m["error"].(string); !ok {
				t.Errorf("no error field: %s", r.body)
			}
			if !strings.Contains(string(r.body), tt.contain) {
				t.Errorf("body %s does not contain %q", r.body, tt.contain)
			}
		})
	}
	if in := n.a.Pipeline().Status().EventsIn; in != 0 {
		t.Errorf("%d events stored by bad requests", in)
	}
}

// gate is a consumer stage that holds every event until released: a slow consumer.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func (g *gate) OnEvent(*event.Slot, int64, bool) error { <-g.ch; return nil }
func (g *gate) release()                               { g.once.Do(func() { close(g.ch) }) }

func TestFullRing429ThenRecovers(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ring.BufferSize = 8
	cfg.Ring.PublishTimeout = config.D(100 * time.Millisecond)
	g := &gate{ch: make(chan struct{})}
	n := start(t, cfg, WithStages([]pipeline.Stage{{Name: "slow", Handler: g}}))
	defer g.release()
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"data":1},`, 8), ",") + "]"
	wantCode(t, n.postJSON("/api/v1/events", batch), 200)
	r := n.postJSON("/api/v1/events", `{"data":"one too many","producer":"p","sequence":9}`)
	wantCode(t, r, 429)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if m := r.json(t); !strings.Contains(fmt.Sprint(m["error"]), "full") || m["accepted"] != false {
		t.Errorf("429 body %s", r.body)
	}
	// Partial batch: nothing fits, all rejected.
	r = n.postJSON("/api/v1/events?ack=memory", `[{"data":1},{"data":2}]`)
	wantCode(t, r, 429)
	if !strings.Contains(string(r.body), `"rejected":2`) {
		t.Errorf("batch 429 body %s", r.body)
	}
	st := n.do("GET", "/api/v1/status", nil).json(t)
	ring := st["ring"].(map[string]any)
	cons := ring["consumers"].([]any)[1].(map[string]any)
	if ring["remaining_capacity"] != 0.0 || cons["name"] != "slow" || cons["lag"] != 8.0 || ring["rejected"] != 3.0 {
		t.Errorf("status while full: %v", ring)
	}
	g.release()
	// The rejected event was not remembered: its retry is stored now.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = n.postJSON("/api/v1/events", `{"data":"one too many","producer":"p","sequence":9}`)
		if r.code == 200 || time.Now().After(deadline) {
			break
		}
	}
	wantCode(t, r, 200)
	if string(r.body) != `{"sequence":8,"ack":"durable"}` {
		t.Errorf("after release: %s", r.body)
	}
}

func TestRangesGone410(t *testing.T) {
	cfg := testConfig(t)
	cfg.Journal.Enabled = false // ring only: older ranges are gone
	cfg.Journal.DefaultAck = "memory"
	cfg.Ring.BufferSize = 16
	cfg.API.ReadLimit = 5
	n := start(t, cfg)
	for i := 0; i < 3; i++ {
		wantCode(t, n.postJSON("/api/v1/events", "["+strings.TrimSuffix(strings.Repeat(`{"data":0},`, 10), ",")+"]"), 200)
	}
	// cursor 29, ring 16: earliest 14.
	r := n.do("GET", "/api/v1/events?from=3&to=20", nil)
	wantCode(t, r, 410)
	if m := r.json(t); m["earliest"] != 14.0 || !strings.Contains(fmt.Sprint(m["error"]), "earliest available is 14") {
		t.Errorf("410 body %s", r.body)
	}
	r = n.do("GET", "/api/v1/events?from=14&to=100", nil)
	wantCode(t, r, 200)
	if m := r.json(t); m["count"] != 5.0 || m["next"] != 19.0 { // read_limit caps
		t.Errorf("capped read %s", r.body)
	}
	r = n.do("GET", "/api/v1/events?from=40", nil) // future: empty, not an error
	wantCode(t, r, 200)
	if m := r.json(t); m["count"] != 0.0 || m["next"] != 40.0 {
		t.Errorf("future read %s", r.body)
	}
	r = n.do("GET", "/api/v1/events?from=9223372036854775807", nil) // no overflow into a bogus range
	wantCode(t, r, 200)
	r = n.do("GET", "/api/v1/events", nil) // defaults: from earliest
	wantCode(t, r, 200)
	if m := r.json(t); m["from"] != 14.0 {
		t.Errorf("default read %s", r.body)
	}
}

func TestAuthScopes(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.PublishTokens = []string{"pub-token"}
	cfg.API.AdminTokens = []string{"admin-token"}
	n := start(t, cfg)
	ev := `{"data":1}`
	wantCode(t, n.postJSON("/api/v1/events", ev), 401)
	wantCode(t, n.postJSON("/api/v1/events", ev, "Authorization", "Bearer wrong"), 401)
	wantCode(t, n.postJSON("/api/v1/events", ev, "Authorization", "Bearer pub-token"), 200)
	wantCode(t, n.postJSON("/api/v1/events", ev, "Authorization", "bearer admin-token"), 200)
	wantCode(t, n.do("GET", "/api/v1/status", nil, "Authorization", "Bearer pub-token"), 403)
	wantCode(t, n.do("GET", "/api/v1/status", nil, "Authorization", "Bearer admin-token"), 200)
	wantCode(t, n.do("GET", "/api/v1/events?from=0", nil, "Authorization", "Bearer pub-token"), 200) // publish tokens read events too
	wantCode(t, n.do("GET", "/api/v1/events?from=0", nil), 401)
	wantCode(t, n.do("GET", "/api/v1/events?from=0", nil, "Authorization", "Bearer admin-token"), 200)
	for _, open := range []string{"/health", "/livez", "/readyz", "/metrics", "/openapi.json", "/api/v1/node/info", "/api/v1/cluster/nodes"} {
		wantCode(t, n.do("GET", open, nil), 200)
	}
	if r := n.postJSON("/api/v1/events", ev); r.header.Get("WWW-Authenticate") == "" || r.json(t)["error"] == nil {
		t.Errorf("401 without WWW-Authenticate or JSON error: %v %s", r.header, r.body)
	}
	if strings.Contains(n.logs.String(), "API is open") {
		t.Error("open-API warning logged although tokens are configured")
	}
	if !strings.Contains(string(n.do("GET", "/api/v1/node/info", nil).body), `"auth":"bearer"`) || strings.Contains(string(n.do("GET", "/api/v1/node/info", nil).body), "admin-token") {
		t.Error("node info leaks tokens or misreports auth")
	}
}

func TestReloadAppliesLiveSettings(t *testing.T) {
	cfg := testConfig(t)
	lv := new(slog.LevelVar)
	n := start(t, cfg, WithLevelVar(lv))
	wantCode(t, n.postJSON("/api/v1/events", `{"data":1}`), 200)
	next := cfg
	next.API.PublishTokens = []string{"new-token"}
	next.Log.Level = "debug"
	next.Ring.BufferSize = 2048 // needs a restart
	if err := n.a.Reload(next); err != nil {
		t.Fatal(err)
	}
	wantCode(t, n.postJSON("/api/v1/events", `{"data":1}`), 401)
	wantCode(t, n.postJSON("/api/v1/events", `{"data":1}`, "Authorization", "Bearer new-token"), 200)
	if lv.Level() != slog.LevelDebug {
		t.Errorf("log level %v after reload", lv.Level())
	}
	if !strings.Contains(n.logs.String(), "change needs a restart") || n.a.Config().Ring.BufferSize != 1024 {
		t.Errorf("restart-only change not reported/kept: %d", n.a.Config().Ring.BufferSize)
	}
	bad := next
	bad.API.MaxBatch = 0
	if err := n.a.ReloadFrom(func() (config.Config, error) { return bad, nil }); err == nil {
		t.Fatal("invalid reload accepted")
	}
	if !strings.Contains(n.logs.String(), "keeping the current configuration") || n.a.Config().API.MaxBatch != cfg.API.MaxBatch {
		t.Error("invalid reload not logged or not rejected")
	}
	wantCode(t, n.postJSON("/api/v1/events", `{"data":1}`, "Authorization", "Bearer new-token"), 200)
}

func TestSSELiveTail(t *testing.T) {
	n := start(t, testConfig(t))
	wantCode(t, n.postJSON("/api/v1/events", `{"data":"before"}`), 200)
	req, _ := http.NewRequest("GET", n.url+"/api/v1/events/stream?from=0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req = req.WithContext(ctx)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	next := func(prefix string) string {
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				return sc.Text()
			}
		}
		t.Fatalf("stream ended waiting for %q: %v", prefix, sc.Err())
		return ""
	}
	if l := next("data: "); !strings.Contains(l, `"sequence":0`) || !strings.Contains(l, `"data":"before"`) {
		t.Errorf("first event %q", l)
	}
	wantCode(t, n.postJSON("/api/v1/events", `[{"data":"live1"},{"data":"live2"}]`), 200)
	if l := next("id: "); l != "id: 1" {
		t.Errorf("id line %q", l)
	}
	if l := next("data: "); !strings.Contains(l, `"data":"live1"`) {
		t.Errorf("live event %q", l)
	}
	if l := next("data: "); !strings.Contains(l, `"data":"live2"`) {
		t.Errorf("live event %q", l)
	}
	// Shutdown ends the stream with an end event, and Run still returns cleanly.
	stopped := make(chan error, 1)
	go func() { stopped <- n.stop() }()
	if l := next("event: "); l != "event: end" {
		t.Errorf("final event %q", l)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	n := start(t, testConfig(t))
	r := n.do("GET", "/openapi.json", nil)
	wantCode(t, r, 200)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		path = strings.ReplaceAll(path, "{name}", ":name") // OpenAPI path parameters, fiber style
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, rt := range n.a.Server().App().GetRoutes(true) {
		if rt.Method == "HEAD" {
			continue
		}
		registered[rt.Method+" "+rt.Path] = true
	}
	for k := range registered {
		if !documented[k] {
			t.Errorf("route %s is registered but not in openapi.json", k)
		}
	}
	for k := range documented {
		if !registered[k] {
			t.Errorf("openapi.json documents %s, which is not registered", k)
		}
	}
	if len(registered) != len(api.Routes()) {
		t.Errorf("%d registered routes, api.Routes lists %d", len(registered), len(api.Routes()))
	}
}

func TestReadinessDuringDrainAndIntakeStop(t *testing.T) {
	cfg := testConfig(t)
	g := &gate{ch: make(chan struct{})}
	n := start(t, cfg, WithStages([]pipeline.Stage{{Name: "slow", Handler: g}}))
	defer g.release()
	wantCode(t, n.do("GET", "/readyz", nil), 200)
	wantCode(t, n.postJSON("/api/v1/events", `[{"data":1},{"data":2},{"data":3}]`), 200)
	stopped := make(chan error, 1)
	go func() { stopped <- n.stop() }()
	// While the slow consumer holds the drain: not ready, intake closed, probes still answer.
	deadline := time.Now().Add(10 * time.Second)
	for n.a.Phase() != PhaseDraining && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r := n.do("GET", "/readyz", nil)
	wantCode(t, r, 503)
	if !strings.Contains(string(r.body), `"detail":"draining"`) {
		t.Errorf("readyz while draining %s", r.body)
	}
	for time.Now().Before(deadline) {
		if r = n.postJSON("/api/v1/events", `{"data":4}`); r.code == 503 {
			break
		}
	}
	wantCode(t, r, 503)
	if r.json(t)["error"] == nil {
		t.Errorf("503 body %s", r.body)
	}
	wantCode(t, n.do("GET", "/livez", nil), 200)
	g.release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if p := n.a.Pipeline().Pending(); p != 0 {
		t.Errorf("%d events left after drain", p)
	}
	logs := n.logs.String()
	for _, step := range []string{"readiness off", "stop intake", "drain ring and stop processors", "close HTTP server", "shutdown complete"} {
		if !strings.Contains(logs, step) {
			t.Errorf("shutdown log lacks %q", step)
		}
	}
	if i, j := strings.Index(logs, "stop intake"), strings.Index(logs, "drain ring"); i > j {
		t.Error("drain logged before intake stop")
	}
}

func TestStateDirLockedBySecondNode(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg)
	_, err := New(cfg, nil, WithListener(nil))
	if err == nil || !strings.Contains(err.Error(), cfg.Node.DataDir) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second node on the same dir: %v", err)
	}
}

func TestJournalDisabledRefusesDurable(t *testing.T) {
	cfg := testConfig(t)
	cfg.Journal.Enabled = false
	cfg.Journal.DefaultAck = "memory" // config refuses durable without a journal
	n := start(t, cfg)
	r := n.postJSON("/api/v1/events?ack=durable", `{"data":1}`)
	wantCode(t, r, 400)
	if !strings.Contains(r.json(t)["error"].(string), "ack=durable is not available") {
		t.Errorf("body %s", r.body)
	}
	r = n.postJSON("/api/v1/events", `{"data":1}`)
	wantCode(t, r, 200)
	if r.json(t)["ack"] != "memory" || !strings.Contains(n.logs.String(), "journal disabled") {
		t.Errorf("default ack answer %s", r.body)
	}
	bad := cfg
	bad.Journal.DefaultAck = "durable"
	if _, err := New(bad, nil); err == nil || !strings.Contains(err.Error(), "journal.default_ack") {
		t.Errorf("New with default_ack=durable and no journal: %v", err)
	}
}

// TestJournalRestart: acknowledged events survive a restart, numbering
// continues after the journal's last sequence, and ranges older than the
// new ring are served from the journal.
func TestJournalRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ring.BufferSize = 16
	n := start(t, cfg)
	for i := 0; i < 5; i++ {
		wantCode(t, n.postJSON("/api/v1/events?ack=durable", "["+strings.TrimSuffix(strings.Repeat(fmt.Sprintf(`{"data":%d,"producer":"p","key":"k"},`, i), 10), ",")+"]"), 200)
	}
	// 50 events: the ring (16) holds 34..49; 0..33 come from the journal.
	r := n.do("GET", "/api/v1/events?from=0&to=49", nil)
	wantCode(t, r, 200)
	if m := r.json(t); m["count"] != 34.0 || m["next"] != 34.0 {
		t.Errorf("journal-backed read %s", r.body[:min(len(r.body), 300)])
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.logs.String(), "flush and close journal") {
		t.Error("journal close not logged")
	}

	n2 := start(t, cfg)
	r = n2.postJSON("/api/v1/events", `{"data":"after restart"}`)
	wantCode(t, r, 200)
	if string(r.body) != `{"sequence":50,"ack":"durable"}` {
		t.Errorf("first publish after restart %s", r.body)
	}
	r = n2.do("GET", "/api/v1/events?from=10&to=12", nil)
	wantCode(t, r, 200)
	var got struct {
		Events []struct {
			Sequence int64           `json:"sequence"`
			Producer string          `json:"producer"`
			Key      string          `json:"key"`
			Data     json.RawMessage `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 3 || got.Events[0].Sequence != 10 || string(got.Events[0].Data) != "1" || got.Events[0].Producer != "p" || got.Events[0].Key != "k" {
		t.Errorf("old events after restart %s", r.body)
	}
	r = n2.do("GET", "/api/v1/events?from=50&to=50", nil)
	if !strings.Contains(string(r.body), `"after restart"`) {
		t.Errorf("new event %s", r.body)
	}
	st := n2.do("GET", "/api/v1/status", nil).json(t)
	if st["ring"].(map[string]any)["cursor"] != 50.0 || st["node"].(map[string]any)["journal"].(map[string]any)["durable_sequence"] != 50.0 {
		t.Errorf("status after restart %v", st)
	}
}

// TestShutdownWithIdleFreshConnection: a client connection that was opened
// but never sent a request (HTTP clients pre-dial) must not hold the
// graceful shutdown until server.read_timeout.
func TestShutdownWithIdleFreshConnection(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.ReadTimeout = config.D(10 * time.Minute)
	cfg.Server.ShutdownTimeout = config.D(20 * time.Second)
	n := start(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wantCode(t, n.do("GET", "/livez", nil), 200) // the server is past accept for conn
	if err := n.stop(); err != nil {
		t.Fatalf("Run: %v (a fresh connection held the shutdown)", err)
	}
}

// TestSSEGapWhenReaderIsBehindTheRing: without a journal, a tail asked to
// start before what the ring holds gets a gap event naming the earliest
// sequence, then the events from there.
func TestSSEGapWhenReaderIsBehindTheRing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Journal.Enabled = false
	cfg.Journal.DefaultAck = "memory"
	cfg.Ring.BufferSize = 8
	n := start(t, cfg)
	wantCode(t, n.postJSON("/api/v1/events", "["+strings.TrimSuffix(strings.Repeat(`{"data":"x"},`, 20), ",")+"]"), 200)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.url+"/api/v1/events/stream?from=0", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var lines []string
	for sc.Scan() && len(lines) < 4 {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, ":") {
			lines = append(lines, l)
		}
	}
	want := []string{"event: gap", `data: {"from":0,"earliest":12}`, "id: 12", "event: event"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("stream starts %q, want %q", lines, want)
	}
	cancel()
}
