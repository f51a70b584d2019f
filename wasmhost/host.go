package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// HostConfig configures a Host.
type HostConfig struct {
	// CacheDir holds wazero's file compilation cache (e.g. STATE_DIR/wasm-cache)
	// so restarts skip compilation. Empty: in-memory cache only.
	CacheDir string
	// Logger receives host and guest log lines (default slog.Default()).
	Logger *slog.Logger
	// Interpreter selects wazero's interpreter instead of its compiler:
	// modules load much faster but run much slower. For tests and tools,
	// not for production.
	Interpreter bool
}

// Host compiles and runs modules. It owns the compilation cache and the
// per-module-name state (kv store, counters) that outlives module versions.
type Host struct {
	cache       wazero.CompilationCache
	logger      *slog.Logger
	interpreter bool

	mu     sync.Mutex
	states map[string]*moduleState
}

// NewHost creates a Host.
func NewHost(cfg HostConfig) (*Host, error) {
	h := &Host{logger: cfg.Logger, interpreter: cfg.Interpreter, states: map[string]*moduleState{}}
	if h.logger == nil {
		h.logger = slog.Default()
	}
	if cfg.CacheDir == "" {
		h.cache = wazero.NewCompilationCache()
		return h, nil
	}
	c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("wasm compilation cache %s: %w", cfg.CacheDir, err)
	}
	h.cache = c
	return h, nil
}

// Close releases the compilation cache. Close every Module first.
func (h *Host) Close(ctx context.Context) error {
	if err := h.cache.Close(ctx); err != nil {
		return fmt.Errorf("close compilation cache: %w", err)
	}
	return nil
}

func (h *Host) state(name string) *moduleState {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.states[name]
	if !ok {
		s = newModuleState(name, h.logger)
		h.states[name] = s
	}
	return s
}

// LoadFile loads the module described by the manifest at manifestPath.
func (h *Host) LoadFile(ctx context.Context, manifestPath string) (*Module, error) {
	man, err := LoadManifest(manifestPath)
	if err != nil {
		return nil, err
	}
	wasm, err := os.ReadFile(man.WasmPath())
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", man.Name, err)
	}
	return h.Load(ctx, man, wasm)
}

// Load compiles wasm, checks its imports and exports against the ABI and
// the manifest, and validates it by starting a canary instance (which then
// serves as the module's first pooled instance).
func (h *Host) Load(ctx context.Context, man *Manifest, wasm []byte) (*Module, error) {
	m, err := h.load(ctx, man, wasm)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", man.Name, err)
	}
	return m, nil
}

func (h *Host) load(ctx context.Context, man *Manifest, wasm []byte) (_ *Module, err error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (bad magic)")
	}
	rcfg := wazero.NewRuntimeConfig()
	if h.interpreter {
		rcfg = wazero.NewRuntimeConfigInterpreter()
	}
	// Endless loops are bounded by the loop guard and the module's
	// watchdog (guard.go), not by WithCloseOnContextDone, which costs a Go
	// guest ~8x.
	guarded, ginfo, err := guard(wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	rcfg = rcfg.
		WithCompilationCache(h.cache).
		WithMemoryLimitPages(uint32(man.MemoryLimitPages))
	rt := wazero.NewRuntimeWithConfig(ctx, rcfg)
	defer func() {
		if err != nil {
			_ = rt.Close(context.WithoutCancel(ctx))
		}
	}()
	start := time.Now()
	compiled, err := rt.CompileModule(ctx, guarded)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	m := &Module{
		host:     h,
		man:      man,
		sum:      sha256hex(wasm),
		state:    h.state(man.Name),
		rt:       rt,
		compiled: compiled,
		tokens:   make(chan struct{}, man.Instances),
		closing:  make(chan struct{}),
		hist:     hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 2),
		loadedAt: time.Now(),
	}
	m.logger = m.state.logger.With("version", man.Version)
	m.hasStart = ginfo.hasStart
	m.epoch = time.Now()
	m.startWatchdog()
	defer func() {
		if err != nil {
			m.stopWatchdog()
		}
	}()
	if err := m.checkInterface(); err != nil {
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("link WASI: %w", err)
	}
	if err := instantiateBB(ctx, rt, m.state); err != nil {
		return nil, fmt.Errorf("link bb imports: %w", err)
	}
	routes := man.Routes
	if routes == nil {
		routes = []string{}
	}
	cfg := man.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	m.initDoc, err = json.Marshal(struct {
		ABIVersion int            `json:"abi_version"`
		Module     string         `json:"module"`
		Version    string         `json:"version"`
		Routes     []string       `json:"routes"`
		Config     map[string]any `json:"config"`
	}{1, man.Name, man.Version, routes, cfg})
	if err != nil {
		return nil, fmt.Errorf("encode init document: %w", err)
	}
	canary, err := m.newInstance(ctx)
	if err != nil {
		return nil, fmt.Errorf("canary instance: %w", err)
	}
	m.idle = append(m.idle, canary)
	m.logger.Info("module loaded", "sha256", m.sum[:12], "took", time.Since(start).Round(time.Millisecond),
		"in_cap", m.inCap, "out_cap", m.outCap)
	return m, nil
}

// checkInterface checks exports and imports against ABI §2 and §4.
func (m *Module) checkInterface() error {
	exp := m.compiled.ExportedFunctions()
	sig := func(name string, params, results []api.ValueType, required bool) (bool, error) {
		d, ok := exp[name]
		if !ok {
			if required {
				return false, fmt.Errorf("missing export %s", name)
			}
			return false, nil
		}
		if !sameTypes(d.ParamTypes(), params) || !sameTypes(d.ResultTypes(), results) {
			return false, fmt.Errorf("export %s has signature %v -> %v, want %v -> %v",
				name, d.ParamTypes(), d.ResultTypes(), params, results)
		}
		return true, nil
	}
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	var err error
	var errs []error
	note := func(ok bool, e error) bool {
		if e != nil {
			errs = append(errs, e)
		}
		return ok
	}
	if _, ok := m.compiled.ExportedMemories()["memory"]; !ok {
		errs = append(errs, errors.New("missing export memory"))
	}
	if _, ok := exp["_start"]; ok {
		errs = append(errs, errors.New("exports _start: a module must be a reactor (build Go with -buildmode=c-shared)"))
	}
	m.hasInitialize = note(sig("_initialize", nil, nil, false))
	note(sig("bb_abi_version", nil, []api.ValueType{i32}, true))
	note(sig("bb_buffers", nil, []api.ValueType{i32}, true))
	note(sig("bb_process", []api.ValueType{i32, i32}, []api.ValueType{i32}, true))
	m.hasInit = note(sig("bb_init", []api.ValueType{i32, i32}, []api.ValueType{i32}, false))
	m.hasTimer = note(sig("bb_timer", []api.ValueType{i64}, []api.ValueType{i32}, false))
	m.hasFlush = note(sig("bb_flush", nil, []api.ValueType{i32}, false))
	declared := map[string]bool{}
	for _, c := range m.man.Capabilities {
		declared[c] = true
	}
	for _, d := range m.compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case "bb":
			c, ok := importCaps[name]
			if !ok {
				errs = append(errs, fmt.Errorf("imports unknown host function bb.%s", name))
			} else if !declared[c] {
				errs = append(errs, fmt.Errorf("imports bb.%s but the manifest does not declare capability %q", name, c))
			}
		default:
			errs = append(errs, fmt.Errorf("imports %s.%s, which the host does not provide (only bb.* and WASI preview 1)", mod, name))
		}
	}
	if len(m.compiled.ImportedMemories()) > 0 {
		errs = append(errs, errors.New("imports a memory; a module must define and export its own"))
	}
	err = errors.Join(errs...)
	return err
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
