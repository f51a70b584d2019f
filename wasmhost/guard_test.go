package wasmhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// committedWasm lists the repository's .wasm files (examples and test
// modules).
func committedWasm(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, g := range []string{"../modules/*.wasm", "testdata/*.wasm"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d .wasm files", len(files))
	}
	return files
}

// TestGuardCommittedModules: every committed module instruments, the result
// compiles, and exports the stop global; a module with a start section loses
// it and exports its start function instead.
func TestGuardCommittedModules(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(testHost(t).cache))
	defer rt.Close(ctx)
	for _, f := range committedWasm(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g, info, err := guard(mustRead(t, f))
			if err != nil {
				t.Fatal(err)
			}
			cm, err := rt.CompileModule(ctx, g)
			if err != nil {
				t.Fatalf("guarded module does not compile: %v", err)
			}
			defer cm.Close(ctx)
			if _, ok := cm.ExportedFunctions()[startExport]; ok != info.hasStart {
				t.Errorf("start export %v, hasStart %v", ok, info.hasStart)
			}
			if want := strings.HasPrefix(filepath.Base(f), "start"); info.hasStart != want {
				t.Errorf("hasStart = %v", info.hasStart)
			}
		})
	}
}

// TestGuardStopsLoop runs an instrumented endless loop and stops it by
// setting the global from another goroutine, as the watchdog does.
func TestGuardStopsLoop(t *testing.T) {
	ctx := context.Background()
	g, _, err := guard(mustRead(t, "testdata/initloop.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(testHost(t).cache))
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	stop := mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		var st [2]uint64
		done <- mod.ExportedFunction("bb_init").CallWithStack(ctx, st[:])
	}()
	stop.Set(1)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("loop ended with %v, want the guard's trap", err)
	}
}

// TestStartSectionRuns: a start function that sets up the module runs
// (moved out of instantiation) before the ABI start-up calls.
func TestStartSectionRuns(t *testing.T) {
	m := loadModule(t, "testdata/startset.wasm", `name = "startset"`)
	var c collector
	if err := m.Process(context.Background(), events("a", "b", "c"), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.out) != 3 || c.out[2].Kind != OutputForward {
		t.Fatalf("outputs %+v", c.out)
	}
}

func TestGuardErrors(t *testing.T) {
	hostile := mustRead(t, hostileWasm)
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), "binary version"},
		{"truncated", hostile[:len(hostile)-3], "unexpected end"},
		{"unknown section", []byte("\x00asm\x01\x00\x00\x00\x2a\x00"), "unknown section"},
		{"sections out of order", []byte("\x00asm\x01\x00\x00\x00\x07\x01\x00\x01\x01\x00"), "out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := guard(tc.wasm)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzGuard: guard never panics, and a module wazero accepts stays
// acceptable after instrumenting (seeded with the committed WAT-built
// modules).
func FuzzGuard(f *testing.F) {
	for _, p := range []string{"testdata/hostile.wasm", "testdata/initloop.wasm", "testdata/startset.wasm",
		"testdata/logflood.wasm", "../modules/wat-counter.wasm"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		g, _, err := guard(wasm)
		if err != nil {
			return
		}
		orig, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		_ = orig.Close(ctx)
		cm, err := rt.CompileModule(ctx, g)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its instrumented form: %v", err)
		}
		_ = cm.Close(ctx)
	})
}

// TestGuardLetsGCRun: a guest in an endless loop must not hold up the Go
// runtime's stop-the-world (native code cannot be preempted; the guard
// leaves it for Go every 65536 loop iterations). runtime.GC returns while
// the call is still running; canceling the caller then stops the call.
func TestGuardLetsGCRun(t *testing.T) {
	m := loadModule(t, hostileWasm, "name = \"hostile\"\ntimeout = \"60s\"")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Process(ctx, events("L"), func(Output) {}) }()
	for m.Stats().Calls == 0 {
		runtime.Gosched()
	}
	time.Sleep(20 * time.Millisecond) // let the call enter its loop
	gcDone := make(chan struct{})
	go func() {
		runtime.GC()
		close(gcDone)
	}()
	select {
	case <-gcDone:
	case err := <-done:
		t.Fatalf("the call ended (%v) before a garbage collection could run", err)
	}
	select {
	case err := <-done:
		t.Fatalf("call ended early: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Process returned %v, want context.Canceled", err)
	}
}
