package appliance

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/config"
)

// BenchmarkDurability measures what durability costs over real HTTP on
// loopback (fasthttp client → fiber → ring → journal), in one run so the
// cases can be compared:
//
//   - batch1000/memory and batch1000/durable: requests of 1000 small events
//     from 4 concurrent clients, ack=memory vs ack=durable with
//     fsync=batch (the target: durable ≥ 50% of memory events/s);
//     batch1000x16: the same from 16 clients (more requests share a commit);
//   - single64/memory and single64/durable: one event per request from 64
//     concurrent clients (target: durable ≥ 20,000 events/s thanks to group
//     commit: concurrent requests share one fsync).
//
// Besides events/s and request latency percentiles it reports the journal's
// events per commit (how many events one group commit — one write and one
// fsync — carried) and the fsync latency percentiles measured by the
// journal during the run.
//
//	go test -run='^$' -bench=Durability -benchtime=5s ./appliance/
//
// The journal lives in a fresh directory under $TMPDIR: point TMPDIR at
// the disk to measure.
func BenchmarkDurability(b *testing.B) {
	for _, bc := range []struct {
		name    string
		batch   int
		clients int
		ack     string
	}{
		{"batch1000/memory", 1000, 4, "memory"},
		{"batch1000/durable", 1000, 4, "durable"},
		{"batch1000x16/memory", 1000, 16, "memory"},
		{"batch1000x16/durable", 1000, 16, "durable"},
		{"single64/memory", 1, 64, "memory"},
		{"single64/durable", 1, 64, "durable"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDurability(b, bc.batch, bc.clients, bc.ack) })
	}
}

func benchDurability(b *testing.B, batch, clients int, ack string) {
	cfg := benchConfig(b)
	cfg.Journal.Fsync = "batch"
	cfg.Journal.RetentionBytes = 0
	cfg.Journal.RetentionAge = config.D(0)
	a, addr := startBench(b, cfg)
	body := benchBody(batch, `{"temp":21.5,"unit":"C","sensor":"s-17"}`)
	client := benchClient(b, addr, clients)
	url := "http://" + addr + "/api/v1/events?ack=" + ack
	var mu sync.Mutex
	hist := hdrhistogram.New(1, int64(10*time.Second), 3)
	st0 := a.journal.Stats()

	// Exactly `clients` goroutines share b.N requests (RunParallel would
	// start a multiple of GOMAXPROCS).
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			local := hdrhistogram.New(1, int64(10*time.Second), 3)
			req, res := benchRequest(url, body)
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			for next.Add(1) <= int64(b.N) {
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
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := a.journal.Stats()
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50))/1e3, "p50-µs")
	b.ReportMetric(float64(hist.ValueAtQuantile(99))/1e3, "p99-µs")
	if commits := st.Commits - st0.Commits; commits > 0 {
		b.ReportMetric(float64(st.RecordsAppended-st0.RecordsAppended)/float64(commits), "events/commit")
	}
	if ack == "durable" {
		h := st.FsyncLatency
		b.ReportMetric(float64(h.Quantile(0.5))/1e3, "fsync-p50-µs")
		b.ReportMetric(float64(h.Quantile(0.99))/1e3, "fsync-p99-µs")
	}
	b.Logf("GOMAXPROCS=%d clients=%d batch=%d ack=%s: %d requests in %s", runtime.GOMAXPROCS(0), clients, batch, ack, b.N, elapsed.Round(time.Millisecond))
	if in := a.Pipeline().Status().EventsIn; in != uint64(b.N*batch) {
		b.Errorf("stored %d events, sent %d", in, b.N*batch)
	}
}

// BenchmarkRestoreIdempotency measures the start-up rebuild of the
// idempotency windows from a journal of 1,048,576 records (the scan bound;
// 100-byte payloads, 1000 producers with increasing sequences, page cache
// warm): what a restart of a busy node adds before it serves.
//
//	go test -run='^$' -bench=RestoreIdempotency -benchtime=3x ./appliance/
func BenchmarkRestoreIdempotency(b *testing.B) {
	const records = maxIdempotencyScan
	dir := b.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir, Fsync: journal.FsyncNever, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"temp":21.5,"unit":"C","sensor":"s-17","pad":"` + strings.Repeat("x", 50) + `"}`)
	producers := make([][]byte, 1000)
	for i := range producers {
		producers[i] = fmt.Appendf(nil, "device-%04d", i)
	}
	for s := int64(0); s < records; s++ {
		p := s % int64(len(producers))
		if err := j.Append(journal.Record{Sequence: s, Producer: producers[p], Data: data, ProducerSeq: s / int64(len(producers)), HasProducerSeq: true}); err != nil {
			b.Fatal(err)
		}
		if s%4096 == 4095 {
			if err := j.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := j.Commit(); err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	b.ResetTimer()
	for range b.N {
		p, err := pipeline.New(pipeline.Options{BufferSize: 1024, WaitStrategy: "blocking", MaxEventSize: 256, IdempotencyWindow: 4096, MaxProducers: 10000})
		if err != nil {
			b.Fatal(err)
		}
		restoreIdempotency(j, p, idempotencyScan(4096, 10000), slog.New(slog.DiscardHandler))
		if got := p.Status().Producers; got != len(producers) {
			b.Fatalf("%d producers restored", got)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/restore")
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
