package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The cluster figures quoted in README.md, with the LAN preset's real
// timings (probe 1s, gossip 200ms, push/pull 30s, suspicion mult 4). Each
// iteration builds its own cluster, so run them once:
//
//	go test -run '^$' -bench BenchmarkLAN -benchtime 1x -v ./appliance/cluster/

func lanOpts(id string) Options {
	return Options{NodeID: id, BindAddr: "127.0.0.1", Preset: PresetLAN,
		MetaFunc: func() Meta { return Meta{APIURL: "http://127.0.0.1:8080", Version: "bench", Ready: true} }}
}

// startLAN starts count LAN-preset nodes in order, each seeded with the
// first, and returns them with the time until every node saw all alive.
func startLAN(b *testing.B, count int) ([]*Node, time.Duration) {
	b.Helper()
	begin := time.Now()
	var nodes []*Node
	for i := range count {
		o := lanOpts(fmt.Sprintf("m%d", i+1))
		if i > 0 {
			o.Seeds = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, startNode(b, o))
	}
	waitFor(b, 60*time.Second, "full view", allSee(nodes, ids(nodes), StateAlive))
	return nodes, time.Since(begin)
}

func closeAll(nodes []*Node) {
	for _, n := range nodes {
		_ = n.Close()
	}
}

// BenchmarkLANFullView: time until every node sees every other alive.
func BenchmarkLANFullView(b *testing.B) {
	for _, count := range []int{3, 5, 10} {
		b.Run(fmt.Sprintf("nodes=%d", count), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				nodes, d := startLAN(b, count)
				total += d
				closeAll(nodes)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/full-view")
		})
	}
}

// BenchmarkLANDeadDetection: a node shut down without Leave, until all 4 others see it dead.
func BenchmarkLANDeadDetection(b *testing.B) {
	var total time.Duration
	for range b.N {
		nodes, _ := startLAN(b, 5)
		begin := time.Now()
		_ = nodes[4].Close()
		waitFor(b, 60*time.Second, "dead seen by all", allSee(nodes[:4], []string{"m5"}, StateDead))
		total += time.Since(begin)
		closeAll(nodes)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/detect")
}

// BenchmarkLANModuleAnnouncement: SetModules on one node until all 5 know the set.
func BenchmarkLANModuleAnnouncement(b *testing.B) {
	nodes, _ := startLAN(b, 5)
	defer closeAll(nodes)
	var total time.Duration
	for i := range b.N {
		mods := []ModuleInfo{{Name: "filter", Version: fmt.Sprint(i), SHA256: strings.Repeat("a", 64)}}
		begin := time.Now()
		if err := nodes[0].SetModules(mods); err != nil {
			b.Fatal(err)
		}
		waitFor(b, 60*time.Second, "module everywhere", func() (bool, string) {
			for _, n := range nodes[1:] {
				if got, _ := n.Modules("m1"); len(got) != 1 || got[0].Version != mods[0].Version {
					return false, n.ID()
				}
			}
			return true, ""
		})
		total += time.Since(begin)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/all-nodes")
}

// BenchmarkLANIdleGossip: gossip bytes sent per node per second by an idle
// 5-node cluster over a 30 s window (one push/pull cycle).
func BenchmarkLANIdleGossip(b *testing.B) {
	nodes, _ := startLAN(b, 5)
	defer closeAll(nodes)
	const window = 30 * time.Second
	var perNode float64
	for range b.N {
		before := make([]uint64, len(nodes))
		for i, n := range nodes {
			before[i] = n.Status().GossipBytesSent
		}
		time.Sleep(window) // a measurement window, not a synchronisation wait
		var total uint64
		for i, n := range nodes {
			total += n.Status().GossipBytesSent - before[i]
		}
		perNode += float64(total) / float64(len(nodes)) / window.Seconds()
	}
	b.ReportMetric(perNode/float64(b.N), "B/s/node")
}
