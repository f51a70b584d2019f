package appliance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/config"
)

// TestIdempotencyAcrossRestart: the journal keeps each event's producer
// sequence, reads from the journal return it, and after a restart the
// idempotency windows are rebuilt from the journal tail, so a retry of an
// event acknowledged before the restart is a duplicate with its original
// sequence (within the window; older ones are accepted as new, as live).
func TestIdempotencyAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ring.BufferSize = 16
	cfg.API.IdempotencyWindow = 8
	n := start(t, cfg)
	for s := 1; s <= 12; s++ {
		wantCode(t, n.postJSON("/api/v1/events?ack=durable", fmt.Sprintf(`{"data":{"n":%d},"producer":"dev-1","sequence":%d}`, s, s)), 200)
	}
	// A batch whose producer comes from the header, and an anonymous event.
	wantCode(t, n.postJSON("/api/v1/events?ack=durable", `[{"data":"h1","sequence":100},{"data":"h2","sequence":101}]`, "X-Producer-ID", "dev-2"), 200)
	wantCode(t, n.postJSON("/api/v1/events?ack=durable", `{"data":"anon"}`), 200)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}

	n2 := start(t, cfg)
	if !strings.Contains(n2.logs.String(), "idempotency windows rebuilt from the journal") {
		t.Error("rebuild not logged")
	}
	for _, tc := range []struct{ body, hdr, want string }{
		{`{"data":{"n":12},"producer":"dev-1","sequence":12}`, "", `{"sequence":11,"duplicate":true,"ack":"durable"}`},
		{`{"data":{"n":5},"producer":"dev-1","sequence":5}`, "", `{"sequence":4,"duplicate":true,"ack":"durable"}`},
		{`[{"data":"h2","sequence":101},{"data":"h3","sequence":102}]`, "dev-2",
			`{"ack":"durable","accepted":1,"duplicates":1,"rejected":0,"results":[{"sequence":13,"duplicate":true},{"sequence":15}]}`},
		// Sequence 2 left dev-1's window of 8 (slot 2 holds 10): accepted as new, as without a restart.
		{`{"data":{"n":2},"producer":"dev-1","sequence":2}`, "", `{"sequence":16,"ack":"durable"}`},
	} {
		var hdr []string
		if tc.hdr != "" {
			hdr = []string{"X-Producer-ID", tc.hdr}
		}
		r := n2.postJSON("/api/v1/events?ack=durable", tc.body, hdr...)
		wantCode(t, r, 200)
		if string(r.body) != tc.want {
			t.Errorf("retry %s after restart: %s, want %s", tc.body, r.body, tc.want)
		}
	}
	// Read back from the journal (older than the new ring's content).
	r := n2.do("GET", "/api/v1/events?from=0&to=14", nil)
	wantCode(t, r, 200)
	var got struct {
		Events []struct {
			Sequence    int64           `json:"sequence"`
			Producer    string          `json:"producer"`
			ProducerSeq *int64          `json:"producer_sequence"`
			Data        json.RawMessage `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 15 {
		t.Fatalf("read %d events: %s", len(got.Events), r.body)
	}
	for i, e := range got.Events {
		switch {
		case i < 12:
			if e.Producer != "dev-1" || e.ProducerSeq == nil || *e.ProducerSeq != int64(i+1) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
				t.Errorf("event %d read back as %+v", i, e)
			}
		case i < 14:
			if e.Producer != "dev-2" || e.ProducerSeq == nil || *e.ProducerSeq != int64(100+i-12) {
				t.Errorf("event %d read back as %+v", i, e)
			}
		default:
			if e.Producer != "" || e.ProducerSeq != nil || string(e.Data) != `"anon"` {
				t.Errorf("anonymous event read back as %+v", e)
			}
		}
	}
}

// fullDisk makes journal writes fail with ENOSPC while on, on real files
// (fsync of what was written still works, as on a full ext4).
type fullDisk struct {
	journal.File
	on *atomic.Bool
}

func (f fullDisk) WriteAt(b []byte, off int64) (int, error) {
	if f.on.Load() && len(b) > 0 {
		return 0, &os.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(b, off)
}

func metricValue(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestDiskFull507: while the journal's disk is full, ack=durable answers
// 507 with a clear error (the request in flight when it happened keeps its
// ring sequence; later ones are refused before anything is stored), reads
// (also from the journal) and ack=memory keep working, /readyz and the
// metrics say so; once space is freed the journal resumes by itself, the
// interrupted event is confirmed by a retry with its original sequence and
// new durable publishes succeed.
func TestDiskFull507(t *testing.T) {
	var full atomic.Bool
	opener := func(name string, flag int, perm os.FileMode) (journal.File, error) {
		f, err := journal.OSOpener(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return fullDisk{File: f, on: &full}, nil
	}
	cfg := testConfig(t)
	cfg.Ring.BufferSize = 16
	n := start(t, cfg, func(o *options) { o.opener = opener })
	for i := 0; i < 4; i++ {
		wantCode(t, n.postJSON("/api/v1/events?ack=durable", "["+strings.TrimSuffix(strings.Repeat(fmt.Sprintf(`{"data":%d},`, i), 10), ",")+"]"), 200)
	}

	full.Store(true)
	r := n.postJSON("/api/v1/events?ack=durable", `{"data":"interrupted","producer":"d","sequence":7}`)
	wantCode(t, r, 507)
	if m := r.json(t); m["sequence"] != 40.0 || m["ack"] != "memory" || !strings.Contains(m["error"].(string), "no space left on device") {
		t.Errorf("507 for the request in flight: %s", r.body)
	}
	in := n.a.Pipeline().Status().EventsIn
	r = n.postJSON("/api/v1/events?ack=durable", `{"data":"refused"}`)
	wantCode(t, r, 507)
	if m := r.json(t); !strings.Contains(m["error"].(string), "no space left on device") || !strings.Contains(m["error"].(string), "nothing was stored") || r.header.Get("Retry-After") == "" {
		t.Errorf("507 while full: %s", r.body)
	}
	if got := n.a.Pipeline().Status().EventsIn; got != in {
		t.Errorf("a refused event was stored (%d events in, was %d)", got, in)
	}
	r = n.do("GET", "/readyz", nil)
	wantCode(t, r, 503)
	if !strings.Contains(string(r.body), `"name":"journal","ok":false`) || !strings.Contains(string(r.body), "no space left on device") {
		t.Errorf("readyz while full: %s", r.body)
	}
	m := n.do("GET", "/metrics", nil).body
	if metricValue(t, m, "badbatch_journal_healthy") != 0 || metricValue(t, m, "badbatch_journal_disk_full") != 1 || metricValue(t, m, "badbatch_journal_write_errors_total") < 1 {
		t.Errorf("metrics while full:\n%s", grepLines(m, "badbatch_journal_"))
	}
	// Reads keep working: 0..24 come from the journal (the ring holds
	// 25..40; a read stops at that boundary and says where to continue).
	r = n.do("GET", "/api/v1/events?from=0&to=39", nil)
	wantCode(t, r, 200)
	if m := r.json(t); m["count"] != 25.0 || m["next"] != 25.0 {
		t.Errorf("journal read while full: count %v next %v", m["count"], m["next"])
	}
	r = n.do("GET", "/api/v1/events?from=25&to=39", nil)
	wantCode(t, r, 200)
	if m := r.json(t); m["count"] != 15.0 {
		t.Errorf("ring read while full: count %v", m["count"])
	}
	wantCode(t, n.postJSON("/api/v1/events?ack=memory", `{"data":"memory still works"}`), 200)

	full.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for n.a.journal.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("journal did not resume after the disk was freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantCode(t, n.do("GET", "/readyz", nil), 200)
	r = n.postJSON("/api/v1/events?ack=durable", `{"data":"interrupted","producer":"d","sequence":7}`)
	wantCode(t, r, 200)
	if string(r.body) != `{"sequence":40,"duplicate":true,"ack":"durable"}` {
		t.Errorf("retry after the disk was freed: %s", r.body)
	}
	wantCode(t, n.postJSON("/api/v1/events?ack=durable", `{"data":"after"}`), 200)
	m = n.do("GET", "/metrics", nil).body
	if metricValue(t, m, "badbatch_journal_healthy") != 1 || metricValue(t, m, "badbatch_journal_disk_full") != 0 {
		t.Errorf("metrics after recovery:\n%s", grepLines(m, "badbatch_journal_"))
	}
	r = n.do("GET", "/api/v1/events?from=40&to=40", nil)
	if !strings.Contains(string(r.body), `"data":"interrupted"`) || !strings.Contains(string(r.body), `"producer_sequence":7`) {
		t.Errorf("interrupted event read back as %s", r.body)
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// segmentBytes sums the sizes of the journal's segment files.
func segmentBytes(t *testing.T, dir string) (int64, int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
			n++
		}
	}
	return total, n
}

// publishKiB publishes count events of about 1 KiB each, ack=durable, in
// batches of 32.
func publishKiB(t *testing.T, n *node, count int) {
	t.Helper()
	payload := strings.Repeat("x", 1000)
	for i := 0; i < count; i += 32 {
		k := min(32, count-i)
		wantCode(t, n.postJSON("/api/v1/events?ack=durable", "["+strings.TrimSuffix(strings.Repeat(`{"data":"`+payload+`"},`, k), ",")+"]"), 200)
	}
}

// TestRetentionFromTOML: journal.retention_bytes and journal.retention_age
// are enforced by the running node with small segments (whole segments
// deleted, the active one kept), GET below the earliest retained sequence
// answers 410 with it, the metrics and status report it, and a restart
// keeps it.
func TestRetentionFromTOML(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Ring.BufferSize = 16
		cfg.Journal.SegmentSize = 64 * config.KiB
		cfg.Journal.RetentionBytes = 256 * config.KiB
		cfg.Journal.RetentionAge = config.D(0)
		n := start(t, cfg)
		publishKiB(t, n, 1024) // ~1 MiB: 16+ segments of 64 KiB
		jdir := filepath.Join(cfg.Node.DataDir, "journal")
		deadline := time.Now().Add(20 * time.Second)
		var total int64
		var segs int
		for {
			total, segs = segmentBytes(t, jdir)
			// Retention runs in the background after each roll; at most one
			// active segment (plus one batch) beyond the bound.
			if total <= int64(256+64+40)*1024 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if total > int64(256+64+40)*1024 || segs < 2 {
			t.Fatalf("%d segments, %d bytes on disk with retention_bytes = 256KiB", segs, total)
		}
		earliest := n.a.journal.Earliest()
		if earliest <= 0 {
			t.Fatalf("earliest %d: nothing evicted", earliest)
		}
		check410 := func(n *node, earliest int64) {
			t.Helper()
			r := n.do("GET", "/api/v1/events?from=0&to=10", nil)
			wantCode(t, r, 410)
			if m := r.json(t); m["earliest"] != float64(earliest) || !strings.Contains(m["error"].(string), fmt.Sprintf("earliest available is %d", earliest)) {
				t.Errorf("410 body %s, earliest %d", r.body, earliest)
			}
			r = n.do("GET", fmt.Sprintf("/api/v1/events?from=%d&to=%d", earliest, earliest+2), nil)
			wantCode(t, r, 200)
			if m := r.json(t); m["count"] != 3.0 {
				t.Errorf("read at earliest %s", r.body[:min(200, len(r.body))])
			}
			if v := metricValue(t, n.do("GET", "/metrics", nil).body, "badbatch_journal_earliest_sequence"); v != float64(earliest) {
				t.Errorf("metric earliest %v, want %d", v, earliest)
			}
		}
		check410(n, earliest)
		if v := metricValue(t, n.do("GET", "/metrics", nil).body, "badbatch_journal_segments_deleted_total"); v < 1 {
			t.Errorf("segments_deleted_total %v", v)
		}
		if err := n.stop(); err != nil {
			t.Fatal(err)
		}
		// Open enforces retention again (the active segment grew since the
		// last run): the earliest may only move forward.
		n2 := start(t, cfg)
		e2 := n2.a.journal.Earliest()
		if e2 < earliest {
			t.Errorf("earliest after restart %d, was %d", e2, earliest)
		}
		check410(n2, e2)
	})
	t.Run("age", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Ring.BufferSize = 16
		cfg.Journal.SegmentSize = 64 * config.KiB
		cfg.Journal.RetentionBytes = 0
		cfg.Journal.RetentionAge = config.D(time.Second)
		n := start(t, cfg)
		publishKiB(t, n, 200) // about 3 segments
		old := n.a.journal.LastSequence()
		if n.a.journal.Earliest() != 0 {
			t.Fatalf("evicted before the age passed: earliest %d", n.a.journal.Earliest())
		}
		time.Sleep(1200 * time.Millisecond)
		publishKiB(t, n, 100) // rolls at least once: retention runs
		deadline := time.Now().Add(20 * time.Second)
		for n.a.journal.Earliest() <= 0 {
			if time.Now().After(deadline) {
				t.Fatal("retention_age did not delete old segments")
			}
			time.Sleep(20 * time.Millisecond)
		}
		e := n.a.journal.Earliest()
		if e > old+1 {
			t.Errorf("earliest %d: deleted segments newer than the age (last old sequence %d)", e, old)
		}
		r := n.do("GET", "/api/v1/events?from=0", nil)
		wantCode(t, r, 410)
		if m := r.json(t); m["earliest"] != float64(e) {
			t.Errorf("410 body %s, earliest %d", r.body, e)
		}
	})
}

// gatedSync blocks segment fsyncs while a gate is armed (a slow disk), on
// real files, and counts them.
type gatedSync struct {
	journal.File
	g *syncGate
}

type syncGate struct {
	armed   atomic.Bool
	entered chan struct{} // receives once when an armed fsync starts waiting
	release chan struct{}
	syncs   atomic.Int64
}

func (f gatedSync) Sync() error {
	f.g.syncs.Add(1)
	if f.g.armed.CompareAndSwap(true, false) {
		f.g.entered <- struct{}{}
		<-f.g.release
	}
	return f.File.Sync()
}

// TestGroupCommitSharesFsync: requests that arrive while the journal is in
// an fsync are committed together with one write and one fsync. Request A
// is held in its fsync; 63 single-event ack=durable requests arrive
// meanwhile; when A's fsync returns, all 63 go out in the next commit and
// fsync, and every request is acknowledged durable.
func TestGroupCommitSharesFsync(t *testing.T) {
	g := &syncGate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	opener := func(name string, flag int, perm os.FileMode) (journal.File, error) {
		f, err := journal.OSOpener(name, flag, perm)
		if err != nil || !strings.HasSuffix(name, ".seg") {
			return f, err
		}
		return gatedSync{File: f, g: g}, nil
	}
	n := start(t, testConfig(t), func(o *options) { o.opener = opener })
	wantCode(t, n.postJSON("/api/v1/events?ack=durable", `{"data":"first"}`), 200) // creates the segment

	g.armed.Store(true)
	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, 64)
	post := func(i int) {
		r := n.postJSON("/api/v1/events?ack=durable", fmt.Sprintf(`{"data":%d}`, i))
		answers <- answer{r.code, string(r.body)}
	}
	go post(0)
	<-g.entered // the journal is now inside A's fsync
	st0 := n.a.journal.Stats()
	syncs0 := g.syncs.Load()
	for i := 1; i < 64; i++ {
		go post(i)
	}
	deadline := time.Now().Add(20 * time.Second)
	for n.a.Pipeline().Status().EventsIn < 65 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events published", n.a.Pipeline().Status().EventsIn)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(g.release)
	for range 64 {
		a := <-answers
		if a.code != 200 || !strings.Contains(a.body, `"ack":"durable"`) {
			t.Errorf("answer %d %s", a.code, a.body)
		}
	}
	st := n.a.journal.Stats()
	if c := st.Commits - st0.Commits; c != 1 {
		t.Errorf("%d commits for the 63 requests that waited, want 1 (one group commit)", c)
	}
	if s := g.syncs.Load() - syncs0; s != 1 {
		t.Errorf("%d segment fsyncs for the 63 requests that waited, want 1", s)
	}
	if st.Durable != 64 {
		t.Errorf("durable %d, want 64", st.Durable)
	}
}
