// Package appliance assembles one BadBatch node: the state-directory lock,
// the ring pipeline, the REST API, metrics, health, systemd notification and
// the graceful shutdown order (readiness off → leave the cluster → stop
// intake → drain the ring → stop processors → close HTTP).
package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/appliance/buildinfo"
	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/metrics"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/appliance/sdnotify"
	"github.com/badbatch/badbatch/appliance/sinks"
	"github.com/badbatch/badbatch/appliance/statedir"
	"github.com/badbatch/badbatch/config"
	"github.com/badbatch/badbatch/disruptor"
)

// Phase is the node's lifecycle state.
type Phase int32

const (
	// PhaseStarting: built, not yet serving.
	PhaseStarting Phase = iota
	// PhaseRunning: ready for traffic.
	PhaseRunning
	// PhaseDraining: shutting down; readiness is off.
	PhaseDraining
	// PhaseStopped: Run returned.
	PhaseStopped
)

// String names the phase.
func (p Phase) String() string {
	return [...]string{"starting", "running", "draining", "stopped"}[p]
}

// Cluster is the seam for gossip membership. Without one the node reports
// itself alone. WithMembership adapts appliance/cluster's *Node directly.
type Cluster interface {
	// Members is the JSON body of GET /api/v1/cluster/nodes.
	Members() any
	// GossipAddr is the host:port peers gossip with.
	GossipAddr() string
	// Leave leaves the cluster gracefully (first step of shutdown).
	Leave(ctx context.Context) error
}

// Membership is what a gossip implementation offers; appliance/cluster's
// *Node satisfies it with M = cluster.Member.
type Membership[M any] interface {
	GossipAddr() string
	Members() []M
	Leave(timeout time.Duration) error
}

// WithMembership wires a Membership as the node's Cluster:
// /api/v1/cluster/nodes answers {"nodes": m.Members()}, node info reports
// m.GossipAddr(), and shutdown leaves with the time left before the
// shutdown deadline. Usage: appliance.WithMembership(node).
func WithMembership[M any](m Membership[M]) Option {
	return WithCluster(membership[M]{m})
}

type membership[M any] struct{ m Membership[M] }

func (c membership[M]) Members() any       { return map[string]any{"nodes": c.m.Members()} }
func (c membership[M]) GossipAddr() string { return c.m.GossipAddr() }
func (c membership[M]) Leave(ctx context.Context) error {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	return c.m.Leave(timeout)
}

// Option customises New.
type Option func(*options)

type options struct {
	listener  net.Listener
	stages    [][]pipeline.Stage
	level     *slog.LevelVar
	cluster   Cluster
	acks      []string
	opener    journal.Opener // tests inject journal I/O faults
	wasmCache string         // WithWasmCacheDir
}

// WithListener serves on ln instead of binding server.host:server.port
// (tests pass a 127.0.0.1:0 listener).
func WithListener(ln net.Listener) Option { return func(o *options) { o.listener = ln } }

// WithStages adds consumer groups to the ring before the built-in tail
// consumer, in order: the journal first, then WASM handler stages. This is
// the seam the WASM host (wasmhost/) plugs into.
func WithStages(groups ...[]pipeline.Stage) Option {
	return func(o *options) { o.stages = append(o.stages, groups...) }
}

// WithLevelVar lets Reload change the log level of logger's handler.
func WithLevelVar(lv *slog.LevelVar) Option { return func(o *options) { o.level = lv } }

// WithCluster sets the cluster membership seam.
func WithCluster(c Cluster) Option { return func(o *options) { o.cluster = c } }

// WithAckLevels declares the ack levels the wired stages can honour beyond
// "memory" (e.g. "durable" once a journal stage is added).
func WithAckLevels(levels ...string) Option { return func(o *options) { o.acks = levels } }

// Appliance is one running node.
type Appliance struct {
	cfgMu   sync.Mutex
	cfg     config.Config
	log     *slog.Logger
	opts    options
	build   buildinfo.Info
	started time.Time

	lock    *statedir.Lock
	journal *journal.Journal // nil when journal.enabled = false
	jstage  *journalStage
	wasm    *wasmStage
	ln      net.Listener
	pipe    *pipeline.Pipeline
	metrics *metrics.Metrics
	server  *api.Server
	notify  *sdnotify.Notifier
	cw      *clusterWire // [cluster] enabled: gossip membership and rollout
	sinks   atomic.Pointer[sinks.Manager]

	acks    []string // ack levels this node honours
	phase   atomic.Int32
	ready   chan struct{}
	runOnce atomic.Bool
}

// New builds a node from cfg: it locks the state directory (failing at once
// if another process holds it), builds the ring and the API and binds the
// listener, so that configuration and port problems surface before Run.
func New(cfg config.Config, logger *slog.Logger, opts ...Option) (_ *Appliance, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Appliance{cfg: cfg, log: logger, build: buildinfo.Read(), started: time.Now(), ready: make(chan struct{})}
	for _, o := range opts {
		o(&a.opts)
	}
	a.notify = sdnotify.New(logger)
	defer func() {
		if err != nil {
			a.closeEarly()
		}
	}()

	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("appliance: invalid configuration: %w", err)
	}
	a.lock, err = statedir.Acquire(cfg.Node.DataDir)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	logger.Info("state directory locked", "dir", a.lock.Dir(), "pid", os.Getpid())

	if cfg.Journal.Enabled {
		a.journal, err = openJournal(cfg, a.lock.Dir(), logger, a.opts.opener, a.sinkHolds, a.sinkDropped)
		if err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
	}
	a.wasm, err = newWasmStage(cfg, a.lock.Dir(), a.opts.wasmCache, a.journal, logger.With("component", "wasm"))
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if a.journal != nil {
		a.sinks.Store(a.newSinks(cfg))
	}
	a.metrics = metrics.New(metrics.Options{
		Extra:     append(a.journalCollectors(), wasmCollector{a.wasm}),
		Build:     a.build,
		NodeID:    cfg.Node.ID,
		Padding:   disruptor.CacheLinePad,
		StartTime: a.started,
		Status:    func() pipeline.Status { return a.pipe.Status() },
		StateGauge: func() float64 {
			if Phase(a.phase.Load()) == PhaseRunning {
				return 1
			}
			return 0
		},
	})
	if cfg.Cluster.Enabled && a.opts.cluster == nil {
		if a.cw, err = newClusterWire(a, cfg); err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
		a.opts.cluster = a.cw
		a.metrics.Registry.MustRegister(a.clusterCollectors()...)
	}
	if m := a.sinks.Load(); m != nil {
		a.metrics.Registry.MustRegister(m.Collector())
	}
	stages := a.opts.stages
	var base int64
	var archive pipeline.Archive
	acks := []string{"memory"}
	if a.journal != nil {
		base = a.journal.LastSequence() + 1
		archive = journalArchive{a.journal}
		a.jstage = newJournalStage(a.journal, logger.With("component", "journal-stage"))
		stages = append([][]pipeline.Stage{{{Name: "journal", Handler: a.jstage}}}, stages...)
		acks = append(acks, "durable")
		logger.Info("journal open", "dir", filepath.Join(a.lock.Dir(), "journal"), "fsync", cfg.Journal.Fsync,
			"last_sequence", a.journal.LastSequence(), "earliest", a.journal.Earliest(), "next_sequence", base)
	}
	// The WASM handler stage runs after the journal (and any stage added
	// with WithStages): every event a module sees is already journalled.
	stages = append(stages, []pipeline.Stage{{Name: "wasm", Handler: a.wasm}})
	acks = append(acks, "processed")
	acks = append(acks, a.opts.acks...)
	a.acks = acks
	a.pipe, err = pipeline.New(pipeline.Options{
		Base:              base,
		Archive:           archive,
		BufferSize:        cfg.Ring.BufferSize,
		WaitStrategy:      cfg.Ring.WaitStrategy,
		MaxEventSize:      int(cfg.Ring.MaxEventSize),
		PinCPUs:           cfg.Ring.PinCPUs,
		IdempotencyWindow: cfg.API.IdempotencyWindow,
		MaxProducers:      cfg.API.MaxProducers,
		Stages:            stages,
		Latency:           a.metrics.PublishLatency,
		Logger:            logger,
	})
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if a.journal != nil {
		restoreIdempotency(a.journal, a.pipe, idempotencyScan(cfg.API.IdempotencyWindow, cfg.API.MaxProducers), logger)
	}

	var durable func(context.Context, int64) error
	if a.journal != nil {
		durable = durableWaiter(a.journal)
	}
	a.server, err = api.New(api.Options{
		Durable:      durable,
		DurableErr:   journalErr(a.journal),
		Pipeline:     a.pipe,
		Metrics:      a.metrics,
		Logger:       logger,
		BodyLimit:    int(cfg.Server.BodyLimit),
		ReadTimeout:  cfg.Server.ReadTimeout.Duration,
		WriteTimeout: cfg.Server.WriteTimeout.Duration,
		IdleTimeout:  cfg.Server.IdleTimeout.Duration,
		Limits:       a.limits(cfg, acks),
		AckLevels:    acks,
		NodeInfo:     a.nodeInfo,
		ClusterNodes: a.clusterNodes,
		Status:       a.nodeStatus,
		Processor:    a.wasm,
		Modules:      a.wasm.reg,
		ModulesDir:   cfg.Modules.Dir,
		Streams:      a.wasm.streams,
		StreamKnown:  a.wasm.streamKnown,
		Live:         a.liveChecks,
		Ready:        a.readyChecks,

		ClusterStatus: a.clusterStatus,
		Sinks:         a.sinksAPI(),
		BacklogFull:   a.backlogFull,
	})
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}

	a.ln = a.opts.listener
	if a.ln == nil {
		addr := net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
		a.ln, err = net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("appliance: listen on %s (server.host/server.port): %w", addr, err)
		}
	}
	a.warnings(cfg, acks)
	return a, nil
}

// closeEarly releases what New acquired when New fails.
func (a *Appliance) closeEarly() {
	if a.wasm != nil {
		a.wasm.closeEarly()
	}
	if a.ln != nil && a.opts.listener == nil {
		_ = a.ln.Close()
	}
	if a.journal != nil {
		_ = a.journal.Close()
	}
	if a.lock != nil {
		_ = a.lock.Release()
	}
}

// limits derives the API's live limits from cfg. The configured default ack
// falls back to memory when this build cannot honour it (logged by warnings).
func (a *Appliance) limits(cfg config.Config, acks []string) api.Limits {
	def := cfg.Journal.DefaultAck
	ok := false
	for _, v := range acks {
		ok = ok || v == def
	}
	if !ok {
		def = "memory"
	}
	return api.Limits{
		PublishTokens:  cfg.API.PublishTokens,
		AdminTokens:    cfg.API.AdminTokens,
		MaxBatch:       cfg.API.MaxBatch,
		ReadLimit:      cfg.API.ReadLimit,
		PublishTimeout: cfg.Ring.PublishTimeout.Duration,
		DefaultAck:     def,
	}
}

func (a *Appliance) warnings(cfg config.Config, acks []string) {
	if len(cfg.API.PublishTokens) == 0 && len(cfg.API.AdminTokens) == 0 {
		a.log.Warn("API is open: no api.publish_tokens or api.admin_tokens configured; anyone who can reach the port may publish and read")
	}
	if a.limits(cfg, acks).DefaultAck != cfg.Journal.DefaultAck {
		a.log.Warn("journal.default_ack is not available in this build; requests without ?ack= are acknowledged in memory", "configured", cfg.Journal.DefaultAck, "available", acks)
	}
	if cfg.Cluster.Enabled && a.opts.cluster == nil {
		a.log.Warn("cluster.enabled is set but no cluster membership is wired into this build; this node runs alone", "seeds", cfg.Cluster.Seeds)
	}
	if !cfg.Journal.Enabled {
		a.log.Warn("journal disabled (journal.enabled = false): accepted events live only in memory; ack=durable is unavailable")
	}
	if disruptor.CacheLinePad < cpuCacheLine() {
		a.log.Warn("padding is smaller than the detected cache line", "padding", disruptor.CacheLinePad, "cache_line", cpuCacheLine())
	}
}

// Addr is the address the API listens on.
func (a *Appliance) Addr() net.Addr { return a.ln.Addr() }

// Ready is closed once Run serves traffic.
func (a *Appliance) Ready() <-chan struct{} { return a.ready }

// Phase returns the lifecycle phase.
func (a *Appliance) Phase() Phase { return Phase(a.phase.Load()) }

// Pipeline returns the node's ring pipeline.
func (a *Appliance) Pipeline() *pipeline.Pipeline { return a.pipe }

// Server returns the node's HTTP server (to add routes before Run).
func (a *Appliance) Server() *api.Server { return a.server }

// Config returns the configuration in effect (after reloads).
func (a *Appliance) Config() config.Config {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

// Run serves until ctx ends, then shuts down in order, each step bounded by
// server.shutdown_timeout overall and logged: readiness off → leave the
// cluster → stop intake (new requests 503, in-flight publishes finish) →
// drain the ring → stop processors → close HTTP → release the state dir.
// It returns nil after a clean drain, an error if something was left.
func (a *Appliance) Run(ctx context.Context) error {
	if !a.runOnce.CompareAndSwap(false, true) {
		return errors.New("appliance: Run called twice")
	}
	defer a.phase.Store(int32(PhaseStopped))
	// Replay what the WASM stage has not processed (journal checkpoint + 1
	// to the journal's last sequence) before the ring takes new events.
	if err := a.wasm.replay(); err != nil {
		a.closeEarly()
		return fmt.Errorf("appliance: %w", err)
	}
	a.wasm.start(a.Config().Modules.HotReload)
	if err := a.pipe.Start(); err != nil {
		a.closeEarly()
		return fmt.Errorf("appliance: %w", err)
	}
	if m := a.sinks.Load(); m != nil {
		if err := m.Apply(context.Background(), a.Config().Sinks); err != nil {
			a.log.Error("some sinks could not start (see GET /api/v1/sinks)", "err", err)
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.server.Serve(a.ln) }()
	if a.cw != nil {
		// Gossip starts once HTTP serves: peers resolve API-address seeds
		// through this node's /api/v1/node/info.
		if err := a.cw.start(); err != nil {
			a.log.Error("cannot start cluster gossip; shutting down", "err", err)
			return errors.Join(err, a.shutdown(a.Config().Server.ShutdownTimeout.Duration))
		}
	}

	wdCtx, stopWD := context.WithCancel(context.Background())
	wdDone := make(chan struct{}, 2)
	go func() {
		defer func() { wdDone <- struct{}{} }()
		a.notify.RunWatchdog(wdCtx, sdnotify.WatchdogInterval(), a.pipe.Progressing)
	}()
	go func() {
		defer func() { wdDone <- struct{}{} }()
		a.statusLoop(wdCtx, 10*time.Second)
	}()

	a.phase.Store(int32(PhaseRunning))
	close(a.ready)
	cfg := a.Config()
	a.log.Info("badbatch ready", "addr", a.ln.Addr().String(), "node_id", cfg.Node.ID, "version", a.build.Version,
		"buffer_size", cfg.Ring.BufferSize, "wait_strategy", cfg.Ring.WaitStrategy, "data_dir", a.lock.Dir())
	a.notify.Ready(fmt.Sprintf("serving on %s, ring %d slots (%s)", a.ln.Addr(), cfg.Ring.BufferSize, cfg.Ring.WaitStrategy))

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutdown requested", "cause", context.Cause(ctx))
	case err := <-serveErr:
		runErr = err
		a.log.Error("HTTP server stopped unexpectedly; shutting down", "err", err)
	}
	err := a.shutdown(cfg.Server.ShutdownTimeout.Duration)
	stopWD()
	<-wdDone
	<-wdDone
	if runErr == nil {
		select {
		case runErr = <-serveErr:
		default:
		}
	}
	return errors.Join(runErr, err)
}

// statusLoop refreshes systemd's STATUS= line (systemctl status) every
// interval while running under systemd.
func (a *Appliance) statusLoop(ctx context.Context, every time.Duration) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := a.pipe.Status()
			a.notify.Status(fmt.Sprintf("%s: %d events in, %d out, %.0f/s in, ring %d/%d free",
				a.Phase(), st.EventsIn, st.EventsOut, st.RateIn, st.RemainingCapacity, st.Capacity))
		}
	}
}

func (a *Appliance) shutdown(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	step := func(name string, f func(context.Context) error) {
		t := time.Now()
		err := f(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			a.log.Error("shutdown step failed", "step", name, "took", time.Since(t), "err", err)
			return
		}
		a.log.Info("shutdown step done", "step", name, "took", time.Since(t))
	}

	a.phase.Store(int32(PhaseDraining))
	a.notify.Stopping("draining")
	a.log.Info("shutdown step done", "step", "readiness off", "timeout", timeout)
	if a.opts.cluster != nil {
		step("leave cluster", a.opts.cluster.Leave)
	}
	step("stop intake", a.server.StopIntake)
	pending := a.pipe.Pending()
	a.log.Info("draining ring", "pending_events", pending)
	step("drain ring and stop processors", func(ctx context.Context) error {
		if a.jstage != nil {
			// A journal that keeps failing must not hold the drain past the deadline.
			stopAbort := context.AfterFunc(ctx, a.jstage.abort)
			defer stopAbort()
		}
		if err := a.pipe.Shutdown(ctx); err != nil {
			return fmt.Errorf("%w (%d events not processed)", err, a.pipe.Pending())
		}
		return nil
	})
	if m := a.sinks.Load(); m != nil {
		// Sinks stop at a batch boundary and save their checkpoints; a
		// down upstream is not waited for past the deadline.
		step("stop sinks", m.Close)
	}
	step("flush modules and close output streams", a.wasm.close)
	if a.journal != nil {
		step("flush and close journal", func(context.Context) error {
			if err := a.journal.Close(); err != nil {
				return err
			}
			a.log.Info("journal closed", "durable_sequence", a.journal.Durable())
			return nil
		})
	}
	if a.cw != nil {
		step("close cluster", a.cw.close)
	}
	step("close HTTP server", a.server.Shutdown)
	if a.opts.listener == nil {
		_ = a.ln.Close()
	}
	step("release state directory", func(context.Context) error { return a.lock.Release() })
	in, out, _, _ := a.pipe.Counters()
	a.log.Info("shutdown complete", "took", time.Since(start), "events_in", in, "events_out", out, "clean", len(errs) == 0)
	return errors.Join(errs...)
}

// Reload applies a new configuration: tokens, limits, publish timeout and
// log level change at once; other changed keys are logged as needing a
// restart. An invalid cfg leaves everything as it was and returns why.
func (a *Appliance) Reload(cfg config.Config) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("appliance: reload: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("appliance: reload: log.level: %w", err)
	}
	applyCluster, err := a.prepareClusterReload(cfg)
	if err != nil {
		return fmt.Errorf("appliance: reload: %w", err)
	}
	if err := a.server.SetLimits(a.limits(cfg, a.acks)); err != nil {
		return fmt.Errorf("appliance: reload: %w", err)
	}
	if a.opts.level != nil {
		a.opts.level.Set(level)
	}
	if err := applyCluster(); err != nil {
		a.log.Error("reload: cluster seeds/keyring not (fully) applied", "err", err)
	}
	changes := config.Diff(a.cfg, cfg)
	applied := 0
	for _, ch := range changes {
		switch {
		case ch.Live && (liveHere(ch.Key) || a.clusterLive(ch.Key)):
			applied++
			a.log.Info("reload: applied", "key", ch.Key, "old", ch.Old, "new", ch.New)
		case ch.Live:
			a.log.Warn("reload: live setting not wired in this build; takes effect after restart", "key", ch.Key, "old", ch.Old, "new", ch.New)
		default:
			a.log.Warn("reload: change needs a restart", "key", ch.Key, "old", ch.Old, "new", ch.New)
		}
	}
	// Keep restart-only settings as they are running; record the live ones.
	next := a.cfg
	next.API.PublishTokens, next.API.AdminTokens = cfg.API.PublishTokens, cfg.API.AdminTokens
	next.API.MaxBatch, next.API.ReadLimit = cfg.API.MaxBatch, cfg.API.ReadLimit
	next.Ring.PublishTimeout = cfg.Ring.PublishTimeout
	next.Log.Level = cfg.Log.Level
	next.Modules.HotReload = cfg.Modules.HotReload
	a.wasm.setHotReload(cfg.Modules.HotReload)
	next.Cluster.RolloutToken = cfg.Cluster.RolloutToken
	if a.cw != nil {
		next.Cluster.Seeds, next.Cluster.Keyring = cfg.Cluster.Seeds, cfg.Cluster.Keyring
	}
	a.cfg = next
	if m := a.sinks.Load(); m != nil && !reflect.DeepEqual(a.cfg.Sinks, cfg.Sinks) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.Apply(ctx, cfg.Sinks); err != nil {
			a.log.Error("reload: some sinks could not start", "err", err)
		}
		cancel()
		next.Sinks = cfg.Sinks
	}
	if err := a.wasm.rescan(); err != nil {
		a.log.Warn("reload: some modules failed to load (running versions stay; see GET /api/v1/modules)", "err", err)
	}
	a.log.Info("configuration reloaded", "changes", len(changes), "applied", applied)
	return nil
}

func liveHere(key string) bool {
	switch key {
	case "api.publish_tokens", "api.admin_tokens", "api.max_batch", "api.read_limit", "ring.publish_timeout", "log.level", "modules.hot_reload":
		return true
	}
	if strings.HasPrefix(key, "sinks.") {
		return true
	}
	return false
}

// ReloadFrom runs a SIGHUP reload: it tells systemd RELOADING, loads the
// new configuration with load, applies it (or keeps the old one, logging
// why) and tells systemd READY again.
func (a *Appliance) ReloadFrom(load func() (config.Config, error)) error {
	a.notify.Reloading()
	defer a.notify.Ready("configuration reloaded")
	cfg, err := load()
	if err == nil {
		err = a.Reload(cfg)
	}
	if err != nil {
		a.log.Error("reload failed; keeping the current configuration", "err", err)
		return err
	}
	return nil
}
