package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/badbatch/badbatch/appliance"
	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's process-wide date updater and worker-pool cleaner (server side).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// fasthttp's client cleans idle connections on its own schedule.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}

// node is a real appliance running in-process on a loopback port.
type node struct {
	a   *appliance.Appliance
	url string
}

func startNode(t *testing.T, mutate func(*config.Config), opts ...appliance.Option) *node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.ID = "perf-test"
	cfg.Node.DataDir = t.TempDir()
	cfg.Modules.Dir = t.TempDir()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.ShutdownTimeout = config.D(20 * time.Second)
	cfg.Log.Level = "error"
	if mutate != nil {
		mutate(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := appliance.New(cfg, slog.New(slog.DiscardHandler), append([]appliance.Option{appliance.WithListener(ln)}, opts...)...)
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
		t.Fatalf("appliance ended before ready: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("appliance Run: %v", err)
		}
	})
	return &node{a: a, url: "http://" + ln.Addr().String()}
}

// result is the part of the JSON output the tests read.
type result struct {
	Mode       string  `json:"mode"`
	TargetRate float64 `json:"target_events_per_s"`
	Measured   counts  `json:"measured"`
	Total      counts  `json:"total"`
	EventsPS   float64 `json:"events_per_s"`
	Latency    pct     `json:"latency"`
	Service    pct     `json:"service_time"`
	NotSent    int64   `json:"not_sent"`
	ClientCPU  struct {
		User float64 `json:"user_s"`
		Sys  float64 `json:"system_s"`
	} `json:"client_cpu"`
	Verify *struct {
		Acknowledged int64 `json:"acknowledged"`
		Found        int64 `json:"found"`
		Lost         int64 `json:"lost"`
		Duplicated   int64 `json:"duplicated"`
		Mismatched   int64 `json:"mismatched"`
	} `json:"verify"`
	Node *struct {
		EventsIn   uint64 `json:"events_in"`
		Duplicates uint64 `json:"duplicates"`
	} `json:"node"`
	VerifyError string `json:"verify_error"`
	OK          bool   `json:"ok"`
}

type counts struct {
	Requests   int64            `json:"requests"`
	Retries    int64            `json:"retries"`
	Dup        int64            `json:"events_duplicate"`
	RequestsOK int64            `json:"requests_ok"`
	Status     map[string]int64 `json:"status"`
	Sent       int64            `json:"events_sent"`
	Acked      int64            `json:"events_acknowledged"`
	Refused    int64            `json:"events_refused"`
	Unknown    int64            `json:"events_unknown"`
}

type pct struct {
	Count int64 `json:"count"`
	P50   int64 `json:"p50_us"`
	P99   int64 `json:"p99_us"`
	P9999 int64 `json:"p99_99_us"`
	Max   int64 `json:"max_us"`
}

// perf runs the command in-process and returns its exit code and output.
func perf(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(string) string { return "" }, &out, &errb, false)
	return code, out.String(), errb.String()
}

func perfJSON(t *testing.T, wantCode int, args ...string) result {
	t.Helper()
	code, out, errs := perf(t, append(args, "--json")...)
	if code != wantCode {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, wantCode, out, errs)
	}
	var r result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return r
}

func (c counts) sane(t *testing.T, batch int64) {
	t.Helper()
	if c.Sent != (c.Requests-c.Retries)*batch || c.Acked+c.Refused+c.Unknown != c.Sent {
		t.Errorf("counts do not add up: %+v (batch %d)", c, batch)
	}
	var byStatus int64
	for _, n := range c.Status {
		byStatus += n
	}
	if byStatus != c.Requests || c.Status["200"] != c.RequestsOK {
		t.Errorf("status counts %v do not add up to %d requests (%d ok)", c.Status, c.Requests, c.RequestsOK)
	}
}

// The seed's first invocation (closed loop, several producers) with
// batches: every event counted equals what the node stored, and the
// read-back finds each exactly once.
func TestClosedLoopMatchesServer(t *testing.T) {
	n := startNode(t, nil)
	r := perfJSON(t, 0, "--", "--url", n.url, "--events", "3000", "--producers", "3", "--connections", "6",
		"--batch", "25", "--ack", "memory", "--verify", "--quiet")
	if r.Mode != "closed-loop" {
		t.Errorf("mode %q", r.Mode)
	}
	r.Total.sane(t, 25)
	in := n.a.Pipeline().Status().EventsIn
	if r.Total.Acked != 3000 || r.Measured.Acked != 3000 || uint64(r.Total.Acked) != in {
		t.Errorf("acknowledged %d (measured %d), node stored %d; want 3000", r.Total.Acked, r.Measured.Acked, in)
	}
	if r.Total.Requests != 120 || r.Service.Count != 120 || r.Latency.Count != 120 {
		t.Errorf("requests %d, latency counts %d/%d; want 120", r.Total.Requests, r.Service.Count, r.Latency.Count)
	}
	if r.Service.P50 <= 0 || r.Service.P50 > r.Service.P99 || r.Service.P99 > r.Service.Max {
		t.Errorf("percentiles out of order: %+v", r.Service)
	}
	if r.EventsPS <= 0 || r.ClientCPU.User+r.ClientCPU.Sys <= 0 {
		t.Errorf("events/s %v, client CPU %+v", r.EventsPS, r.ClientCPU)
	}
	if r.Node == nil || r.Node.EventsIn != 3000 || r.Node.Duplicates != 0 {
		t.Errorf("node counters over the run: %+v, want 3000 stored", r.Node)
	}
	if r.Verify == nil || r.Verify.Acknowledged != 3000 || r.Verify.Found != 3000 || r.Verify.Lost != 0 || r.Verify.Duplicated != 0 || !r.OK {
		t.Errorf("verification %+v (%s), ok %v", r.Verify, r.VerifyError, r.OK)
	}
}

// ack=durable single events through the journal; the text output carries
// the verdict line. More events than the ring holds, so most of the
// read-back comes from the journal.
func TestDurableSingleEventsVerified(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Ring.BufferSize = 64 })
	code, out, errs := perf(t, "--url", n.url, "--events", "400", "--producers", "2", "--ack", "durable",
		"--payload-size", "16", "--verify", "--page-size", "50")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"ack=durable", "400 acknowledged", "node counters (/api/v1/status, whole run): 400 events stored, 0 duplicates (matches", "verification: OK", "acknowledged 400, lost 0, duplicated 0", "client CPU:", "p99.99"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if in := n.a.Pipeline().Status().EventsIn; in != 400 {
		t.Errorf("node stored %d events, want 400", in)
	}
}

// NDJSON bodies: the node answers every NDJSON request as a batch.
func TestNDJSONVerified(t *testing.T) {
	n := startNode(t, nil)
	for _, batch := range []string{"1", "10"} {
		r := perfJSON(t, 0, "--url", n.url, "--events", "200", "--batch", batch, "--ndjson", "--producers", "2",
			"--ack", "memory", "--verify", "--quiet")
		if r.Total.Acked != 200 || r.Verify == nil || r.Verify.Found != 200 || !r.OK {
			t.Errorf("batch %s: acked %d, verification %+v (%s)", batch, r.Total.Acked, r.Verify, r.VerifyError)
		}
	}
	if in := n.a.Pipeline().Status().EventsIn; in != 400 {
		t.Errorf("node stored %d, want 400", in)
	}
}

// Open loop at a fixed rate: every scheduled request is either sent or
// reported as not sent, and what was acknowledged is what the node stored.
func TestOpenLoopRate(t *testing.T) {
	n := startNode(t, nil)
	r := perfJSON(t, 0, "--url", n.url, "--throughput-test", "--rate", "2000", "--duration", "1s",
		"--batch", "4", "--producers", "2", "--ack", "memory", "--verify", "--quiet")
	if r.Mode != "open-loop" || r.TargetRate != 2000 {
		t.Errorf("mode %q rate %v", r.Mode, r.TargetRate)
	}
	r.Total.sane(t, 4)
	if got := r.Total.Requests + r.NotSent; got != 500 {
		t.Errorf("sent %d + not sent %d = %d requests, scheduled 500", r.Total.Requests, r.NotSent, got)
	}
	if in := n.a.Pipeline().Status().EventsIn; uint64(r.Total.Acked) != in || in == 0 {
		t.Errorf("acknowledged %d, node stored %d", r.Total.Acked, in)
	}
	// Latency from the intended time includes the service time.
	if r.Latency.Count != r.Service.Count || r.Latency.Max < r.Service.Max/2 {
		t.Errorf("latency %+v vs service %+v", r.Latency, r.Service)
	}
	if r.Verify == nil || r.Verify.Lost != 0 || r.Verify.Acknowledged != r.Total.Acked || !r.OK {
		t.Errorf("verification %+v (%s)", r.Verify, r.VerifyError)
	}
}

// --latency-test defaults to open loop; the warmup is published but not
// measured.
func TestLatencyTestWithWarmup(t *testing.T) {
	n := startNode(t, nil)
	r := perfJSON(t, 0, "--url", n.url, "--latency-test", "--rate", "400", "--duration", "500ms",
		"--warmup", "250ms", "--ack", "memory", "--quiet")
	if r.Mode != "open-loop" {
		t.Errorf("mode %q", r.Mode)
	}
	if r.Measured.Requests >= r.Total.Requests || r.Measured.Requests == 0 {
		t.Errorf("measured %d of %d requests: the warmup should be excluded", r.Measured.Requests, r.Total.Requests)
	}
	if in := n.a.Pipeline().Status().EventsIn; uint64(r.Total.Acked) != in {
		t.Errorf("acknowledged %d (whole run), node stored %d", r.Total.Acked, in)
	}
	if r.Latency.Count != r.Measured.Requests-r.Measured.Status["transport"] {
		t.Errorf("latency count %d, measured requests %d", r.Latency.Count, r.Measured.Requests)
	}
}

// slow is a pipeline stage that makes the ring fill up.
type slow struct{}

func (slow) OnEvent(*event.Slot, int64, bool) error {
	time.Sleep(200 * time.Microsecond)
	return nil
}

// Backpressure: 429s are counted by status, refused events are not
// counted as acknowledged, and the read-back shows none of them stored.
func TestBackpressureCounted(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Ring.BufferSize = 16
		c.Ring.PublishTimeout = config.D(time.Millisecond)
		c.Journal.Enabled = false
		c.Journal.DefaultAck = "memory"
	}, appliance.WithStages([]pipeline.Stage{{Name: "slow", Handler: slow{}}}))
	r := perfJSON(t, 0, "--url", n.url, "--events", "1200", "--batch", "8", "--producers", "4",
		"--ack", "memory", "--quiet")
	r.Total.sane(t, 8)
	if r.Total.Status["429"] == 0 || r.Total.Refused == 0 {
		t.Fatalf("no 429 counted: %+v", r.Total)
	}
	st := n.a.Pipeline().Status()
	if uint64(r.Total.Acked) != st.EventsIn {
		t.Errorf("acknowledged %d, node stored %d", r.Total.Acked, st.EventsIn)
	}
	if r.Total.Acked+r.Total.Refused != 1200 || r.Total.Unknown != 0 {
		t.Errorf("acked %d + refused %d (unknown %d), want 1200", r.Total.Acked, r.Total.Refused, r.Total.Unknown)
	}
}

// Backpressure with idempotent retries: every event ends acknowledged
// exactly once; the ones stored before a 429 come back as duplicates with
// their first sequence, the node stores each event once, and the read-back
// (mostly from the journal) finds no second copy.
func TestBackpressureRetriesExactlyOnce(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Ring.BufferSize = 16
		c.Ring.PublishTimeout = config.D(time.Millisecond)
	}, appliance.WithStages([]pipeline.Stage{{Name: "slow", Handler: slow{}}}))
	r := perfJSON(t, 0, "--url", n.url, "--events", "1200", "--batch", "24", "--producers", "4",
		"--ack", "memory", "--retries", "100000", "--retry-delay", "1ms", "--verify", "--quiet")
	r.Total.sane(t, 24)
	if r.Total.Status["429"] == 0 || r.Total.Retries == 0 {
		t.Fatalf("no 429 retried: %+v", r.Total)
	}
	if r.Total.Acked != 1200 || r.Total.Refused != 0 || r.Total.Unknown != 0 {
		t.Errorf("acked %d refused %d unknown %d, want all 1200 acknowledged", r.Total.Acked, r.Total.Refused, r.Total.Unknown)
	}
	if in := n.a.Pipeline().Status().EventsIn; in != 1200 || r.Node == nil || r.Node.EventsIn != 1200 || r.Node.Duplicates < uint64(r.Total.Dup) {
		// The node counts a duplicate on every retry that finds one, also on
		// retries that got a 429 again; the client counts final answers.
		t.Errorf("node stored %d events for 1200 sent with retries; node counters %+v, client saw %d duplicates", in, r.Node, r.Total.Dup)
	}
	if r.Verify == nil || r.Verify.Found != 1200 || r.Verify.Lost != 0 || r.Verify.Duplicated != 0 || !r.OK {
		t.Errorf("verification %+v (%s)", r.Verify, r.VerifyError)
	}
	// A batch of 24 never fits a ring of 16 at once: the retry of its
	// accepted part is answered as duplicates.
	if r.Total.Dup == 0 {
		t.Errorf("no event answered as a duplicate (%d requests, %d retries)", r.Total.Requests, r.Total.Retries)
	}
}

// A ring without a journal that wrapped: the read-back says why it cannot verify.
func TestVerifyRangeGone(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Ring.BufferSize = 32
		c.Journal.Enabled = false
		c.Journal.DefaultAck = "memory"
	})
	code, out, errs := perf(t, "--url", n.url, "--events", "200", "--batch", "10", "--ack", "memory", "--verify", "--quiet")
	if code != 1 || !strings.Contains(out, "no longer held by the node (earliest available") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

// ack=durable on a node without a journal: every request is refused (400),
// counted, its answer shown, and the exit status says nothing was acknowledged.
func TestAllRefused(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Journal.Enabled = false
		c.Journal.DefaultAck = "memory"
	})
	code, out, errs := perf(t, "--url", n.url, "--events", "5", "--ack", "durable", "--quiet")
	if code != 1 || !strings.Contains(out, "400: 5") || !strings.Contains(out, "first 400 answer:") ||
		!strings.Contains(errs, "acknowledged no event") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

// Bearer tokens: without one every request is refused (401, counted); a
// wrong one cannot read back, which the verification says; a publish
// token publishes and reads back but may not read the node's status; an
// admin token from $BADBATCH_TOKEN does everything.
func TestTokens(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.API.PublishTokens = []string{"pub-token"}
		c.API.AdminTokens = []string{"admin-token"}
	})
	code, out, errs := perf(t, "--url", n.url, "--events", "3", "--ack", "memory", "--quiet")
	if code != 1 || !strings.Contains(out, "401: 3") || !strings.Contains(errs, "acknowledged no event") {
		t.Errorf("no token: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = perf(t, "--url", n.url, "--events", "50", "--ack", "memory", "--token", "pub-token", "--verify", "--quiet")
	if code != 0 || !strings.Contains(out, "acknowledged 50, lost 0, duplicated 0") || strings.Contains(out, "node counters") {
		t.Errorf("publish token: exit %d\n%s\n%s", code, out, errs)
	}
	var o, e bytes.Buffer
	env := func(k string) string {
		if k == "BADBATCH_TOKEN" {
			return "admin-token"
		}
		return ""
	}
	code = run(context.Background(), []string{"--url", n.url, "--events", "50", "--ack", "memory", "--verify", "--quiet"}, env, &o, &e, false)
	if code != 0 || !strings.Contains(o.String(), "acknowledged 50, lost 0, duplicated 0") || !strings.Contains(o.String(), "node counters") {
		t.Errorf("admin token from the environment: exit %d\n%s\n%s", code, o.String(), e.String())
	}
}

func TestOutFileAndProgress(t *testing.T) {
	n := startNode(t, nil)
	path := filepath.Join(t.TempDir(), "result.json")
	code, out, errs := perf(t, "--url", n.url, "--throughput-test", "--duration", "600ms", "--ack", "memory",
		"--out", path, "--progress-interval", "100ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "throughput:") || !strings.Contains(errs, "events/s") || strings.Contains(errs, "\r") {
		t.Errorf("text report or plain progress lines missing:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil || r.Total.Acked == 0 || !r.OK {
		t.Fatalf("--out file: %v: %s", err, b)
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--events", "abc"}, `invalid argument "abc" for "--events"`},
		{[]string{"--events", "0"}, "invalid --events 0"},
		{[]string{"--batch", "0"}, "invalid --batch 0"},
		{[]string{"--producers", "0"}, "invalid --producers 0"},
		{[]string{"--producers", "4", "--connections", "2"}, "invalid --connections 2"},
		{[]string{"--payload-size", "1"}, "invalid --payload-size 1"},
		{[]string{"--ack", "fast"}, `invalid --ack "fast"`},
		{[]string{"--rate", "-5"}, "invalid --rate -5"},
		{[]string{"--duration", "0s"}, "invalid --duration 0s"},
		{[]string{"--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{[]string{"--warmup", "-1s"}, "invalid --warmup -1s"},
		{[]string{"--timeout", "0s"}, "invalid --timeout 0s"},
		{[]string{"--url", "localhost:8080"}, `invalid --url "localhost:8080"`},
		{[]string{"--url", "http://h:1/api"}, "base URL only"},
		{[]string{"--latency-test", "--throughput-test"}, "exclusive"},
		{[]string{"--nope"}, "unknown flag: --nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--page-size", "0"}, "invalid --page-size 0"},
		{[]string{"--out", "/nonexistent-dir/x.json"}, "--out:"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := perf(t, tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit 2 naming %q", code, errs, out, tc.want)
			}
		})
	}
	// Every problem is reported at once.
	_, _, errs := perf(t, "--batch", "0", "--ack", "x")
	if !strings.Contains(errs, "--batch") || !strings.Contains(errs, "--ack") {
		t.Errorf("not every problem reported: %s", errs)
	}
}

func TestHelpAndUnreachable(t *testing.T) {
	code, out, _ := perf(t, "-h")
	if code != 0 || !strings.Contains(out, "--latency-test") || !strings.Contains(out, "coordinated omission") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	code, _, errs := perf(t, "--url", "http://"+addr, "--events", "1")
	if code != 1 || !strings.Contains(errs, "cannot reach the node") {
		t.Errorf("unreachable: exit %d, %s", code, errs)
	}
}

// fakeNode is a small appliance look-alike (same publish and read
// contract) that misbehaves on read-back in one chosen way.
type fakeNode struct {
	mu     sync.Mutex
	events []fakeEvent
	fault  string // "drop", "duplicate", "corrupt" or ""
}

type fakeEvent struct {
	Sequence         int64           `json:"sequence"`
	Producer         string          `json:"producer"`
	ProducerSequence int64           `json:"producer_sequence"`
	Data             json.RawMessage `json:"data"`
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/health":
		fmt.Fprint(w, `{"ok":true}`)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/events":
		var in []struct {
			Sequence int64           `json:"sequence"`
			Data     json.RawMessage `json:"data"`
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(r.Body)
		batch := bytes.HasPrefix(bytes.TrimSpace(body.Bytes()), []byte("["))
		var err error
		if batch {
			err = json.Unmarshal(body.Bytes(), &in)
		} else {
			in = in[:0]
			in = append(in, struct {
				Sequence int64           `json:"sequence"`
				Data     json.RawMessage `json:"data"`
			}{})
			err = json.Unmarshal(body.Bytes(), &in[0])
		}
		if err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":%q}`, err.Error())
			return
		}
		f.mu.Lock()
		var res []string
		for _, e := range in {
			seq := int64(len(f.events))
			f.events = append(f.events, fakeEvent{seq, r.Header.Get("X-Producer-ID"), e.Sequence, e.Data})
			res = append(res, fmt.Sprintf(`{"sequence":%d}`, seq))
		}
		f.mu.Unlock()
		if !batch {
			fmt.Fprintf(w, `{"sequence":%s,"ack":"memory"}`, strings.TrimSuffix(strings.TrimPrefix(res[0], `{"sequence":`), "}"))
			return
		}
		fmt.Fprintf(w, `{"ack":"memory","accepted":%d,"duplicates":0,"rejected":0,"results":[%s]}`, len(res), strings.Join(res, ","))
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/events":
		from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []fakeEvent{}
		cursor := int64(len(f.events)) - 1
		for s := from; s <= to && s <= cursor; s++ {
			e := f.events[s]
			switch {
			case f.fault == "drop" && s == 7:
				continue // acknowledged, never read back
			case f.fault == "corrupt" && s == 3:
				e.Data = json.RawMessage(`"tampered"`)
			}
			out = append(out, e)
			if f.fault == "duplicate" && s == 5 {
				// The same event stored a second time at a later sequence.
				d := e
				d.Sequence = cursor + 1
				f.events = append(f.events, d)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"events": out, "count": len(out), "next": min(to, cursor) + 1, "earliest": 0, "cursor": int64(len(f.events)) - 1})
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"error":"not found"}`)
	}
}

func startFake(t *testing.T, fault string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &fakeNode{fault: fault}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// Verification catches an acknowledged event that the node lost, one it
// stored twice and one whose payload changed; the honest fake passes.
func TestVerifyCatchesFaults(t *testing.T) {
	for _, tc := range []struct {
		fault string
		code  int
		want  string
	}{
		{"", 0, "acknowledged 60, lost 0, duplicated 0"},
		{"drop", 1, "acknowledged 60, lost 1, duplicated 0"},
		{"duplicate", 1, "acknowledged 60, lost 0, duplicated 1"},
		{"corrupt", 1, "payload mismatched 1"},
	} {
		t.Run("fault="+tc.fault, func(t *testing.T) {
			u := startFake(t, tc.fault)
			code, out, errs := perf(t, "--url", u, "--events", "60", "--batch", "3", "--producers", "2",
				"--ack", "memory", "--verify", "--page-size", "7", "--quiet")
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errs)
			}
			if tc.code != 0 && (!strings.Contains(out, "verification: FAILED") || !strings.Contains(errs, "verification failed")) {
				t.Errorf("failure not reported:\n%s\n%s", out, errs)
			}
		})
	}
}
