package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConverge(t *testing.T) {
	for _, count := range []int{3, 5} {
		t.Run(strconv.Itoa(count), func(t *testing.T) {
			start := time.Now()
			nodes := startCluster(t, count, nil)
			t.Logf("%d nodes converged in %s", count, time.Since(start).Round(time.Millisecond))
			for _, n := range nodes {
				ms := n.Members()
				if len(ms) != count {
					t.Fatalf("%s: %d members, want %d", n.ID(), len(ms), count)
				}
				selfs := 0
				for _, m := range ms {
					if m.Self {
						selfs++
						if m.ID != n.ID() || m.GossipAddr != n.GossipAddr() {
							t.Errorf("%s: self member is %+v", n.ID(), m)
						}
					}
					if want := "http://127.0.0.1/" + m.ID; m.APIURL != want || m.Meta.Version != "test" || !m.Meta.Ready {
						t.Errorf("%s: member %s meta %+v, want api %s", n.ID(), m.ID, m.Meta, want)
					}
					if m.LastChange.IsZero() {
						t.Errorf("%s: member %s has no last change", n.ID(), m.ID)
					}
				}
				if selfs != 1 {
					t.Errorf("%s: %d self members", n.ID(), selfs)
				}
				st := n.Status()
				if st.Size != count || st.Alive != count || !st.Joined || !st.Ready {
					t.Errorf("%s: status %+v", n.ID(), st)
				}
				if ok, reason := n.Ready(); !ok || !strings.HasPrefix(reason, "joined") {
					t.Errorf("%s: Ready() = %v, %q", n.ID(), ok, reason)
				}
			}
		})
	}
}

func TestConvergeConcurrentStarts(t *testing.T) {
	first := startNode(t, fastOpts("c1", "127.0.0.1"))
	nodes := []*Node{first}
	errs := make(chan error, 4)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 2; i <= 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := fastOpts(fmt.Sprintf("c%d", i), "127.0.0.1")
			o.Seeds = []string{first.GossipAddr()}
			n, err := New(o, testLogger())
			if err == nil {
				err = n.Start(context.Background())
			}
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for _, n := range nodes {
		t.Cleanup(func() { _ = n.Close() })
	}
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "5 concurrently started nodes converge", allSee(nodes, ids(nodes), StateAlive))
}

func TestKilledNodeSeenDead(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	start := time.Now()
	if err := nodes[2].Close(); err != nil { // Shutdown without Leave
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n3 dead on n1 and n2", allSee(nodes[:2], []string{"n3"}, StateDead))
	t.Logf("dead detected in %s", time.Since(start).Round(time.Millisecond))
	st := nodes[0].Status()
	if st.Dead != 1 || st.Alive != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestSuspectStateFromOwnProbe(t *testing.T) {
	// Long suspicion (20 probe intervals) so the suspect state is observable.
	nodes := startCluster(t, 2, func(_ int, o *Options) { o.SuspicionMult = 20; o.RejoinInterval = -1 })
	if err := nodes[1].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n2 suspect on n1", allSee(nodes[:1], []string{"n2"}, StateSuspect))
	if st := nodes[0].Status(); st.Suspect != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestGracefulLeave(t *testing.T) {
	var fill atomic.Int64
	nodes := startCluster(t, 3, func(i int, o *Options) {
		if i == 2 { // metadata that changes on every refresh must not resurrect it after Leave
			o.MetaFunc = func() Meta { return Meta{APIURL: "http://n3", RingFill: int(fill.Add(1) % 100)} }
		}
	})
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n3 left on n1 and n2", allSee(nodes[:2], []string{"n3"}, StateLeft))
	if ok, reason := nodes[2].Ready(); ok || reason != "left the cluster" {
		t.Errorf("after Leave: Ready() = %v, %q", ok, reason)
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	holdsFor(t, 700*time.Millisecond, "n3 stays left while still running", allSee(nodes[:2], []string{"n3"}, StateLeft))
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	// A left node stays left (it must not be re-joined by the others' loops).
	holdsFor(t, time.Second, "n3 stays left", allSee(nodes[:2], []string{"n3"}, StateLeft))
	if err := nodes[2].Leave(time.Second); err == nil {
		t.Error("Leave after Close: no error")
	}
}

func TestRestartRejoinsFromPersistedPeers(t *testing.T) {
	dir := t.TempDir()
	nodes := startCluster(t, 3, func(i int, o *Options) {
		o.RejoinInterval = -1 // n1, n2 never re-join: only n3's persisted peers can bring it back
		if i == 2 {
			o.StateDir = dir
		}
	})
	waitFor(t, 5*time.Second, "peers file with n1 and n2", func() (bool, string) {
		peers, err := loadPeers(dir)
		got := fmt.Sprint(peers)
		return err == nil && len(peers) == 2 && peers[0].ID == "n1" && peers[1].ID == "n2", got
	})
	addr := nodes[2].GossipAddr()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n3 dead", allSee(nodes[:2], []string{"n3"}, StateDead))

	o := fastOpts("n3", "127.0.0.1")
	o.BindPort = port
	o.StateDir = dir // no seeds: only the persisted peers
	n3 := startNode(t, o)
	all := []*Node{nodes[0], nodes[1], n3}
	waitFor(t, 15*time.Second, "restarted n3 back in the cluster", allSee(all, ids(all), StateAlive))
	if ok, reason := n3.Ready(); !ok {
		t.Errorf("restarted n3 not ready: %s", reason)
	}
}

func TestRestartOnNewAddressIsReclaimed(t *testing.T) {
	if !loopbackUsable("127.0.0.2") {
		t.Skip("127.0.0.2 cannot be bound here")
	}
	dir := t.TempDir()
	nodes := startCluster(t, 3, func(i int, o *Options) {
		if i == 2 {
			o.StateDir = dir
		}
	})
	old := nodes[2].GossipAddr()
	waitFor(t, 5*time.Second, "peers file", func() (bool, string) {
		peers, _ := loadPeers(dir)
		return len(peers) == 2, fmt.Sprint(peers)
	})
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n3 dead", allSee(nodes[:2], []string{"n3"}, StateDead))

	o := fastOpts("n3", "127.0.0.2")
	o.StateDir = dir
	n3 := startNode(t, o)
	if n3.GossipAddr() == old || !strings.HasPrefix(n3.GossipAddr(), "127.0.0.2:") {
		t.Fatalf("restarted n3 at %s (old %s)", n3.GossipAddr(), old)
	}
	all := []*Node{nodes[0], nodes[1], n3}
	waitFor(t, 15*time.Second, "n3 reclaimed on its new address", func() (bool, string) {
		if ok, d := allSee(all, ids(all), StateAlive)(); !ok {
			return false, d
		}
		for _, n := range nodes[:2] {
			if m, _ := n.Member("n3"); m.GossipAddr != n3.GossipAddr() {
				return false, describe(n)
			}
		}
		return true, ""
	})
}

func TestEncryption(t *testing.T) {
	k1 := []byte("0123456789abcdef")
	k2 := []byte("fedcba9876543210")
	nodes := startCluster(t, 2, func(_ int, o *Options) { o.Keyring = [][]byte{k1} })
	if st := nodes[0].Status(); !st.Encrypted || st.Keys != 1 {
		t.Errorf("status %+v", st)
	}

	wrong := fastOpts("wrong-key", "127.0.0.1")
	wrong.Keyring = [][]byte{k2}
	wrong.Seeds = []string{nodes[0].GossipAddr()}
	w := startNode(t, wrong)

	plain := fastOpts("no-key", "127.0.0.1")
	plain.Seeds = []string{nodes[0].GossipAddr()}
	p := startNode(t, plain)

	waitFor(t, 10*time.Second, "decrypt failures counted on n1", func() (bool, string) {
		st := nodes[0].Status()
		return st.DecryptFailures >= 2, fmt.Sprintf("%+v", st)
	})
	holdsFor(t, time.Second, "wrong-key and no-key nodes stay out", func() (bool, string) {
		for _, n := range nodes {
			if _, ok := n.Member("wrong-key"); ok {
				return false, describe(n)
			}
			if _, ok := n.Member("no-key"); ok {
				return false, describe(n)
			}
		}
		if len(w.Members()) != 1 || len(p.Members()) != 1 {
			return false, describe(w) + " / " + describe(p)
		}
		return true, ""
	})
	if ok, reason := w.Ready(); ok && !strings.HasPrefix(reason, "alone") {
		t.Errorf("wrong-key node Ready() = %v, %q", ok, reason)
	}
}

func TestKeyRotation(t *testing.T) {
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("abcdefghijklmnopqrstuvwxyz012345")
	nodes := startCluster(t, 3, func(_ int, o *Options) { o.Keyring = [][]byte{k1} })
	// Whole: nobody declared dead or left (a transient "suspect" from one slow
	// probe on a loaded machine is not a split).
	whole := func() (bool, string) {
		for _, n := range nodes {
			for _, id := range ids(nodes) {
				if st := stateOf(n, id); st != StateAlive && st != StateSuspect {
					return false, describe(n)
				}
			}
		}
		return true, ""
	}
	steps := []struct {
		name string
		keys [][]byte
	}{
		{"install", [][]byte{k1, k2}},
		{"use", [][]byte{k2, k1}},
		{"remove", [][]byte{k2}},
	}
	for _, step := range steps {
		for _, n := range nodes { // one node at a time, as a rolling SIGHUP would
			if err := n.ApplyKeyring(step.keys); err != nil {
				t.Fatalf("%s on %s: %v", step.name, n.ID(), err)
			}
		}
		// The cluster stays whole: failure detection (probes every 250ms) keeps
		// running over the new keys for a while.
		holdsFor(t, 1500*time.Millisecond, "cluster whole after "+step.name, whole)
		for _, n := range nodes {
			if st := n.Status(); st.Keys != len(step.keys) {
				t.Fatalf("after %s: %s has %d keys", step.name, n.ID(), st.Keys)
			}
		}
	}
	// Only the new key gets in now.
	old := fastOpts("old-key", "127.0.0.1")
	old.Keyring = [][]byte{k1}
	old.Seeds = []string{nodes[0].GossipAddr()}
	o := startNode(t, old)
	fresh := fastOpts("new-key", "127.0.0.1")
	fresh.Keyring = [][]byte{k2}
	fresh.Seeds = []string{nodes[1].GossipAddr()}
	f := startNode(t, fresh)
	all := append(slices.Clone(nodes), f)
	waitFor(t, 10*time.Second, "new-key node joined", allSee(all, ids(all), StateAlive))
	if _, ok := nodes[0].Member("old-key"); ok || len(o.Members()) != 1 {
		t.Errorf("old-key node got in: %s / %s", describe(nodes[0]), describe(o))
	}
}

func TestKeyringWrappers(t *testing.T) {
	k := func(c byte) []byte { return []byte(strings.Repeat(string(c), 16)) }
	n, err := New(Options{NodeID: "kr", BindAddr: "127.0.0.1", Keyring: [][]byte{k('a')}}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	kr := n.conf.Keyring
	keys := func() string {
		var out []string
		for _, key := range kr.GetKeys() {
			out = append(out, string(key[:1]))
		}
		return strings.Join(out, "")
	}
	steps := []struct {
		do   func() error
		want string
		err  bool
	}{
		{func() error { return n.InstallKey(k('b')) }, "ab", false},
		{func() error { return n.InstallKey(k('c')) }, "abc", false},
		{func() error { return n.InstallKey([]byte("short")) }, "abc", true},
		{func() error { return n.UseKey(k('c')) }, "cab", false},
		{func() error { return n.UseKey(k('z')) }, "cab", true},
		{func() error { return n.RemoveKey(k('c')) }, "cab", true}, // primary
		{func() error { return n.RemoveKey(k('a')) }, "cb", false}, // middle: rebuilt
		{func() error { return n.ApplyKeyring([][]byte{k('b'), k('d'), k('c')}) }, "bcd", false},
		{func() error { return n.ApplyKeyring([][]byte{k('b'), k('d')}) }, "bd", false},
		{func() error { return n.ApplyKeyring(nil) }, "bd", true},
		{func() error { return n.ApplyKeyring([][]byte{[]byte("bad")}) }, "bd", true},
	}
	for i, s := range steps {
		err := s.do()
		if (err != nil) != s.err {
			t.Fatalf("step %d: err %v, want error %v", i, err, s.err)
		}
		if got := keys(); got != s.want {
			t.Fatalf("step %d: keys %q, want %q", i, got, s.want)
		}
	}
	plain, err := New(Options{NodeID: "plain"}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.InstallKey(k('a')); err == nil || !strings.Contains(err.Error(), "not enabled") {
		t.Errorf("InstallKey without encryption: %v", err)
	}
	if err := plain.ApplyKeyring(nil); err != nil {
		t.Errorf("ApplyKeyring(nil) without encryption: %v", err)
	}
}

func TestWrongLabelCannotJoin(t *testing.T) {
	nodes := startCluster(t, 2, func(_ int, o *Options) { o.Label = "edge-a" })
	other := fastOpts("other-label", "127.0.0.1")
	other.Label = "edge-b"
	other.Seeds = []string{nodes[0].GossipAddr()}
	o := startNode(t, other)
	waitFor(t, 10*time.Second, "label failures counted", func() (bool, string) {
		st := nodes[0].Status()
		return st.LabelFailures > 0, fmt.Sprintf("%+v", st)
	})
	holdsFor(t, time.Second, "the other label stays out", func() (bool, string) {
		_, in := nodes[0].Member("other-label")
		return !in && len(o.Members()) == 1, describe(nodes[0]) + " / " + describe(o)
	})
}

func TestMetaTooLarge(t *testing.T) {
	big := fastOpts("big", "127.0.0.1")
	big.MetaFunc = func() Meta { return Meta{APIURL: "http://" + strings.Repeat("x", MaxMetaSize)} }
	n, err := New(big, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Start with large meta: %v", err)
	}
	_ = n.Close()

	// At runtime: the error is reported and the previous metadata stays.
	var mu sync.Mutex
	url := "http://127.0.0.1:8080"
	nodes := startCluster(t, 2, func(i int, o *Options) {
		if i == 0 {
			o.MetaFunc = func() Meta { mu.Lock(); defer mu.Unlock(); return Meta{APIURL: url, Version: "1"} }
		}
	})
	mu.Lock()
	url = "http://" + strings.Repeat("y", 600)
	mu.Unlock()
	if err := nodes[0].RefreshMeta(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("RefreshMeta with large meta: %v", err)
	}
	if st := nodes[0].Status(); !strings.Contains(st.MetaError, "too large") {
		t.Errorf("status meta error %q", st.MetaError)
	}
	holdsFor(t, 500*time.Millisecond, "peer keeps the old metadata", func() (bool, string) {
		m, _ := nodes[1].Member("n1")
		return m.APIURL == "http://127.0.0.1:8080", fmt.Sprintf("%+v", m.Meta)
	})
	// Back under the limit: the change reaches the peer.
	mu.Lock()
	url = "http://10.1.2.3:9090"
	mu.Unlock()
	waitFor(t, 10*time.Second, "updated metadata on n2", func() (bool, string) {
		m, _ := nodes[1].Member("n1")
		return m.APIURL == "http://10.1.2.3:9090", fmt.Sprintf("%+v", m.Meta)
	})
	if st := nodes[0].Status(); st.MetaError != "" {
		t.Errorf("meta error not cleared: %q", st.MetaError)
	}
}

func TestBusyPort(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			var port int
			if proto == "tcp" {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				port = l.Addr().(*net.TCPAddr).Port
			} else {
				c, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				port = c.LocalAddr().(*net.UDPAddr).Port
			}
			o := fastOpts("busy", "127.0.0.1")
			o.BindPort = port
			n, err := New(o, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			err = n.Start(context.Background())
			sock := fmt.Sprintf("127.0.0.1:%d", port)
			if err == nil || !strings.Contains(err.Error(), "gossip port busy") || !strings.Contains(err.Error(), sock) ||
				!strings.Contains(err.Error(), "bind_port") {
				t.Fatalf("Start on a busy %s port: %v", proto, err)
			}
			t.Logf("%s busy: %v", proto, err)
		})
	}
}

func TestBindAddrNotLocal(t *testing.T) {
	o := fastOpts("far", "192.0.2.1") // TEST-NET-1: not on this machine
	n, err := New(o, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	err = n.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Fatalf("Start on a foreign address: %v", err)
	}
}

func TestSeedGivenAsAPIAddress(t *testing.T) {
	a := startNode(t, fastOpts("a", "127.0.0.1"))
	gossip := a.GossipAddr()
	_, gport, _ := net.SplitHostPort(gossip)
	info := func(addr string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != NodeInfoPath {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"node_id":"a","version":"test","cluster":{"enabled":true,"gossip_addr":%q}}`, addr)
		})
	}
	api := httptest.NewServer(info(gossip))
	defer api.Close()
	apiUnspecified := httptest.NewServer(info("0.0.0.0:" + gport)) // node bound to 0.0.0.0
	defer apiUnspecified.Close()
	apiHost := strings.TrimPrefix(api.URL, "http://")

	cases := []struct {
		name string
		seed string
	}{
		{"api host:port", apiHost},
		{"api url", api.URL},
		{"api reports 0.0.0.0", strings.TrimPrefix(apiUnspecified.URL, "http://")},
		{"gossip address directly", gossip},
	}
	var joined []*Node
	for i, c := range cases {
		o := fastOpts(fmt.Sprintf("b%d", i), "127.0.0.1")
		o.Seeds = []string{c.seed}
		joined = append(joined, startNode(t, o))
	}
	all := append([]*Node{a}, joined...)
	waitFor(t, 15*time.Second, "every seed form joined", allSee(all, ids(all), StateAlive))
	// The seed that answered as a gossip address is not looked up over HTTP again.
	for i, n := range joined {
		n.mu.Lock()
		gossipOnly := n.gossipSeeds[cases[i].seed]
		n.mu.Unlock()
		if want := cases[i].seed == gossip; gossipOnly != want {
			t.Errorf("%s: seed %q remembered as gossip-only: %v", cases[i].name, cases[i].seed, gossipOnly)
		}
	}

	// An injected resolver.
	o := fastOpts("c", "127.0.0.1")
	o.Seeds = []string{"box-a.example:8080"}
	o.SeedResolver = func(ctx context.Context, seed string) (string, error) {
		if seed != "box-a.example:8080" {
			return "", fmt.Errorf("unexpected seed %q", seed)
		}
		return gossip, nil
	}
	c := startNode(t, o)
	waitFor(t, 10*time.Second, "custom resolver joined", allSee([]*Node{a, c}, []string{"a", "c"}, StateAlive))
}

func TestModulesPropagate(t *testing.T) {
	type call struct {
		node string
		mods []ModuleInfo
	}
	var mu sync.Mutex
	got := map[string][]call{}
	nodes := startCluster(t, 3, func(i int, o *Options) {
		me := o.NodeID
		o.OnModulesChanged = func(id string, mods []ModuleInfo) {
			mu.Lock()
			defer mu.Unlock()
			got[me] = append(got[me], call{id, mods})
		}
	})
	sha := func(c byte) string { return strings.Repeat(string(c), 64) }
	small := []ModuleInfo{{Name: "filter", Version: "1.0", SHA256: sha('a')}, {Name: "enrich", Version: "2", SHA256: sha('b')}}
	sorted := []ModuleInfo{small[1], small[0]}
	if err := nodes[0].SetModules(small); err != nil {
		t.Fatal(err)
	}
	received := func(mods []ModuleInfo) func() (bool, string) {
		return func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range nodes[1:] {
				calls := got[n.ID()]
				if len(calls) == 0 || calls[len(calls)-1].node != "n1" || !slices.Equal(calls[len(calls)-1].mods, mods) {
					return false, fmt.Sprintf("%s got %v", n.ID(), calls)
				}
				if m, _ := n.Member("n1"); m.Meta.ModulesDigest != ModulesDigest(mods) {
					return false, fmt.Sprintf("%s sees digest %q", n.ID(), m.Meta.ModulesDigest)
				}
				if have, _ := n.Modules("n1"); !slices.Equal(have, mods) {
					return false, fmt.Sprintf("%s has %v", n.ID(), have)
				}
			}
			return true, ""
		}
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "small announcement on n2, n3", received(sorted))
	t.Logf("small announcement reached all in %s", time.Since(start).Round(time.Millisecond))

	// A large set (over one UDP packet) goes by TCP fan-out.
	var large []ModuleInfo
	for i := range 40 {
		large = append(large, ModuleInfo{Name: fmt.Sprintf("module-%02d", i), Version: "1.0.0", SHA256: sha('c')})
	}
	if len(encodeAnnouncement(announcement{Origin: "n1", Gen: 1, Modules: large})) <= maxBroadcastAnnouncement {
		t.Fatal("large set fits a broadcast; make it larger")
	}
	if err := nodes[0].SetModules(large); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 10*time.Second, "large announcement on n2, n3", received(large))
	t.Logf("large announcement reached all in %s", time.Since(start).Round(time.Millisecond))

	// A node joining later learns the sets by push/pull; its own set reaches the others.
	late := fastOpts("late", "127.0.0.1")
	late.Seeds = []string{nodes[2].GossipAddr()}
	l := startNode(t, late)
	lateMods := []ModuleInfo{{Name: "late-mod", SHA256: sha('d')}}
	if err := l.SetModules(lateMods); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "late joiner knows n1's modules and n1 knows its", func() (bool, string) {
		have, _ := l.Modules("n1")
		theirs, _ := nodes[0].Modules("late")
		return slices.Equal(have, large) && slices.Equal(theirs, lateMods), fmt.Sprintf("late has %d of n1, n1 has %v", len(have), theirs)
	})
	// Announcements retire: once every node knows every set, every
	// broadcast queue drains and stays drained (no echo loop). Waiting
	// for that knowledge first matters: a node that learns the late
	// joiner's set after the queues were seen empty re-gossips it, which
	// is propagation, not an echo.
	all := append(slices.Clone(nodes), l)
	waitFor(t, 10*time.Second, "every node knows n1's and the late joiner's sets", func() (bool, string) {
		for _, n := range all {
			have, _ := n.Modules("n1")
			theirs, _ := n.Modules("late")
			if !slices.Equal(have, large) || !slices.Equal(theirs, lateMods) {
				return false, fmt.Sprintf("%s has %d of n1's and %v of late's", n.ID(), len(have), theirs)
			}
		}
		return true, ""
	})
	drained := func() (bool, string) {
		for _, n := range all {
			if q := n.Status().BroadcastQueue; q != 0 {
				return false, fmt.Sprintf("%s queue %d", n.ID(), q)
			}
		}
		return true, ""
	}
	waitFor(t, 10*time.Second, "broadcast queues drained", drained)
	holdsFor(t, time.Second, "broadcast queues stay drained", drained)
	waitFor(t, 10*time.Second, "n2 knows both sets", func() (bool, string) {
		all := nodes[1].AllModules()
		return len(all) == 2 && slices.Equal(all["late"], lateMods), fmt.Sprint(len(all))
	})
	if err := nodes[0].SetModules([]ModuleInfo{{Name: "x", SHA256: "nothex"}}); err == nil {
		t.Error("SetModules accepted a bad sha256")
	}
}

func TestReady(t *testing.T) {
	n, err := New(fastOpts("solo", "127.0.0.1"), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason := n.Ready(); ok || reason != "cluster not started" {
		t.Errorf("before Start: %v %q", ok, reason)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if ok, reason := n.Ready(); !ok || !strings.Contains(reason, "no seeds") {
		t.Errorf("no seeds: %v %q", ok, reason)
	}

	// A seed nobody answers on: not ready within ReadyTimeout, then ready alone.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	o := fastOpts("waiting", "127.0.0.1")
	o.Seeds = []string{dead}
	o.ReadyTimeout = 600 * time.Millisecond
	var logs syncBuffer
	w, err := New(o, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if ok, reason := w.Ready(); ok || !strings.HasPrefix(reason, "waiting") {
		t.Errorf("waiting: %v %q", ok, reason)
	}
	waitFor(t, 5*time.Second, "ready alone", func() (bool, string) {
		ok, reason := w.Ready()
		return ok && strings.HasPrefix(reason, "alone: no seed"), reason
	})
	if st := w.Status(); st.Joined || !st.Ready {
		t.Errorf("status %+v", st)
	}
	waitFor(t, 5*time.Second, "the running-alone warning", func() (bool, string) {
		s := logs.String()
		return strings.Contains(s, "level=WARN") && strings.Contains(s, "running alone"), s
	})
}

func TestStartTwiceAndCloseIdempotent(t *testing.T) {
	n := startNode(t, fastOpts("twice", "127.0.0.1"))
	if err := n.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPeersFileWrittenAtomically(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	peers := []Peer{{ID: "b", Addr: "10.0.0.2:7946"}, {ID: "a", Addr: "[fe80::1]:7946"}}
	if err := savePeers(dir, "self", peers, now); err != nil {
		t.Fatal(err)
	}
	got, err := loadPeers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Peer{peers[1], peers[0]}; !slices.Equal(got, want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != PeersFile {
		t.Errorf("state dir holds %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, PeersFile), []byte(`{"version":1,"peers":[{"id":"x","addr":"nope"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPeers(dir); err == nil || !strings.Contains(err.Error(), PeersFile) {
		t.Errorf("bad file: %v", err)
	}
	if got, err := loadPeers(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing file: %v %v", got, err)
	}
}

func TestPartitionHeals(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	nodes[2].tr.isolated.Store(true) // all of n3's gossip dropped, both ways
	waitFor(t, 15*time.Second, "both sides see the other dead", func() (bool, string) {
		if ok, d := allSee(nodes[:2], []string{"n3"}, StateDead)(); !ok {
			return false, d
		}
		return allSee(nodes[2:], []string{"n1", "n2"}, StateDead)()
	})
	nodes[2].tr.isolated.Store(false)
	start := time.Now()
	waitFor(t, 15*time.Second, "partition healed", allSee(nodes, ids(nodes), StateAlive))
	t.Logf("healed %s after the partition ended", time.Since(start).Round(time.Millisecond))
	if st := nodes[0].Status(); st.GossipBytesSent == 0 || st.GossipBytesReceived == 0 {
		t.Errorf("gossip bytes not counted: %+v", st)
	}
}

func TestNameConflictCounted(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	dup := fastOpts("n2", "127.0.0.1") // same id, another port, while n2 is alive
	dup.Seeds = []string{nodes[0].GossipAddr()}
	d := startNode(t, dup)
	waitFor(t, 10*time.Second, "conflict counted on n1", func() (bool, string) {
		st := nodes[0].Status()
		return st.Conflicts > 0, fmt.Sprintf("%+v", st)
	})
	if m, _ := nodes[0].Member("n2"); m.GossipAddr != nodes[1].GossipAddr() || m.State != StateAlive {
		t.Errorf("the original n2 was displaced: %+v (dup at %s)", m, d.GossipAddr())
	}
}

func TestSetSeedsJoinsOnNextRound(t *testing.T) {
	a := startNode(t, fastOpts("a", "127.0.0.1"))
	b := startNode(t, fastOpts("b", "127.0.0.1"))
	holdsFor(t, 600*time.Millisecond, "no join without seeds", func() (bool, string) {
		return len(b.Members()) == 1, describe(b)
	})
	if err := b.SetSeeds([]string{""}); err == nil {
		t.Error("empty seed accepted")
	}
	if err := b.SetSeeds([]string{a.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "joined after SetSeeds", allSee([]*Node{a, b}, []string{"a", "b"}, StateAlive))
}

// TestSeedReadmeExample mirrors the seed README's three local appliances:
// `-p 8081 --cluster`, `-p 8082 --cluster --seed-nodes 127.0.0.1:8081`,
// `-p 8080 --cluster --seed-nodes "127.0.0.1:8081,127.0.0.1:8082"`: gossip
// bound to 0.0.0.0, seeds given as the other nodes' HTTP API addresses, each
// API serving cluster.gossip_addr in its node info.
func TestSeedReadmeExample(t *testing.T) {
	serveInfo := func(n *Node) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != NodeInfoPath {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintf(w, `{"node_id":%q,"cluster":{"gossip_addr":%q}}`, n.ID(), n.GossipAddr())
		}))
		t.Cleanup(s.Close)
		return s
	}
	hostport := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	// Bound to every address, but advertising loopback: tests keep their
	// traffic on 127.0.0.0/8 (left alone, a node bound to 0.0.0.0
	// advertises the machine's first private IPv4 address).
	unspecified := func(id string) Options {
		o := fastOpts(id, "0.0.0.0")
		o.AdvertiseAddr = "127.0.0.1"
		return o
	}
	a := startNode(t, unspecified("node-8081"))
	apiA := serveInfo(a)
	ob := unspecified("node-8082")
	ob.Seeds = []string{hostport(apiA)}
	b := startNode(t, ob)
	apiB := serveInfo(b)
	oc := unspecified("node-8080")
	oc.Seeds = []string{hostport(apiA), hostport(apiB)}
	c := startNode(t, oc)
	all := []*Node{a, b, c}
	waitFor(t, 15*time.Second, "the README's three nodes form one cluster", allSee(all, ids(all), StateAlive))
}

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRestartOnNewAddressBeforeDeath: the node comes back on a new address
// before the others noticed it died. They first refuse it (a conflict: the
// id is alive elsewhere), then accept it once the old address is dead for
// DeadNodeReclaimTime — through push/pull, without operator action.
func TestRestartOnNewAddressBeforeDeath(t *testing.T) {
	if !loopbackUsable("127.0.0.3") {
		t.Skip("127.0.0.3 cannot be bound here")
	}
	dir := t.TempDir()
	nodes := startCluster(t, 3, func(i int, o *Options) {
		if i == 2 {
			o.StateDir = dir
		}
	})
	waitFor(t, 5*time.Second, "peers file", func() (bool, string) {
		peers, _ := loadPeers(dir)
		return len(peers) == 2, fmt.Sprint(peers)
	})
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	o := fastOpts("n3", "127.0.0.3")
	o.StateDir = dir
	n3 := startNode(t, o)
	all := []*Node{nodes[0], nodes[1], n3}
	waitFor(t, 20*time.Second, "n3 accepted on its new address", func() (bool, string) {
		if ok, d := allSee(all, ids(all), StateAlive)(); !ok {
			return false, d
		}
		for _, n := range nodes[:2] {
			if m, _ := n.Member("n3"); m.GossipAddr != n3.GossipAddr() {
				return false, describe(n)
			}
		}
		return true, ""
	})
	t.Logf("conflicts counted on n1: %d", nodes[0].Status().Conflicts)
}
