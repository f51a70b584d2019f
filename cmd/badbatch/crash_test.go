package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// crashEvent is one event a crash-test client publishes.
type crashEvent struct {
	pseq int64
	data string // compact JSON, compared byte for byte on read-back
}

// crashReq is one request: a single event or a small batch.
type crashReq struct {
	events []crashEvent
	single bool
}

func (r crashReq) body(producer string) []byte {
	var b bytes.Buffer
	if !r.single {
		b.WriteByte('[')
	}
	for i, e := range r.events {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"data":%s,"producer":%q,"sequence":%d}`, e.data, producer, e.pseq)
	}
	if !r.single {
		b.WriteByte(']')
	}
	return b.Bytes()
}

// crashClient is one producer. Its state survives the kills.
type crashClient struct {
	id       string
	rng      *rand.Rand
	next     int64     // next producer sequence
	pending  *crashReq // sent, outcome unknown (the process died): retried after the restart
	lastAck  *crashReq // last request acknowledged durable: re-sent after the restart, must be all duplicates
	requests int
}

// ackBook records every acknowledgement: producer/pseq → ring sequence.
type ackBook struct {
	mu   sync.Mutex
	seq  map[string]int64  // "producer/pseq" → sequence
	data map[string]string // same key → data
	errs []string
}

func pairKey(producer string, pseq int64) string { return fmt.Sprintf("%s/%d", producer, pseq) }

func (a *ackBook) failf(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) < 20 {
		a.errs = append(a.errs, fmt.Sprintf(format, args...))
	}
}

// record notes the sequences a 200 answer gave; a pair acknowledged before
// must keep its sequence. wantDup demands that every event be a duplicate.
func (a *ackBook) record(producer string, req crashReq, seqs []int64, dups []bool, wantDup bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, e := range req.events {
		k := pairKey(producer, e.pseq)
		if old, ok := a.seq[k]; ok {
			if old != seqs[i] {
				a.errs = append(a.errs, fmt.Sprintf("%s acknowledged as %d, now answered %d (duplicate=%v)", k, old, seqs[i], dups[i]))
			}
			if !dups[i] {
				a.errs = append(a.errs, fmt.Sprintf("%s was acknowledged as %d before, the retry stored it again as %d", k, old, seqs[i]))
			}
			continue
		}
		if wantDup {
			a.errs = append(a.errs, fmt.Sprintf("%s: retry of an acknowledged event not seen before?", k))
		}
		a.seq[k] = seqs[i]
		a.data[k] = e.data
	}
}

// publishResult is the part of a publish answer the test checks.
type publishResult struct {
	Sequence  *int64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
	Ack       string `json:"ack"`
	Rejected  int    `json:"rejected"`
	Results   []struct {
		Sequence  *int64 `json:"sequence"`
		Duplicate bool   `json:"duplicate"`
	} `json:"results"`
}

// send posts req with ack=durable. ok is false when the outcome is unknown
// (transport error, or not acknowledged durable).
func (c *crashClient) send(hc *http.Client, url string, req crashReq) (seqs []int64, dups []bool, ok bool, err error) {
	res, err := hc.Post(url+"/api/v1/events?ack=durable", "application/json", bytes.NewReader(req.body(c.id)))
	if err != nil {
		return nil, nil, false, nil
	}
	body, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	if rerr != nil || res.StatusCode != http.StatusOK {
		// Killed mid-answer, or 503/429: not acknowledged.
		return nil, nil, false, nil
	}
	var pr publishResult
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, nil, false, fmt.Errorf("%s: answer %q: %w", c.id, body, err)
	}
	if pr.Ack != "durable" {
		return nil, nil, false, fmt.Errorf("%s: 200 without ack=durable: %s", c.id, body)
	}
	if req.single {
		if pr.Sequence == nil {
			return nil, nil, false, fmt.Errorf("%s: 200 without a sequence: %s", c.id, body)
		}
		return []int64{*pr.Sequence}, []bool{pr.Duplicate}, true, nil
	}
	if len(pr.Results) != len(req.events) || pr.Rejected != 0 {
		return nil, nil, false, fmt.Errorf("%s: 200 with %d results for %d events: %s", c.id, len(pr.Results), len(req.events), body)
	}
	for _, r := range pr.Results {
		if r.Sequence == nil {
			return nil, nil, false, fmt.Errorf("%s: result without sequence: %s", c.id, body)
		}
		seqs = append(seqs, *r.Sequence)
		dups = append(dups, r.Duplicate)
	}
	return seqs, dups, true, nil
}

func (c *crashClient) newReq() crashReq {
	n := 1
	single := c.rng.IntN(2) == 0
	if !single {
		n = 2 + c.rng.IntN(4)
	}
	r := crashReq{single: single}
	for range n {
		r.events = append(r.events, crashEvent{pseq: c.next, data: fmt.Sprintf(`{"c":%q,"p":%d,"r":"%016x"}`, c.id, c.next, c.rng.Uint64())})
		c.next++
	}
	return r
}

// run publishes until the process dies or stop is closed.
func (c *crashClient) run(hc *http.Client, url string, book *ackBook, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		req := c.newReq()
		c.requests++
		seqs, dups, ok, err := c.send(hc, url, req)
		if err != nil {
			book.failf("%v", err)
			return
		}
		if !ok {
			c.pending = &req
			return // the process is gone (or failing): wait for the restart
		}
		book.record(c.id, req, seqs, dups, false)
		c.lastAck = &req
	}
}

// afterRestart retries the request whose outcome was unknown and re-sends
// the last acknowledged one, which must come back as duplicates with the
// same sequences.
func (c *crashClient) afterRestart(hc *http.Client, url string, book *ackBook) {
	if c.lastAck != nil {
		seqs, dups, ok, err := c.send(hc, url, *c.lastAck)
		switch {
		case err != nil:
			book.failf("%v", err)
		case !ok:
			book.failf("%s: retry of an acknowledged request after restart not acknowledged", c.id)
		default:
			for i, d := range dups {
				if !d {
					book.failf("%s/%d: retry after restart not recognized as a duplicate (stored again as %d)", c.id, c.lastAck.events[i].pseq, seqs[i])
				}
			}
			book.record(c.id, *c.lastAck, seqs, dups, true)
		}
	}
	if c.pending != nil {
		seqs, dups, ok, err := c.send(hc, url, *c.pending)
		switch {
		case err != nil:
			book.failf("%v", err)
		case !ok:
			book.failf("%s: retry of the interrupted request after restart not acknowledged", c.id)
		default:
			book.record(c.id, *c.pending, seqs, dups, false)
			c.lastAck = c.pending
		}
		c.pending = nil
	}
}

// TestKill9RealBinary runs the real badbatch binary, publishes with
// ack=durable from several concurrent clients (single events and small
// batches, each client a producer with increasing sequences), kills the
// process with SIGKILL at random moments, restarts it on the same data
// directory and finally checks that every acknowledged event is present
// with identical data at its acknowledged sequence, that sequences are
// unique and increasing, that no (producer, sequence) was stored twice,
// and that retries of acknowledged events after each restart were answered
// as duplicates. It runs for each fsync policy (a process crash keeps the
// page cache, so all three must lose nothing acknowledged): 10 cycles for
// the default policy (batch), 5 for the others; BADBATCH_SOAK=1 runs 60 each.
func TestKill9RealBinary(t *testing.T) {
	soak := os.Getenv("BADBATCH_SOAK") != ""
	for _, tc := range []struct {
		policy string
		cycles int
	}{{"batch", 10}, {"interval", 5}, {"never", 5}} {
		if soak {
			tc.cycles = 60
		}
		if testing.Short() && tc.policy != "batch" {
			continue
		}
		t.Run(tc.policy, func(t *testing.T) { kill9Cycles(t, tc.policy, tc.cycles) })
	}
}

func kill9Cycles(t *testing.T, policy string, cycles int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("fsync=%s, seed %d, %d kill -9 cycles", policy, seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 0x6ba7))

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "crash.toml")
	cfg := `[node]
data_dir = "` + filepath.Join(dir, "data") + `"
[ring]
buffer_size = 1024
[api]
read_limit = 10000
idempotency_window = 4096
[journal]
fsync = "` + policy + `"
fsync_interval = "5ms"
segment_size = "64KiB"
retention_bytes = "0B"
retention_age = "0s"
[log]
level = "warn"
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)

	book := &ackBook{seq: map[string]int64{}, data: map[string]string{}}
	clients := make([]*crashClient, 4)
	for i := range clients {
		clients[i] = &crashClient{id: fmt.Sprintf("dev-%d", i), rng: rand.New(rand.NewPCG(seed, uint64(i)))}
	}
	started := time.Now()
	var p *proc
	for cycle := 0; cycle <= cycles; cycle++ {
		p = startProc(t, dir, nil, "--config", cfgPath)
		for _, c := range clients {
			c.afterRestart(hc, p.url, book)
		}
		if cycle == cycles {
			break // the final start is only for verification
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() { c.run(hc, p.url, book, stop) })
		}
		time.Sleep(time.Duration(80+rng.IntN(300)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		<-p.done
		close(stop)
		wg.Wait()
		tr.CloseIdleConnections()
	}

	// Read everything back.
	type readEvent struct {
		Sequence    int64           `json:"sequence"`
		Producer    string          `json:"producer"`
		ProducerSeq *int64          `json:"producer_sequence"`
		Data        json.RawMessage `json:"data"`
	}
	var all []readEvent
	for from := int64(0); ; {
		res, err := hc.Get(fmt.Sprintf("%s/api/v1/events?from=%d&to=%d", p.url, from, int64(1)<<62))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("read from %d: %d %s", from, res.StatusCode, body)
		}
		var page struct {
			Events []readEvent `json:"events"`
			Next   int64       `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		all = append(all, page.Events...)
		from = page.Next
	}
	stored := map[string]readEvent{}
	bySeq := map[int64]readEvent{}
	for i, e := range all {
		if i > 0 && e.Sequence <= all[i-1].Sequence {
			t.Errorf("sequence %d after %d: not increasing", e.Sequence, all[i-1].Sequence)
		}
		bySeq[e.Sequence] = e
		if e.ProducerSeq == nil {
			t.Errorf("event %d read back without producer_sequence", e.Sequence)
			continue
		}
		k := pairKey(e.Producer, *e.ProducerSeq)
		if prev, dup := stored[k]; dup {
			t.Errorf("%s stored twice: sequences %d and %d", k, prev.Sequence, e.Sequence)
		}
		stored[k] = e
	}
	book.mu.Lock()
	defer book.mu.Unlock()
	for _, e := range book.errs {
		t.Error(e)
	}
	lost := 0
	for k, seq := range book.seq {
		e, ok := bySeq[seq]
		if !ok || pairKey(e.Producer, derefOr(e.ProducerSeq, -1)) != k || string(e.Data) != book.data[k] {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged %s at sequence %d with data %s: read back %+v (present %v)", k, seq, book.data[k], e, ok)
			}
		}
	}
	requests := 0
	for _, c := range clients {
		requests += c.requests
	}
	t.Logf("%d cycles in %s, %d requests, %d events stored", cycles, time.Since(started).Round(time.Millisecond), requests, len(all))
	t.Logf("acknowledged %d, lost %d", len(book.seq), lost)
	if len(book.seq) == 0 {
		t.Fatal("nothing was acknowledged")
	}
}

func derefOr(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}
