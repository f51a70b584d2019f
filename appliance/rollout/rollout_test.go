package rollout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/cluster"
)

func TestFetcher(t *testing.T) {
	dir := t.TempDir()
	wasm := counterWasm(t)
	man := manifestFor("counter", "1.0.0")
	mustWrite(t, dir, "counter.wasm", wasm)
	mustWrite(t, dir, "counter.toml", man)
	srv := newModuleServer(t, dir, "admin-secret")
	mod := cluster.ModuleInfo{Name: "counter", Version: "1.0.0", SHA256: sum(wasm)}
	ctx := context.Background()

	f := &Fetcher{Token: "admin-secret"}
	gotMan, gotWasm, err := f.Fetch(ctx, srv.URL, mod)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if string(gotMan) != string(man) || string(gotWasm) != string(wasm) {
		t.Errorf("Fetch returned %d/%d bytes, want %d/%d", len(gotMan), len(gotWasm), len(man), len(wasm))
	}

	cases := []struct {
		name     string
		f        *Fetcher
		url      string
		mod      cluster.ModuleInfo
		mismatch bool
		want     string
	}{
		{"wrong token", &Fetcher{Token: "nope"}, srv.URL, mod, false, "status 401"},
		{"no token", &Fetcher{}, srv.URL, mod, false, "status 401"},
		{"announced hash differs", f, srv.URL, cluster.ModuleInfo{Name: "counter", SHA256: strings.Repeat("ab", 32)}, true, "sha256 mismatch"},
		{"missing module", f, srv.URL, cluster.ModuleInfo{Name: "absent", SHA256: mod.SHA256}, false, "status 404"},
		{"too large", &Fetcher{Token: "admin-secret", MaxWasmBytes: 100}, srv.URL, mod, false, "larger than 100 bytes"},
		{"bad url", f, "ftp://x", mod, false, "not http(s)://host:port"},
		{"bad name", f, srv.URL, cluster.ModuleInfo{Name: "../x", SHA256: mod.SHA256}, false, "invalid module name"},
		{"unreachable", f, "http://127.0.0.1:1", mod, false, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.f.Fetch(ctx, c.url, c.mod)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if errors.Is(err, ErrHashMismatch) != c.mismatch {
				t.Errorf("errors.Is(err, ErrHashMismatch) = %v", !c.mismatch)
			}
		})
	}

	// A tampered download (the peer serves other bytes than it announced).
	srv.tamper("counter")
	_, _, err = f.Fetch(ctx, srv.URL, mod)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered download: err = %v, want ErrHashMismatch", err)
	}
}

func TestDiff(t *testing.T) {
	a1 := cluster.ModuleInfo{Name: "a", SHA256: strings.Repeat("1", 64)}
	a2 := cluster.ModuleInfo{Name: "a", SHA256: strings.Repeat("2", 64)}
	b1 := cluster.ModuleInfo{Name: "b", SHA256: strings.Repeat("1", 64)}
	cases := []struct {
		name       string
		prev, next []cluster.ModuleInfo
		want       string
	}{
		{"nothing", nil, nil, ""},
		{"same", []cluster.ModuleInfo{a1}, []cluster.ModuleInfo{a1}, ""},
		{"add", nil, []cluster.ModuleInfo{a1, b1}, "+a +b"},
		{"replace", []cluster.ModuleInfo{a1}, []cluster.ModuleInfo{a2}, "~a"},
		{"remove", []cluster.ModuleInfo{a1, b1}, []cluster.ModuleInfo{b1}, "-a"},
		{"all", []cluster.ModuleInfo{a1}, []cluster.ModuleInfo{b1}, "+b -a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, o := range diff(index(c.prev), index(c.next)) {
				switch {
				case o.remove:
					got = append(got, "-"+o.mod.Name)
				case o.prev != nil:
					got = append(got, "~"+o.mod.Name)
				default:
					got = append(got, "+"+o.mod.Name)
				}
			}
			if s := strings.Join(got, " "); s != c.want {
				t.Errorf("diff = %q, want %q", s, c.want)
			}
		})
	}
}

// fleetNode is one real cluster node with a real wasmhost registry, a real
// loopback HTTP server serving its modules, and a Rollout.
type fleetNode struct {
	id     string
	node   *cluster.Node
	local  Local
	ro     *Rollout
	srv    *moduleServer
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

func startFleetNode(t testing.TB, ctx context.Context, wg *sync.WaitGroup, id string, receive bool, seeds []string) *fleetNode {
	t.Helper()
	return startFleetNodeAt(t, ctx, wg, id, receive, seeds, t.TempDir(), "")
}

// startFleetNodeAt runs a fleet node over modules directory dir (its modules
// loaded) with rollout state in stateFile ("" for none).
func startFleetNodeAt(t testing.TB, ctx context.Context, wg *sync.WaitGroup, id string, receive bool, seeds []string, dir, stateFile string) *fleetNode {
	t.Helper()
	reg, _ := newRegistryAt(t, dir)
	fn := &fleetNode{id: id, local: RegistryLocal(reg), dir: dir, done: make(chan struct{})}
	fn.srv = newModuleServer(t, dir, "fleet-admin")
	opts := fastCluster(id)
	opts.Seeds = seeds
	opts.MetaFunc = func() cluster.Meta {
		return cluster.Meta{APIURL: fn.srv.URL, Version: "test", Ready: true, Rollout: receive}
	}
	opts.OnModulesChanged = func(node string, mods []cluster.ModuleInfo) { fn.ro.OnModulesChanged(node, mods) }
	n, err := cluster.New(opts, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	fn.node = n
	fn.ro, err = New(Options{Local: fn.local, Cluster: n, Fetcher: &Fetcher{Token: "fleet-admin", Timeout: 5 * time.Second},
		Receive: receive, Logger: testLogger().With("node", id), Resync: 100 * time.Millisecond, RetryDelay: 200 * time.Millisecond,
		StateFile: stateFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	rctx, cancel := context.WithCancel(ctx)
	fn.cancel = cancel
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(fn.done)
		fn.ro.Run(rctx)
	}()
	return fn
}

// stop leaves the cluster and stops the node's rollout and gossip.
func (fn *fleetNode) stop() {
	fn.cancel()
	<-fn.done
	_ = fn.node.Leave(time.Second)
	_ = fn.node.Close()
}

// TestFleetRollout: a module added on one node reaches the opted-in nodes
// (fetched over HTTP, sha256 checked, installed through the registry), not the
// node that did not opt in; a new version replaces it; a tampered download is
// refused and counted; a removal is followed.
func TestFleetRollout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	src := startFleetNode(t, ctx, &wg, "src", false, nil)
	seeds := []string{src.node.GossipAddr()}
	in1 := startFleetNode(t, ctx, &wg, "in1", true, seeds)
	in2 := startFleetNode(t, ctx, &wg, "in2", true, seeds)
	out := startFleetNode(t, ctx, &wg, "out", false, seeds)
	all := []*fleetNode{src, in1, in2, out}

	// Everyone has seen everyone's (empty) first set: later changes are followed.
	eventually(t, 15*time.Second, "all module sets known everywhere", func() bool {
		for _, a := range all {
			if len(a.node.AllModules()) != len(all) {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // let the rollout loops record the first sets

	wasm := counterWasm(t)
	if err := src.local.Install(ctx, "counter", manifestFor("counter", "1.0.0"), wasm); err != nil {
		t.Fatal(err)
	}
	src.ro.LocalChanged()
	v1 := sum(wasm)
	eventually(t, 15*time.Second, "counter v1 on the opted-in nodes", func() bool {
		return hasModule(in1.local, "counter", v1) && hasModule(in2.local, "counter", v1)
	})
	// The installed files are the real ones, and the receivers announce them too.
	eventually(t, 10*time.Second, "receivers announce counter", func() bool {
		m, ok := src.node.Modules("in1")
		return ok && len(m) == 1 && m[0].SHA256 == v1
	})
	if hasModule(out.local, "counter", "") {
		t.Errorf("node that did not opt in received the module: %s", names(out.local.List()))
	}

	// A new version replaces it.
	wasm2 := withCustomSection(wasm, "v2")
	if err := src.local.Install(ctx, "counter", manifestFor("counter", "2.0.0"), wasm2); err != nil {
		t.Fatal(err)
	}
	v2 := sum(wasm2)
	eventually(t, 15*time.Second, "counter v2 on the opted-in nodes", func() bool {
		return hasModule(in1.local, "counter", v2) && hasModule(in2.local, "counter", v2)
	})
	for _, n := range []*fleetNode{in1, in2} {
		for _, m := range n.local.List() {
			if m.Name == "counter" && m.Version != "2.0.0" {
				t.Errorf("%s runs counter version %q, want 2.0.0", n.id, m.Version)
			}
		}
	}

	// A tampered download is refused: in1 and in2 fetch "evil" from src, whose
	// server alters the bytes.
	src.srv.tamper("evil")
	if err := src.local.Install(ctx, "evil", manifestFor("evil", "1.0.0"), wasm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "tampered download rejected on both opted-in nodes", func() bool {
		return in1.ro.Stats().Rejected >= 1 && in2.ro.Stats().Rejected >= 1
	})
	if hasModule(in1.local, "evil", "") || hasModule(in2.local, "evil", "") {
		t.Errorf("tampered module installed")
	}

	// Removal is followed.
	if err := src.local.Remove(ctx, "counter"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "counter removed on the opted-in nodes", func() bool {
		return !hasModule(in1.local, "counter", "") && !hasModule(in2.local, "counter", "")
	})
	st := in1.ro.Stats()
	if st.Installed < 2 || st.Removed < 1 || !st.Receive {
		t.Errorf("in1 stats %+v", st)
	}
	if st := out.ro.Stats(); st.Installed != 0 || st.Removed != 0 || st.Receive {
		t.Errorf("out stats %+v", st)
	}
	// The removed module's digest is gone from the cluster metadata too.
	eventually(t, 10*time.Second, "src metadata digest updated", func() bool {
		m, ok := in1.node.Member("src")
		return ok && m.Meta.ModulesDigest == cluster.ModulesDigest(src.local.List())
	})
}

// TestConflictNotApplied: a node that already runs another version of a
// module a peer adds does not take the peer's (counted as a conflict).
func TestConflictNotApplied(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	a := startFleetNode(t, ctx, &wg, "a", false, nil)
	b := startFleetNode(t, ctx, &wg, "b", true, []string{a.node.GossipAddr()})
	eventually(t, 15*time.Second, "first sets known", func() bool {
		_, ok1 := a.node.Modules("b")
		_, ok2 := b.node.Modules("a")
		return ok1 && ok2
	})
	time.Sleep(300 * time.Millisecond)
	// b runs its own "counter" (installed by hand), then a adds another one.
	wasm := counterWasm(t)
	mine := withCustomSection(wasm, "mine")
	if err := b.local.Install(ctx, "counter", manifestFor("counter", "9.0.0"), mine); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "b's counter announced", func() bool {
		m, ok := a.node.Modules("b")
		return ok && len(m) == 1
	})
	if err := a.local.Install(ctx, "counter", manifestFor("counter", "1.0.0"), wasm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "conflict counted on b", func() bool { return b.ro.Stats().Conflicts >= 1 })
	if !hasModule(b.local, "counter", sum(mine)) {
		t.Errorf("b's own version was replaced: %s", names(b.local.List()))
	}
	if !hasModule(a.local, "counter", sum(wasm)) {
		t.Errorf("a's version was replaced: %s", names(a.local.List()))
	}
}

func TestNewNeedsParts(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Local and Cluster succeeded")
	}
}

// TestChangeWhileDownFollowed: a node that was down while a peer replaced a
// module takes the new version when it comes back (its last-seen sets are
// persisted), while a node with no history only records the baseline.
func TestChangeWhileDownFollowed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	src := startFleetNode(t, ctx, &wg, "src", false, nil)
	seeds := []string{src.node.GossipAddr()}
	dir, state := t.TempDir(), filepath.Join(t.TempDir(), "cluster", StateFileName)
	dst := startFleetNodeAt(t, ctx, &wg, "dst", true, seeds, dir, state)
	eventually(t, 15*time.Second, "first sets known", func() bool {
		_, ok := dst.node.Modules("src")
		return ok
	})
	time.Sleep(300 * time.Millisecond)
	wasm := counterWasm(t)
	if err := src.local.Install(ctx, "counter", manifestFor("counter", "1.0.0"), wasm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "v1 on dst", func() bool { return hasModule(dst.local, "counter", sum(wasm)) })
	dst.stop()
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("state file: %v", err)
	}

	// While dst is down, src replaces the module.
	v2 := withCustomSection(wasm, "v2")
	if err := src.local.Install(ctx, "counter", manifestFor("counter", "2.0.0"), v2); err != nil {
		t.Fatal(err)
	}
	src.ro.LocalChanged()
	eventually(t, 10*time.Second, "src announces v2", func() bool {
		m, ok := src.node.Modules("src")
		return ok && len(m) == 1 && m[0].SHA256 == sum(v2)
	})

	// dst comes back (same modules directory and state, a new process-like node).
	dst2 := startFleetNodeAt(t, ctx, &wg, "dst", true, seeds, dir, state)
	if !hasModule(dst2.local, "counter", sum(wasm)) {
		t.Fatalf("dst restarted without its v1: %s", names(dst2.local.List()))
	}
	eventually(t, 20*time.Second, "v2 on the restarted dst", func() bool { return hasModule(dst2.local, "counter", sum(v2)) })

	// A node with no history that joins the fleet catches up with the
	// modules it has none of (installed before it joined).
	fresh := startFleetNodeAt(t, ctx, &wg, "fresh", true, seeds, t.TempDir(), filepath.Join(t.TempDir(), StateFileName))
	eventually(t, 20*time.Second, "v2 on the fresh node", func() bool { return hasModule(fresh.local, "counter", sum(v2)) })

	// A fresh node that does not opt in records the sets and installs nothing.
	optOut := startFleetNodeAt(t, ctx, &wg, "opt-out", false, seeds, t.TempDir(), filepath.Join(t.TempDir(), StateFileName))
	eventually(t, 15*time.Second, "opt-out knows src's set", func() bool {
		_, ok := optOut.node.Modules("src")
		return ok
	})
	time.Sleep(500 * time.Millisecond)
	if len(optOut.local.List()) != 0 || optOut.ro.Stats().Installed != 0 {
		t.Errorf("a node that did not opt in installed modules: %s", names(optOut.local.List()))
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", StateFileName)
	a := cluster.ModuleInfo{Name: "a", Version: "1", SHA256: strings.Repeat("a", 64)}
	seen := map[string]map[string]cluster.ModuleInfo{"p1": index([]cluster.ModuleInfo{a}), "p2": {}}
	if err := saveState(path, seen); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["p1"]["a"] != a || len(got["p2"]) != 0 {
		t.Errorf("loaded %v", got)
	}
	if got, err := loadState(filepath.Join(t.TempDir(), "absent.json")); err != nil || len(got) != 0 {
		t.Errorf("missing file: %v %v", got, err)
	}
	for _, bad := range []string{``, `{`, `{"version":2,"peers":{}}`, `{"version":1,"peers":{"":[]}}`,
		`{"version":1,"peers":{"p":[{"name":"","sha256":""}]}}`, `{"version":1,"peers":{},"x":1}`, `{"version":1} {}`} {
		if _, err := ParseState([]byte(bad)); err == nil {
			t.Errorf("ParseState(%q) accepted", bad)
		}
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"peers":{"p":[{"name":"a","version":"1","sha256":"` + strings.Repeat("0", 64) + `"}]}}`))
	f.Add([]byte(`{"version":1,"peers":{}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, err := ParseState(b)
		if err != nil {
			return
		}
		// What parses survives a save and load unchanged.
		seen := map[string]map[string]cluster.ModuleInfo{}
		for p, mods := range peers {
			seen[p] = index(mods)
		}
		path := filepath.Join(t.TempDir(), StateFileName)
		if err := saveState(path, seen); err != nil {
			t.Fatal(err)
		}
		got, err := loadState(path)
		if err != nil {
			t.Fatalf("reload of saved state: %v", err)
		}
		if len(got) != len(seen) {
			t.Fatalf("%d peers after round trip, want %d", len(got), len(seen))
		}
	})
}
