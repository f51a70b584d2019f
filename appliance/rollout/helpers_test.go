package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/badbatch/badbatch/appliance/cluster"
	"github.com/badbatch/badbatch/wasmhost"
)

// TestMain checks no goroutine outlives the tests (memberlist's probeNode may
// still be finishing its ack timer after Shutdown; see appliance/cluster).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

func testLogger() *slog.Logger {
	if os.Getenv("BADBATCH_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// counterWasm is the real WAT-built module from modules/ (281 bytes: loads in
// milliseconds).
func counterWasm(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "modules", "wat-counter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withCustomSection returns wasm plus a custom section: a valid module with
// the same behaviour and another sha256 (a "new version").
func withCustomSection(wasm []byte, label string) []byte {
	payload := append([]byte{byte(len("v"))}, 'v')
	payload = append(payload, label...)
	out := append([]byte{}, wasm...)
	out = append(out, 0x00, byte(len(payload)))
	return append(out, payload...)
}

func manifestFor(name, version string) []byte {
	return []byte("name = \"" + name + "\"\nversion = \"" + version + "\"\ncapabilities = [\"metrics\"]\n")
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newRegistry is a real wasmhost registry on a temp directory (interpreter:
// the WAT module loads at once).
func newRegistry(t testing.TB) (*wasmhost.Registry, string) {
	t.Helper()
	return newRegistryAt(t, t.TempDir())
}

// newRegistryAt is a registry over dir with the modules already there loaded.
func newRegistryAt(t testing.TB, dir string) (*wasmhost.Registry, string) {
	t.Helper()
	host, err := wasmhost.NewHost(wasmhost.HostConfig{Interpreter: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := wasmhost.NewRegistry(wasmhost.RegistryConfig{Dir: dir, Host: host, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = reg.Close(ctx)
		_ = host.Close(ctx)
	})
	if err := reg.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return reg, dir
}

// moduleServer serves a modules directory the way the appliance's module API
// does (GET /api/v1/modules/{name}/wasm and /manifest, admin bearer token) on
// a real loopback HTTP server. tamper makes it serve altered wasm for a name.
type moduleServer struct {
	*httptest.Server
	dir   string
	token string
	mu    sync.Mutex
	tamp  map[string]bool
	hits  map[string]int
}

func newModuleServer(t testing.TB, dir, token string) *moduleServer {
	t.Helper()
	s := &moduleServer{dir: dir, token: token, tamp: map[string]bool{}, hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/modules/{name}/{part}", s.serve)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *moduleServer) tamper(name string) {
	s.mu.Lock()
	s.tamp[name] = true
	s.mu.Unlock()
}

func (s *moduleServer) served(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[name]
}

func (s *moduleServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid bearer token"}`)
		return
	}
	name, part := r.PathValue("name"), r.PathValue("part")
	switch part {
	case "wasm":
		b, err := os.ReadFile(filepath.Join(s.dir, name+".wasm"))
		if err != nil {
			http.Error(w, `{"error":"no such module"}`, http.StatusNotFound)
			return
		}
		s.mu.Lock()
		s.hits[name]++
		tampered := s.tamp[name]
		s.mu.Unlock()
		if tampered {
			b = withCustomSection(b, "evil")
		} else {
			w.Header().Set("X-Module-SHA256", sum(b))
		}
		w.Header().Set("Content-Type", "application/wasm")
		_, _ = w.Write(b)
	case "manifest":
		b, err := os.ReadFile(filepath.Join(s.dir, name+".toml"))
		if err != nil {
			http.Error(w, `{"error":"no such module"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/toml")
		_, _ = w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

// fastCluster are short timings for loopback tests.
func fastCluster(id string) cluster.Options {
	return cluster.Options{
		NodeID:              id,
		BindAddr:            "127.0.0.1",
		Preset:              cluster.PresetLocal,
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
		// Keeps this test binary's nodes to themselves (packages run in
		// parallel and reuse each other's freed ports).
		Label: fmt.Sprintf("test-%d", os.Getpid()),
	}
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasModule(l Local, name, sha string) bool {
	for _, m := range l.List() {
		if m.Name == name {
			return sha == "" || m.SHA256 == sha
		}
	}
	return false
}

func names(mods []cluster.ModuleInfo) string {
	var s []string
	for _, m := range mods {
		s = append(s, m.Name+"@"+m.SHA256[:8])
	}
	return strings.Join(s, ",")
}

func mustWrite(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
