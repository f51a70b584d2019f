package appliance

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/journal"
)

// faultyFile fails Sync while its switch is on (a disk that stopped
// accepting writes), on real files.
type faultyFile struct {
	journal.File
	fail *atomic.Bool
}

func (f faultyFile) Sync() error {
	if f.fail.Load() {
		return errors.New("injected fsync failure")
	}
	return f.File.Sync()
}

// TestDurableAckNeverGivenWhileJournalFails: while fsync fails, ack=durable
// answers 503 (not 200), readiness and metrics say so, ack=memory still
// works; when the fault clears the journal recovers and the same retry is
// acknowledged durable with its original sequence.
func TestDurableAckNeverGivenWhileJournalFails(t *testing.T) {
	var fail atomic.Bool
	opener := func(name string, flag int, perm os.FileMode) (journal.File, error) {
		f, err := journal.OSOpener(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return faultyFile{File: f, fail: &fail}, nil
	}
	n := start(t, testConfig(t), func(o *options) { o.opener = opener })
	wantCode(t, n.postJSON("/api/v1/events?ack=durable", `{"data":"ok","producer":"d","sequence":1}`), 200)

	fail.Store(true)
	r := n.postJSON("/api/v1/events?ack=durable", `{"data":"at risk","producer":"d","sequence":2}`)
	wantCode(t, r, 503)
	if m := r.json(t); m["ack"] != "memory" || m["sequence"] != 1.0 || !strings.Contains(m["error"].(string), "not confirmed durable") {
		t.Errorf("503 body %s", r.body)
	}
	r = n.do("GET", "/readyz", nil)
	wantCode(t, r, 503)
	if !strings.Contains(string(r.body), `"name":"journal","ok":false`) {
		t.Errorf("readyz while failing %s", r.body)
	}
	if m := n.do("GET", "/metrics", nil); !strings.Contains(string(m.body), "badbatch_journal_healthy 0") {
		t.Error("metrics do not show the journal unhealthy")
	}
	wantCode(t, n.postJSON("/api/v1/events?ack=memory", `{"data":"memory is fine"}`), 200)

	fail.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = n.postJSON("/api/v1/events?ack=durable", `{"data":"at risk","producer":"d","sequence":2}`)
		if r.code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantCode(t, r, 200)
	if string(r.body) != `{"sequence":1,"duplicate":true,"ack":"durable"}` {
		t.Errorf("retry after recovery %s", r.body)
	}
	wantCode(t, n.do("GET", "/readyz", nil), 200)
	// The stage logs its own recovery after its next retry.
	for !strings.Contains(n.logs.String(), "journal recovered; commits succeed again") {
		if time.Now().After(deadline) {
			t.Fatal("stage recovery not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
