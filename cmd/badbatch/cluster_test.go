package main

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startAt starts the real binary with exactly args (no --port added) in dir
// and waits until url answers /readyz with 200.
func startAt(t *testing.T, dir string, env []string, url string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, url: url, stderr: &syncBuf{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("badbatch %v output:\n%s", args, p.stderr.String())
		}
	})
	deadline := time.Now().Add(40 * time.Second)
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("badbatch %v exited during start: %v\n%s", args, p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("badbatch %v not ready after 40s:\n%s", args, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type member struct {
	ID         string `json:"id"`
	GossipAddr string `json:"gossip_addr"`
	APIURL     string `json:"api_url"`
	State      string `json:"state"`
	Self       bool   `json:"self"`
}

// view is a node's GET /api/v1/cluster/nodes as id -> state ("" on error).
func view(url string) map[string]string {
	res, err := http.Get(url + "/api/v1/cluster/nodes")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var body struct {
		Nodes []member `json:"nodes"`
	}
	if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&body) != nil {
		return nil
	}
	out := map[string]string{}
	for _, m := range body.Nodes {
		out[m.ID] = m.State
	}
	return out
}

// waitView polls every url until cond holds for each one's view.
func waitView(t *testing.T, timeout time.Duration, what string, urls []string, cond func(map[string]string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok := true
		var last map[string]string
		for _, u := range urls {
			if last = view(u); !cond(last) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s; last view %v", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allAlive(ids []string) func(map[string]string) bool {
	return func(v map[string]string) bool {
		if len(v) != len(ids) {
			return false
		}
		for _, id := range ids {
			if v[id] != "alive" {
				return false
			}
		}
		return true
	}
}

func stateIs(id, state string) func(map[string]string) bool {
	return func(v map[string]string) bool { return v[id] == state }
}

// portFree reports whether port is free for TCP and UDP on host ("" = all addresses).
func portFree(host string, port int, udp bool) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		defer pc.Close()
	}
	return true
}

// seedPorts are HTTP ports p, p+1, p+2 whose derived gossip ports
// 7946+(port-8080) are free too.
func seedPortsFree(host string, base int) bool {
	for i := range 3 {
		p := base + i
		if !portFree(host, p, false) || !portFree(host, p-8080+7946, true) {
			return false
		}
	}
	return true
}

// TestSeedClusterExample runs the seed README's three-node example with the
// real binary from one folder, on other ports with the same pattern (the HTTP
// API and gossip bound to loopback by environment): the three form one
// cluster; a SIGKILLed node is seen dead and rejoins when restarted; a
// SIGTERMed node is seen as left.
func TestSeedClusterExample(t *testing.T) {
	host, _ := os.Hostname()
	base := 0
	for range 50 {
		b := 20000 + rand.IntN(20000)
		if seedPortsFree("127.0.0.1", b) {
			base = b
			break
		}
	}
	if base == 0 {
		t.Fatal("no free port triple")
	}
	dir := t.TempDir()
	env := []string{"BADBATCH_SERVER_HOST=127.0.0.1", "BADBATCH_CLUSTER_BIND_ADDR=127.0.0.1"}
	port := func(i int) string { return strconv.Itoa(base + i) }
	url := func(i int) string { return "http://127.0.0.1:" + port(i) }
	id := func(i int) string { return host + "-" + port(i) }
	args := map[int][]string{
		1: {"-p", port(1), "--cluster"},
		2: {"-p", port(2), "--cluster", "--seed-nodes", "127.0.0.1:" + port(1)},
		0: {"-p", port(0), "--cluster", "--seed-nodes", "127.0.0.1:" + port(1) + ",127.0.0.1:" + port(2)},
	}
	procs := map[int]*proc{}
	for _, i := range []int{1, 2, 0} {
		procs[i] = startAt(t, dir, env, url(i), args[i]...)
	}
	urls := []string{url(0), url(1), url(2)}
	ids := []string{id(0), id(1), id(2)}
	took := waitView(t, 30*time.Second, "three alive nodes everywhere", urls, allAlive(ids))
	t.Logf("full view on all three after %s", took.Round(time.Millisecond))

	// Each node's state is its own: data-<port>, <data>/cluster/cluster-peers.json.
	for i := range 3 {
		if _, err := os.Stat(filepath.Join(dir, "data-"+port(i), "LOCK")); err != nil {
			t.Errorf("node %d state dir: %v", i, err)
		}
	}

	// SIGKILL the node the others were seeded with: seen dead, then back.
	procs[1].signal(syscall.SIGKILL)
	procs[1].wait(10 * time.Second)
	took = waitView(t, 45*time.Second, "killed node seen dead", []string{url(0), url(2)}, stateIs(id(1), "dead"))
	t.Logf("killed node seen dead by both after %s", took.Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(dir, "data-"+port(1), "cluster", "cluster-peers.json")); err != nil {
		t.Errorf("last-known peers not persisted: %v", err)
	}
	procs[1] = startAt(t, dir, env, url(1), args[1]...)
	took = waitView(t, 30*time.Second, "restarted node rejoined", urls, allAlive(ids))
	t.Logf("restarted node (no seeds: last-known peers) back in every view after %s", took.Round(time.Millisecond))

	// SIGTERM: a graceful leave, exit 0.
	procs[2].signal(syscall.SIGTERM)
	if code := procs[2].wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	waitView(t, 15*time.Second, "SIGTERMed node seen as left", []string{url(0), url(1)}, stateIs(id(2), "left"))
	out := procs[2].stderr.String()
	if li, di := strings.Index(out, `step="leave cluster"`), strings.Index(out, `step="drain ring and stop processors"`); li < 0 || di < 0 || li > di {
		t.Errorf("leave (at %d) not before drain (at %d)", li, di)
	}
	for i := range 3 {
		if i != 2 {
			procs[i].signal(syscall.SIGTERM)
			procs[i].wait(30 * time.Second)
		}
	}
}

// TestSeedClusterExampleExactFlags runs the seed's commands verbatim (ports
// 8080-8082, gossip 7946-7948 on every address) when those ports are free.
func TestSeedClusterExampleExactFlags(t *testing.T) {
	if !seedPortsFree("", 8080) {
		t.Skip("ports 8080-8082 or 7946-7948 are in use on this machine; TestSeedClusterExample covers the same pattern on free ports")
	}
	host, _ := os.Hostname()
	dir := t.TempDir()
	// The flags are the seed's, verbatim. The environment pins the
	// advertised gossip address to loopback: with the default bind of
	// 0.0.0.0 a node advertises the machine's first private IPv4 address,
	// and tests must keep their traffic on 127.0.0.0/8.
	env := []string{"BADBATCH_CLUSTER_ADVERTISE_ADDR=127.0.0.1"}
	p81 := startAt(t, dir, env, "http://127.0.0.1:8081", "-p", "8081", "--cluster")
	p82 := startAt(t, dir, env, "http://127.0.0.1:8082", "-p", "8082", "--cluster", "--seed-nodes", "127.0.0.1:8081")
	p80 := startAt(t, dir, env, "http://127.0.0.1:8080", "-p", "8080", "--cluster", "--seed-nodes", "127.0.0.1:8081,127.0.0.1:8082")
	ids := []string{host + "-8080", host + "-8081", host + "-8082"}
	urls := []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:8082"}
	took := waitView(t, 30*time.Second, "three alive nodes everywhere", urls, allAlive(ids))
	t.Logf("seed example: full view after %s", took.Round(time.Millisecond))
	for _, d := range []string{"data", "data-8081", "data-8082"} {
		if _, err := os.Stat(filepath.Join(dir, d, "LOCK")); err != nil {
			t.Errorf("state dir %s: %v", d, err)
		}
	}
	p82.signal(syscall.SIGTERM)
	if code := p82.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	waitView(t, 15*time.Second, "8082 seen as left", urls[:2], stateIs(host+"-8082", "left"))
	for _, p := range []*proc{p80, p81} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
	}
}

// clusterStatus is GET /api/v1/cluster/status.
func clusterStatus(t *testing.T, url string) map[string]any {
	t.Helper()
	res, err := http.Get(url + "/api/v1/cluster/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSIGHUPRotatesClusterKeys: two encrypted nodes rotate their gossip key
// by editing the TOML keyring and sending SIGHUP (install, use, remove) and
// stay one cluster; seeds reload the same way.
func TestSIGHUPRotatesClusterKeys(t *testing.T) {
	base := 0
	for range 50 {
		b := 20000 + rand.IntN(20000)
		if seedPortsFree("127.0.0.1", b) {
			base = b
			break
		}
	}
	if base == 0 {
		t.Fatal("no free ports")
	}
	dir := t.TempDir()
	k1, k2 := "MDEyMzQ1Njc4OWFiY2RlZg==", "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	write := func(name string, keys []string, seeds []string) string {
		q := func(ss []string) string {
			var out []string
			for _, s := range ss {
				out = append(out, strconv.Quote(s))
			}
			return "[" + strings.Join(out, ", ") + "]"
		}
		path := filepath.Join(dir, name+".toml")
		doc := "[server]\nhost = \"127.0.0.1\"\n[cluster]\nenabled = true\nbind_addr = \"127.0.0.1\"\npreset = \"local\"\n" +
			"keyring = " + q(keys) + "\nseeds = " + q(seeds) + "\n"
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pa, pb := strconv.Itoa(base), strconv.Itoa(base+1)
	ua, ub := "http://127.0.0.1:"+pa, "http://127.0.0.1:"+pb
	fa := write("a", []string{k1}, nil)
	fb := write("b", []string{k1}, []string{"127.0.0.1:" + pa})
	a := startAt(t, dir, nil, ua, "-p", pa, "--config", fa)
	b := startAt(t, dir, nil, ub, "-p", pb, "--config", fb)
	host, _ := os.Hostname()
	ids := []string{host + "-" + pa, host + "-" + pb}
	waitView(t, 20*time.Second, "encrypted pair formed", []string{ua, ub}, allAlive(ids))

	for i, keys := range [][]string{{k1, k2}, {k2, k1}, {k2}} {
		write("a", keys, []string{"127.0.0.1:" + pb})
		write("b", keys, []string{"127.0.0.1:" + pa})
		for _, p := range []*proc{a, b} {
			p.signal(syscall.SIGHUP)
		}
		for _, p := range []*proc{a, b} {
			deadline := time.Now().Add(15 * time.Second)
			for strings.Count(p.stderr.String(), "cluster: seeds and keyring reloaded") < i+1 {
				if time.Now().After(deadline) {
					t.Fatalf("step %d: reload not logged:\n%s", i+1, p.stderr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		waitView(t, 10*time.Second, "pair whole during rotation", []string{ua, ub}, allAlive(ids))
	}
	time.Sleep(time.Second)
	waitView(t, 5*time.Second, "pair whole after rotation", []string{ua, ub}, allAlive(ids))
	for _, u := range []string{ua, ub} {
		st := clusterStatus(t, u)
		if st["encrypted"] != true || st["keys"] != 1.0 || st["alive"] != 2.0 || st["decrypt_failures"] != 0.0 {
			t.Errorf("%s status after rotation: %v", u, st)
		}
	}
	if !strings.Contains(a.stderr.String(), `seeds=[127.0.0.1:`+pb+`]`) {
		t.Errorf("seeds reload not logged on a")
	}
	// Turning encryption off needs a restart: the reload is refused and logged.
	write("a", nil, nil)
	a.signal(syscall.SIGHUP)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(a.stderr.String(), "cannot be switched on or off by a reload") {
		if time.Now().After(deadline) {
			t.Fatalf("refused reload not logged:\n%s", a.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []*proc{a, b} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
	}
}
