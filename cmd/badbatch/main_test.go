package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binary is the real badbatch binary, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	// Every binary started here inherits a cluster label of its own, so its
	// gossip never mixes with another test package's nodes (go test ./...
	// runs packages in parallel, and freed ports are reused).
	os.Setenv("BADBATCH_CLUSTER_LABEL", fmt.Sprintf("test-%d", os.Getpid()))
	dir, err := os.MkdirTemp("", "badbatch-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "badbatch")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build badbatch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running badbatch process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stderr *syncBuf
	done   chan struct{}
	err    error
}

func startProc(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	port := freePort(t)
	args = append([]string{"--port", strconv.Itoa(port)}, args...)
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &syncBuf{}, done: make(chan struct{})}
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
			t.Logf("badbatch output:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("badbatch exited during start: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("badbatch not ready after 30s:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) signal(sig os.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("badbatch did not exit within %s:\n%s", timeout, p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func post(url, token, body string) (int, string, error) {
	req, _ := http.NewRequest("POST", url+"/api/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

// notifySocket listens on a real unixgram socket and collects sd_notify messages.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	done chan struct{}
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = conn.Close(); <-n.done })
	return n
}

func (n *notifySocket) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "\n|")
}

func (n *notifySocket) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(n.all(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q among sd_notify messages %q", s, n.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHelpAndVersion(t *testing.T) {
	out, err := exec.Command(binary, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--buffer-size") || !strings.Contains(string(out), "--wait-strategy") {
		t.Errorf("-h: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "-V").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^badbatch \S+ \(commit \S+, go1\.\d+`).Match(out) {
		t.Errorf("-V: %v %q", err, out)
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[server]\nport = 8080\n[ring]\nbuffer_sise = 1024\nwait_strategy = 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[api]\npublish_tokens = [\"s3cret\"]\n[ring]\nbuffer_size = 256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bareDuration := filepath.Join(dir, "dur.toml")
	if err := os.WriteFile(bareDuration, []byte("\n[server]\nshutdown_timeout = 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		contain []string
		absent  []string
	}{
		{"unknown flag", []string{"--bogus"}, 2, []string{"bogus"}, nil},
		{"non power of two", []string{"-b", "1000"}, 2, []string{"power of two"}, nil},
		{"bad wait strategy", []string{"--wait-strategy", "fast"}, 2, []string{"fast"}, nil},
		{"bad port", []string{"-p", "x"}, 2, []string{"port"}, nil},
		{"stray argument", []string{"run"}, 2, []string{"run"}, nil},
		{"invalid toml with lines", []string{"--config", bad}, 2, []string{"bad.toml:4", "buffer_sise", "bad.toml:5", "wait_strategy"}, nil},
		{"bare integer duration", []string{"--config", bareDuration}, 2, []string{"dur.toml:3", "shutdown_timeout"}, nil},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.toml")}, 2, []string{"nope.toml"}, nil},
		{"check-config invalid", []string{"--check-config", "--config", bad}, 1, []string{"bad.toml:4"}, nil},
		{"check-config valid", []string{"--check-config", "--config", good}, 0, []string{"buffer_size = 256", "configuration OK"}, []string{"s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, tt.args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, out)
			}
			for _, c := range tt.contain {
				if !strings.Contains(string(out), c) {
					t.Errorf("output lacks %q:\n%s", c, out)
				}
			}
			for _, c := range tt.absent {
				if strings.Contains(string(out), c) {
					t.Errorf("output contains %q:\n%s", c, out)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("a failed start created the data directory")
	}
}

// TestSIGTERMDrainsAndNotifies publishes from several clients, sends SIGTERM
// mid-stream and checks: exit 0, every accepted event was consumed before
// exit, the shutdown steps were logged in order, and systemd was told
// READY/WATCHDOG/STOPPING.
func TestSIGTERMDrainsAndNotifies(t *testing.T) {
	ns := listenNotify(t)
	dir := t.TempDir()
	p := startProc(t, dir, []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=200000"}, "-b", "64", "-n", "drain-node")
	ns.waitFor(t, "READY=1")
	ns.waitFor(t, "WATCHDOG=1")
	var accepted atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := post(p.url, "", `[{"data":1},{"data":2},{"data":3},{"data":4},{"data":5}]`)
				if err != nil {
					return // server closed
				}
				if code == 200 {
					accepted.Add(5)
				}
				if code == 503 {
					return
				}
			}
		}()
	}
	for accepted.Load() < 500 {
		time.Sleep(5 * time.Millisecond)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	close(stop)
	wg.Wait()
	logs := p.stderr.String()
	order := []string{"shutdown requested", "readiness off", "stop intake", "draining ring", "drain ring and stop processors", "close HTTP server", "shutdown complete"}
	last := -1
	for _, s := range order {
		i := strings.Index(logs, s)
		if i < 0 || i < last {
			t.Fatalf("shutdown log step %q missing or out of order", s)
		}
		last = i
	}
	m := regexp.MustCompile(`shutdown complete.*events_in=(\d+) events_out=(\d+) clean=true`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatal("no clean shutdown summary")
	}
	in, _ := strconv.ParseInt(m[1], 10, 64)
	out, _ := strconv.ParseInt(m[2], 10, 64)
	if in != out || in < accepted.Load() {
		t.Errorf("events in %d, out %d, acknowledged %d: something accepted was not drained", in, out, accepted.Load())
	}
	ns.waitFor(t, "STOPPING=1")
}

func TestSIGHUPReload(t *testing.T) {
	ns := listenNotify(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "badbatch.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[api]\npublish_tokens = [\"old\"]\n")
	p := startProc(t, dir, []string{"NOTIFY_SOCKET=" + ns.path}, "--config", cfgPath)
	if code, body, _ := post(p.url, "old", `{"data":1}`); code != 200 {
		t.Fatalf("old token: %d %s", code, body)
	}
	write("[api]\npublish_tokens = [\"new\"]\n[log]\nlevel = \"debug\"\n[ring]\nbuffer_size = 2048\n")
	p.signal(syscall.SIGHUP)
	ns.waitFor(t, "RELOADING=1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, _ := post(p.url, "new", `{"data":2}`)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new token not accepted after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _ := post(p.url, "old", `{"data":3}`); code != 401 {
		t.Errorf("old token after reload: %d", code)
	}
	// An invalid file keeps the old configuration and says why.
	write("[api]\npublish_tokens = [\"broken\"]\nmax_batch = \"lots\"\n")
	p.signal(syscall.SIGHUP)
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), "keeping the current configuration") {
		if time.Now().After(deadline) {
			t.Fatalf("invalid reload not logged:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "badbatch.toml:3") {
		t.Error("reload error does not name the file and line")
	}
	if code, _, _ := post(p.url, "new", `{"data":4}`); code != 200 {
		t.Errorf("token after failed reload: %d", code)
	}
	if !strings.Contains(p.stderr.String(), "ring.buffer_size") || !strings.Contains(p.stderr.String(), "needs a restart") {
		t.Error("restart-only change not reported")
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT", code)
	}
}

func TestDefaultsAndStateDirLock(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	port := strings.TrimPrefix(p.url, "http://127.0.0.1:")
	if fi, err := os.Stat(filepath.Join(dir, "data-"+port)); err != nil || !fi.IsDir() {
		t.Fatalf("state directory ./data-%s not created: %v", port, err)
	}
	// A second process on the same state directory fails at once, naming it and the holder.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd2 := exec.CommandContext(ctx, binary, "--port", strconv.Itoa(freePort(t)), "--data-dir", "data-"+port)
	cmd2.Dir = dir
	out, err := cmd2.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), filepath.Join(dir, "data-"+port)) || !strings.Contains(string(out), fmt.Sprintf("pid %d", p.cmd.Process.Pid)) {
		t.Errorf("lock error does not name the directory and pid %d:\n%s", p.cmd.Process.Pid, out)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}
