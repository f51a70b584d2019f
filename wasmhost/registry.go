package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Stage is the stable handle of a module name: the daemon wires it into the
// pipeline once, and hot reloads swap the Module behind it at a batch
// boundary. Every batch is processed entirely by one version.
type Stage struct {
	name string
	mu   sync.RWMutex // held for reading during a batch, for writing by a swap
	cur  *Module
}

// Name is the module name.
func (s *Stage) Name() string { return s.name }

// Process runs the current version of the module over batch; see
// Module.Process. It returns ErrClosed once the stage was removed.
func (s *Stage) Process(ctx context.Context, batch []Event, emit func(Output)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur == nil {
		return ErrClosed
	}
	return s.cur.Process(ctx, batch, emit)
}

// Module returns the current version (nil after removal).
func (s *Stage) Module() *Module {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

// Stats returns the current version's stats.
func (s *Stage) Stats() Stats {
	if m := s.Module(); m != nil {
		return m.Stats()
	}
	return Stats{Name: s.name, State: "closed"}
}

// Tick runs the current version's due timers; see Module.Tick.
func (s *Stage) Tick(ctx context.Context, emit func(Output)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur != nil {
		s.cur.Tick(ctx, emit)
	}
}

// swap installs m (nil removes) after the running batch, returning the old version.
func (s *Stage) swap(m *Module) *Module {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur
	s.cur = m
	return old
}

// ChangeKind says what happened to a module in the registry.
type ChangeKind string

// Change kinds.
const (
	ChangeAdded    ChangeKind = "added"
	ChangeReplaced ChangeKind = "replaced"
	ChangeRemoved  ChangeKind = "removed"
	ChangeFailed   ChangeKind = "failed" // a new version was rejected; the old one (if any) keeps running
)

// Change reports a registry event.
type Change struct {
	Module  string
	Kind    ChangeKind
	Version string
	SHA256  string
	Err     error // ChangeFailed only
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Dir is the modules directory (NAME.toml + NAME.wasm pairs).
	Dir string
	// Host compiles and runs the modules.
	Host *Host
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Debounce is how long the directory must be quiet before changed
	// modules are reloaded (default 200ms).
	Debounce time.Duration
	// TickEvery is how often Run calls the stages' timers (default 100ms).
	TickEvery time.Duration
	// Sink receives outputs made outside Process: timer emits (from Run)
	// and flush emits when a version is retired. May be nil.
	Sink func(Output)
	// OnChange is called after each add, replace, removal or rejected load.
	// It must not call back into the Registry synchronously. May be nil.
	OnChange func(Change)
}

// ModuleStatus is a module's stats plus the registry's view of its files.
type ModuleStatus struct {
	Stats
	Loaded      bool      `json:"loaded"`
	LoadError   string    `json:"load_error,omitempty"` // why the newest files were rejected
	LoadErrorAt time.Time `json:"load_error_at,omitzero"`
}

// Registry keeps the modules of a directory loaded and hot-reloads them.
type Registry struct {
	cfg RegistryConfig
	log *slog.Logger

	reloadMu sync.Mutex // serialises loads and swaps
	mu       sync.Mutex
	stages   map[string]*Stage
	gen      atomic.Uint64 // bumped whenever the set of versions changes
	loadErr  map[string]loadError
	closed   bool
}

type loadError struct {
	msg string
	at  time.Time
}

// NewRegistry returns a Registry for cfg.Dir; call LoadAll, then Run.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if cfg.Host == nil {
		return nil, errors.New("wasmhost: registry needs a Host")
	}
	if cfg.Dir == "" {
		return nil, errors.New("wasmhost: registry needs a modules directory")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 200 * time.Millisecond
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = 100 * time.Millisecond
	}
	if cfg.Sink == nil {
		cfg.Sink = func(Output) {}
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(Change) {}
	}
	return &Registry{cfg: cfg, log: cfg.Logger, stages: map[string]*Stage{}, loadErr: map[string]loadError{}}, nil
}

// LoadAll loads every module of the directory, compiling new ones in
// parallel (one per CPU). Modules that fail are reported in the returned
// error (and in Status); the others are loaded.
func (r *Registry) LoadAll(ctx context.Context) error {
	names, err := r.manifestNames()
	if err != nil {
		return err
	}
	type result struct {
		m   *Module
		err error
		new bool
	}
	results := make([]result, len(names))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, n := range names {
		if _, exists := r.Stage(n); exists {
			continue // reloaded below, with the unchanged-files check
		}
		results[i].new = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i].m, results[i].err = r.load(ctx, filepath.Join(r.cfg.Dir, n+".toml"), nil, true)
		}()
	}
	wg.Wait()
	var errs []error
	for i, n := range names {
		res := results[i]
		if !res.new {
			if err := r.reload(ctx, n, false); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if res.err != nil {
			r.noteLoadError(n, nil, res.err)
			errs = append(errs, res.err)
			continue
		}
		r.reloadMu.Lock()
		r.mu.Lock()
		st, closed := r.stages[n], r.closed
		delete(r.loadErr, n)
		r.mu.Unlock()
		if closed {
			r.reloadMu.Unlock()
			_ = res.m.Close(ctx, nil)
			return ErrClosed
		}
		r.install(ctx, n, st, res.m)
		r.reloadMu.Unlock()
	}
	return errors.Join(errs...)
}

// noteLoadError records and reports a rejected load of module name.
func (r *Registry) noteLoadError(name string, st *Stage, err error) {
	r.mu.Lock()
	r.loadErr[name] = loadError{msg: err.Error(), at: time.Now()}
	r.mu.Unlock()
	if st != nil {
		r.log.Error("new module version rejected; the running version stays", "module", name, "err", err)
	} else {
		r.log.Error("module not loaded", "module", name, "err", err)
	}
	r.cfg.OnChange(Change{Module: name, Kind: ChangeFailed, Err: err})
}

func (r *Registry) manifestNames() ([]string, error) {
	ents, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("modules directory: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".toml"); ok && !e.IsDir() && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	return names, nil
}

// Reload (re)loads module name from its files even if they did not change
// (this also clears a quarantine or halt): the version is compiled (from
// the cache if known) and validated with a canary instance, then swapped in
// at a batch boundary; if it fails, the running version stays and the error
// is returned and kept in Status. If the manifest is gone, the module is
// removed.
func (r *Registry) Reload(ctx context.Context, name string) error {
	return r.reload(ctx, name, true)
}

// reload is Reload; unless force, unchanged files are a no-op.
func (r *Registry) reload(ctx context.Context, name string, force bool) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid module name %q", name)
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	st := r.stages[name]
	r.mu.Unlock()

	path := filepath.Join(r.cfg.Dir, name+".toml")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if st != nil {
			r.remove(ctx, name, st)
		}
		r.mu.Lock()
		delete(r.loadErr, name)
		r.mu.Unlock()
		return nil
	}
	m, err := r.load(ctx, path, st, force)
	if err != nil {
		r.noteLoadError(name, st, err)
		return err
	}
	r.mu.Lock()
	delete(r.loadErr, name)
	r.mu.Unlock()
	if m == nil { // unchanged
		return nil
	}
	r.install(ctx, name, st, m)
	return nil
}

// install swaps m in as module name (st is its stage, nil if new). The
// caller holds reloadMu.
func (r *Registry) install(ctx context.Context, name string, st *Stage, m *Module) {
	kind := ChangeAdded
	if st == nil {
		st = &Stage{name: name, cur: m}
		r.mu.Lock()
		r.stages[name] = st
		r.mu.Unlock()
	} else {
		kind = ChangeReplaced
		old := st.swap(m)
		if err := old.Close(ctx, r.cfg.Sink); err != nil {
			r.log.Warn("closing the previous module version", "module", name, "err", err)
		}
	}
	r.log.Info("module "+string(kind), "module", name, "version", m.man.Version, "sha256", m.sum[:12])
	r.gen.Add(1)
	r.cfg.OnChange(Change{Module: name, Kind: kind, Version: m.man.Version, SHA256: m.sum})
}

// Install validates a module given as bytes (manifest TOML and wasm) by
// loading it with a canary instance, and only then writes NAME.wasm and
// NAME.toml into the directory (created if missing; each file by atomic
// rename) and swaps it in. An
// invalid module writes nothing and leaves the running version alone. The
// manifest's name must be name, and its wasm file NAME.wasm.
func (r *Registry) Install(ctx context.Context, name string, manifest, wasm []byte) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid module name %q", name)
	}
	man, err := ParseManifest(manifest, name+".toml")
	if err != nil {
		return err
	}
	if man.Name != name {
		return fmt.Errorf("manifest name %q does not match module name %q", man.Name, name)
	}
	if man.Wasm != name+".wasm" {
		return fmt.Errorf("manifest wasm %q: an installed module's binary must be %s.wasm", man.Wasm, name)
	}
	man.Dir = r.cfg.Dir
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	closed, st := r.closed, r.stages[name]
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	m, err := r.cfg.Host.Load(ctx, man, wasm)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.cfg.Dir, 0o755); err != nil {
		_ = m.Close(ctx, nil)
		return fmt.Errorf("create modules directory: %w", err)
	}
	if err := writeAtomic(r.cfg.Dir, name+".wasm", wasm); err != nil {
		_ = m.Close(ctx, nil)
		return err
	}
	if err := writeAtomic(r.cfg.Dir, name+".toml", manifest); err != nil {
		_ = m.Close(ctx, nil)
		return err
	}
	r.mu.Lock()
	delete(r.loadErr, name)
	r.mu.Unlock()
	r.install(ctx, name, st, m)
	return nil
}

// Remove deletes module name's files and unloads it. It reports
// fs.ErrNotExist if there is no such module.
func (r *Registry) Remove(ctx context.Context, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid module name %q", name)
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	st := r.stages[name]
	_, failed := r.loadErr[name]
	delete(r.loadErr, name)
	r.mu.Unlock()
	wasmName := name + ".wasm"
	if st != nil {
		if m := st.Module(); m != nil {
			wasmName = m.man.Wasm
		}
	}
	errT := os.Remove(filepath.Join(r.cfg.Dir, name+".toml"))
	errW := os.Remove(filepath.Join(r.cfg.Dir, wasmName))
	if st == nil && !failed && errors.Is(errT, fs.ErrNotExist) && errors.Is(errW, fs.ErrNotExist) {
		return fmt.Errorf("module %s: %w", name, fs.ErrNotExist)
	}
	if st != nil {
		r.remove(ctx, name, st)
	}
	for _, err := range []error{errT, errW} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove module %s: %w", name, err)
		}
	}
	return nil
}

// writeAtomic writes dir/name through a hidden temporary file, fsync and
// rename.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// load loads path unless it is identical to st's current version (then it
// returns nil, nil).
func (r *Registry) load(ctx context.Context, path string, st *Stage, force bool) (*Module, error) {
	man, err := LoadManifest(path)
	if err != nil {
		return nil, err
	}
	wasm, err := os.ReadFile(man.WasmPath())
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", man.Name, err)
	}
	if st != nil && !force {
		if cur := st.Module(); cur != nil && cur.sum == sha256hex(wasm) && reflect.DeepEqual(cur.man, man) {
			return nil, nil
		}
	}
	return r.cfg.Host.Load(ctx, man, wasm)
}

func (r *Registry) remove(ctx context.Context, name string, st *Stage) {
	r.mu.Lock()
	delete(r.stages, name)
	r.mu.Unlock()
	if old := st.swap(nil); old != nil {
		if err := old.Close(ctx, r.cfg.Sink); err != nil {
			r.log.Warn("closing removed module", "module", name, "err", err)
		}
	}
	r.log.Info("module removed", "module", name)
	r.gen.Add(1)
	r.cfg.OnChange(Change{Module: name, Kind: ChangeRemoved})
}

// Stage returns the stage of module name.
func (r *Registry) Stage(name string) (*Stage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.stages[name]
	return s, ok
}

// Stages returns the loaded stages sorted by name.
func (r *Registry) Stages() []*Stage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Stage, 0, len(r.stages))
	for _, s := range r.stages {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Stage) int { return strings.Compare(a.name, b.name) })
	return out
}

// Digest is a short fingerprint of the loaded module set (names and wasm
// sha256s), for comparing nodes of a cluster; "" when no module is loaded.
func (r *Registry) Digest() string {
	var b strings.Builder
	for _, s := range r.Stages() {
		if m := s.Module(); m != nil {
			b.WriteString(m.man.Name + "=" + m.sum + ";")
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return sha256hex([]byte(b.String()))[:16]
}

// Generation changes whenever a module is added, replaced or removed.
func (r *Registry) Generation() uint64 { return r.gen.Load() }

// Graph orders the loaded modules by their after lists (see Order).
func (r *Registry) Graph() ([][]string, error) {
	var mans []*Manifest
	for _, s := range r.Stages() {
		if m := s.Module(); m != nil {
			mans = append(mans, m.man)
		}
	}
	return Order(mans)
}

// Status returns every known module (loaded, or rejected) sorted by name.
func (r *Registry) Status() []ModuleStatus {
	var out []ModuleStatus
	seen := map[string]bool{}
	for _, s := range r.Stages() {
		seen[s.name] = true
		out = append(out, ModuleStatus{Stats: s.Stats(), Loaded: true})
	}
	r.mu.Lock()
	for name, le := range r.loadErr {
		if seen[name] {
			for i := range out {
				if out[i].Name == name {
					out[i].LoadError, out[i].LoadErrorAt = le.msg, le.at
				}
			}
			continue
		}
		out = append(out, ModuleStatus{Stats: Stats{Name: name, State: "failed"}, LoadError: le.msg, LoadErrorAt: le.at})
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b ModuleStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Run watches the directory and reloads changed modules (debounced) and
// runs module timers, until ctx ends. Writers should replace files by
// atomic rename.
func (r *Registry) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch modules: %w", err)
	}
	defer w.Close()
	if err := w.Add(r.cfg.Dir); err != nil {
		return fmt.Errorf("watch modules directory %s: %w", r.cfg.Dir, err)
	}
	pending := map[string]bool{}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	// Files changed before the watch was in place (since LoadAll) are
	// picked up by one check of every module (unchanged ones are no-ops).
	if names, err := r.manifestNames(); err == nil {
		for _, n := range names {
			pending[n] = true
		}
	}
	for _, s := range r.Stages() {
		pending[s.name] = true
	}
	if len(pending) > 0 {
		debounce.Reset(r.cfg.Debounce)
	}
	tick := time.NewTicker(r.cfg.TickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("modules watcher closed")
			}
			for _, n := range r.namesFor(filepath.Base(ev.Name)) {
				pending[n] = true
			}
			if len(pending) > 0 {
				debounce.Reset(r.cfg.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("modules watcher closed")
			}
			r.log.Warn("modules watcher", "err", err)
		case <-debounce.C:
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			clear(pending)
			slices.Sort(names)
			for _, n := range names {
				_ = r.reload(ctx, n, false) // errors are logged, reported and kept in Status
			}
		case <-tick.C:
			for _, s := range r.Stages() {
				s.Tick(ctx, r.cfg.Sink)
			}
		}
	}
}

// namesFor maps a changed file name to the modules it may affect.
func (r *Registry) namesFor(file string) []string {
	if strings.HasPrefix(file, ".") {
		return nil
	}
	if n, ok := strings.CutSuffix(file, ".toml"); ok && ValidName(n) {
		return []string{n}
	}
	if !strings.HasSuffix(file, ".wasm") {
		return nil
	}
	var out []string
	if n := strings.TrimSuffix(file, ".wasm"); ValidName(n) {
		out = append(out, n)
	}
	for _, s := range r.Stages() {
		if m := s.Module(); m != nil && m.man.Wasm == file && m.man.Name+".wasm" != file {
			out = append(out, m.man.Name)
		}
	}
	return out
}

// Close closes every module (flushing them to Sink). Run must have returned
// or be about to (cancel its context first).
func (r *Registry) Close(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	r.closed = true
	stages := r.stages
	r.stages = map[string]*Stage{}
	r.mu.Unlock()
	var errs []error
	for _, s := range stages {
		if old := s.swap(nil); old != nil {
			errs = append(errs, old.Close(ctx, r.cfg.Sink))
		}
	}
	return errors.Join(errs...)
}
