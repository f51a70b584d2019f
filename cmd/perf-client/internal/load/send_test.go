package load

import (
	"context"
	"net"
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
			w, err := r.newWorker(0)
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
