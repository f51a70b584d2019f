package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/badbatch/badbatch/config"
)

// State is what a sink is doing.
type State string

// Sink states.
const (
	StateConnecting State = "connecting"
	StateShipping   State = "shipping"
	StateBackingOff State = "backing_off"
	StatePaused     State = "paused"
	StateFailing    State = "failing"
	StateStopped    State = "stopped"
)

// Checkpoints stores sink checkpoints durably (*journal.Journal does).
type Checkpoints interface {
	Checkpoint(stage string) int64
	SaveCheckpoint(stage string, seq int64) error
	DeleteCheckpoint(stage string) error
}

// CheckpointStage is the journal checkpoint name of sink name.
func CheckpointStage(name string) string { return "sink-" + name }

// checkpointEvery bounds how often a shipping sink saves its checkpoint
// (the upstream's own answer covers what was shipped in between).
const checkpointEvery = 100 * time.Millisecond

// sinkOptions wires one sink.
type sinkOptions struct {
	cfg         config.SinkConfig
	source      Source
	upstream    Upstream
	checkpoints Checkpoints
	deadLetter  func(ev *Event, reason string) error
	log         *slog.Logger
}

// Sink ships one source to one upstream.
type Sink struct {
	o   sinkOptions
	lim *rate.Limiter
	// soft ends when the sink is asked to stop: it finishes the batch in
	// flight (bounded by the hard context given to run) and returns.
	soft     context.Context
	stopSoft context.CancelFunc
	done     chan struct{} // closed when run returns

	pauseMu sync.Mutex
	paused  bool
	resume  chan struct{} // closed and replaced on Resume

	state      atomic.Pointer[State]
	lastErr    atomic.Pointer[errAt]
	checkpoint atomic.Int64 // last saved
	next       atomic.Int64 // next sequence to ship
	oldestTs   atomic.Int64 // timestamp of the oldest unshipped event read, 0 when caught up
	upLast     atomic.Int64 // what the upstream said it held at the last connect

	shipped, retries, deadLettered, dropped atomic.Uint64
	shippedBytes                            atomic.Uint64
	lastShip                                atomic.Int64 // unix nanos of the last settled batch
	rateMu                                  sync.Mutex
	rateEWMA                                float64
	rateAt                                  time.Time
}

type errAt struct {
	msg string
	at  time.Time
}

func newSink(o sinkOptions) *Sink {
	s := &Sink{o: o, done: make(chan struct{}), resume: make(chan struct{})}
	s.soft, s.stopSoft = context.WithCancel(context.Background())
	if b := int64(o.cfg.MaxBytesPerSecond); b > 0 {
		s.lim = rate.NewLimiter(rate.Limit(b), int(max(b, 64<<10)))
	}
	ck := o.checkpoints.Checkpoint(CheckpointStage(o.cfg.Name))
	s.checkpoint.Store(ck)
	s.next.Store(ck + 1)
	s.upLast.Store(-1)
	s.setState(StateConnecting)
	return s
}

func (s *Sink) setState(st State) {
	old := s.state.Swap(&st)
	if old != nil && *old != st {
		s.o.log.Debug("sink state", "from", string(*old), "to", string(st))
	}
}

// State returns the sink's state.
func (s *Sink) State() State { return *s.state.Load() }

// fail records err, logging it only when it differs from the last one.
func (s *Sink) fail(err error, st State) {
	msg := err.Error()
	prev := s.lastErr.Swap(&errAt{msg: msg, at: time.Now()})
	if prev == nil || prev.msg != msg || s.State() != st {
		s.o.log.Warn("sink: upstream problem; retrying with backoff (further failures are counted, not logged)", "state", string(st), "err", msg)
	}
	s.setState(st)
}

// Pause stops shipping at the next batch boundary.
func (s *Sink) Pause() {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	s.paused = true
}

// Resume lets a paused sink ship again.
func (s *Sink) Resume() {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	if s.paused {
		s.paused = false
		close(s.resume)
		s.resume = make(chan struct{})
	}
}

func (s *Sink) pauseState() (bool, <-chan struct{}) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	return s.paused, s.resume
}

// stopping reports whether the sink was asked to stop.
func (s *Sink) stopping() bool { return s.soft.Err() != nil }

// sleep waits d, or until the sink is asked to stop or ctx ends; it
// reports whether the full time passed.
func (s *Sink) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.soft.Done():
	case <-ctx.Done():
	}
	return false
}

// backoff is the wait before retry attempt n (0-based): exponential from
// retry_min to retry_max, with jitter in [d/2, d].
func (s *Sink) backoff(n int, err error) time.Duration {
	lo, hi := s.o.cfg.RetryMin.Duration, s.o.cfg.RetryMax.Duration
	d := hi
	if isFatal(err) {
		return d
	}
	if n < 30 {
		d = min(hi, lo<<n)
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = min(ra.After, max(hi, ra.After))
	}
	return d
}

// run is the sink's loop; it ends when stop is closed (at a batch
// boundary) or ctx ends (at once).
func (s *Sink) run(ctx context.Context) {
	defer close(s.done)
	defer s.o.upstream.Close()
	defer s.setState(StateStopped)
	defer s.saveCheckpoint()
	connected := false
	attempt := 0
	var buf []Event
	lastSave := time.Now()
	for !s.stopping() && ctx.Err() == nil {
		if paused, resume := s.pauseState(); paused {
			s.setState(StatePaused)
			s.saveCheckpoint()
			select {
			case <-resume:
			case <-s.soft.Done():
			case <-ctx.Done():
			}
			continue
		}
		if !connected {
			s.setState(StateConnecting)
			cctx, cancel := context.WithTimeout(ctx, s.o.cfg.Timeout.Duration)
			last, err := s.o.upstream.Connect(cctx)
			cancel()
			if err != nil {
				s.retries.Add(1)
				st := StateBackingOff
				if isFatal(err) {
					st = StateFailing
				}
				s.fail(fmt.Errorf("connect: %w", err), st)
				s.sleep(ctx, s.backoff(attempt, err))
				attempt++
				continue
			}
			connected = true
			s.upLast.Store(last)
			if last >= s.next.Load() {
				s.o.log.Info("sink: the upstream already holds events past the checkpoint; resuming after them", "checkpoint", s.next.Load()-1, "upstream_last", last)
				s.next.Store(last + 1)
				s.saveCheckpoint()
			}
			s.setState(StateShipping)
		}
		next := s.next.Load()
		if !s.waitForData(ctx, next) {
			continue
		}
		var err error
		buf, err = s.o.source.Read(next, s.o.cfg.MaxInFlight, buf[:0])
		if errors.Is(err, ErrEvicted) {
			s.skipEvicted(next)
			continue
		}
		if err != nil {
			s.fail(fmt.Errorf("read source: %w", err), StateFailing)
			s.sleep(ctx, s.backoff(attempt, err))
			attempt++
			continue
		}
		if len(buf) == 0 {
			continue
		}
		s.oldestTs.Store(buf[0].Timestamp)
		if err := s.limit(ctx, buf); err != nil {
			continue
		}
		settled, err := s.ship(ctx, buf)
		if settled > 0 {
			attempt = 0
			s.next.Store(buf[settled-1].Sequence + 1)
			if settled == len(buf) {
				s.oldestTs.Store(0)
			}
			if time.Since(lastSave) >= checkpointEvery {
				s.saveCheckpoint()
				lastSave = time.Now()
			}
		}
		if isRetryRest(err) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.retries.Add(1)
			st := StateBackingOff
			if isFatal(err) {
				st = StateFailing
			}
			s.fail(err, st)
			_ = s.o.upstream.Close()
			connected = false
			s.sleep(ctx, s.backoff(attempt, err))
			attempt++
			continue
		}
		if s.State() != StateShipping {
			s.o.log.Info("sink: shipping again", "next", s.next.Load())
			s.setState(StateShipping)
		}
	}
}

// waitForData waits until next is durable, lingering up to linger to fill
// a batch. It returns false when the loop should re-check its state.
func (s *Sink) waitForData(ctx context.Context, next int64) bool {
	if s.o.source.Durable() < next {
		// A second at most, so that pause requests are seen.
		wctx, cancel := context.WithTimeout(s.soft, time.Second)
		err := s.o.source.WaitDurable(wctx, next)
		cancel()
		if err != nil || ctx.Err() != nil {
			return false
		}
	}
	if want := next + int64(s.o.cfg.Batch) - 1; s.o.cfg.Linger.Duration > 0 && s.o.source.Durable() < want {
		lctx, cancel := context.WithTimeout(s.soft, s.o.cfg.Linger.Duration)
		_ = s.o.source.WaitDurable(lctx, want)
		cancel()
	}
	return true
}

// skipEvicted moves past events retention deleted before they were
// shipped (only possible with on_backlog_full = "drop_oldest", or when a
// sink starts after its checkpoint's events are gone).
func (s *Sink) skipEvicted(next int64) {
	earliest := s.o.source.Earliest()
	if earliest <= next {
		return
	}
	n := earliest - next
	s.dropped.Add(uint64(n))
	s.o.log.Warn("sink: events were deleted by retention before they were shipped", "first", next, "last", earliest-1, "events", n)
	s.next.Store(earliest)
	s.saveCheckpoint()
}

// limit applies max_bytes_per_second.
func (s *Sink) limit(ctx context.Context, evs []Event) error {
	if s.lim == nil {
		return nil
	}
	n := 0
	for i := range evs {
		n += evs[i].size()
	}
	for n > 0 {
		k := min(n, s.lim.Burst())
		if err := s.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// ship sends evs in batches of cfg.Batch and dead-letters rejects; it
// returns how many events from the start are settled.
func (s *Sink) ship(ctx context.Context, evs []Event) (int, error) {
	settled, rejects, err := s.o.upstream.Ship(ctx, evs)
	settled = min(settled, len(evs))
	slices.SortFunc(rejects, func(a, b Reject) int { return a.Index - b.Index })
	for _, r := range rejects {
		if r.Index >= settled {
			continue
		}
		if dlErr := s.o.deadLetter(&evs[r.Index], r.Reason); dlErr != nil {
			// Not stored anywhere yet: do not move past it.
			s.count(evs[:r.Index], 0)
			return r.Index, fmt.Errorf("dead-letter sequence %d: %w", evs[r.Index].Sequence, dlErr)
		}
		s.deadLettered.Add(1)
		s.o.log.Warn("sink: upstream refused an event for good; it is in the sink's dead-letter stream", "sequence", evs[r.Index].Sequence, "reason", r.Reason)
	}
	s.count(evs[:settled], len(rejects))
	return settled, err
}

func (s *Sink) count(evs []Event, rejected int) {
	if len(evs) == 0 {
		return
	}
	var b uint64
	for i := range evs {
		b += uint64(evs[i].size())
	}
	n := len(evs) - rejected
	s.shipped.Add(uint64(max(n, 0)))
	s.shippedBytes.Add(b)
	now := time.Now()
	s.lastShip.Store(now.UnixNano())
	s.rateMu.Lock()
	if !s.rateAt.IsZero() {
		if dt := now.Sub(s.rateAt).Seconds(); dt > 0 {
			inst := float64(len(evs)) / dt
			alpha := min(1, dt)
			s.rateEWMA = alpha*inst + (1-alpha)*s.rateEWMA
		}
	}
	s.rateAt = now
	s.rateMu.Unlock()
}

func (s *Sink) saveCheckpoint() {
	seq := s.next.Load() - 1
	if seq == s.checkpoint.Load() {
		return
	}
	if err := s.o.checkpoints.SaveCheckpoint(CheckpointStage(s.o.cfg.Name), seq); err != nil {
		s.o.log.Error("sink: cannot save checkpoint (the upstream's answer will be used after a restart)", "seq", seq, "err", err)
		return
	}
	s.checkpoint.Store(seq)
}

// Status is a sink's state as GET /api/v1/sinks shows it.
type Status struct {
	Name        string     `json:"name"`
	Type        string     `json:"type"`
	Source      string     `json:"source"`
	URL         string     `json:"url"`
	Enabled     bool       `json:"enabled"`
	State       State      `json:"state"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Checkpoint is the highest sequence saved as shipped; Shipped the
	// highest acknowledged (the checkpoint catches up within 100ms).
	Checkpoint     int64   `json:"checkpoint"`
	ShippedThrough int64   `json:"shipped_through"`
	SourceDurable  int64   `json:"source_durable"`
	UpstreamLast   int64   `json:"upstream_last"`
	LagEvents      int64   `json:"lag_events"`
	LagBytes       int64   `json:"lag_bytes"`
	OldestAgeSecs  float64 `json:"oldest_unshipped_age_seconds"`
	ShippedTotal   uint64  `json:"shipped_total"`
	Retries        uint64  `json:"retries_total"`
	DeadLettered   uint64  `json:"dead_lettered_total"`
	Dropped        uint64  `json:"dropped_total"`
	RatePerSecond  float64 `json:"rate_per_second"`
	OnBacklogFull  string  `json:"on_backlog_full"`
	DeadLetterName string  `json:"dead_letter_stream"`
}

// redactURL removes credentials from a URL list for display.
func redactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			p = u.String()
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

func (s *Sink) status() Status {
	c := s.o.cfg
	st := Status{
		Name: c.Name, Type: c.Type, Source: c.Source, URL: redactURL(c.URL), Enabled: c.Enabled,
		State: s.State(), Checkpoint: s.checkpoint.Load(), ShippedThrough: s.next.Load() - 1,
		SourceDurable: s.o.source.Durable(), UpstreamLast: s.upLast.Load(),
		ShippedTotal: s.shipped.Load(), Retries: s.retries.Load(), DeadLettered: s.deadLettered.Load(),
		Dropped: s.dropped.Load(), OnBacklogFull: c.OnBacklogFull, DeadLetterName: DeadLetterStream(c.Name),
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastError = e.msg
		at := e.at
		st.LastErrorAt = &at
	}
	st.LagEvents = max(0, st.SourceDurable-st.ShippedThrough)
	if n := s.shipped.Load() + s.deadLettered.Load(); n > 0 {
		st.LagBytes = int64(float64(s.shippedBytes.Load()) / float64(n) * float64(st.LagEvents))
	}
	if ts := s.oldestTs.Load(); ts > 0 && st.LagEvents > 0 {
		st.OldestAgeSecs = max(0, time.Since(time.Unix(0, ts)).Seconds())
	}
	s.rateMu.Lock()
	if time.Since(s.rateAt) < 2*time.Second {
		st.RatePerSecond = s.rateEWMA
	}
	s.rateMu.Unlock()
	return st
}

// DeadLetterStream is the output stream where sink name's refused events
// go: "sink-<name>-dead-letter", shortened with a hash when that would
// exceed the stream name limit of 63 characters.
func DeadLetterStream(name string) string {
	n := "sink-" + name + "-dead-letter"
	if len(n) <= 63 {
		return n
	}
	h := fnv32(name)
	return fmt.Sprintf("sink-%s-%08x-dl", name[:45], h)
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
