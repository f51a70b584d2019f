package appliance

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
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
