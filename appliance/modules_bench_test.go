package appliance

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkPublishWithModules measures batch publishing (1000 events per
// request, ack=memory, journal on, real fasthttp client on loopback) with
// no module, with the repo's filter module (Go guest) and with the WAT
// counter loaded. events/s counts until the WASM stage has processed every
// event (not only until the ring took them), so a slow module shows.
//
// In "filter" every event passes the filter (level "info"), so each one is
// also written to the "default" output stream; "filter-drops" publishes
// events the filter drops (level "debug"): the same module work without
// the output stream writes, to separate the two costs. filter-as is the
// same filter written in AssemblyScript (modules/examples/filter-as).
//
//	go test -run='^$' -bench=PublishWithModules -benchtime=1000x ./appliance/
func BenchmarkPublishWithModules(b *testing.B) {
	for _, tc := range []struct{ name, module, level string }{
		{"none", "none", "info"},
		{"filter", "filter", "info"},
		{"filter-drops", "filter", "debug"},
		{"filter-as", "filter-as", "info"},
		{"filter-as-drops", "filter-as", "debug"},
		{"wat-counter", "wat-counter", "info"},
	} {
		b.Run(tc.name, func(b *testing.B) { benchModules(b, tc.module, tc.level) })
	}
}

func benchModules(b *testing.B, module, level string) {
	cfg := benchConfig(b)
	if module != "none" {
		copyModule(b, cfg.Modules.Dir, module)
	}
	a, addr := startBench(b, cfg, WithWasmCacheDir(wasmTestCache))
	if module != "none" && a.wasm.Modules() != 1 {
		b.Fatalf("module %s not loaded", module)
	}
	const batch = 1000
	body := benchBody(batch, `{"level":"`+level+`","temp":21.5,"sensor":"s-17"}`)
	client := benchClient(b, addr, 64)
	url := "http://" + addr + "/api/v1/events?ack=memory"
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		req, res := benchRequest(url, body)
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		for pb.Next() {
			if err := client.Do(req, res); err != nil {
				b.Error(err)
				return
			}
			if res.StatusCode() != 200 {
				b.Errorf("status %d: %s", res.StatusCode(), res.Body())
				return
			}
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := a.wasm.WaitProcessed(wctx, int64(b.N*batch)-1); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
	// CPU time of the whole process (server, pipeline and the client) per
	// event: less sensitive than events/s to other jobs on the machine.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*batch), "cpu-ns/event")
	for _, st := range a.wasm.reg.Status() {
		if st.Calls > 0 {
			b.ReportMetric(float64(st.EventsIn)/float64(st.Calls), "events/call")
		}
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
