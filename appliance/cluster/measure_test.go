package cluster

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMeasure records the figures quoted in README.md with the LAN preset's
// real timings (probe 1s, gossip 200ms, push/pull 30s, suspicion mult 4).
// It takes about a minute, so it only runs with BADBATCH_CLUSTER_MEASURE=1:
//
//	BADBATCH_CLUSTER_MEASURE=1 go test -count=1 -run TestMeasure -v ./appliance/cluster/
func TestMeasure(t *testing.T) {
	if os.Getenv("BADBATCH_CLUSTER_MEASURE") != "1" {
		t.Skip("set BADBATCH_CLUSTER_MEASURE=1 to measure (about a minute)")
	}
	lan := func(id string) Options {
		return Options{NodeID: id, BindAddr: "127.0.0.1", Preset: PresetLAN,
			MetaFunc: func() Meta { return Meta{APIURL: "http://127.0.0.1:8080", Version: "measure", Ready: true} }}
	}
	start := func(t *testing.T, count int) ([]*Node, time.Duration) {
		begin := time.Now()
		var nodes []*Node
		for i := range count {
			o := lan(fmt.Sprintf("m%d", i+1))
			if i > 0 {
				o.Seeds = []string{nodes[0].GossipAddr()}
			}
			nodes = append(nodes, startNode(t, o))
		}
		waitFor(t, 60*time.Second, "full view", allSee(nodes, ids(nodes), StateAlive))
		return nodes, time.Since(begin)
	}
	for _, count := range []int{3, 5, 10} {
		t.Run(fmt.Sprintf("full-view-%d", count), func(t *testing.T) {
			_, d := start(t, count)
			t.Logf("MEASURE full view, %d nodes (LAN preset, started in order, each seeded with the first): %s", count, d.Round(time.Millisecond))
		})
	}
	t.Run("dead-module-bandwidth-5", func(t *testing.T) {
		nodes, _ := start(t, 5)

		mods := []ModuleInfo{{Name: "filter", Version: "1", SHA256: strings.Repeat("a", 64)}}
		begin := time.Now()
		if err := nodes[0].SetModules(mods); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "module everywhere", func() (bool, string) {
			for _, n := range nodes[1:] {
				if got, _ := n.Modules("m1"); len(got) != 1 {
					return false, n.ID()
				}
			}
			return true, ""
		})
		t.Logf("MEASURE module announcement reaches all 5 nodes: %s", time.Since(begin).Round(time.Millisecond))

		const window = 30 * time.Second
		before := make([]uint64, len(nodes))
		for i, n := range nodes {
			before[i] = n.Status().GossipBytesSent
		}
		time.Sleep(window) // a measurement window, not a synchronisation wait
		var total uint64
		for i, n := range nodes {
			total += n.Status().GossipBytesSent - before[i]
		}
		perNode := float64(total) / float64(len(nodes)) / window.Seconds()
		t.Logf("MEASURE idle gossip sent per node, 5 nodes, %s window (one push/pull cycle): %.0f B/s", window, perNode)

		begin = time.Now()
		if err := nodes[4].Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "dead seen by all", allSee(nodes[:4], []string{"m5"}, StateDead))
		t.Logf("MEASURE crash (Shutdown without Leave) seen as dead by all 4 others: %s", time.Since(begin).Round(time.Millisecond))
	})
}
