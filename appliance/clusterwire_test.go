package appliance

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/cluster"
	"github.com/badbatch/badbatch/config"
)

// freeGossipPort returns a loopback port free for both TCP and UDP.
func freeGossipPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no free gossip port")
	return 0
}

// clusterConfig is a node with clustering on loopback, short timings.
func clusterConfig(t *testing.T, id string, seeds ...string) config.Config {
	cfg := testConfig(t)
	cfg.Node.ID = id
	c := &cfg.Cluster
	c.Enabled = true
	c.BindAddr = "127.0.0.1"
	c.BindPort = freeGossipPort(t)
	c.Seeds = seeds
	c.Preset = "local"
	c.ProbeInterval = config.D(250 * time.Millisecond)
	c.ProbeTimeout = config.D(125 * time.Millisecond)
	c.GossipInterval = config.D(50 * time.Millisecond)
	c.PushPullInterval = config.D(500 * time.Millisecond)
	c.SuspicionMult = 3
	c.RejoinInterval = config.D(250 * time.Millisecond)
	c.DeadNodeReclaimTime = config.D(300 * time.Millisecond)
	// Keeps this test binary's nodes to themselves (packages run in
	// parallel and reuse each other's freed ports).
	c.Label = fmt.Sprintf("test-%d", os.Getpid())
	return cfg
}

// apiAddr is the node's HTTP API host:port (used as a seed: resolved
// through its /api/v1/node/info cluster.gossip_addr).
func (n *node) apiAddr() string { return strings.TrimPrefix(n.url, "http://") }

func (n *node) members() []cluster.Member {
	n.t.Helper()
	r := n.do("GET", "/api/v1/cluster/nodes", nil)
	wantCode(n.t, r, 200)
	var body struct {
		Nodes []cluster.Member `json:"nodes"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		n.t.Fatalf("cluster nodes: %v: %s", err, r.body)
	}
	return body.Nodes
}

func (n *node) stateOf(id string) cluster.State {
	for _, m := range n.members() {
		if m.ID == id {
			return m.State
		}
	}
	return ""
}

func allAlive(n *node, want int) bool {
	ms := n.members()
	alive := 0
	for _, m := range ms {
		if m.State == cluster.StateAlive {
			alive++
		}
	}
	return len(ms) == want && alive == want
}

func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestClusterThreeAppliances: three in-process appliances, the second and
// third seeded with the first one's HTTP API address, form one cluster; the
// REST view, status, readiness and metrics show it; a graceful shutdown is
// seen as "left" by the others and leaves before the drain.
func TestClusterThreeAppliances(t *testing.T) {
	a := start(t, clusterConfig(t, "node-a"))
	b := start(t, clusterConfig(t, "node-b", a.apiAddr()))
	c := start(t, clusterConfig(t, "node-c", a.apiAddr()))
	nodes := []*node{a, b, c}
	for _, n := range nodes {
		poll(t, 20*time.Second, n.a.Config().Node.ID+" sees three alive nodes", func() bool { return allAlive(n, 3) })
		// A node's metadata (ready, version) reaches its peers with a
		// later gossip round than the join itself.
		poll(t, 20*time.Second, n.a.Config().Node.ID+" sees every member ready", func() bool {
			for _, m := range n.members() {
				if !m.Meta.Ready {
					return false
				}
			}
			return true
		})
	}

	// Node info serves the real gossip address; members carry it, the API URL
	// and the metadata; exactly one member is self.
	gossip := map[string]string{}
	for _, n := range nodes {
		info := n.do("GET", "/api/v1/node/info", nil).json(t)
		cl := info["cluster"].(map[string]any)
		gossip[info["node_id"].(string)] = cl["gossip_addr"].(string)
		if cl["enabled"] != true || cl["gossip_addr"] != n.a.ClusterNode().GossipAddr() {
			t.Errorf("node info cluster %v, node says %s", cl, n.a.ClusterNode().GossipAddr())
		}
	}
	for _, n := range nodes {
		self := 0
		for _, m := range n.members() {
			if m.GossipAddr != gossip[m.ID] {
				t.Errorf("%s: member %s gossip %s, its node info says %s", n.a.Config().Node.ID, m.ID, m.GossipAddr, gossip[m.ID])
			}
			peer := map[string]*node{"node-a": a, "node-b": b, "node-c": c}[m.ID]
			if m.APIURL != peer.url || m.Meta.APIURL != peer.url || !m.Meta.Ready || m.Meta.Version == "" || m.LastChange.IsZero() {
				t.Errorf("%s: member %+v (want api %s)", n.a.Config().Node.ID, m, peer.url)
			}
			if m.Self {
				self++
				if m.ID != n.a.Config().Node.ID {
					t.Errorf("self marked on %s", m.ID)
				}
			}
		}
		if self != 1 {
			t.Errorf("%d members marked self", self)
		}
	}

	// Status, readiness and metrics.
	st := a.do("GET", "/api/v1/cluster/status", nil).json(t)
	for k, want := range map[string]any{"enabled": true, "size": 3.0, "alive": 3.0, "dead": 0.0, "joined": true, "ready": true, "decrypt_failures": 0.0} {
		if st[k] != want {
			t.Errorf("cluster status %s = %v, want %v (%v)", k, st[k], want, st)
		}
	}
	for _, k := range []string{"health_score", "broadcast_queue", "reason", "gossip_addr"} {
		if _, ok := st[k]; !ok {
			t.Errorf("cluster status has no %s: %v", k, st)
		}
	}
	r := b.do("GET", "/readyz", nil)
	wantCode(t, r, 200)
	if !strings.Contains(string(r.body), `"name":"cluster","ok":true,"detail":"joined: 2 other members alive"`) {
		t.Errorf("readyz: %s", r.body)
	}
	m := string(a.do("GET", "/metrics", nil).body)
	for _, want := range []string{`badbatch_cluster_members{state="alive"} 3`, `badbatch_cluster_members{state="dead"} 0`,
		"badbatch_cluster_health_score ", "badbatch_cluster_broadcast_queue ", "badbatch_cluster_decrypt_failures_total 0",
		"badbatch_cluster_ready 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// A graceful shutdown: the others see "left"; c left before draining and
	// closed gossip after it.
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		poll(t, 10*time.Second, n.a.Config().Node.ID+" sees node-c left", func() bool { return n.stateOf("node-c") == cluster.StateLeft })
	}
	logs := c.logs.String()
	leave, intake, drain, closeC := strings.Index(logs, "step=\"leave cluster\""), strings.Index(logs, "step=\"stop intake\""),
		strings.Index(logs, "step=\"drain ring and stop processors\""), strings.Index(logs, "step=\"close cluster\"")
	if leave < 0 || intake < 0 || drain < 0 || closeC < 0 || !(leave < intake && intake < drain && drain < closeC) {
		t.Errorf("shutdown steps out of order: leave %d, intake %d, drain %d, close %d", leave, intake, drain, closeC)
	}
	st = a.do("GET", "/api/v1/cluster/status", nil).json(t)
	if st["left"] != 1.0 || st["alive"] != 2.0 {
		t.Errorf("status after c left: %v", st)
	}
}

// TestClusterReloadKeyringAndSeeds: a rolling key rotation by reload (the
// SIGHUP path) keeps two encrypted appliances together; seeds reload; turning
// encryption off by reload is refused and changes nothing.
func TestClusterReloadKeyringAndSeeds(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	ca := clusterConfig(t, "key-a")
	ca.Cluster.Keyring = []string{k1}
	a := start(t, ca)
	cb := clusterConfig(t, "key-b", a.apiAddr())
	cb.Cluster.Keyring = []string{k1}
	b := start(t, cb)
	for _, n := range []*node{a, b} {
		poll(t, 20*time.Second, "encrypted pair formed", func() bool { return allAlive(n, 2) })
	}
	cfgs := map[*node]config.Config{a: ca, b: cb}
	for _, step := range [][]string{{k1, k2}, {k2, k1}, {k2}} {
		for _, n := range []*node{a, b} {
			next := cfgs[n]
			next.Cluster.Keyring = step
			if err := n.a.Reload(next); err != nil {
				t.Fatalf("reload keyring %d keys: %v", len(step), err)
			}
			cfgs[n] = next
		}
		for _, n := range []*node{a, b} {
			poll(t, 10*time.Second, "pair stays whole during rotation", func() bool { return allAlive(n, 2) })
		}
	}
	st := a.a.ClusterNode().Status()
	if !st.Encrypted || st.Keys != 1 || st.DecryptFailures != 0 {
		t.Errorf("after rotation: encrypted %v, %d keys, %d decrypt failures", st.Encrypted, st.Keys, st.DecryptFailures)
	}
	// Still whole a while after the old key is gone, and k1 is refused now.
	time.Sleep(time.Second)
	if !allAlive(a, 2) || !allAlive(b, 2) {
		t.Errorf("pair split after the rotation: %+v", a.members())
	}
	if !strings.Contains(a.logs.String(), "cluster: seeds and keyring reloaded") {
		t.Error("keyring reload not logged")
	}

	off := cfgs[a]
	off.Cluster.Keyring = nil
	if err := a.a.Reload(off); err == nil || !strings.Contains(err.Error(), "cannot be switched on or off") {
		t.Fatalf("disabling encryption by reload: %v", err)
	}
	seeds := cfgs[a]
	seeds.Cluster.Seeds = []string{b.apiAddr()}
	if err := a.a.Reload(seeds); err != nil {
		t.Fatal(err)
	}
	if got := a.a.Config().Cluster.Seeds; len(got) != 1 || got[0] != b.apiAddr() {
		t.Errorf("seeds after reload %v", got)
	}
}

// TestClusterGossipPortBusy: a busy gossip port stops Run with an error that
// names the socket and the key.
func TestClusterGossipPortBusy(t *testing.T) {
	cfg := clusterConfig(t, "busy")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Cluster.BindPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnHTTP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lnHTTP.Close()
	a, err := New(cfg, nil, WithListener(lnHTTP))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gossip port busy") || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "bind_port") {
		t.Fatalf("Run with a busy gossip port: %v", err)
	}
}

// TestClusterStatusWhenDisabled: without clustering the status says so and
// readiness has no cluster check.
func TestClusterStatusWhenDisabled(t *testing.T) {
	n := start(t, testConfig(t))
	st := n.do("GET", "/api/v1/cluster/status", nil).json(t)
	if st["enabled"] != false || st["size"] != 1.0 || st["ready"] != true {
		t.Errorf("status without clustering: %v", st)
	}
	r := n.do("GET", "/readyz", nil)
	if strings.Contains(string(r.body), `"name":"cluster"`) {
		t.Errorf("cluster check without clustering: %s", r.body)
	}
}

// TestClusterRolloutBetweenAppliances: a module installed on one appliance
// reaches the other (which opted in) over the real module endpoints.
func TestClusterRolloutBetweenAppliances(t *testing.T) {
	wasm, err := os.ReadFile(filepath.Join("..", "modules", "wat-counter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ca := clusterConfig(t, "src")
	ca.API.AdminTokens = []string{"fleet-admin"}
	a := start(t, ca)
	cb := clusterConfig(t, "dst", a.apiAddr())
	cb.API.AdminTokens = []string{"fleet-admin"}
	cb.Cluster.Rollout = true
	b := start(t, cb)
	if a.a.Rollout() == nil || b.a.Rollout() == nil {
		t.Fatal("rollout not wired")
	}
	poll(t, 20*time.Second, "pair formed and module sets known", func() bool {
		_, ok1 := a.a.ClusterNode().Modules("dst")
		_, ok2 := b.a.ClusterNode().Modules("src")
		return allAlive(a, 2) && ok1 && ok2
	})
	time.Sleep(500 * time.Millisecond) // the first sets are recorded; changes after this are followed
	if err := a.a.wasm.reg.Install(context.Background(), "counter", []byte("name = \"counter\"\nversion = \"1.0.0\"\ncapabilities = [\"metrics\"]\n"), wasm); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, "counter rolled out to dst", func() bool {
		for _, m := range b.a.moduleStore().List() {
			if m.Name == "counter" {
				return true
			}
		}
		return false
	})
	if got, err := os.ReadFile(filepath.Join(cb.Modules.Dir, "counter.wasm")); err != nil || string(got) != string(wasm) {
		t.Errorf("dst's counter.wasm: %v (%d bytes)", err, len(got))
	}
	st := b.do("GET", "/api/v1/cluster/status", nil).json(t)
	ro, _ := st["rollout"].(map[string]any)
	if ro["installed"] != 1.0 || ro["receive"] != true {
		t.Errorf("dst rollout status %v", st["rollout"])
	}
	if !strings.Contains(string(b.do("GET", "/metrics", nil).body), "badbatch_rollout_installed_total 1") {
		t.Error("rollout metric missing")
	}
}

// TestClusterFiveAppliancesConverge: five appliances, each seeded with the
// first one's API address, all see five alive members.
func TestClusterFiveAppliancesConverge(t *testing.T) {
	first := start(t, clusterConfig(t, "five-0"))
	nodes := []*node{first}
	for i := 1; i < 5; i++ {
		nodes = append(nodes, start(t, clusterConfig(t, "five-"+strconv.Itoa(i), first.apiAddr())))
	}
	begin := time.Now()
	for _, n := range nodes {
		poll(t, 30*time.Second, n.a.Config().Node.ID+" sees five alive", func() bool { return allAlive(n, 5) })
	}
	t.Logf("five appliances converged %s after the last one was ready", time.Since(begin).Round(time.Millisecond))
}

// TestClusterReadinessWaitsForSeeds: with a seed that does not answer, the
// node is not ready (cluster check "waiting to join seeds") until the
// bounded wait ends.
func TestClusterReadinessWaitsForSeeds(t *testing.T) {
	// A port nobody listens on: neither the HTTP lookup nor gossip answers.
	cfg := clusterConfig(t, "lonely", net.JoinHostPort("127.0.0.1", strconv.Itoa(freeGossipPort(t))))
	n := start(t, cfg)
	r := n.do("GET", "/readyz", nil)
	wantCode(t, r, 503)
	if !strings.Contains(string(r.body), `"name":"cluster","ok":false,"detail":"waiting to join seeds`) {
		t.Errorf("readyz while waiting: %s", r.body)
	}
	if st := n.do("GET", "/api/v1/cluster/status", nil).json(t); st["ready"] != false || st["joined"] != false {
		t.Errorf("status while waiting: %v", st)
	}
}
