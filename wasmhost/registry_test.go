package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// atomicWrite writes data to dir/name through a temporary file and rename,
// as module writers must.
func atomicWrite(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

type changes struct {
	mu sync.Mutex
	c  []Change
	ch chan Change
}

func newChanges() *changes { return &changes{ch: make(chan Change, 100)} }

func (c *changes) on(ch Change) {
	c.mu.Lock()
	c.c = append(c.c, ch)
	c.mu.Unlock()
	c.ch <- ch
}

func (c *changes) wait(t *testing.T, module string, kind ChangeKind) Change {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ch := <-c.ch:
			if ch.Module == module && ch.Kind == kind {
				return ch
			}
		case <-deadline:
			t.Fatalf("no %s change for %s", kind, module)
		}
	}
}

func startRegistry(t *testing.T, dir string, ch *changes) (*Registry, func()) {
	t.Helper()
	r, err := NewRegistry(RegistryConfig{Dir: dir, Host: testHost(t), Debounce: 50 * time.Millisecond,
		OnChange: ch.on, Logger: testHost(t).logger})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.LoadAll(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	time.Sleep(50 * time.Millisecond) // let the watcher start
	return r, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := r.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

const v1Manifest = "name = \"hot\"\nversion = \"1\"\nwasm = \"hot.wasm\"\n"
const v2Manifest = "name = \"hot\"\nversion = \"2\"\ncapabilities = [\"metrics\"]\n"

func TestRegistryLoadAllAndStatus(t *testing.T) {
	dir := t.TempDir()
	atomicWrite(t, dir, "hot.wasm", mustRead(t, hostileWasm))
	atomicWrite(t, dir, "hot.toml", []byte(v1Manifest))
	atomicWrite(t, dir, "evil.wasm", mustRead(t, "testdata/badimport.wasm"))
	atomicWrite(t, dir, "evil.toml", []byte(`name = "evil"`))
	atomicWrite(t, dir, "junk.wasm", []byte("not wasm at all"))
	atomicWrite(t, dir, "junk.toml", []byte(`name = "junk"`))
	atomicWrite(t, dir, "README.txt", []byte("ignored"))
	r, err := NewRegistry(RegistryConfig{Dir: dir, Host: testHost(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	err = r.LoadAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "env.launch_missiles") || !strings.Contains(err.Error(), "not a WebAssembly binary") {
		t.Fatalf("LoadAll error = %v", err)
	}
	st := r.Status()
	if len(st) != 3 || st[0].Name != "evil" || st[0].Loaded || st[1].Name != "hot" || !st[1].Loaded || st[2].LoadError == "" {
		t.Fatalf("status %+v", st)
	}
	s, ok := r.Stage("hot")
	if !ok {
		t.Fatal("no stage")
	}
	var c collector
	if err := s.Process(context.Background(), events("a"), c.emit); err != nil || len(c.out) != 1 || c.out[0].Version != "1" {
		t.Fatalf("process: %v %+v", err, c.out)
	}
	if g, err := r.Graph(); err != nil || fmt.Sprint(g) != "[[hot]]" {
		t.Errorf("graph %v %v", g, err)
	}
	if d := r.Digest(); len(d) != 16 {
		t.Errorf("digest %q", d)
	}
}

// TestRegistryHotSwapUnderLoad swaps a module while two producers push
// batches: every event is processed exactly once, by exactly one version,
// and each producer sees the versions in order.
func TestRegistryHotSwapUnderLoad(t *testing.T) {
	dir := t.TempDir()
	atomicWrite(t, dir, "hot.wasm", mustRead(t, hostileWasm))
	atomicWrite(t, dir, "hot.toml", []byte(v1Manifest+"instances = 2\n"))
	ch := newChanges()
	r, stop := startRegistry(t, dir, ch)
	defer stop()
	ch.wait(t, "hot", ChangeAdded)
	s, _ := r.Stage("hot")

	var mu sync.Mutex
	seen := map[uint64]string{}
	var produced [2]uint64
	stopProducers := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var order []string
			seq := uint64(p) << 40
			for {
				select {
				case <-stopProducers:
					if fmt.Sprint(order) != "[1 2]" {
						t.Errorf("producer %d saw versions %v, want [1 2]", p, order)
					}
					return
				default:
				}
				evs := make([]Event, 8)
				for i := range evs {
					seq++
					evs[i] = Event{Seq: seq, Data: []byte(fmt.Sprintf("e%d", seq))}
				}
				produced[p] += uint64(len(evs))
				if err := s.Process(context.Background(), evs, func(o Output) {
					if o.Kind != OutputForward {
						t.Errorf("unexpected output %+v", o)
						return
					}
					mu.Lock()
					if prev, dup := seen[o.Event.Seq]; dup {
						t.Errorf("seq %d processed twice (%s, %s)", o.Event.Seq, prev, o.Version)
					}
					seen[o.Event.Seq] = o.Version
					mu.Unlock()
					if len(order) == 0 || order[len(order)-1] != o.Version {
						order = append(order, o.Version)
					}
				}); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	atomicWrite(t, dir, "hot.wasm", mustRead(t, "../modules/wat-counter.wasm"))
	atomicWrite(t, dir, "hot.toml", []byte(v2Manifest+"instances = 2\n"))
	ch.wait(t, "hot", ChangeReplaced)
	time.Sleep(50 * time.Millisecond)
	close(stopProducers)
	wg.Wait()
	if total := produced[0] + produced[1]; uint64(len(seen)) != total {
		t.Errorf("%d of %d events processed", len(seen), total)
	}
	if s.Stats().Counters["events"] == 0 {
		t.Error("v2 counter not counting")
	}
}

func TestRegistryKeepsOldVersionOnBadUpdate(t *testing.T) {
	dir := t.TempDir()
	good := mustRead(t, hostileWasm)
	atomicWrite(t, dir, "hot.wasm", good)
	atomicWrite(t, dir, "hot.toml", []byte(v1Manifest))
	ch := newChanges()
	r, stop := startRegistry(t, dir, ch)
	defer stop()
	ch.wait(t, "hot", ChangeAdded)

	bad := []struct {
		name  string
		write func()
		want  string
	}{
		{"half-written wasm", func() { atomicWrite(t, dir, "hot.wasm", good[:len(good)/2]) }, "compile"},
		{"unknown import", func() { atomicWrite(t, dir, "hot.wasm", mustRead(t, "testdata/badimport.wasm")) }, "env.launch_missiles"},
		{"bad manifest", func() {
			atomicWrite(t, dir, "hot.wasm", good)
			atomicWrite(t, dir, "hot.toml", []byte(v1Manifest+"instances = \"many\"\n"))
		}, "hot.toml:4"},
	}
	for _, b := range bad {
		b.write()
		c := ch.wait(t, "hot", ChangeFailed)
		if !strings.Contains(c.Err.Error(), b.want) {
			t.Errorf("%s: error %v does not mention %q", b.name, c.Err, b.want)
		}
		s, ok := r.Stage("hot")
		if !ok {
			t.Fatalf("%s: old version gone", b.name)
		}
		var col collector
		if err := s.Process(context.Background(), events("x"), col.emit); err != nil || len(col.out) != 1 || col.out[0].Version != "1" {
			t.Errorf("%s: old version not serving: %v %+v", b.name, err, col.out)
		}
		st := r.Status()
		if len(st) != 1 || !strings.Contains(st[0].LoadError, b.want) || st[0].Version != "1" {
			t.Errorf("%s: status %+v", b.name, st)
		}
	}
	// A good version clears the error.
	atomicWrite(t, dir, "hot.toml", []byte("name = \"hot\"\nversion = \"3\"\n"))
	ch.wait(t, "hot", ChangeReplaced)
	if st := r.Status(); st[0].LoadError != "" || st[0].Version != "3" {
		t.Errorf("status after fix %+v", st)
	}

	// Removing the manifest removes the module.
	s, _ := r.Stage("hot")
	if err := os.Remove(filepath.Join(dir, "hot.toml")); err != nil {
		t.Fatal(err)
	}
	ch.wait(t, "hot", ChangeRemoved)
	if _, ok := r.Stage("hot"); ok {
		t.Error("stage still registered")
	}
	if err := s.Process(context.Background(), events("x"), func(Output) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("removed stage: %v", err)
	}
}

func TestRegistryInstallRemoveReload(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRegistry(RegistryConfig{Dir: dir, Host: testHost(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	ctx := context.Background()
	good := mustRead(t, hostileWasm)
	man := []byte("name = \"up\"\nversion = \"1\"\nquarantine_after = 1\n")

	if err := r.Install(ctx, "up", man, mustRead(t, "testdata/badimport.wasm")); err == nil {
		t.Fatal("bad module installed")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a rejected install wrote files: %v", ents)
	}
	if err := r.Install(ctx, "../up", man, good); err == nil {
		t.Error("path traversal name accepted")
	}
	if err := r.Install(ctx, "other", man, good); err == nil {
		t.Error("name mismatch accepted")
	}
	if err := r.Install(ctx, "up", man, good); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"up.wasm", "up.toml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	s, ok := r.Stage("up")
	if !ok {
		t.Fatal("no stage after install")
	}
	// A bad upgrade leaves v1 running.
	if err := r.Install(ctx, "up", []byte("name = \"up\"\nversion = \"2\"\n"), good[:100]); err == nil {
		t.Fatal("truncated upgrade installed")
	}
	if s.Stats().Version != "1" {
		t.Fatal("v1 replaced by a failed upgrade")
	}

	// Quarantine, then Reload clears it.
	if err := s.Process(ctx, events("T"), func(Output) {}); err != nil {
		t.Fatal(err)
	}
	if !s.Stats().Quarantined {
		t.Fatal("not quarantined")
	}
	if err := r.Reload(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Quarantined || st.State != "running" {
		t.Fatalf("after reload: %+v", st)
	}

	if err := r.Remove(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left after remove: %v", ents)
	}
	if _, ok := r.Stage("up"); ok {
		t.Error("stage left after remove")
	}
	if err := r.Remove(ctx, "up"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second remove: %v", err)
	}
}

// TestRegistryTimerAndFlushToSink runs the aggregator under Run: its timer
// emits reach the Sink, and Close flushes the partial window.
func TestRegistryTimerAndFlushToSink(t *testing.T) {
	loadExample(t, "passthrough", `name = "passthrough"`) // creates interpHost
	dir := t.TempDir()
	atomicWrite(t, dir, "aggregator.wasm", mustRead(t, "../modules/aggregator.wasm"))
	atomicWrite(t, dir, "aggregator.toml", []byte("name = \"aggregator\"\ntimer_interval = \"50ms\"\n"))
	var mu sync.Mutex
	var sunk []string
	r, err := NewRegistry(RegistryConfig{Dir: dir, Host: interpHost, TickEvery: 10 * time.Millisecond,
		Sink: func(o Output) {
			mu.Lock()
			sunk = append(sunk, string(o.Data))
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s, _ := r.Stage("aggregator")
	evs := events("{}", "{}")
	evs[0].Key, evs[1].Key = []byte("x"), []byte("x")
	if err := s.Process(context.Background(), evs, func(Output) {}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(sunk)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no timer output reached the sink")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Process(context.Background(), evs[:1], func(Output) {}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(sunk, " ")
	if !strings.Contains(got, `{"key":"x","count":2`) || !strings.Contains(got, `{"key":"x","count":1`) {
		t.Errorf("sink got %s, want a timer window of 2 and a flushed window of 1", got)
	}
}
