package disruptor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
)

// Option configures a Disruptor.
type Option func(*options)

type options struct {
	producer ProducerType
	ws       WaitStrategy
	maxBatch int
	pinning  bool
	exh      any
}

// WithProducerType selects the single- or multi-producer sequencer
// (default MultiProducer, which is always safe).
func WithProducerType(p ProducerType) Option { return func(o *options) { o.producer = p } }

// WithWaitStrategy sets how consumers wait (default blocking).
func WithWaitStrategy(ws WaitStrategy) Option { return func(o *options) { o.ws = ws } }

// WithMaxBatchSize bounds how many events a processor hands its handler
// before it advances its sequence (default: DefaultMaxBatch of the ring
// size; the ring size means no bound).
func WithMaxBatchSize(n int) Option { return func(o *options) { o.maxBatch = n } }

// WithCPUPinning pins each processor goroutine to its own physical core
// (see PlanPinning). Start fails rather than oversubscribe the cores.
func WithCPUPinning(enabled bool) Option { return func(o *options) { o.pinning = enabled } }

// WithDefaultExceptionHandler sets the exception handler for handlers that
// have none of their own (default FatalStop).
func WithDefaultExceptionHandler[T any](eh ExceptionHandler[T]) Option {
	return func(o *options) { o.exh = eh }
}

// Disruptor builds and runs a graph of batch event processors over one ring.
type Disruptor[T any] struct {
	ring      *RingBuffer[T]
	opts      options
	consumers []*consumer[T]
	byHandler map[any]*consumer[T]

	mu      sync.Mutex
	started bool
	stopped bool
	wg      sync.WaitGroup
	pins    []PinDecision
}

type consumer[T any] struct {
	proc       *BatchEventProcessor[T]
	handler    EventHandler[T]
	exh        ExceptionHandler[T]
	deps       []*Sequence
	endOfChain bool
}

// New returns a Disruptor over a new ring of size entries built by factory.
func New[T any](factory func() T, size int, opts ...Option) (*Disruptor[T], error) {
	o := options{producer: MultiProducer}
	for _, opt := range opts {
		opt(&o)
	}
	if o.ws == nil {
		o.ws = NewBlockingWaitStrategy()
	}
	ring, err := NewRingBuffer(size, factory, o.producer, o.ws)
	if err != nil {
		return nil, err
	}
	if o.exh != nil {
		if _, ok := o.exh.(ExceptionHandler[T]); !ok {
			return nil, fmt.Errorf("disruptor: default exception handler %T does not handle %T events", o.exh, *new(T))
		}
	}
	return &Disruptor[T]{ring: ring, opts: o, byHandler: map[any]*consumer[T]{}}, nil
}

// RingBuffer returns the ring, for publishing.
func (d *Disruptor[T]) RingBuffer() *RingBuffer[T] { return d.ring }

// HandlerGroup is a set of handlers that later handlers can depend on.
type HandlerGroup[T any] struct {
	d    *Disruptor[T]
	seqs []*Sequence
	err  error
}

// Err returns the first configuration error of the chain that built g
// (unknown handler, non-comparable handler, already started).
func (g *HandlerGroup[T]) Err() error { return g.err }

// HandleEventsWith adds handlers that consume straight from the ring, in
// parallel with each other.
func (d *Disruptor[T]) HandleEventsWith(hs ...EventHandler[T]) *HandlerGroup[T] {
	return d.createProcessors(nil, hs)
}

// After returns the group of the given, already added handlers; handlers
// added to it with HandleEventsWith see an event only after all of them.
func (d *Disruptor[T]) After(hs ...EventHandler[T]) *HandlerGroup[T] {
	g := &HandlerGroup[T]{d: d}
	for _, h := range hs {
		c, err := d.lookup(h)
		if err != nil {
			g.err = errors.Join(g.err, err)
			continue
		}
		g.seqs = append(g.seqs, c.proc.seq)
	}
	return g
}

// Then adds handlers that see each event after every handler of g.
func (g *HandlerGroup[T]) Then(hs ...EventHandler[T]) *HandlerGroup[T] {
	return g.HandleEventsWith(hs...)
}

// HandleEventsWith is Then.
func (g *HandlerGroup[T]) HandleEventsWith(hs ...EventHandler[T]) *HandlerGroup[T] {
	if g.err != nil {
		return g
	}
	return g.d.createProcessors(g.seqs, hs)
}

// And merges two groups, so that the next handlers wait for both.
func (g *HandlerGroup[T]) And(other *HandlerGroup[T]) *HandlerGroup[T] {
	seqs := append(append([]*Sequence(nil), g.seqs...), other.seqs...)
	return &HandlerGroup[T]{d: g.d, seqs: seqs, err: errors.Join(g.err, other.err)}
}

// Sequences returns the progress sequences of the group's handlers.
func (g *HandlerGroup[T]) Sequences() []*Sequence { return append([]*Sequence(nil), g.seqs...) }

func (d *Disruptor[T]) createProcessors(deps []*Sequence, hs []EventHandler[T]) *HandlerGroup[T] {
	g := &HandlerGroup[T]{d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		g.err = ErrAlreadyStarted
		return g
	}
	for _, h := range hs {
		if h == nil {
			g.err = errors.Join(g.err, errors.New("disruptor: nil handler"))
			continue
		}
		if !reflect.TypeOf(h).Comparable() {
			g.err = errors.Join(g.err, fmt.Errorf("disruptor: handler of type %T is not comparable; pass a pointer (see Handler)", h))
			continue
		}
		if _, dup := d.byHandler[h]; dup {
			g.err = errors.Join(g.err, fmt.Errorf("disruptor: handler %T added twice", h))
			continue
		}
		barrier := d.ring.NewBarrier(deps...)
		c := &consumer[T]{handler: h, deps: deps, endOfChain: true}
		c.proc = NewBatchEventProcessor(d.ring, barrier, h, nil, d.opts.maxBatch)
		d.consumers = append(d.consumers, c)
		d.byHandler[h] = c
		g.seqs = append(g.seqs, c.proc.seq)
	}
	// The new handlers gate the producers; the ones they follow no longer
	// need to, since they are behind them.
	d.ring.AddGatingSequences(g.seqs...)
	for _, s := range deps {
		d.ring.RemoveGatingSequence(s)
		for _, c := range d.consumers {
			if c.proc.seq == s {
				c.endOfChain = false
			}
		}
	}
	return g
}

func (d *Disruptor[T]) lookup(h EventHandler[T]) (*consumer[T], error) {
	if h == nil || !reflect.TypeOf(h).Comparable() {
		return nil, fmt.Errorf("disruptor: handler of type %T cannot be looked up (not comparable)", h)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.byHandler[h]
	if !ok {
		return nil, fmt.Errorf("disruptor: handler %T was not added", h)
	}
	return c, nil
}

// HandleExceptionsFor sets the exception handler of one added handler.
func (d *Disruptor[T]) HandleExceptionsFor(h EventHandler[T], eh ExceptionHandler[T]) error {
	c, err := d.lookup(h)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return ErrAlreadyStarted
	}
	c.exh = eh
	return nil
}

// SequenceOf returns the progress sequence of an added handler, or nil.
func (d *Disruptor[T]) SequenceOf(h EventHandler[T]) *Sequence {
	c, err := d.lookup(h)
	if err != nil {
		return nil
	}
	return c.proc.seq
}

// ProcessorOf returns the processor of an added handler, or nil.
func (d *Disruptor[T]) ProcessorOf(h EventHandler[T]) *BatchEventProcessor[T] {
	c, err := d.lookup(h)
	if err != nil {
		return nil
	}
	return c.proc
}

// ConsumerSequences returns the progress of every handler in the order
// they were added.
func (d *Disruptor[T]) ConsumerSequences() []*Sequence {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*Sequence, len(d.consumers))
	for i, c := range d.consumers {
		out[i] = c.proc.seq
	}
	return out
}

// PinDecisions reports where Start pinned each processor (empty without
// WithCPUPinning).
func (d *Disruptor[T]) PinDecisions() []PinDecision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]PinDecision(nil), d.pins...)
}

// Start runs one goroutine per handler. It fails if called twice, if the
// graph has no handler, or if pinning was asked for and cannot be honoured.
func (d *Disruptor[T]) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return ErrAlreadyStarted
	}
	if len(d.consumers) == 0 {
		return errors.New("disruptor: no handlers to start")
	}
	var plan []PinDecision
	if d.opts.pinning {
		var err error
		if plan, err = PlanPinning(len(d.consumers)); err != nil {
			return err
		}
		d.pins = plan
	}
	def, _ := d.opts.exh.(ExceptionHandler[T])
	d.started = true
	for i, c := range d.consumers {
		switch {
		case c.exh != nil:
			c.proc.exh = c.exh
		case def != nil:
			c.proc.exh = def
		}
		var pin *PinDecision
		if plan != nil {
			pin = &plan[i]
		}
		d.wg.Add(1)
		go func(p *BatchEventProcessor[T], pin *PinDecision) {
			defer d.wg.Done()
			if pin != nil {
				unpin, err := pinCurrentThread(pin.CPU)
				if err != nil {
					pin.Err = err.Error()
				} else {
					defer unpin()
				}
			}
			_ = p.Run() // the error stays available through Err()
		}(c.proc, pin)
	}
	return nil
}

// Halt stops every processor after its current event, without draining,
// halts the ring (blocked producers get ErrHalted) and waits for the
// processor goroutines to end.
func (d *Disruptor[T]) Halt() {
	d.mu.Lock()
	d.stopped = true
	consumers := append([]*consumer[T](nil), d.consumers...)
	d.mu.Unlock()
	d.ring.Halt()
	for _, c := range consumers {
		c.proc.Halt()
	}
	d.wg.Wait()
}

// Shutdown stops new claims (they get ErrHalted; claims already made still
// complete, including a claim blocked on a full ring), waits until every event published so far has been processed by
// every handler, then halts the processors. If ctx ends first it halts
// anyway (blocked producers then get ErrHalted) and returns an error saying
// how far the slowest handler got.
//
// With a single-producer ring, a claim that is being filled while Shutdown
// starts (ring not full) is invisible to it; stop the producer first, or
// call Shutdown from the producer goroutine. Multi-producer claims are
// always seen.
func (d *Disruptor[T]) Shutdown(ctx context.Context) error {
	d.ring.Close()
	ticker := time.NewTicker(200 * time.Microsecond)
	defer ticker.Stop()
	var err error
	for {
		// Re-read the target: producers that claimed before Close may
		// still be publishing.
		target := d.ring.drainTarget()
		if d.drained(target) {
			break
		}
		if !d.anyRunning() {
			err = fmt.Errorf("disruptor: shutdown: processors stopped before draining to %d (slowest at %d)", target, d.ring.MinimumGatingSequence())
			break
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("disruptor: shutdown: drained to %d of %d: %w", d.ring.MinimumGatingSequence(), target, ctx.Err())
		case <-ticker.C:
			continue
		}
		break
	}
	d.Halt()
	return err
}

func (d *Disruptor[T]) drained(target int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.consumers {
		if c.proc.seq.Get() < target {
			return false
		}
	}
	return true
}

func (d *Disruptor[T]) anyRunning() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return false
	}
	for _, c := range d.consumers {
		if c.proc.Err() == nil {
			return true
		}
	}
	return false
}
