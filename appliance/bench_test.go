package appliance

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// BenchmarkHTTPPublish measures the whole publish path on loopback: a real
// fasthttp client (64 connections, GOMAXPROCS goroutines) → fiber → decode
// → idempotency → ring claim/copy/publish → response. It reports
// requests/s, events/s and the p50 and p99 request latency (ns) over all
// requests of the run. Variants: ack=memory with the journal consuming
// (the default layout) and without it (ring only), and ack=durable.
//
//	go test -run='^$' -bench=HTTPPublish -benchtime=5s ./appliance/
func BenchmarkHTTPPublish(b *testing.B) {
	for _, bc := range []struct {
		name    string
		batch   int
		journal bool
		ack     string
	}{
		{"single/memory/ring-only", 1, false, "memory"},
		{"single/memory/journal", 1, true, "memory"},
		{"single/durable", 1, true, "durable"},
		{"batch1000/memory/ring-only", 1000, false, "memory"},
		{"batch1000/memory/journal", 1000, true, "memory"},
		{"batch1000/durable", 1000, true, "durable"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchPublish(b, bc.batch, bc.journal, bc.ack) })
	}
}

func benchPublish(b *testing.B, batch int, withJournal bool, ack string) {
	cfg := benchConfig(b)
	cfg.Journal.Enabled = withJournal
	if !withJournal {
		cfg.Journal.DefaultAck = "memory"
	}
	a, addr := startBench(b, cfg)
	body := benchBody(batch, `{"temp":21.5,"unit":"C","sensor":"s-17"}`)
	client := benchClient(b, addr, 64)
	url := "http://" + addr + "/api/v1/events?ack=" + ack
	var mu sync.Mutex
	hist := hdrhistogram.New(1, int64(10*time.Second), 3)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := hdrhistogram.New(1, int64(10*time.Second), 3)
		req, res := benchRequest(url, body)
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		for pb.Next() {
			t0 := time.Now()
			if err := client.Do(req, res); err != nil {
				b.Error(err)
				return
			}
			_ = local.RecordValue(int64(time.Since(t0)))
			if res.StatusCode() != 200 {
				b.Errorf("status %d: %s", res.StatusCode(), res.Body())
				return
			}
		}
		mu.Lock()
		hist.Merge(local)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), "p50-ns")
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), "p99-ns")
	if in := a.Pipeline().Status().EventsIn; in != uint64(b.N*batch) {
		b.Errorf("stored %d events, sent %s", in, strconv.Itoa(b.N*batch))
	}
}
