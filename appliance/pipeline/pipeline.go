// Package pipeline owns the appliance's ring buffer: it publishes decoded
// events into preallocated slots (with idempotency and bounded
// backpressure), runs the consumer graph, and serves range reads, live-tail
// notifications and status from the ring.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/disruptor"
)

// Stage is a named consumer of the ring (for example the journal or a WASM
// handler). Stages added with [Options.Stages] run in groups: every handler
// of group i+1 sees an event only after all handlers of group i did.
type Stage struct {
	Name    string
	Handler disruptor.EventHandler[event.Slot]
}

// Observer receives latency observations in seconds (a prometheus
// Histogram satisfies it).
type Observer interface{ Observe(float64) }

// Options configures a Pipeline.
type Options struct {
	BufferSize        int    // ring size, a power of two
	WaitStrategy      string // as accepted by disruptor.ParseWaitStrategy
	MaxEventSize      int    // per-slot payload capacity in bytes
	PinCPUs           bool   // pin busy-spin consumers to distinct physical cores
	IdempotencyWindow int    // sequences remembered per producer
	MaxProducers      int    // producers remembered (LRU)
	// Stages are consumer groups run in order before the built-in tail
	// consumer (which counts events out, measures publish→consume latency
	// and wakes live tails). The journal goes first, WASM stages after it.
	Stages [][]Stage
	// Latency, if set, observes publish→consume latency in seconds.
	Latency Observer
	Logger  *slog.Logger
	// Base is the sequence of the first event this pipeline stores: a
	// journal that already holds events up to N continues at N+1. Every
	// sequence the pipeline shows (results, reads, status, Slot.Seq) is
	// Base + the ring's own sequence.
	Base int64
	// Archive, if set, serves reads of sequences older than the ring holds
	// (the journal).
	Archive Archive
}

// Archive is older storage behind the ring, such as the journal.
type Archive interface {
	// Read calls fn for the events from..to (at most limit), in order, and
	// returns the sequence after the last one delivered. A range older
	// than the archive holds is a *GoneError.
	Read(from, to int64, limit int, buf *event.Copy, fn func(*event.Copy) error) (next int64, err error)
	// Earliest is the oldest sequence the archive holds.
	Earliest() int64
}

// Errors returned by Publish and Read.
var (
	// ErrFull: the ring stayed full for the whole publish timeout.
	ErrFull = errors.New("ring buffer full")
	// ErrClosed: the pipeline is shutting down and takes no more events.
	ErrClosed = errors.New("pipeline is shutting down")
	// ErrBadRange: the requested range is invalid.
	ErrBadRange = errors.New("invalid range")
)

// GoneError says a requested range is no longer held by the ring.
type GoneError struct {
	From, Earliest int64
}

// Error implements error.
func (e *GoneError) Error() string {
	return fmt.Sprintf("sequence %d is no longer held by the ring buffer; earliest available is %d", e.From, e.Earliest)
}

// Outcome is what happened to one event of a publish.
type Outcome uint8

const (
	// Accepted: stored in the ring at Result.Sequence.
	Accepted Outcome = iota
	// Duplicate: (producer, sequence) seen before; Result.Sequence is the
	// ring sequence it was first given. Not stored again.
	Duplicate
	// Rejected: not stored (the ring stayed full or the pipeline closed).
	Rejected
)

// Result is the outcome of one published event.
type Result struct {
	Sequence int64
	Outcome  Outcome
}

// Pipeline is the ring and its consumers.
type Pipeline struct {
	opts   Options
	log    *slog.Logger
	d      *disruptor.Disruptor[event.Slot]
	ring   *disruptor.RingBuffer[event.Slot]
	idem   *idemTable
	tail   *tailHandler
	stages []namedSeq
	pins   []string
	reqID  atomic.Uint64

	in, out, dups, rejected atomic.Uint64

	notifyMu sync.Mutex
	notifyCh chan struct{}
	subs     atomic.Int64

	rateMu   sync.Mutex
	rateAt   time.Time
	rateIn   uint64
	rateOut  uint64
	lastRate [2]float64
	started  time.Time

	wdMu   sync.Mutex
	wdSeq  int64
	wdInit bool
}

type namedSeq struct {
	name    string
	seq     *disruptor.Sequence
	handler disruptor.EventHandler[event.Slot]
}

// New builds the ring and the consumer graph. Call Start to run it.
func New(opts Options) (*Pipeline, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxEventSize <= 0 {
		return nil, fmt.Errorf("pipeline: max event size must be positive, got %d", opts.MaxEventSize)
	}
	if opts.IdempotencyWindow <= 0 || opts.MaxProducers <= 0 {
		return nil, fmt.Errorf("pipeline: idempotency window (%d) and max producers (%d) must be positive", opts.IdempotencyWindow, opts.MaxProducers)
	}
	ws, err := disruptor.ParseWaitStrategy(opts.WaitStrategy)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p := &Pipeline{
		opts:     opts,
		log:      opts.Logger,
		idem:     newIdemTable(opts.IdempotencyWindow, opts.MaxProducers),
		notifyCh: make(chan struct{}),
	}
	nConsumers := 1
	for _, g := range opts.Stages {
		nConsumers += len(g)
	}
	// Stages take everything available as one batch (no bound below the
	// ring size): the journal stage makes one write and one fsync per
	// batch, so a backlog is made durable with as few fsyncs as possible.
	dopts := []disruptor.Option{disruptor.WithWaitStrategy(ws), disruptor.WithProducerType(disruptor.MultiProducer),
		disruptor.WithMaxBatchSize(opts.BufferSize)}
	switch {
	case !opts.PinCPUs:
		p.pins = []string{"pinning off (ring.pin_cpus = false)"}
	case opts.WaitStrategy != "busy-spin":
		p.pins = []string{fmt.Sprintf("pinning skipped: wait strategy %q does not spin (only busy-spin consumers are pinned)", opts.WaitStrategy)}
	default:
		if _, err := disruptor.PlanPinning(nConsumers); err != nil {
			p.pins = []string{"pinning skipped: " + err.Error()}
		} else {
			dopts = append(dopts, disruptor.WithCPUPinning(true))
		}
	}
	d, err := disruptor.New(event.NewSlotFactory(opts.MaxEventSize), opts.BufferSize, dopts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p.d = d
	p.ring = d.RingBuffer()
	p.tail = &tailHandler{p: p, latency: opts.Latency}

	var prev *disruptor.HandlerGroup[event.Slot]
	for _, g := range opts.Stages {
		hs := make([]disruptor.EventHandler[event.Slot], len(g))
		for i, s := range g {
			hs[i] = s.Handler
		}
		if prev == nil {
			prev = d.HandleEventsWith(hs...)
		} else {
			prev = prev.Then(hs...)
		}
		if err := prev.Err(); err != nil {
			return nil, fmt.Errorf("pipeline: stage group: %w", err)
		}
		for _, s := range g {
			p.stages = append(p.stages, namedSeq{name: s.Name, seq: d.SequenceOf(s.Handler), handler: s.Handler})
		}
	}
	if prev == nil {
		prev = d.HandleEventsWith(p.tail)
	} else {
		prev = prev.Then(p.tail)
	}
	if err := prev.Err(); err != nil {
		return nil, fmt.Errorf("pipeline: tail consumer: %w", err)
	}
	p.stages = append(p.stages, namedSeq{name: "tail", seq: d.SequenceOf(p.tail), handler: p.tail})
	return p, nil
}

// Start runs the consumers.
func (p *Pipeline) Start() error {
	if err := p.d.Start(); err != nil {
		return fmt.Errorf("pipeline: start: %w", err)
	}
	now := time.Now()
	p.rateMu.Lock()
	p.started, p.rateAt = now, now
	p.rateMu.Unlock()
	if pins := p.d.PinDecisions(); len(pins) > 0 {
		p.pins = p.pins[:0]
		for _, d := range pins {
			s := fmt.Sprintf("processor %d (%s) pinned to CPU %d (core %s)", d.Processor, p.stageName(d.Processor), d.CPU, d.Core)
			if d.Err != "" {
				s = fmt.Sprintf("processor %d (%s): pinning to CPU %d failed: %s", d.Processor, p.stageName(d.Processor), d.CPU, d.Err)
			}
			p.pins = append(p.pins, s)
		}
	}
	return nil
}

func (p *Pipeline) stageName(i int) string {
	if i < len(p.stages) {
		return p.stages[i].name
	}
	return "?"
}

// Shutdown refuses new claims, waits until every published event went
// through every consumer (or ctx ends), then stops the consumers. It returns
// an error naming how far the consumers got when ctx ended first.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	err := p.d.Shutdown(ctx)
	// Wake live tails so they can see the end.
	p.notify()
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// ProcessorsOK reports whether every consumer is still running (a consumer
// stops when its exception handler gives up), naming the first that is not.
func (p *Pipeline) ProcessorsOK() (bool, string) {
	for _, s := range p.stages {
		proc := p.d.ProcessorOf(s.handler)
		if proc == nil {
			continue
		}
		if err := proc.Err(); err != nil {
			return false, fmt.Sprintf("consumer %q stopped: %v", s.name, err)
		}
	}
	return true, fmt.Sprintf("%d consumers running", len(p.stages))
}

// Pending returns how many published events the slowest consumer has not
// processed yet.
func (p *Pipeline) Pending() int64 {
	c := p.ring.Cursor()
	m := c
	for _, s := range p.stages {
		if v := s.seq.Get(); v < m {
			m = v
		}
	}
	return c - m
}

// MaxEventSize returns the slot payload capacity.
func (p *Pipeline) MaxEventSize() int { return p.opts.MaxEventSize }

// PinDecisions describes what was pinned where, or why nothing was.
func (p *Pipeline) PinDecisions() []string { return append([]string(nil), p.pins...) }

// Publish stores evs in order. producer is the default producer id for
// events without one (from X-Producer-ID; may be empty). results must have
// len(evs) entries; each receives the event's outcome. Events must have
// been checked with event.Fits. A full ring is waited on for at most
// timeout, then the remaining events are Rejected and ErrFull returned
// (earlier events stay accepted: their results say so); timeout <= 0 does
// not wait at all. After Shutdown started, ErrClosed.
func (p *Pipeline) Publish(ctx context.Context, evs []event.Raw, producer []byte, timeout time.Duration, results []Result) error {
	if len(results) < len(evs) {
		return fmt.Errorf("pipeline: %d results for %d events", len(results), len(evs))
	}
	req := p.reqID.Add(1)
	tracked := p.reserve(evs, producer, req, results)

	var err error
	n := len(evs)
	i := 0
	bufSize := int(p.ring.BufferSize())
	var cancel context.CancelFunc = func() {}
	tctx := ctx
	for i < n && err == nil {
		// Collect the next chunk of fresh events (not duplicates).
		for i < n && results[i].Outcome != Accepted {
			i++
		}
		if i == n {
			break
		}
		count := 0
		j := i
		for j < n && count < bufSize {
			if results[j].Outcome == Accepted {
				count++
			}
			j++
		}
		// Fast path: claim without waiting (no timer); wait only on a full ring.
		hi, cerr := p.ring.TryNextN(int64(count))
		if errors.Is(cerr, disruptor.ErrInsufficientCapacity) {
			if timeout <= 0 {
				err = fmt.Errorf("%w: no wait configured for %d free slots", ErrFull, count)
				break
			}
			if tctx == ctx {
				tctx, cancel = context.WithTimeout(ctx, timeout)
			}
			hi, cerr = p.ring.NextCtx(tctx, int64(count))
		}
		if cerr != nil {
			switch {
			case errors.Is(cerr, disruptor.ErrHalted):
				err = ErrClosed
			case errors.Is(cerr, context.DeadlineExceeded) && ctx.Err() == nil:
				err = fmt.Errorf("%w: waited %s for %d free slots", ErrFull, timeout, count)
			default:
				err = fmt.Errorf("claim ring slots: %w", cerr)
			}
			break
		}
		lo := hi - int64(count) + 1
		now := time.Now().UnixNano()
		s := lo
		for k := i; k < j; k++ {
			if results[k].Outcome != Accepted {
				continue
			}
			ev := &evs[k]
			pr := producer
			if ev.HasProducer {
				pr = ev.Producer
			}
			p.ring.Get(s).Fill(p.opts.Base+s, now, ev, pr)
			results[k].Sequence = p.opts.Base + s
			s++
		}
		p.ring.PublishRange(lo, hi)
		p.in.Add(uint64(count))
		i = j
	}
	cancel()
	if err != nil {
		for k := i; k < n; k++ {
			if results[k].Outcome == Accepted {
				results[k].Outcome = Rejected
				results[k].Sequence = -1
			}
		}
	}
	if tracked {
		p.resolve(evs, producer, req, results)
	}
	var dups, rej uint64
	for k := range results[:n] {
		switch results[k].Outcome {
		case Duplicate:
			dups++
		case Rejected:
			rej++
		}
	}
	p.dups.Add(dups)
	p.rejected.Add(rej)
	return err
}

// reserve classifies every event against the idempotency table and reserves
// the fresh ones. It reports whether any event is tracked.
func (p *Pipeline) reserve(evs []event.Raw, producer []byte, req uint64, results []Result) bool {
	tracked := false
	for k := range evs {
		results[k] = Result{Sequence: -1, Outcome: Accepted}
		if evs[k].HasSequence && (evs[k].HasProducer || len(producer) > 0) {
			tracked = true
		}
	}
	if !tracked {
		return false
	}
	t := p.idem
	t.mu.Lock()
	defer t.mu.Unlock()
	// Pass 1: wait while another request holds any of our (producer, sequence)
	// pairs in flight, so that we never reserve while waiting (no deadlock).
	for {
		busy := false
		for k := range evs {
			ev := &evs[k]
			if !ev.HasSequence {
				continue
			}
			pr := effective(ev, producer)
			if len(pr) == 0 {
				continue
			}
			if c, _ := t.classify(pr, ev.Sequence, req); c == classPendingOther {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		t.cond.Wait()
	}
	// Pass 2: classify and reserve.
	for k := range evs {
		ev := &evs[k]
		if !ev.HasSequence {
			continue
		}
		pr := effective(ev, producer)
		if len(pr) == 0 {
			continue
		}
		switch c, rs := t.classify(pr, ev.Sequence, req); c {
		case classDone:
			results[k] = Result{Sequence: rs, Outcome: Duplicate}
		case classPendingSelf:
			// Same (producer, sequence) earlier in this request: find it.
			for m := 0; m < k; m++ {
				if evs[m].HasSequence && evs[m].Sequence == ev.Sequence && string(effective(&evs[m], producer)) == string(pr) && results[m].Outcome == Accepted {
					results[k] = Result{Sequence: int64(-2 - m), Outcome: Duplicate}
					break
				}
			}
		case classNew:
			t.reserve(pr, ev.Sequence, req)
		case classTooOld:
			// Accepted as new, not remembered.
		}
	}
	return true
}

// resolve records the ring sequences of reserved events and resolves
// in-request duplicates.
func (p *Pipeline) resolve(evs []event.Raw, producer []byte, req uint64, results []Result) {
	t := p.idem
	t.mu.Lock()
	for k := range evs {
		ev := &evs[k]
		r := &results[k]
		if r.Outcome == Duplicate && r.Sequence <= -2 {
			// Points at an earlier event of this request.
			orig := results[-2-r.Sequence]
			if orig.Outcome == Accepted {
				r.Sequence = orig.Sequence
			} else {
				*r = Result{Sequence: -1, Outcome: Rejected}
			}
			continue
		}
		if !ev.HasSequence || r.Outcome == Duplicate {
			continue
		}
		pr := effective(ev, producer)
		if len(pr) == 0 {
			continue
		}
		t.resolve(pr, ev.Sequence, req, r.Sequence)
	}
	t.cond.Broadcast()
	t.mu.Unlock()
}

func effective(ev *event.Raw, producer []byte) []byte {
	if ev.HasProducer {
		return ev.Producer
	}
	return producer
}

// Range describes the ring's readable window at the time of a read.
type Range struct {
	Earliest int64 // oldest sequence still held
	Cursor   int64 // highest claimed sequence (-1 when empty)
	Next     int64 // the sequence after the last one returned
}

// Read calls fn for each event in from..to (inclusive), at most limit of
// them, stopping early at the first sequence not yet written. Sequences
// older than the ring holds come from the Archive, if any. The *Copy passed
// to fn is reused between calls. from < 0, to < from or limit < 1 is
// ErrBadRange; from older than anything held is a *GoneError.
func (p *Pipeline) Read(from, to int64, limit int, buf *event.Copy, fn func(*event.Copy) error) (Range, error) {
	base := p.opts.Base
	cursor := p.ring.Cursor()
	size := p.ring.BufferSize()
	ringEarliest := base + max(0, cursor-size+1)
	rg := Range{Earliest: ringEarliest, Cursor: base + cursor, Next: from}
	if p.opts.Archive != nil {
		rg.Earliest = min(ringEarliest, p.opts.Archive.Earliest())
	}
	if from < 0 || to < from || limit < 1 {
		return rg, fmt.Errorf("%w: need 0 <= from <= to and limit >= 1 (from=%d to=%d limit=%d)", ErrBadRange, from, to, limit)
	}
	if from < ringEarliest {
		if p.opts.Archive == nil {
			return rg, &GoneError{From: from, Earliest: ringEarliest}
		}
		next, err := p.opts.Archive.Read(from, min(to, ringEarliest-1), limit, buf, fn)
		rg.Next = next
		return rg, err
	}
	last := min(to, base+cursor, from+int64(limit)-1)
	for s := from; s <= last; s++ {
		got := p.ring.Get(s-base).Snapshot(s, buf)
		if got > s {
			// Overwritten while reading.
			if s == from {
				e := base + max(0, p.ring.Cursor()-size+1)
				if p.opts.Archive != nil {
					// Retry from the archive, which has it (or says it is gone).
					next, err := p.opts.Archive.Read(from, min(to, e-1), limit, buf, fn)
					rg.Next = next
					return rg, err
				}
				return rg, &GoneError{From: from, Earliest: e}
			}
			break
		}
		if got < s {
			break // claimed, not written yet
		}
		if err := fn(buf); err != nil {
			return rg, err
		}
		rg.Next = s + 1
	}
	return rg, nil
}

// Processed returns the sequence of the last event every consumer has
// processed (what live tails may show).
func (p *Pipeline) Processed() int64 { return p.opts.Base + p.d.SequenceOf(p.tail).Get() }

// Updated returns a channel closed the next time consumers make progress.
// Callers must call Subscribe before using it and Unsubscribe after.
func (p *Pipeline) Updated() <-chan struct{} {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	return p.notifyCh
}

// Subscribe registers a live-tail reader (enables progress notifications).
func (p *Pipeline) Subscribe() { p.subs.Add(1) }

// Unsubscribe removes a live-tail reader.
func (p *Pipeline) Unsubscribe() { p.subs.Add(-1) }

func (p *Pipeline) notify() {
	p.notifyMu.Lock()
	close(p.notifyCh)
	p.notifyCh = make(chan struct{})
	p.notifyMu.Unlock()
}

// ConsumerStatus is one consumer's progress.
type ConsumerStatus struct {
	Name     string `json:"name"`
	Sequence int64  `json:"sequence"`
	Lag      int64  `json:"lag"`
}

// Status is a snapshot of the ring and its consumers.
type Status struct {
	Capacity          int64            `json:"capacity"`
	Cursor            int64            `json:"cursor"`
	RemainingCapacity int64            `json:"remaining_capacity"`
	Earliest          int64            `json:"earliest_available"`
	WaitStrategy      string           `json:"wait_strategy"`
	ProducerType      string           `json:"producer_type"`
	MaxEventSize      int              `json:"max_event_size_bytes"`
	Consumers         []ConsumerStatus `json:"consumers"`
	EventsIn          uint64           `json:"events_in"`
	EventsOut         uint64           `json:"events_out"`
	Duplicates        uint64           `json:"duplicates"`
	Rejected          uint64           `json:"rejected"`
	RateIn            float64          `json:"rate_in_per_second"`
	RateOut           float64          `json:"rate_out_per_second"`
	Producers         int              `json:"producers_tracked"`
}

// Status returns a snapshot. Rates are measured over the interval since the
// previous call that was at least one second ago.
func (p *Pipeline) Status() Status {
	cursor := p.ring.Cursor()
	base := p.opts.Base
	st := Status{
		Capacity:          p.ring.BufferSize(),
		Cursor:            base + cursor,
		RemainingCapacity: p.ring.RemainingCapacity(),
		Earliest:          base + max(0, cursor-p.ring.BufferSize()+1),
		WaitStrategy:      p.opts.WaitStrategy,
		ProducerType:      "multi",
		MaxEventSize:      p.opts.MaxEventSize,
		EventsIn:          p.in.Load(),
		EventsOut:         p.out.Load(),
		Duplicates:        p.dups.Load(),
		Rejected:          p.rejected.Load(),
		Producers:         p.idem.size(),
	}
	if p.opts.Archive != nil {
		st.Earliest = min(st.Earliest, p.opts.Archive.Earliest())
	}
	for _, s := range p.stages {
		v := s.seq.Get()
		st.Consumers = append(st.Consumers, ConsumerStatus{Name: s.name, Sequence: base + v, Lag: max(0, cursor-v)})
	}
	now := time.Now()
	p.rateMu.Lock()
	if dt := now.Sub(p.rateAt).Seconds(); dt >= 1 {
		p.lastRate = [2]float64{float64(st.EventsIn-p.rateIn) / dt, float64(st.EventsOut-p.rateOut) / dt}
		p.rateAt, p.rateIn, p.rateOut = now, st.EventsIn, st.EventsOut
	} else if p.lastRate == [2]float64{} && !p.started.IsZero() {
		if dt := now.Sub(p.started).Seconds(); dt > 0 {
			p.lastRate = [2]float64{float64(st.EventsIn) / max(dt, 1), float64(st.EventsOut) / max(dt, 1)}
		}
	}
	st.RateIn, st.RateOut = p.lastRate[0], p.lastRate[1]
	p.rateMu.Unlock()
	return st
}

// Counters returns events in, out, duplicates and rejected since start.
func (p *Pipeline) Counters() (in, out, dups, rejected uint64) {
	return p.in.Load(), p.out.Load(), p.dups.Load(), p.rejected.Load()
}

// Progressing reports whether the consumers advanced since the previous
// call or have nothing to do; it is the watchdog's health check.
func (p *Pipeline) Progressing() (bool, string) {
	cursor := p.ring.Cursor()
	m := cursor
	for _, s := range p.stages {
		if v := s.seq.Get(); v < m {
			m = v
		}
	}
	p.wdMu.Lock()
	defer p.wdMu.Unlock()
	prev, init := p.wdSeq, p.wdInit
	p.wdSeq, p.wdInit = m, true
	if m >= cursor || !init || m != prev {
		return true, ""
	}
	return false, fmt.Sprintf("slowest consumer stuck at %d with %d events pending", m, cursor-m)
}

// tailHandler is the last consumer: it counts events out, observes
// publish→consume latency and wakes live tails.
type tailHandler struct {
	p       *Pipeline
	latency Observer
	now     int64
}

// OnBatchStart takes one clock reading per batch.
func (h *tailHandler) OnBatchStart(_, _ int64) { h.now = time.Now().UnixNano() }

// OnEvent implements disruptor.EventHandler.
func (h *tailHandler) OnEvent(e *event.Slot, seq int64, endOfBatch bool) error {
	if h.latency != nil {
		h.latency.Observe(float64(h.now-e.Timestamp) / 1e9)
	}
	if endOfBatch {
		h.p.out.Store(uint64(seq + 1))
		if h.p.subs.Load() > 0 {
			h.p.notify()
		}
	}
	return nil
}
