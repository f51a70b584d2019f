package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/appliance/streams"
	"github.com/badbatch/badbatch/config"
)

// wasmTestCache is wazero's compilation cache shared by every node of these
// tests (and kept across runs): compiling a Go guest takes seconds, more
// under -race.
var wasmTestCache = filepath.Join(os.TempDir(), "badbatch-appliance-test-wasm-cache")

// copyModule copies the repo's modules/NAME.{wasm,toml} into dir.
func copyModule(t testing.TB, dir, name string) {
	t.Helper()
	src := filepath.Join("..", "modules")
	if _, err := os.Stat(filepath.Join(src, name+".wasm")); err != nil {
		src = filepath.Join(src, "examples", name) // an example not loaded by default
	}
	for _, ext := range []string{".wasm", ".toml"} {
		b, err := os.ReadFile(filepath.Join(src, name+ext))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, name+ext, b)
	}
}

// writeFile writes dir/name atomically (temporary file, rename), as the
// hot-reload contract asks of writers.
func writeFile(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func hostileWasm(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "wasmhost", "testdata", "hostile.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startNode starts a node like start, but leaves judging Run's result to
// the test (stop returns it).
func startNode(t *testing.T, cfg config.Config, opts ...Option) *node {
	t.Helper()
	return launch(t, cfg, false, opts...)
}

// output is one record of GET /api/v1/streams/{name}/events.
type output struct {
	SourceMissing bool            `json:"source_missing"`
	Sequence      int64           `json:"sequence"`
	Kind          string          `json:"kind"`
	Module        string          `json:"module"`
	ModuleVersion string          `json:"module_version"`
	Source        *int64          `json:"source"`
	Key           string          `json:"key"`
	Data          json.RawMessage `json:"data"`
	Error         string          `json:"error"`
}

// readStream returns every output of stream name (404 = none yet).
func (n *node) readStream(name string) []output {
	n.t.Helper()
	var all []output
	from := int64(0)
	for {
		r := n.do("GET", fmt.Sprintf("/api/v1/streams/%s/events?from=%d&limit=1000", name, from), nil)
		if r.code == 404 {
			return nil
		}
		wantCode(n.t, r, 200)
		var page struct {
			Events []output `json:"events"`
			Next   int64    `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			n.t.Fatal(err)
		}
		all = append(all, page.Events...)
		if len(page.Events) == 0 {
			return all
		}
		from = page.Next
	}
}

// waitStream polls stream name until cond holds (deadline 20s).
func (n *node) waitStream(name string, cond func([]output) bool) []output {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		outs := n.readStream(name)
		if cond(outs) {
			return outs
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("stream %s: condition not met in time; have %d outputs: %+v", name, len(outs), outs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publishSeqs(t *testing.T, n *node, body string) []int64 {
	t.Helper()
	r := n.postJSON("/api/v1/events?ack=durable", body)
	wantCode(t, r, 200)
	var res struct {
		Results []struct {
			Sequence int64 `json:"sequence"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(res.Results))
	for i, x := range res.Results {
		out[i] = x.Sequence
	}
	return out
}

func bySource(outs []output, module string) map[int64][]output {
	m := map[int64][]output{}
	for _, o := range outs {
		if o.Source != nil && (module == "" || o.Module == module) {
			m[*o.Source] = append(m[*o.Source], o)
		}
	}
	return m
}

// TestFilterAndRouterOutputs: the repo's filter and router (Go guests) on
// events published over HTTP: the filter drops debug events, the router
// routes errors to alerts and audits to archive with an enriched copy on
// default, and an event it fails on lands in dead-letter; ack=processed
// answers with the outputs.
func TestFilterAndRouterOutputs(t *testing.T) {
	cfg := testConfig(t)
	copyModule(t, cfg.Modules.Dir, "filter")
	copyModule(t, cfg.Modules.Dir, "router")
	n := startNode(t, cfg)
	seqs := publishSeqs(t, n, `[{"data":{"level":"debug","n":0}},{"data":{"level":"error","n":1}},{"data":{"level":"audit","n":2}},{"data":{"n":3}}]`)
	debug, errEv, audit, bad := seqs[0], seqs[1], seqs[2], seqs[3]

	alerts := n.waitStream("alerts", func(o []output) bool { return len(o) >= 1 })
	if len(alerts) != 1 || *alerts[0].Source != errEv || alerts[0].Module != "router" || alerts[0].Kind != "forward" ||
		!strings.Contains(string(alerts[0].Data), `"n":1`) {
		t.Errorf("alerts %+v", alerts)
	}
	archive := n.waitStream("archive", func(o []output) bool { return len(o) >= 1 })
	if len(archive) != 1 || *archive[0].Source != audit {
		t.Errorf("archive %+v", archive)
	}
	dead := n.waitStream("dead-letter", func(o []output) bool { return len(o) >= 1 })
	if len(dead) != 1 || *dead[0].Source != bad || dead[0].Module != "router" || !strings.Contains(dead[0].Error, "no string field level") {
		t.Errorf("dead-letter %+v", dead)
	}
	// default: filter forwards error, audit and the field-less event (not
	// debug); router forwards debug (no rule) and emits enriched copies.
	def := n.waitStream("default", func(o []output) bool { return len(o) >= 6 })
	filter, router := bySource(def, "filter"), bySource(def, "router")
	if len(filter[debug]) != 0 {
		t.Errorf("the filter did not drop the debug event: %+v", filter[debug])
	}
	for i, s := range []int64{errEv, audit, bad} {
		// Forwards are stored by reference: the data is the input event's.
		if len(filter[s]) != 1 || filter[s][0].Kind != "forward" || !strings.Contains(string(filter[s][0].Data), fmt.Sprintf(`"n":%d`, i+1)) {
			t.Errorf("filter output for %d: %+v", s, filter[s])
		}
	}
	if len(router[debug]) != 1 || router[debug][0].Kind != "forward" {
		t.Errorf("router output for debug: %+v", router[debug])
	}
	if e := router[errEv]; len(e) != 1 || e[0].Kind != "emit" || e[0].Key != "error" || !strings.Contains(string(e[0].Data), `"routed_by":"router"`) {
		t.Errorf("router enrichment for the error event: %+v", e)
	}
	if len(def) != 6 {
		t.Errorf("default has %d outputs, want 6: %+v", len(def), def)
	}

	// ack=processed answers after the handlers ran, with their outputs.
	r := n.postJSON("/api/v1/events?ack=processed", `{"data":{"level":"fatal","n":9},"key":"k9"}`)
	wantCode(t, r, 200)
	var ans struct {
		Sequence int64  `json:"sequence"`
		Ack      string `json:"ack"`
		Outputs  []struct {
			Module, Kind, Stream, Key string
			Data                      json.RawMessage
		} `json:"outputs"`
	}
	if err := json.Unmarshal(r.body, &ans); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, o := range ans.Outputs {
		got[o.Module+"/"+o.Kind+"/"+o.Stream] = true
	}
	if ans.Ack != "processed" || len(ans.Outputs) != 3 || !got["filter/forward/default"] || !got["router/forward/alerts"] || !got["router/emit/default"] {
		t.Errorf("ack=processed answer %s", r.body)
	}
	// The processed sequence is in status, and the outputs are in the streams already.
	if al := n.readStream("alerts"); len(al) != 2 || *al[1].Source != ans.Sequence {
		t.Errorf("alerts after ack=processed: %+v", al)
	}
	// A batch with ack=processed: outputs per result, in request order.
	r = n.postJSON("/api/v1/events?ack=processed", `[{"data":{"level":"trace"}},{"data":{"level":"audit"}}]`)
	wantCode(t, r, 200)
	var batch struct {
		Results []struct {
			Outputs []struct{ Module, Stream string } `json:"outputs"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Results) != 2 || len(batch.Results[0].Outputs) != 1 || len(batch.Results[1].Outputs) != 3 {
		t.Errorf("batch ack=processed %s", r.body)
	}

	// Modules and streams are listed; module stats reach status and metrics.
	r = n.do("GET", "/api/v1/modules", nil)
	wantCode(t, r, 200)
	var mods struct {
		Modules []struct {
			Name     string `json:"name"`
			State    string `json:"state"`
			EventsIn uint64 `json:"events_in"`
			SHA256   string `json:"sha256"`
		} `json:"modules"`
		Graph [][]string `json:"graph"`
	}
	if err := json.Unmarshal(r.body, &mods); err != nil {
		t.Fatal(err)
	}
	if len(mods.Modules) != 2 || mods.Modules[0].Name != "filter" || mods.Modules[0].EventsIn != 7 || mods.Modules[1].State != "running" ||
		fmt.Sprint(mods.Graph) != "[[filter] [router]]" {
		t.Errorf("modules %s", r.body)
	}
	wantCode(t, n.do("GET", "/api/v1/modules/router", nil), 200)
	wantCode(t, n.do("GET", "/api/v1/modules/nope", nil), 404)
	wantCode(t, n.do("GET", "/api/v1/modules/..%2Fx", nil), 400)
	r = n.do("GET", "/api/v1/streams", nil)
	wantCode(t, r, 200)
	for _, s := range []string{`"alerts"`, `"archive"`, `"default"`, `"dead-letter"`} {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("stream list lacks %s: %s", s, r.body)
		}
	}
	m := string(n.do("GET", "/metrics", nil).body)
	for _, want := range []string{`badbatch_module_events_in_total{module="filter"} 7`, `badbatch_module_dead_lettered_total{module="router"} 1`,
		`badbatch_module_call_latency_seconds{module="router",quantile="0.99"}`, `badbatch_stream_last_sequence{stream="alerts"} 1`,
		`badbatch_module_quarantined{module="filter"} 0`, "badbatch_wasm_processed_sequence 6"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	st := string(n.do("GET", "/api/v1/status", nil).body)
	if !strings.Contains(st, `"wasm":{`) || !strings.Contains(st, `"processed_sequence":6`) {
		t.Errorf("status %s", st)
	}
}

// TestStreamReadsAndTail: the output stream endpoints keep the input
// stream's conventions (400 bad range, 404 unknown stream, SSE tail).
func TestStreamReadsAndTail(t *testing.T) {
	cfg := testConfig(t)
	copyModule(t, cfg.Modules.Dir, "wat-counter")
	n := startNode(t, cfg)
	// A tail opened before anything was written to the stream.
	req, err := http.NewRequest("GET", n.url+"/api/v1/streams/default/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("tail: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var rest string
		for {
			k, err := res.Body.Read(buf)
			rest += string(buf[:k])
			for {
				i := strings.IndexByte(rest, '\n')
				if i < 0 {
					break
				}
				lines <- rest[:i]
				rest = rest[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	seqs := publishSeqs(t, n, `[{"data":"a"},{"data":"b"}]`)
	var got []string
	timeout := time.After(20 * time.Second)
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("tail ended early")
			}
			if d, ok := strings.CutPrefix(l, "data: "); ok {
				got = append(got, d)
			}
		case <-timeout:
			t.Fatalf("tail got %q", got)
		}
	}
	if !strings.Contains(got[0], fmt.Sprintf(`"source":%d`, seqs[0])) || !strings.Contains(got[1], `"data":"b"`) ||
		!strings.Contains(got[0], `"module":"wat-counter"`) {
		t.Errorf("tail data %q", got)
	}
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/v1/streams/default/events?from=1&to=0", 400},
		{"/api/v1/streams/default/events?limit=0", 400},
		{"/api/v1/streams/default/events?from=-1", 400},
		{"/api/v1/streams/nosuch/events", 404},
		{"/api/v1/streams/Bad!/events", 400},
		{"/api/v1/streams/dead-letter/events", 200}, // reserved: readable while empty
		{"/api/v1/streams/default/events?from=1&to=1", 200},
	} {
		if r := n.do("GET", c.path, nil); r.code != c.code {
			t.Errorf("GET %s: %d, want %d: %s", c.path, r.code, c.code, r.body)
		}
	}
	r := n.do("GET", "/api/v1/streams/default/events?from=1&to=1", nil)
	if !strings.Contains(string(r.body), `"count":1`) || !strings.Contains(string(r.body), `"data":"b"`) {
		t.Errorf("range read %s", r.body)
	}
}

// TestHotReloadWhilePublishing drops a module into the modules directory
// while events are published: it processes live events shortly after, and
// every event published after its first output has exactly one output of
// it (nothing lost, nothing twice).
func TestHotReloadWhilePublishing(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var published []int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := n.postJSON("/api/v1/events?ack=memory", fmt.Sprintf(`{"data":%d}`, i))
			if r.code != 200 {
				t.Errorf("publish: %d %s", r.code, r.body)
				return
			}
			var a struct{ Sequence int64 }
			_ = json.Unmarshal(r.body, &a)
			mu.Lock()
			published = append(published, a.Sequence)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	dropped := time.Now()
	copyModule(t, cfg.Modules.Dir, "wat-counter")
	outs := n.waitStream("default", func(o []output) bool { return len(o) > 0 })
	live := time.Since(dropped)
	t.Logf("module live %v after the files were dropped in (debounce %v)", live, cfg.Modules.Debounce.Duration)
	if live > 5*time.Second {
		t.Errorf("module took %v to go live", live)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	last := published[len(published)-1]
	mu.Unlock()
	first := *outs[0].Source
	outs = n.waitStream("default", func(o []output) bool { return len(o) > 0 && *o[len(o)-1].Source == last })
	seen := map[int64]int{}
	for _, o := range outs {
		seen[*o.Source]++
	}
	for s := first; s <= last; s++ {
		if seen[s] != 1 {
			t.Fatalf("event %d has %d outputs (module live from %d to %d)", s, seen[s], first, last)
		}
	}
	if ok, detail := n.a.Pipeline().ProcessorsOK(); !ok {
		t.Error(detail)
	}
}

// TestHostileModule: a module that traps, loops forever and reports errors
// does not take the node down; each poison event lands in dead-letter with
// its error and the others are processed.
func TestHostileModule(t *testing.T) {
	cfg := testConfig(t)
	writeFile(t, cfg.Modules.Dir, "hostile.wasm", hostileWasm(t))
	writeFile(t, cfg.Modules.Dir, "hostile.toml", []byte("name = \"hostile\"\nroutes = [\"side\"]\ntimeout = \"200ms\"\nquarantine_after = 100\n"))
	n := startNode(t, cfg)
	seqs := publishSeqs(t, n, `[{"data":"ok1"},{"data":"Trap"},{"data":"ok2"},{"data":"Loop"},{"data":"Error"},{"data":"Mirror"},{"data":"ok3"}]`)
	dead := n.waitStream("dead-letter", func(o []output) bool { return len(o) >= 3 })
	d := bySource(dead, "hostile")
	if len(dead) != 3 || !strings.Contains(d[seqs[1]][0].Error, "trap") || !strings.Contains(d[seqs[3]][0].Error, "timed out") ||
		!strings.Contains(d[seqs[4]][0].Error, "bad event") || string(d[seqs[1]][0].Data) != `"Trap"` {
		t.Errorf("dead-letter %+v", dead)
	}
	def := n.waitStream("default", func(o []output) bool { return len(o) >= 4 })
	f := bySource(def, "hostile")
	for _, i := range []int{0, 2, 6} {
		if len(f[seqs[i]]) != 1 || f[seqs[i]][0].Kind != "forward" {
			t.Errorf("event %d: %+v", i, f[seqs[i]])
		}
	}
	if e := f[seqs[5]]; len(e) != 1 || e[0].Kind != "emit" {
		t.Errorf("mirror emit %+v", e)
	}
	side := n.waitStream("side", func(o []output) bool { return len(o) >= 1 })
	if len(side) != 1 || *side[0].Source != seqs[5] {
		t.Errorf("side %+v", side)
	}
	wantCode(t, n.do("GET", "/livez", nil), 200)
	r := n.do("GET", "/api/v1/modules/hostile", nil)
	if !strings.Contains(string(r.body), `"traps":`) || !strings.Contains(string(r.body), `"state":"running"`) {
		t.Errorf("module status %s", r.body)
	}
	// Still processing.
	r = n.postJSON("/api/v1/events?ack=processed", `{"data":"after"}`)
	wantCode(t, r, 200)
	if !strings.Contains(string(r.body), `"kind":"forward"`) {
		t.Errorf("after the poison events: %s", r.body)
	}
}

func multipartUpload(t *testing.T, manifest string, wasm []byte) ([]byte, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("manifest", manifest); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("wasm", "m.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(wasm); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return body.Bytes(), mw.FormDataContentType()
}

// TestModuleUploadAndDelete: install, replace, reject and delete modules
// over REST with the admin scope; the rollout download path serves the
// binary with its version and sha256.
func TestModuleUploadAndDelete(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.AdminTokens = []string{"adm"}
	cfg.API.PublishTokens = []string{"pub"}
	os.RemoveAll(cfg.Modules.Dir) // a node without a modules directory: uploading creates it
	n := startNode(t, cfg)
	adm := []string{"Authorization", "Bearer adm"}
	pub := []string{"Authorization", "Bearer pub"}
	wasm, err := os.ReadFile(filepath.Join("..", "modules", "wat-counter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	man := "name = \"wc\"\nversion = \"1.0.0\"\ncapabilities = [\"metrics\"]\n"
	body, ct := multipartUpload(t, man, wasm)
	wantCode(t, n.do("PUT", "/api/v1/modules/wc", body, append([]string{"Content-Type", ct}, pub...)...), 403)
	wantCode(t, n.do("PUT", "/api/v1/modules/wc", body, "Content-Type", ct), 401)
	r := n.do("PUT", "/api/v1/modules/wc", body, append([]string{"Content-Type", ct}, adm...)...)
	wantCode(t, r, 201)
	if !strings.Contains(string(r.body), `"version":"1.0.0"`) {
		t.Errorf("install answer %s", r.body)
	}
	r = n.postJSON("/api/v1/events?ack=processed", `{"data":1}`, pub...)
	wantCode(t, r, 200)
	if !strings.Contains(string(r.body), `"module":"wc"`) {
		t.Errorf("uploaded module did not process: %s", r.body)
	}
	// A bad upload (not wasm; and a manifest naming a missing capability) is
	// 422 with the reason; the running version stays.
	bad, ct2 := multipartUpload(t, "name = \"wc\"\nversion = \"2.0.0\"\n", []byte("not wasm at all"))
	r = n.do("PUT", "/api/v1/modules/wc", bad, append([]string{"Content-Type", ct2}, adm...)...)
	wantCode(t, r, 422)
	if !strings.Contains(string(r.body), "not a WebAssembly binary") {
		t.Errorf("422 body %s", r.body)
	}
	bad, ct2 = multipartUpload(t, "name = \"wc\"\nversion = \"2.0.0\"\n", wasm)
	r = n.do("PUT", "/api/v1/modules/wc", bad, append([]string{"Content-Type", ct2}, adm...)...)
	wantCode(t, r, 422)
	if !strings.Contains(string(r.body), "capability") {
		t.Errorf("422 body %s", r.body)
	}
	r = n.do("GET", "/api/v1/modules/wc", nil, pub...)
	if !strings.Contains(string(r.body), `"version":"1.0.0"`) {
		t.Errorf("after rejected uploads %s", r.body)
	}
	// Replace via JSON + base64 (POST, name from the manifest).
	js, _ := json.Marshal(map[string]string{"manifest": strings.Replace(man, "1.0.0", "1.1.0", 1), "wasm": base64.StdEncoding.EncodeToString(wasm)})
	r = n.do("POST", "/api/v1/modules", js, append([]string{"Content-Type", "application/json"}, adm...)...)
	wantCode(t, r, 200)
	if !strings.Contains(string(r.body), `"version":"1.1.0"`) {
		t.Errorf("replace answer %s", r.body)
	}
	// Download for rollout: the bytes with version and sha256 headers.
	wantCode(t, n.do("GET", "/api/v1/modules/wc/wasm", nil, pub...), 403)
	r = n.do("GET", "/api/v1/modules/wc/wasm", nil, adm...)
	wantCode(t, r, 200)
	sum := sha256.Sum256(wasm)
	if !bytes.Equal(r.body, wasm) || r.header.Get("X-Module-SHA256") != hex.EncodeToString(sum[:]) || r.header.Get("X-Module-Version") != "1.1.0" {
		t.Errorf("download: %d bytes, headers %v", len(r.body), r.header)
	}
	r = n.do("GET", "/api/v1/modules/wc/manifest", nil, adm...)
	if r.code != 200 || !strings.Contains(string(r.body), `version = "1.1.0"`) {
		t.Errorf("manifest download %d %s", r.code, r.body)
	}
	if got := n.a.ModuleStore().List(); len(got) != 1 || got[0].Name != "wc" || got[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("ModuleStore.List %+v", got)
	}
	wantCode(t, n.do("POST", "/api/v1/modules/wc/reload", nil, adm...), 200)
	wantCode(t, n.do("DELETE", "/api/v1/modules/wc", nil, pub...), 403)
	wantCode(t, n.do("DELETE", "/api/v1/modules/wc", nil, adm...), 200)
	wantCode(t, n.do("DELETE", "/api/v1/modules/wc", nil, adm...), 404)
	wantCode(t, n.do("GET", "/api/v1/modules/wc/wasm", nil, adm...), 404)
	if _, err := os.Stat(filepath.Join(cfg.Modules.Dir, "wc.wasm")); !os.IsNotExist(err) {
		t.Errorf("wc.wasm still there: %v", err)
	}
	r = n.postJSON("/api/v1/events?ack=processed", `{"data":2}`, pub...)
	wantCode(t, r, 200)
	if !strings.Contains(string(r.body), `"outputs":[]`) {
		t.Errorf("after delete: %s", r.body)
	}
	// Bad requests.
	wantCode(t, n.do("PUT", "/api/v1/modules/wc", []byte("x"), append([]string{"Content-Type", "text/plain"}, adm...)...), 415)
	wantCode(t, n.do("PUT", "/api/v1/modules/wc", []byte(`{"manifest":"x"}`), append([]string{"Content-Type", "application/json"}, adm...)...), 400)
	wantCode(t, n.do("PUT", "/api/v1/modules/wc", []byte(`{"manifest":"x","wasm":"%%%"}`), append([]string{"Content-Type", "application/json"}, adm...)...), 400)
	wantCode(t, n.do("PUT", "/api/v1/modules/UP", body, append([]string{"Content-Type", ct}, adm...)...), 400)
	r = n.do("PATCH", "/api/v1/modules/wc", nil, adm...)
	wantCode(t, r, 405)
	if allow := r.header.Get("Allow"); allow != "GET, PUT, DELETE, HEAD" {
		t.Errorf("Allow %q", allow)
	}
	wantCode(t, n.do("PATCH", "/api/v1/streams/default/events", nil, adm...), 405)
}

// blocker holds the ring before the WASM stage (forever: the helper
// process is killed).
type blocker struct{ ch chan struct{} }

func (b *blocker) OnEvent(*event.Slot, int64, bool) error { <-b.ch; return nil }

// TestReplayHelperProcess is not a test: TestRestartReplaysUnprocessedEvents
// runs it in a child process (the test binary itself) as a node whose WASM
// stage never sees new events, and kills it with SIGKILL.
func TestReplayHelperProcess(t *testing.T) {
	dir := os.Getenv("BADBATCH_REPLAY_HELPER")
	if dir == "" {
		t.Skip("helper process for TestRestartReplaysUnprocessedEvents")
	}
	var cfg config.Config
	b, err := os.ReadFile(filepath.Join(dir, "cfg.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)), WithListener(ln), WithWasmCacheDir(wasmTestCache),
		WithStages([]pipeline.Stage{{Name: "hold", Handler: &blocker{ch: make(chan struct{})}}}))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.Run(context.Background()) }()
	<-a.Ready()
	writeFile(t, dir, "addr", []byte(ln.Addr().String()))
	select {} // until killed
}

// TestRestartReplaysUnprocessedEvents: events journalled but not yet seen
// by the WASM stage when the node is killed (SIGKILL; a stage before the
// WASM stage holds them) are replayed into the stage by the next node on
// the same data directory; events processed and checkpointed before are
// not replayed.
func TestRestartReplaysUnprocessedEvents(t *testing.T) {
	cfg := testConfig(t)
	copyModule(t, cfg.Modules.Dir, "wat-counter")

	// First node: 4 events processed; a clean stop checkpoints them.
	first := startNode(t, cfg)
	early := publishSeqs(t, first, `[{"data":"p0"},{"data":"p1"},{"data":"p2"}]`)
	wantCode(t, first.postJSON("/api/v1/events?ack=processed", `{"data":"p3"}`), 200)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	// Second node, in a child process: 5 events journalled (ack=durable),
	// held before the WASM stage, then SIGKILL.
	hdir := t.TempDir()
	cj, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, hdir, "cfg.json", cj)
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplayHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BADBATCH_REPLAY_HELPER="+hdir)
	var childLog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &childLog, &childLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("helper process output:\n%s", childLog.String())
		}
	}()
	var addr []byte
	deadline := time.Now().Add(60 * time.Second)
	for len(addr) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("helper node did not start")
		}
		time.Sleep(20 * time.Millisecond)
		addr, _ = os.ReadFile(filepath.Join(hdir, "addr"))
	}
	second := &node{t: t, url: "http://" + string(addr)}
	late := publishSeqs(t, second, `[{"data":"u0"},{"data":"u1"},{"data":"u2"},{"data":"u3"},{"data":"u4"}]`)
	if st := string(second.do("GET", "/api/v1/status", nil).body); !strings.Contains(st, `"processed_sequence":3`) {
		t.Errorf("helper status: the WASM stage should be at 3: %s", st)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	http.DefaultClient.CloseIdleConnections()

	// Third node: replays the 5 journalled-but-unprocessed events first.
	third := startNode(t, cfg)
	outs := third.waitStream("default", func(o []output) bool { return len(o) >= 9 })
	got := bySource(outs, "wat-counter")
	for _, s := range append(append([]int64{}, early...), late...) {
		if len(got[s]) != 1 {
			t.Errorf("event %d has %d outputs", s, len(got[s]))
		}
	}
	if len(outs) != 9 {
		t.Errorf("%d outputs, want 9 (3 + p3 + 5 replayed; nothing processed twice): %+v", len(outs), outs)
	}
	if !strings.Contains(third.logs.String(), "replaying journal into the WASM stage") {
		t.Error("no replay logged")
	}
	st := string(third.do("GET", "/api/v1/status", nil).body)
	if !strings.Contains(st, `"replayed_at_start":5`) {
		t.Errorf("status %s", st)
	}
	// New events continue after the journal's last sequence.
	r := third.postJSON("/api/v1/events?ack=processed", `{"data":"new"}`)
	wantCode(t, r, 200)
	var a struct{ Sequence int64 }
	_ = json.Unmarshal(r.body, &a)
	if a.Sequence != late[4]+1 {
		t.Errorf("new event got %d, want %d", a.Sequence, late[4]+1)
	}
}

// TestReloadRescansModules: with hot reload off, SIGHUP's Reload loads new
// modules and unloads removed ones.
func TestReloadRescansModules(t *testing.T) {
	cfg := testConfig(t)
	cfg.Modules.HotReload = false
	n := startNode(t, cfg)
	copyModule(t, cfg.Modules.Dir, "wat-counter")
	r := n.postJSON("/api/v1/events?ack=processed", `{"data":1}`)
	if !strings.Contains(string(r.body), `"outputs":[]`) {
		t.Fatalf("a module was loaded without reload or watcher: %s", r.body)
	}
	if err := n.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r = n.postJSON("/api/v1/events?ack=processed", `{"data":2}`)
	if !strings.Contains(string(r.body), `"module":"wat-counter"`) {
		t.Errorf("after reload: %s", r.body)
	}
	for _, ext := range []string{".toml", ".wasm"} {
		if err := os.Remove(filepath.Join(cfg.Modules.Dir, "wat-counter"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r = n.postJSON("/api/v1/events?ack=processed", `{"data":3}`)
	if !strings.Contains(string(r.body), `"outputs":[]`) {
		t.Errorf("after removal and reload: %s", r.body)
	}
	// modules.hot_reload is live: turned on by a reload, the watcher picks
	// up a module dropped in afterwards.
	cfg.Modules.HotReload = true
	if err := n.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	copyModule(t, cfg.Modules.Dir, "wat-counter")
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = n.postJSON("/api/v1/events?ack=processed", `{"data":4}`)
		if strings.Contains(string(r.body), `"module":"wat-counter"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher did not load the module after hot_reload was turned on: %s", r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(n.logs.String(), `key=modules.hot_reload`) {
		t.Error("hot_reload change not logged")
	}
}

// TestAggregatorTimerAndFlush: module timers run in the node (their
// outputs land in the stream without a source), and a clean stop flushes
// the modules' partial state into the streams before they close.
func TestAggregatorTimerAndFlush(t *testing.T) {
	cfg := testConfig(t)
	wasm, err := os.ReadFile(filepath.Join("..", "modules", "aggregator.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg.Modules.Dir, "aggregator.wasm", wasm)
	writeFile(t, cfg.Modules.Dir, "aggregator.toml", []byte("name = \"aggregator\"\ntimer_interval = \"150ms\"\n[config]\nfield = \"value\"\n"))
	n := startNode(t, cfg)
	publishSeqs(t, n, `[{"data":{"value":1},"key":"a"},{"data":{"value":2},"key":"a"},{"data":{"value":3},"key":"a"}]`)
	outs := n.waitStream("default", func(o []output) bool { return len(o) >= 1 })
	if o := outs[0]; o.Module != "aggregator" || o.Source != nil || o.Key != "a" || string(o.Data) != `{"key":"a","count":3,"sum":6,"avg":2}` {
		t.Errorf("timer output %+v %s", o, o.Data)
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	// Second node: no timer during the test; the stop must flush.
	writeFile(t, cfg.Modules.Dir, "aggregator.toml", []byte("name = \"aggregator\"\ntimer_interval = \"1h\"\n[config]\nfield = \"value\"\n"))
	n2 := startNode(t, cfg)
	publishSeqs(t, n2, `[{"data":{"value":10},"key":"b"},{"data":{"value":20},"key":"b"}]`)
	if err := n2.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n2.logs.String(), "flush modules and close output streams") {
		t.Error("no flush step logged")
	}
	set, err := streams.Open(streams.Options{Dir: filepath.Join(cfg.Node.DataDir, "streams"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	st, ok := set.Get("default")
	if !ok {
		t.Fatal("no default stream on disk")
	}
	var recs []string
	if _, err := st.Read(0, 100, 100, func(r *streams.Record) error {
		recs = append(recs, string(r.Key)+" "+string(r.Data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1] != `b {"key":"b","count":2,"sum":30,"avg":15}` {
		t.Errorf("default stream after the flush: %q", recs)
	}
}

// TestConcurrentProcessedAcks: concurrent ack=processed publishes each get
// the outputs of their own events.
func TestConcurrentProcessedAcks(t *testing.T) {
	cfg := testConfig(t)
	copyModule(t, cfg.Modules.Dir, "wat-counter")
	n := startNode(t, cfg)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				body := fmt.Sprintf(`[{"data":{"g":%d,"i":%d}},{"data":{"g":%d,"i":%d,"second":true}}]`, g, i, g, i)
				r := n.postJSON("/api/v1/events?ack=processed", body)
				if r.code != 200 {
					t.Errorf("status %d %s", r.code, r.body)
					return
				}
				var ans struct {
					Results []struct {
						Outputs []struct{ Data json.RawMessage } `json:"outputs"`
					} `json:"results"`
				}
				if err := json.Unmarshal(r.body, &ans); err != nil {
					t.Error(err)
					return
				}
				want := []string{fmt.Sprintf(`{"g":%d,"i":%d}`, g, i), fmt.Sprintf(`{"g":%d,"i":%d,"second":true}`, g, i)}
				for k, res := range ans.Results {
					if len(res.Outputs) != 1 || string(res.Outputs[0].Data) != want[k] {
						t.Errorf("request g=%d i=%d result %d: %s", g, i, k, r.body)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestForwardsWithoutJournal: with the input journal disabled there is
// nothing to refer to, so forwards are stored with their data.
func TestForwardsWithoutJournal(t *testing.T) {
	cfg := testConfig(t)
	cfg.Journal.Enabled = false
	cfg.Journal.DefaultAck = "memory"
	copyModule(t, cfg.Modules.Dir, "filter")
	n := startNode(t, cfg)
	r := n.postJSON("/api/v1/events?ack=memory", `[{"data":{"level":"info","n":1}},{"data":{"level":"debug","n":2}},{"data":{"level":"warn","n":3}}]`)
	wantCode(t, r, 200)
	def := n.waitStream("default", func(o []output) bool { return len(o) >= 2 })
	if len(def) != 2 {
		t.Fatalf("default: %+v", def)
	}
	for i, o := range def {
		if o.Kind != "forward" || o.SourceMissing || !strings.Contains(string(o.Data), fmt.Sprintf(`"n":%d`, 2*i+1)) {
			t.Errorf("output %d: %+v", i, o)
		}
	}
}

// TestForwardRefsFollowDurability: a forward is stored by reference only
// to a durable input event: always with fsync = "batch" (the journal stage
// fsyncs before the WASM stage sees an event), never with "never" (a power
// loss could drop the input and reuse its sequence); the data read back is
// the input's either way.
func TestForwardRefsFollowDurability(t *testing.T) {
	for _, tc := range []struct {
		fsync string
		refs  bool
	}{{"batch", true}, {"never", false}} {
		t.Run(tc.fsync, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Journal.Fsync = tc.fsync
			copyModule(t, cfg.Modules.Dir, "wat-counter")
			n := startNode(t, cfg)
			wantCode(t, n.postJSON("/api/v1/events?ack=memory", `[{"data":{"n":0}},{"data":{"n":1}},{"data":{"n":2}}]`), 200)
			def := n.waitStream("default", func(o []output) bool { return len(o) >= 3 })
			for i, o := range def {
				if !strings.Contains(string(o.Data), fmt.Sprintf(`"n":%d`, i)) {
					t.Errorf("output %d: %+v", i, o)
				}
			}
			st, ok := n.a.wasm.streams.Get("default")
			if !ok {
				t.Fatal("no default stream")
			}
			if _, err := st.Read(0, 2, 3, func(r *streams.Record) error {
				if r.Ref != tc.refs {
					t.Errorf("fsync %s: output %d stored by reference: %v, want %v", tc.fsync, r.Sequence, r.Ref, tc.refs)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
