package rollout

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkRolloutReachesAll measures the time from installing a new module
// version on one node until every opted-in node runs it: announcement by
// gossip, fetch over loopback HTTP, sha256 check and registry install
// (canary instance, atomic rename). 1 source + 4 opted-in nodes in-process,
// the test timings (gossip every 50 ms, local preset).
func BenchmarkRolloutReachesAll(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	src := startFleetNode(b, ctx, &wg, "src", false, nil)
	var dst []*fleetNode
	for i := range 4 {
		dst = append(dst, startFleetNode(b, ctx, &wg, "dst"+strconv.Itoa(i), true, []string{src.node.GossipAddr()}))
	}
	eventually(b, 20*time.Second, "module sets known everywhere", func() bool {
		for _, d := range dst {
			if len(d.node.AllModules()) != 5 || len(src.node.AllModules()) != 5 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	wasm := counterWasm(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := withCustomSection(wasm, "v"+strconv.Itoa(i))
		sha := sum(v)
		start := time.Now()
		if err := src.local.Install(ctx, "counter", manifestFor("counter", "1."+strconv.Itoa(i)), v); err != nil {
			b.Fatal(err)
		}
		src.ro.LocalChanged()
		eventually(b, 30*time.Second, "version on every opted-in node", func() bool {
			for _, d := range dst {
				if !hasModule(d.local, "counter", sha) {
					return false
				}
			}
			return true
		})
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rollout")
}
