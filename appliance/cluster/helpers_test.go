package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks no goroutine outlives the tests. memberlist's Shutdown does
// not wait for a probe in flight: probeNode waits for its ack timer, which
// fires within the (awareness-scaled) probe interval, so that one memberlist
// goroutine is allowed to still be finishing.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

// testLogger discards logs unless BADBATCH_TEST_LOG=1.
func testLogger() *slog.Logger {
	if os.Getenv("BADBATCH_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastOpts are short timings for loopback tests (generous enough for -race on
// a shared 2-core machine).
func fastOpts(id, ip string) Options {
	return Options{
		NodeID:              id,
		BindAddr:            ip,
		Preset:              PresetLocal,
		ProbeInterval:       250 * time.Millisecond,
		ProbeTimeout:        125 * time.Millisecond,
		GossipInterval:      50 * time.Millisecond,
		PushPullInterval:    500 * time.Millisecond,
		SuspicionMult:       3,
		DeadNodeReclaimTime: 300 * time.Millisecond,
		RejoinInterval:      250 * time.Millisecond,
		ReadyTimeout:        time.Second,
		MetaRefresh:         100 * time.Millisecond,
		ResolveTimeout:      300 * time.Millisecond,
		MetaFunc:            func() Meta { return Meta{APIURL: "http://" + ip + "/" + id, Version: "test", Ready: true} },
		Label:               testLabel,
	}
}

// testLabel keeps this test binary's nodes to themselves: `go test ./...`
// runs packages in parallel, and a node re-joining a stale address of a
// finished test could otherwise reach another package's node that now
// holds that port.
var testLabel = fmt.Sprintf("test-%d", os.Getpid())

// startNode creates and starts a node, closing it at the end of the test.
func startNode(t testing.TB, opts Options) *Node {
	t.Helper()
	n, err := New(opts, testLogger())
	if err != nil {
		t.Fatalf("New(%s): %v", opts.NodeID, err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", opts.NodeID, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, desc := cond()
		if ok {
			return
		}
		last = desc
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdsFor checks cond stays true for d (polling), failing as soon as it is false.
func holdsFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if ok, desc := cond(); !ok {
			t.Fatalf("%s stopped holding: %s", what, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stateOf(n *Node, id string) State {
	m, ok := n.Member(id)
	if !ok {
		return ""
	}
	return m.State
}

func describe(n *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sees [", n.ID())
	for _, m := range n.Members() {
		fmt.Fprintf(&b, " %s=%s@%s", m.ID, m.State, m.GossipAddr)
	}
	b.WriteString(" ]")
	return b.String()
}

// allSee reports whether every node sees every id in ids in state st.
func allSee(nodes []*Node, ids []string, st State) func() (bool, string) {
	return func() (bool, string) {
		for _, n := range nodes {
			for _, id := range ids {
				if stateOf(n, id) != st {
					return false, describe(n)
				}
			}
		}
		return true, ""
	}
}

func ids(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID()
	}
	return out
}

// startCluster starts count nodes on ip, each seeded with the first, and waits
// for every node to see all alive.
func startCluster(t *testing.T, count int, tweak func(i int, o *Options)) []*Node {
	t.Helper()
	var nodes []*Node
	for i := range count {
		o := fastOpts(fmt.Sprintf("n%d", i+1), "127.0.0.1")
		if i > 0 {
			o.Seeds = []string{nodes[0].GossipAddr()}
		}
		if tweak != nil {
			tweak(i, &o)
		}
		nodes = append(nodes, startNode(t, o))
	}
	waitFor(t, 20*time.Second, fmt.Sprintf("%d nodes to converge", count), allSee(nodes, ids(nodes), StateAlive))
	return nodes
}

// loopbackUsable reports whether ip (e.g. 127.0.0.2) can be bound.
func loopbackUsable(ip string) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
