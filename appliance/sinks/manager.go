package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/config"
)

// ErrNoSink is returned for a sink that is not configured.
var ErrNoSink = errors.New("sinks: no such sink")

// ErrConfigured is returned when deleting the checkpoint of a sink that is
// still configured.
var ErrConfigured = errors.New("sinks: the sink is configured; remove it from the configuration first")

// Options configures a Manager.
type Options struct {
	// NodeID names this node in ids, subjects and producer ids.
	NodeID string
	// Checkpoints stores each sink's checkpoint (the input journal).
	Checkpoints Checkpoints
	// Source returns the source named by a sink's source key ("events" or
	// an output stream).
	Source func(name string) (Source, error)
	// DeadLetter stores an event the upstream refused for good in stream.
	DeadLetter func(stream string, ev *Event, sink, reason string) error
	// Logger receives state changes.
	Logger *slog.Logger
}

// Manager runs the configured sinks.
type Manager struct {
	o   Options
	log *slog.Logger

	ctx    context.Context // hard context of every sink's run
	cancel context.CancelFunc

	mu     sync.Mutex
	sinks  map[string]*running
	closed bool
}

type running struct {
	cfg  config.SinkConfig
	sink *Sink // nil when the sink is disabled
}

// New returns a Manager with no sinks; Apply starts them.
func New(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{o: o, log: o.Logger, ctx: ctx, cancel: cancel, sinks: map[string]*running{}}
}

func (m *Manager) build(cfg config.SinkConfig) (*Sink, error) {
	src, err := m.o.Source(cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("sink %q: source %q: %w", cfg.Name, cfg.Source, err)
	}
	var up Upstream
	switch cfg.Type {
	case "nats":
		up = newNATSUpstream(cfg, m.o.NodeID)
	case "http":
		h, err := newHTTPUpstream(cfg, m.o.NodeID)
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
		}
		up = h
	default:
		return nil, fmt.Errorf("sink %q: unknown type %q", cfg.Name, cfg.Type)
	}
	dl := DeadLetterStream(cfg.Name)
	return newSink(sinkOptions{
		cfg: cfg, source: src, upstream: up, checkpoints: m.o.Checkpoints,
		deadLetter: func(ev *Event, reason string) error { return m.o.DeadLetter(dl, ev, cfg.Name, reason) },
		log:        m.log.With("sink", cfg.Name, "type", cfg.Type),
	}), nil
}

// Apply makes the running sinks match cfgs: new sinks start, removed ones
// stop (their checkpoints stay), changed ones restart from their
// checkpoint. Stopping waits for the batch in flight, bounded by ctx. Every
// sink that could not be started is reported; the others run.
func (m *Manager) Apply(ctx context.Context, cfgs []config.SinkConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("sinks: manager closed")
	}
	want := map[string]config.SinkConfig{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	var errs []error
	for name, r := range m.sinks {
		if c, ok := want[name]; ok && reflect.DeepEqual(c, r.cfg) {
			continue
		}
		m.stopLocked(ctx, r)
		delete(m.sinks, name)
		if _, ok := want[name]; !ok {
			m.log.Info("sink removed (its checkpoint is kept until DELETE /api/v1/sinks/{name}/checkpoint)", "sink", name)
		}
	}
	for _, c := range cfgs {
		if _, ok := m.sinks[c.Name]; ok {
			continue
		}
		r := &running{cfg: c}
		if c.Enabled {
			s, err := m.build(c)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r.sink = s
			go s.run(m.ctx)
			m.log.Info("sink started", "sink", c.Name, "type", c.Type, "source", c.Source, "url", redactURL(c.URL), "resume_after", s.checkpoint.Load())
		}
		m.sinks[c.Name] = r
	}
	return errors.Join(errs...)
}

func (m *Manager) stopLocked(ctx context.Context, r *running) {
	if r.sink == nil {
		return
	}
	r.sink.stopSoft()
	select {
	case <-r.sink.done:
	case <-ctx.Done():
		m.log.Warn("sink did not finish its batch before the deadline; it is cut off (the upstream's answer decides where it resumes)", "sink", r.cfg.Name)
	}
}

// Close stops every sink at a batch boundary and saves its checkpoint;
// past ctx's deadline the batches in flight are abandoned.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	list := make([]*running, 0, len(m.sinks))
	for _, r := range m.sinks {
		list = append(list, r)
	}
	m.mu.Unlock()
	for _, r := range list {
		if r.sink != nil {
			r.sink.stopSoft()
		}
	}
	var err error
	for _, r := range list {
		if r.sink == nil {
			continue
		}
		select {
		case <-r.sink.done:
		case <-ctx.Done():
			m.cancel()
			<-r.sink.done
			err = fmt.Errorf("sinks: stopped before their batches finished: %w", ctx.Err())
		}
	}
	m.cancel()
	return err
}

// Status lists every configured sink, by name.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	list := make([]*running, 0, len(m.sinks))
	for _, r := range m.sinks {
		list = append(list, r)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(list))
	for _, r := range list {
		out = append(out, r.status(m.o.Checkpoints))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *running) status(ck Checkpoints) Status {
	if r.sink != nil {
		return r.sink.status()
	}
	c := r.cfg
	seq := ck.Checkpoint(CheckpointStage(c.Name))
	return Status{Name: c.Name, Type: c.Type, Source: c.Source, URL: redactURL(c.URL), Enabled: false,
		State: StatePaused, Checkpoint: seq, ShippedThrough: seq, UpstreamLast: -1, SourceDurable: -1,
		OnBacklogFull: c.OnBacklogFull, DeadLetterName: DeadLetterStream(c.Name)}
}

// Get returns one sink's status.
func (m *Manager) Get(name string) (Status, error) {
	m.mu.Lock()
	r, ok := m.sinks[name]
	m.mu.Unlock()
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrNoSink, name)
	}
	return r.status(m.o.Checkpoints), nil
}

// Pause stops a sink at its next batch boundary until Resume (not kept
// across restarts: enabled = false in the configuration is).
func (m *Manager) Pause(name string) error { return m.with(name, (*Sink).Pause) }

// Resume lets a paused sink ship again.
func (m *Manager) Resume(name string) error { return m.with(name, (*Sink).Resume) }

func (m *Manager) with(name string, f func(*Sink)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.sinks[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoSink, name)
	}
	if r.sink == nil {
		return fmt.Errorf("sinks: sink %q is disabled in the configuration (enabled = false)", name)
	}
	f(r.sink)
	return nil
}

// DeleteCheckpoint forgets a removed sink's checkpoint (a sink of that
// name added later starts from the earliest retained event, or where its
// upstream says it stands).
func (m *Manager) DeleteCheckpoint(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sinks[name]; ok {
		return fmt.Errorf("%w: %q", ErrConfigured, name)
	}
	if m.o.Checkpoints.Checkpoint(CheckpointStage(name)) < 0 {
		if _, ok := m.o.Checkpoints.(interface{ Checkpoints() map[string]int64 }); ok {
			all := m.o.Checkpoints.(interface{ Checkpoints() map[string]int64 }).Checkpoints()
			if _, has := all[CheckpointStage(name)]; !has {
				return fmt.Errorf("%w: no checkpoint for %q", ErrNoSink, name)
			}
		}
	}
	return m.o.Checkpoints.DeleteCheckpoint(CheckpointStage(name))
}

// Holds returns the retention holds of the enabled sinks reading source.
func (m *Manager) Holds(source string) []journal.Hold {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []journal.Hold
	for _, r := range m.sinks {
		if r.sink == nil || r.cfg.Source != source {
			continue
		}
		out = append(out, journal.Hold{Name: "sink " + r.cfg.Name, From: r.sink.next.Load(), DropWhenFull: r.cfg.OnBacklogFull == "drop_oldest"})
	}
	return out
}

// Dropped records that retention deleted unshipped events of a hold
// (journal.Options.OnDrop); the sink counts them when it reaches them.
func (m *Manager) Dropped(h journal.Hold, first, last int64) {
	m.log.Warn("sink backlog full: retention deleted unshipped events (on_backlog_full = \"drop_oldest\")", "hold", h.Name, "first", first, "last", last, "events", last-first+1)
}

// Collector exports the sinks' metrics.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

var (
	descShipped = prometheus.NewDesc("badbatch_sink_shipped_total", "Events the upstream acknowledged.", []string{"sink"}, nil)
	descRetries = prometheus.NewDesc("badbatch_sink_retries_total", "Failed connects or writes that were retried.", []string{"sink"}, nil)
	descDead    = prometheus.NewDesc("badbatch_sink_dead_lettered_total", "Events the upstream refused for good (in the sink's dead-letter stream).", []string{"sink"}, nil)
	descDropped = prometheus.NewDesc("badbatch_sink_dropped_events_total", "Unshipped events deleted by retention (on_backlog_full = drop_oldest).", []string{"sink"}, nil)
	descLagEv   = prometheus.NewDesc("badbatch_sink_lag_events", "Durable events of the source not yet shipped.", []string{"sink"}, nil)
	descLagB    = prometheus.NewDesc("badbatch_sink_lag_bytes", "Estimated payload bytes not yet shipped.", []string{"sink"}, nil)
	descLagS    = prometheus.NewDesc("badbatch_sink_lag_seconds", "Age of the oldest unshipped event.", []string{"sink"}, nil)
	descUp      = prometheus.NewDesc("badbatch_sink_up", "1 while the sink is connected and shipping.", []string{"sink"}, nil)
)

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descShipped, descRetries, descDead, descDropped, descLagEv, descLagB, descLagS, descUp} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.m.Status() {
		up := 0.0
		if s.State == StateShipping {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descShipped, prometheus.CounterValue, float64(s.ShippedTotal), s.Name)
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(s.Retries), s.Name)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(s.DeadLettered), s.Name)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped), s.Name)
		ch <- prometheus.MustNewConstMetric(descLagEv, prometheus.GaugeValue, float64(s.LagEvents), s.Name)
		ch <- prometheus.MustNewConstMetric(descLagB, prometheus.GaugeValue, float64(s.LagBytes), s.Name)
		ch <- prometheus.MustNewConstMetric(descLagS, prometheus.GaugeValue, s.OldestAgeSecs, s.Name)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.Name)
	}
}
