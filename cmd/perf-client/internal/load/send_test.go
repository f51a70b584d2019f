package load

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's process-wide server date updater and worker-pool cleaner.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// fasthttp's client cleans idle connections on its own schedule.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}

// answering serves a fixed publish answer on loopback.
func answering(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBodyString(answer)
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// A warm request (refill body, send, parse the answer, record latencies
// and counts) allocates nothing on the client; the loopback server here is
// fasthttp's, which does not allocate per request either.
func TestSendDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		batch  int
		answer string
	}{
		{"single", 1, `{"sequence":17,"ack":"memory"}`},
		{"batch", 3, `{"ack":"memory","accepted":3,"duplicates":0,"rejected":0,"results":[{"sequence":1},{"sequence":2},{"sequence":3}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := answering(t, tc.answer)
			cfg := Config{URL: u, Events: 1, Producers: 1, Connections: 1, Batch: tc.batch,
				Payload: Payload{Size: 100}, Ack: "memory", Timeout: 10 * time.Second, RunID: "alloc"}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			r := newRunner(cfg)
			defer r.client.CloseIdleConnections()
			w, err := r.newWorker(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.timer = time.NewTimer(time.Hour)
			defer w.timer.Stop()
			ctx := context.Background()
			for range 20 {
				w.send(ctx, time.Now(), true)
			}
			allocs := testing.AllocsPerRun(200, func() { w.send(ctx, time.Now(), true) })
			if allocs > 0 && !raceEnabled {
				t.Errorf("%v allocations per request", allocs)
			}
			// 20 + 200 + AllocsPerRun's own warm-up run.
			if w.total.acked != int64(221*tc.batch) || w.total.ok != 221 {
				t.Errorf("acked %d ok %d", w.total.acked, w.total.ok)
			}
		})
	}
}

// Closed loop bounded by events: whole requests, every answer counted.
func TestRunClosedLoopBudgetAndProgress(t *testing.T) {
	u := answering(t, `{"ack":"memory","accepted":3,"duplicates":0,"rejected":0,"results":[{"sequence":1},{"sequence":2},{"sequence":3}]}`)
	cfg := Config{URL: u, Events: 50, Producers: 2, Connections: 3, Batch: 3, Payload: Payload{Size: 20},
		Ack: "memory", Timeout: 10 * time.Second, RunID: "budget", Record: true}
	res, led, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 50 events in batches of 3: 17 requests, 51 events.
	if res.Measured.Requests != 17 || res.Measured.EventsAcked != 51 || res.Total.Status["200"] != 17 || res.ServiceTime.Count != 17 {
		t.Errorf("measured %+v, service %+v", res.Measured, res.ServiceTime)
	}
	if led == nil || led.Claimed[0]+led.Claimed[1] != 51 || len(led.Producers) != 2 {
		t.Fatalf("ledger %+v", led)
	}
	var n int64
	for _, r := range led.Records {
		if r.Outcome != Acked {
			t.Errorf("record %+v", r)
		}
		n += int64(r.N)
	}
	if n != 51 {
		t.Errorf("ledger holds %d events, want 51", n)
	}
}

// Progress: one line rewritten in place on a terminal, plain lines otherwise.
func TestProgress(t *testing.T) {
	u := answering(t, `{"sequence":1,"ack":"memory"}`)
	for _, tty := range []bool{true, false} {
		var prog syncWriter
		cfg := Config{URL: u, Duration: 80 * time.Millisecond, Producers: 1, Connections: 1, Batch: 1,
			Payload: Payload{Size: 10}, Timeout: 10 * time.Second, RunID: "progress",
			Progress: &prog, ProgressInterval: 10 * time.Millisecond, TTY: tty}
		if _, _, err := Run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		out := prog.String()
		if !strings.Contains(out, "events/s") || !strings.Contains(out, "errors 0 (429: 0)") {
			t.Fatalf("tty=%v: no progress: %q", tty, out)
		}
		if tty != strings.Contains(out, "\r\033[K") || tty == strings.Contains(out, "\n") {
			t.Errorf("tty=%v: progress %q", tty, out)
		}
	}
}

// A run against a port nobody listens on: every request is a transport
// error, counted, and nothing is acknowledged.
func TestRunTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cfg := Config{URL: "http://" + addr, Events: 4, Producers: 1, Connections: 1, Batch: 2, Payload: Payload{Size: 10},
		Timeout: 2 * time.Second, RunID: "down", Retries: 2}
	res, _, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 2 requests, each tried 3 times.
	if res.Total.Status["transport"] != 6 || res.Total.Retries != 4 || res.Total.EventsUnknown != 4 || res.Total.EventsAcked != 0 {
		t.Errorf("total %+v", res.Total)
	}
	if res.ErrorSamples["transport"] == "" {
		t.Error("no transport error sample")
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
