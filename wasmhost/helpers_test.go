package wasmhost

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// testCacheDir keeps wazero's compilation cache across test runs (compiling
// a Go guest takes seconds, more under -race).
var testCacheDir = filepath.Join(os.TempDir(), "badbatch-wasmhost-test-cache")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	sharedHostOnce sync.Once
	sharedHost     *Host
	sharedHostErr  error
)

// testHost returns a Host shared by the package's tests (its cache is
// shared; modules are not).
func testHost(t testing.TB) *Host {
	t.Helper()
	sharedHostOnce.Do(func() {
		sharedHost, sharedHostErr = NewHost(HostConfig{
			CacheDir: testCacheDir,
			Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		})
	})
	if sharedHostErr != nil {
		t.Fatal(sharedHostErr)
	}
	return sharedHost
}

// loadModule loads wasmPath with the manifest TOML text.
func loadModule(t testing.TB, wasmPath, manifest string) *Module {
	t.Helper()
	m, err := tryLoad(t, wasmPath, manifest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background(), nil); err != nil {
			t.Error(err)
		}
	})
	return m
}

func tryLoad(t testing.TB, wasmPath, manifest string) (*Module, error) {
	t.Helper()
	man, err := ParseManifest([]byte(manifest), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	return testHost(t).Load(context.Background(), man, wasm)
}

// collector records outputs (copying emitted data).
type collector struct {
	mu  sync.Mutex
	out []Output
}

func (c *collector) emit(o Output) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o.Key = bytes.Clone(o.Key)
	o.Data = bytes.Clone(o.Data)
	c.out = append(c.out, o)
}

func (c *collector) kinds() map[OutputKind]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := map[OutputKind]int{}
	for _, o := range c.out {
		n[o.Kind]++
	}
	return n
}

func events(datas ...string) []Event {
	evs := make([]Event, len(datas))
	for i, d := range datas {
		evs[i] = Event{Seq: uint64(i + 1), Timestamp: int64(1000 + i), Key: []byte(fmt.Sprintf("k%d", i)),
			Producer: []byte("test"), Data: []byte(d)}
	}
	return evs
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
