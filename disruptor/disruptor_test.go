package disruptor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// item carries a producer id, that producer's own counter, and a checksum
// of both, so the consumer can verify payload integrity and per-producer order.
type item struct {
	producer int64
	n        int64
	check    int64
	trail    []int64 // stages record that they saw the event, in order
}

func checksum(p, n int64) int64 { return (p*1_000_003 + n) ^ 0x5bd1e995 }

// verifier checks that each producer's events arrive exactly once and in order.
type verifier struct {
	mu   sync.Mutex
	next []int64
	err  error
	seen int64
	last int64
}

func newVerifier(producers int) *verifier {
	return &verifier{next: make([]int64, producers), last: -1}
}

func (v *verifier) OnEvent(e *item, seq int64, _ bool) error {
	if seq != v.last+1 && v.err == nil {
		v.err = fmt.Errorf("sequence gap: %d after %d", seq, v.last)
	}
	v.last = seq
	if e.check != checksum(e.producer, e.n) && v.err == nil {
		v.err = fmt.Errorf("seq %d: corrupt payload %+v", seq, *e)
	}
	if e.n != v.next[e.producer] && v.err == nil {
		v.err = fmt.Errorf("seq %d: producer %d sent %d, want %d (lost, duplicated or reordered)", seq, e.producer, e.n, v.next[e.producer])
	}
	v.next[e.producer] = e.n + 1
	v.seen++
	return nil
}

func newItem() item { return item{trail: make([]int64, 0, 4)} }

func publishAll(t testing.TB, rb *RingBuffer[item], producers int, per int64, batch int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int64) {
			defer wg.Done()
			for n := int64(0); n < per; {
				k := batch
				if per-n < k {
					k = per - n
				}
				err := rb.PublishEvents(k, func(e *item, _ int64) {
					e.producer, e.n, e.check = p, n, checksum(p, n)
					e.trail = e.trail[:0]
					n++
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(int64(p))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func shutdown(t testing.TB, d interface{ Shutdown(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStressEveryStrategy: producers × events on both sequencers and every
// wait strategy; every event is consumed exactly once, in order per
// producer, with its payload intact.
func TestStressEveryStrategy(t *testing.T) {
	per := int64(*stressEvents)
	if testing.Short() {
		per /= 10
	}
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		for _, name := range WaitStrategyNames() {
			producers := 1
			if pt == MultiProducer {
				producers = 3
			}
			t.Run(fmt.Sprintf("%s/%s", pt, name), func(t *testing.T) {
				ws, err := ParseWaitStrategy(name)
				if err != nil {
					t.Fatal(err)
				}
				d, err := New(newItem, 1024, WithProducerType(pt), WithWaitStrategy(ws))
				if err != nil {
					t.Fatal(err)
				}
				v := newVerifier(producers)
				d.HandleEventsWith(v)
				if err := d.Start(); err != nil {
					t.Fatal(err)
				}
				publishAll(t, d.RingBuffer(), producers, per, 7)
				shutdown(t, d)
				if v.err != nil {
					t.Fatal(v.err)
				}
				if v.seen != per*int64(producers) {
					t.Fatalf("consumed %d, want %d", v.seen, per*int64(producers))
				}
			})
		}
	}
}

// trailer records its id in the event's trail after checking that every
// stage it depends on already did.
type trailer struct {
	id    int64
	after []int64
	err   error
	count int64
	mu    *sync.Mutex
}

func (s *trailer) OnEvent(e *item, seq int64, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dep := range s.after {
		found := false
		for _, x := range e.trail {
			if x == dep {
				found = true
			}
		}
		if !found && s.err == nil {
			s.err = fmt.Errorf("stage %d saw seq %d before stage %d (trail %v)", s.id, seq, dep, e.trail)
		}
	}
	e.trail = append(e.trail, s.id)
	s.count++
	return nil
}

// TestGraphOrdering builds a pipeline and a diamond and checks that a stage
// never sees an event before the stages it depends on.
func TestGraphOrdering(t *testing.T) {
	per := int64(*stressEvents) / 20
	mu := &sync.Mutex{} // the trail is shared by parallel stages
	cases := map[string]func(d *Disruptor[item]) []*trailer{
		"pipeline": func(d *Disruptor[item]) []*trailer {
			a, b, c := &trailer{id: 1, mu: mu}, &trailer{id: 2, after: []int64{1}, mu: mu}, &trailer{id: 3, after: []int64{1, 2}, mu: mu}
			if err := d.HandleEventsWith(a).Then(b).Then(c).Err(); err != nil {
				t.Fatal(err)
			}
			return []*trailer{a, b, c}
		},
		"diamond": func(d *Disruptor[item]) []*trailer {
			a, b := &trailer{id: 1, mu: mu}, &trailer{id: 2, mu: mu}
			c := &trailer{id: 3, after: []int64{1, 2}, mu: mu}
			d.HandleEventsWith(a, b)
			if err := d.After(a, b).HandleEventsWith(c).Err(); err != nil {
				t.Fatal(err)
			}
			return []*trailer{a, b, c}
		},
		"dag": func(d *Disruptor[item]) []*trailer {
			a := &trailer{id: 1, mu: mu}
			b := &trailer{id: 2, after: []int64{1}, mu: mu}
			c := &trailer{id: 3, after: []int64{1}, mu: mu}
			e := &trailer{id: 4, after: []int64{1, 2, 3}, mu: mu}
			g := d.HandleEventsWith(a)
			gb := g.Then(b)
			gc := d.After(a).HandleEventsWith(c)
			if err := gb.And(gc).Then(e).Err(); err != nil {
				t.Fatal(err)
			}
			return []*trailer{a, b, c, e}
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			d, err := New(newItem, 256, WithWaitStrategy(NewYieldingWaitStrategy()))
			if err != nil {
				t.Fatal(err)
			}
			stages := build(d)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			publishAll(t, d.RingBuffer(), 2, per, 5)
			shutdown(t, d)
			for _, s := range stages {
				if s.err != nil {
					t.Fatal(s.err)
				}
				if s.count != 2*per {
					t.Fatalf("stage %d saw %d events, want %d", s.id, s.count, 2*per)
				}
			}
		})
	}
}

// slow blocks each event until released.
type slow struct {
	gate  chan struct{}
	count atomic.Int64
}

func (s *slow) OnEvent(*item, int64, bool) error {
	<-s.gate
	s.count.Add(1)
	return nil
}

func TestShutdownDrains(t *testing.T) {
	d, _ := New(newItem, 64)
	h := &slow{gate: make(chan struct{})}
	d.HandleEventsWith(h)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := d.RingBuffer().PublishEvent(func(*item, int64) {}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for i := 0; i < 50; i++ {
			h.gate <- struct{}{}
		}
	}()
	shutdown(t, d)
	if got := h.count.Load(); got != 50 {
		t.Fatalf("drained %d of 50", got)
	}
	if _, err := d.RingBuffer().Next(); !errors.Is(err, ErrHalted) {
		t.Fatalf("claim after shutdown: %v, want ErrHalted", err)
	}
}

// TestFullRingShutdownDoesNotHang: a producer blocked on a full ring (the
// consumer is stuck) returns ErrHalted when the disruptor is shut down, and
// Shutdown reports the deadline instead of hanging.
func TestFullRingShutdownDoesNotHang(t *testing.T) {
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		t.Run(pt.String(), func(t *testing.T) {
			d, _ := New(newItem, 8, WithProducerType(pt))
			h := &slow{gate: make(chan struct{})}
			d.HandleEventsWith(h)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			rb := d.RingBuffer()
			blocked := make(chan error)
			go func() {
				for {
					if err := rb.PublishEvent(func(*item, int64) {}); err != nil {
						blocked <- err
						return
					}
				}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for rb.RemainingCapacity() > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			done := make(chan error)
			go func() { done <- d.Shutdown(ctx) }()
			select {
			case err := <-blocked:
				if !errors.Is(err, ErrHalted) {
					t.Fatalf("blocked claim returned %v, want ErrHalted", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("producer still blocked on the full ring after shutdown")
			}
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			close(h.gate) // release the stuck handler so its goroutine ends
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown with a stuck consumer returned %v, want a deadline error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Shutdown hung")
			}
		})
	}
}

// TestShutdownCompletesBlockedClaims: a producer that claimed while the
// ring was full finishes its publish during the drain, and the drain
// includes it.
func TestShutdownCompletesBlockedClaims(t *testing.T) {
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		t.Run(pt.String(), func(t *testing.T) {
			d, _ := New(newItem, 8, WithProducerType(pt))
			h := &slow{gate: make(chan struct{})}
			d.HandleEventsWith(h)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			rb := d.RingBuffer()
			var published atomic.Int64
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				for rb.PublishEvent(func(*item, int64) {}) == nil {
					published.Add(1)
				}
			}()
			for rb.RemainingCapacity() > 0 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond) // the producer is now waiting inside a claim
			released := make(chan struct{})
			go func() {
				for {
					select {
					case h.gate <- struct{}{}:
					case <-released:
						return
					}
				}
			}()
			shutdown(t, d)
			close(released)
			<-stopped
			if got := h.count.Load(); got != published.Load() {
				t.Fatalf("published %d, processed %d", published.Load(), got)
			}
		})
	}
}

func TestHaltStops(t *testing.T) {
	d, _ := New(newItem, 16)
	var n atomic.Int64
	d.HandleEventsWith(Handler(func(*item, int64, bool) error { n.Add(1); return nil }))
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		_ = d.RingBuffer().PublishEvent(func(*item, int64) {})
	}
	d.Halt() // returns only when the processor goroutines are gone (goleak checks)
	if _, err := d.RingBuffer().TryNext(); !errors.Is(err, ErrHalted) {
		t.Fatalf("TryNext after Halt: %v", err)
	}
}

func TestPanickingHandlerIsContained(t *testing.T) {
	t.Run("log-and-continue", func(t *testing.T) {
		d, _ := New(newItem, 16)
		var seen atomic.Int64
		h := Handler(func(e *item, seq int64, _ bool) error {
			if seq == 3 {
				panic("boom")
			}
			if seq == 5 {
				return errors.New("plain failure")
			}
			seen.Add(1)
			return nil
		})
		rec := &recordingExh{}
		d.HandleEventsWith(h)
		if err := d.HandleExceptionsFor(h, rec); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			_ = d.RingBuffer().PublishEvent(func(*item, int64) {})
		}
		shutdown(t, d)
		if seen.Load() != 8 {
			t.Fatalf("handled %d events, want 8", seen.Load())
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.seqs) != 2 || rec.seqs[0] != 3 || rec.seqs[1] != 5 {
			t.Fatalf("exceptions at %v, want [3 5]", rec.seqs)
		}
		var pe *PanicError
		if !errors.As(rec.errs[0], &pe) || pe.Value != "boom" {
			t.Fatalf("first exception %v is not the panic", rec.errs[0])
		}
	})
	t.Run("fatal-stop", func(t *testing.T) {
		d, _ := New(newItem, 16, WithDefaultExceptionHandler[item](FatalStop[item]{Name: "test"}))
		h := Handler(func(e *item, seq int64, _ bool) error {
			if seq == 2 {
				panic(errors.New("fatal"))
			}
			return nil
		})
		d.HandleEventsWith(h)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			_ = d.RingBuffer().PublishEvent(func(*item, int64) {})
		}
		waitStopped(t, d.ProcessorOf(h))
		if got := d.SequenceOf(h).Get(); got != 1 {
			t.Fatalf("stopped at %d, want 1 (the failing event is not consumed)", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown of a stopped graph with undrained events returned nil")
		}
	})
}

// waitStopped waits up to 5 s for p to stop with an error.
func waitStopped(t *testing.T, p *BatchEventProcessor[item]) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Err() == nil {
		t.Fatal("processor did not stop")
	}
}

type recordingExh struct {
	mu   sync.Mutex
	seqs []int64
	errs []error
}

func (r *recordingExh) HandleEventException(err error, seq int64, _ *item) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs = append(r.seqs, seq)
	r.errs = append(r.errs, err)
	return nil
}
func (r *recordingExh) HandleOnStartException(error)    {}
func (r *recordingExh) HandleOnShutdownException(error) {}

func TestRingBufferSizeErrors(t *testing.T) {
	for _, size := range []int{0, -1, 3, 1000, 1 << 31} {
		if _, err := NewRingBuffer[item](size, nil, SingleProducer, nil); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
	for _, size := range []int{1, 2, 1024} {
		if _, err := NewRingBuffer[item](size, nil, MultiProducer, nil); err != nil {
			t.Errorf("size %d: %v", size, err)
		}
	}
}

func TestTryNextAndCapacity(t *testing.T) {
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		t.Run(pt.String(), func(t *testing.T) {
			rb, _ := NewRingBuffer[item](8, nil, pt, nil)
			consumer := NewSequence(InitialSequence)
			rb.AddGatingSequences(consumer)
			if got := rb.RemainingCapacity(); got != 8 {
				t.Fatalf("capacity %d", got)
			}
			hi, err := rb.TryNextN(5)
			if err != nil || hi != 4 {
				t.Fatalf("TryNextN(5) = %d, %v", hi, err)
			}
			rb.PublishRange(0, 4)
			if _, err := rb.TryNextN(4); !errors.Is(err, ErrInsufficientCapacity) {
				t.Fatalf("TryNextN(4) on 3 free: %v", err)
			}
			if err := rb.TryPublishEvents(3, func(e *item, seq int64) { e.n = seq }); err != nil {
				t.Fatal(err)
			}
			if err := rb.TryPublishEvent(func(*item, int64) {}); !errors.Is(err, ErrInsufficientCapacity) {
				t.Fatalf("TryPublishEvent on full ring: %v", err)
			}
			if rb.Get(7).n != 7 || !rb.IsAvailable(7) || rb.IsAvailable(8) {
				t.Fatal("published slots not visible")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := rb.NextCtx(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("NextCtx on full ring: %v", err)
			}
			consumer.Set(3)
			if got := rb.RemainingCapacity(); got != 4 {
				t.Fatalf("capacity after consuming 4: %d", got)
			}
			hi, err = rb.NextCtx(context.Background(), 4)
			if err != nil || hi != 11 {
				t.Fatalf("NextCtx = %d, %v", hi, err)
			}
			rb.PublishRange(8, 11)
			if _, err := rb.TryNextN(9); err == nil {
				t.Fatal("claim larger than the ring accepted")
			}
			for _, n := range []int64{0, -1, 9, math.MaxInt64} {
				if hi, err := rb.NextN(n); err == nil {
					t.Fatalf("NextN(%d) accepted: %d", n, hi)
				}
			}
		})
	}
}

func TestBuilderErrors(t *testing.T) {
	d, _ := New(newItem, 16)
	fn := HandlerFunc[item](func(*item, int64, bool) error { return nil })
	if err := d.HandleEventsWith(fn).Err(); err == nil {
		t.Fatal("non-comparable handler accepted")
	}
	h := Handler(func(*item, int64, bool) error { return nil })
	if err := d.After(h).HandleEventsWith(Handler(func(*item, int64, bool) error { return nil })).Err(); err == nil {
		t.Fatal("After of an unknown handler accepted")
	}
	d.HandleEventsWith(h)
	if err := d.HandleEventsWith(h).Err(); err == nil {
		t.Fatal("duplicate handler accepted")
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if err := d.HandleEventsWith(Handler(func(*item, int64, bool) error { return nil })).Err(); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("adding after start: %v", err)
	}
	d.Halt()
	empty, _ := New(newItem, 16)
	if err := empty.Start(); err == nil {
		t.Fatal("start with no handlers accepted")
	}
}

// lifecycle records the optional callbacks.
type lifecycle struct {
	started, stopped atomic.Bool
	batches          atomic.Int64
	maxBatch         atomic.Int64
	seq              *Sequence
}

func (l *lifecycle) OnEvent(*item, int64, bool) error { return nil }
func (l *lifecycle) OnStart() error                   { l.started.Store(true); return nil }
func (l *lifecycle) OnShutdown() error                { l.stopped.Store(true); return nil }
func (l *lifecycle) OnBatchStart(size, depth int64) {
	l.batches.Add(1)
	if size > l.maxBatch.Load() {
		l.maxBatch.Store(size)
	}
	if depth < size {
		panic("queue depth below batch size")
	}
}
func (l *lifecycle) SetSequenceCallback(s *Sequence) { l.seq = s }

func TestLifecycleAndMaxBatch(t *testing.T) {
	d, _ := New(newItem, 256, WithMaxBatchSize(10))
	l := &lifecycle{}
	d.HandleEventsWith(l)
	if l.seq != d.SequenceOf(l) {
		t.Fatal("sequence callback not the processor's sequence")
	}
	// Publish before start so that the first batch is large.
	if err := d.RingBuffer().PublishEvents(100, func(*item, int64) {}); err == nil {
		// No gating consumer running yet, but capacity is there.
	} else {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	shutdown(t, d)
	if !l.started.Load() || !l.stopped.Load() {
		t.Fatal("OnStart/OnShutdown not called")
	}
	if l.maxBatch.Load() > 10 || l.batches.Load() < 10 {
		t.Fatalf("max batch %d over %d batches", l.maxBatch.Load(), l.batches.Load())
	}
}

func TestDefaultMaxBatch(t *testing.T) {
	for _, tc := range []struct {
		ring     int
		producer ProducerType
		want     int
	}{
		{1, SingleProducer, 1}, {2, SingleProducer, 1}, {4, SingleProducer, 1}, {8, SingleProducer, 2},
		{256, SingleProducer, 64}, {4096, SingleProducer, 1024}, {65536, SingleProducer, 1024}, {1 << 30, SingleProducer, 1024},
		{1, MultiProducer, 1}, {256, MultiProducer, 256}, {65536, MultiProducer, 65536},
	} {
		if got := DefaultMaxBatch(tc.ring, tc.producer); got != tc.want {
			t.Errorf("DefaultMaxBatch(%d, %v) = %d, want %d", tc.ring, tc.producer, got, tc.want)
		}
	}
	// The bound applies to a single-producer ring when no option sets one,
	// and WithMaxBatchSize of the ring size lifts it: a backlog published
	// before Start comes in batches of at most a quarter of this 256-slot
	// ring, or at once (and at once on a multi-producer ring).
	for _, tc := range []struct {
		opts []Option
		want int64
	}{
		{[]Option{WithProducerType(SingleProducer)}, 64},
		{[]Option{WithProducerType(SingleProducer), WithMaxBatchSize(256)}, 200},
		{[]Option{WithProducerType(MultiProducer)}, 200},
	} {
		d, _ := New(newItem, 256, tc.opts...)
		l := &lifecycle{}
		d.HandleEventsWith(l)
		if err := d.RingBuffer().PublishEvents(200, func(*item, int64) {}); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		shutdown(t, d)
		if got := l.maxBatch.Load(); got != tc.want {
			t.Errorf("options %d: largest batch %d, want %d", len(tc.opts), got, tc.want)
		}
	}
}

type timeoutHandler struct{ timeouts atomic.Int64 }

func (h *timeoutHandler) OnEvent(*item, int64, bool) error { return nil }
func (h *timeoutHandler) OnTimeout(int64) error            { h.timeouts.Add(1); return nil }

func TestTimeoutBlocking(t *testing.T) {
	d, _ := New(newItem, 16, WithWaitStrategy(NewTimeoutBlockingWaitStrategy(2*time.Millisecond)))
	h := &timeoutHandler{}
	d.HandleEventsWith(h)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.timeouts.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	shutdown(t, d)
	if h.timeouts.Load() < 3 {
		t.Fatalf("OnTimeout called %d times", h.timeouts.Load())
	}
}

// TestBlockingNoLostWakeups publishes single events with pauses so the
// consumer parks between them; each must be seen promptly.
func TestBlockingNoLostWakeups(t *testing.T) {
	for _, name := range []string{"blocking", "lite-blocking", "phased-backoff"} {
		t.Run(name, func(t *testing.T) {
			ws, _ := ParseWaitStrategy(name)
			d, _ := New(newItem, 64, WithWaitStrategy(ws), WithProducerType(SingleProducer))
			h := &sumCounter{}
			d.HandleEventsWith(h)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			seq := d.SequenceOf(h)
			for i := int64(0); i < 300; i++ {
				_ = d.RingBuffer().PublishEvent(func(*item, int64) {})
				deadline := time.Now().Add(5 * time.Second)
				for seq.Get() < i {
					if time.Now().After(deadline) {
						t.Fatalf("event %d not consumed: lost wake-up", i)
					}
					time.Sleep(10 * time.Microsecond)
				}
			}
			shutdown(t, d)
		})
	}
}

type sumCounter struct{ n int64 }

func (s *sumCounter) OnEvent(*item, int64, bool) error { s.n++; return nil }

func TestPoller(t *testing.T) {
	rb, _ := NewRingBuffer(32, newItem, MultiProducer, nil)
	p := rb.NewPoller()
	defer p.Close()
	st, err := p.Poll(func(*item, int64, bool) (bool, error) { return true, nil })
	if err != nil || st != PollIdle {
		t.Fatalf("empty poll: %v %v", st, err)
	}
	for i := 0; i < 5; i++ {
		_ = rb.PublishEvent(func(e *item, seq int64) { e.n = seq * 10 })
	}
	var got []int64
	st, err = p.Poll(func(e *item, seq int64, end bool) (bool, error) {
		got = append(got, e.n)
		return seq < 2, nil
	})
	if err != nil || st != PollProcessing || len(got) != 3 {
		t.Fatalf("poll: %v %v %v", st, err, got)
	}
	st, _ = p.Poll(func(e *item, seq int64, end bool) (bool, error) { got = append(got, e.n); return true, nil })
	if st != PollProcessing || len(got) != 5 || got[4] != 40 {
		t.Fatalf("second poll: %v %v", st, got)
	}
	// A poller behind another one reports gating.
	q := rb.NewPoller(p.Sequence())
	defer q.Close()
	_ = rb.PublishEvent(func(*item, int64) {})
	if st, _ := q.Poll(func(*item, int64, bool) (bool, error) { return true, nil }); st != PollGating {
		t.Fatalf("dependent poller: %v, want gating", st)
	}
}

func TestPlanPinning(t *testing.T) {
	cores, err := PhysicalCores()
	if err != nil {
		t.Fatal(err)
	}
	if len(cores) == 0 {
		t.Fatal("no physical cores found")
	}
	if _, err := PlanPinning(len(cores)); err == nil {
		t.Fatal("pinning as many processors as cores accepted: would oversubscribe")
	}
	if len(cores) < 2 {
		t.Skip("one core: nothing can be pinned")
	}
	plan, err := PlanPinning(len(cores) - 1)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, p := range plan {
		if used[p.Core] {
			t.Fatalf("core %s used twice: %+v", p.Core, plan)
		}
		used[p.Core] = true
	}
	d, _ := New(newItem, 64, WithCPUPinning(true), WithWaitStrategy(NewBusySpinWaitStrategy()))
	h := &sumCounter{}
	d.HandleEventsWith(h)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	_ = d.RingBuffer().PublishEvents(10, func(*item, int64) {})
	shutdown(t, d)
	if h.n != 10 || len(d.PinDecisions()) != 1 || d.PinDecisions()[0].Err != "" {
		t.Fatalf("pinned run: n=%d decisions=%+v", h.n, d.PinDecisions())
	}
}

func TestPaddingReport(t *testing.T) {
	r := PaddingReport()
	if r.Pad != CacheLinePad || (r.CacheLine > 0 && r.Sufficient != (r.CacheLine <= CacheLinePad)) {
		t.Fatalf("report %+v", r)
	}
}

// TestBarrierMultiProducerHoles: on a multi-producer ring a barrier never
// hands out a slot that is claimed but not yet published, whatever the
// strategy (the non-parking ones wait on the slot itself), stops its scan
// at the first such slot, finds slots published out of claim order once
// the hole is filled, and still sees the right lap after the ring wrapped.
func TestBarrierMultiProducerHoles(t *testing.T) {
	for _, name := range WaitStrategyNames() {
		t.Run(name, func(t *testing.T) {
			ws, err := ParseWaitStrategy(name)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := NewRingBuffer[item](8, nil, MultiProducer, ws)
			consumer := NewSequence(InitialSequence)
			rb.AddGatingSequences(consumer)
			b := rb.NewBarrier()
			for lap := int64(0); lap < 3; lap++ {
				base := lap * 8
				hi, err := rb.NextN(3) // base .. base+2
				if err != nil || hi != base+2 {
					t.Fatalf("NextN(3) = %d, %v", hi, err)
				}
				rb.Publish(base)
				rb.Publish(base + 2)
				if got, err := b.WaitFor(base); err != nil || got != base {
					t.Fatalf("lap %d: WaitFor(%d) = %d, %v; want %d (hole at %d)", lap, base, got, err, base, base+1)
				}
				// A waiter on the hole gets it once it is published (the
				// parking strategies return below the hole until then,
				// as the processor's loop expects).
				done := make(chan int64)
				go func() {
					for {
						got, err := b.WaitFor(base + 1)
						if err != nil || got > base {
							if err != nil {
								got = -1
							}
							done <- got
							return
						}
						if got != base {
							done <- got
							return
						}
						runtime.Gosched()
					}
				}()
				time.Sleep(time.Millisecond)
				rb.Publish(base + 1)
				if got := <-done; got != base+2 {
					t.Fatalf("lap %d: WaitFor(%d) after the hole was filled = %d, want %d", lap, base+1, got, base+2)
				}
				hi, err = rb.NextN(5) // fill the lap
				if err != nil || hi != base+7 {
					t.Fatalf("NextN(5) = %d, %v", hi, err)
				}
				rb.PublishRange(base+3, base+7)
				if got, _ := b.WaitFor(base + 3); got != base+7 {
					t.Fatalf("lap %d: WaitFor(%d) = %d, want %d", lap, base+3, got, base+7)
				}
				consumer.Set(base + 7)
			}
			// A waiter on a slot nobody claims returns on alert.
			errc := make(chan error)
			go func() {
				_, err := b.WaitFor(24)
				for errors.Is(err, ErrTimeout) { // timeout-blocking
					_, err = b.WaitFor(24)
				}
				errc <- err
			}()
			time.Sleep(time.Millisecond)
			b.Alert()
			if err := <-errc; !errors.Is(err, ErrAlerted) {
				t.Fatalf("WaitFor after Alert: %v", err)
			}
		})
	}
}

// TestNextCtxWaitsForRoom: a NextCtx blocked on a full ring claims once a
// consumer frees room, and returns ErrHalted when the ring is halted while
// it waits (both sequencers, a parking and a non-parking strategy).
func TestNextCtxWaitsForRoom(t *testing.T) {
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		for _, name := range []string{"blocking", "yielding"} {
			t.Run(pt.String()+"/"+name, func(t *testing.T) {
				ws, _ := ParseWaitStrategy(name)
				d, _ := New(newItem, 8, WithProducerType(pt), WithWaitStrategy(ws))
				gate := make(chan struct{})
				var once sync.Once
				release := func() { once.Do(func() { close(gate) }) }
				defer release()
				d.HandleEventsWith(Handler(func(*item, int64, bool) error {
					<-gate
					return nil
				}))
				if err := d.Start(); err != nil {
					t.Fatal(err)
				}
				rb := d.RingBuffer()
				if err := rb.PublishEvents(8, func(*item, int64) {}); err != nil {
					t.Fatal(err)
				}
				got := make(chan error, 1)
				go func() {
					hi, err := rb.NextCtx(context.Background(), 2)
					if err == nil {
						rb.PublishRange(hi-1, hi)
						if hi != 9 {
							err = fmt.Errorf("claimed up to %d, want 9", hi)
						}
					}
					got <- err
				}()
				time.Sleep(5 * time.Millisecond) // let it reach the parker
				release()
				if err := <-got; err != nil {
					t.Fatalf("NextCtx after the consumer freed room: %v", err)
				}
				shutdown(t, d)

				// Halt while a NextCtx waits on a full ring.
				ws2, _ := ParseWaitStrategy(name)
				rb2, _ := NewRingBuffer[item](8, nil, pt, ws2)
				rb2.AddGatingSequences(NewSequence(InitialSequence)) // never advances
				if err := rb2.PublishEvents(8, func(*item, int64) {}); err != nil {
					t.Fatal(err)
				}
				go func() {
					_, err := rb2.NextCtx(context.Background(), 1)
					got <- err
				}()
				time.Sleep(5 * time.Millisecond)
				rb2.Halt()
				if err := <-got; !errors.Is(err, ErrHalted) {
					t.Fatalf("NextCtx on a halted ring: %v", err)
				}
			})
		}
	}
}

// batchRecorder is a BatchHandler that records every call and every
// sequence it handles, fails as failAt says and panics at panicAt.
type batchRecorder struct {
	mu       sync.Mutex
	calls    [][2]int64 // lo, hi of each call
	ends     []bool
	handled  []int64
	failAt   map[int64]bool
	panicAt  int64
	panicked bool
}

func (h *batchRecorder) OnEvent(*item, int64, bool) error {
	return errors.New("OnEvent called on a BatchHandler")
}

func (h *batchRecorder) OnBatch(events []item, lo int64, end bool) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, [2]int64{lo, lo + int64(len(events)) - 1})
	h.ends = append(h.ends, end)
	for i := range events {
		seq := lo + int64(i)
		if events[i].n != seq {
			return i, fmt.Errorf("events[%d] holds %d, want %d", i, events[i].n, seq)
		}
		if seq == h.panicAt && !h.panicked {
			h.panicked = true
			panic("batch boom")
		}
		if h.failAt[seq] {
			delete(h.failAt, seq)
			return i, errors.New("batch failure")
		}
		h.handled = append(h.handled, seq)
	}
	return len(events), nil
}

func TestBatchHandler(t *testing.T) {
	const n = 100
	run := func(t *testing.T, h *batchRecorder, exh ExceptionHandler[item], n int) *Disruptor[item] {
		t.Helper()
		// A 16-slot ring that the producer keeps full, so that the
		// processor hands over batches of up to 16 events.
		d, _ := New(newItem, 16, WithProducerType(SingleProducer), WithMaxBatchSize(16))
		d.HandleEventsWith(h)
		if exh != nil {
			if err := d.HandleExceptionsFor(h, exh); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := d.RingBuffer().PublishEvent(func(e *item, seq int64) { e.n = seq }); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	t.Run("a batch that wraps around the ring comes in two calls", func(t *testing.T) {
		rb, _ := NewRingBuffer(16, newItem, SingleProducer, nil)
		for seq := int64(12); seq <= 19; seq++ {
			rb.Get(seq).n = seq
		}
		h := &batchRecorder{panicAt: -1}
		p := NewBatchEventProcessor(rb, rb.NewBarrier(), EventHandler[item](h), nil, 0)
		if failed, err := p.processBatch(12, 19); err != nil {
			t.Fatalf("processBatch failed at %d: %v", failed, err)
		}
		if want := [][2]int64{{12, 15}, {16, 19}}; !slices.Equal(h.calls, want) || !slices.Equal(h.ends, []bool{false, true}) {
			t.Fatalf("calls %v ends %v, want %v and [false true]", h.calls, h.ends, want)
		}
	})
	t.Run("an out-of-range handled index counts as the nearest event", func(t *testing.T) {
		rb, _ := NewRingBuffer(16, newItem, SingleProducer, nil)
		for _, tc := range []struct{ handled, want int64 }{{-5, 4}, {0, 4}, {2, 6}, {3, 7}, {4, 7}, {99, 7}} {
			h := &badIndex{handled: int(tc.handled)}
			p := NewBatchEventProcessor(rb, rb.NewBarrier(), EventHandler[item](h), nil, 0)
			failed, err := p.processBatch(4, 7)
			if err == nil || failed != tc.want {
				t.Errorf("OnBatch returning %d: failed at %d (%v), want %d", tc.handled, failed, err, tc.want)
			}
		}
	})
	t.Run("every event once, in order", func(t *testing.T) {
		h := &batchRecorder{panicAt: -1}
		d := run(t, h, nil, n)
		shutdown(t, d)
		if len(h.handled) != n {
			t.Fatalf("handled %d events, want %d", len(h.handled), n)
		}
		for i, seq := range h.handled {
			if seq != int64(i) {
				t.Fatalf("handled[%d] = %d", i, seq)
			}
		}
		for i, c := range h.calls {
			if c[0]&15 > c[1]&15 {
				t.Fatalf("call %d (%d..%d) wraps around the ring", i, c[0], c[1])
			}
			if i > 0 && c[0] != h.calls[i-1][1]+1 {
				t.Fatalf("call %d starts at %d after %d", i, c[0], h.calls[i-1][1])
			}
			if !h.ends[i] && c[1]&15 != 15 {
				t.Fatalf("call %d (%d..%d) not at the end of the ring yet not the end of its batch", i, c[0], c[1])
			}
		}
		if !h.ends[len(h.ends)-1] {
			t.Fatal("the last call is not the end of a batch")
		}
	})
	t.Run("errors and a panic go to the exception handler at their sequence", func(t *testing.T) {
		h := &batchRecorder{failAt: map[int64]bool{7: true, 40: true}, panicAt: 20}
		rec := &recordingExh{}
		d := run(t, h, rec, n)
		shutdown(t, d)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.seqs) != 3 || rec.seqs[0] != 7 || rec.seqs[2] != 40 {
			t.Fatalf("exceptions at %v, want [7 <first of the panicking call> 40]", rec.seqs)
		}
		var pe *PanicError
		if !errors.As(rec.errs[1], &pe) || pe.Value != "batch boom" {
			t.Fatalf("second exception %v is not the panic", rec.errs[1])
		}
		// 7 and 40 are skipped; the panicking call counts as failed at
		// its first event, and the rest of that call is delivered again.
		seen := map[int64]int{}
		for _, seq := range h.handled {
			seen[seq]++
		}
		for seq := int64(0); seq < n; seq++ {
			switch {
			case seq == 7 || seq == 40:
				if seen[seq] != 0 {
					t.Fatalf("failed event %d handled %d times", seq, seen[seq])
				}
			case seq != rec.seqs[1] && seen[seq] == 0:
				t.Fatalf("event %d never handled", seq)
			}
		}
		if rec.seqs[1] > 20 {
			t.Fatalf("panic reported at %d, after the panicking event 20", rec.seqs[1])
		}
	})
	t.Run("fatal stop leaves the failing event unconsumed", func(t *testing.T) {
		h := &batchRecorder{failAt: map[int64]bool{33: true}, panicAt: -1}
		d := run(t, h, FatalStop[item]{Name: "batch"}, 40) // 7 left in the 16-slot ring
		waitStopped(t, d.ProcessorOf(h))
		if got := d.SequenceOf(h).Get(); got != 32 {
			t.Fatalf("stopped at %d, want 32", got)
		}
		d.Halt()
	})
}

func TestSlots(t *testing.T) {
	rb, _ := NewRingBuffer[item](8, nil, SingleProducer, nil)
	for _, tc := range []struct {
		lo, hi        int64
		first, second int
	}{
		{0, 0, 1, 0}, {0, 7, 8, 0}, {2, 5, 4, 0}, {6, 9, 2, 2}, {5, 12, 3, 5}, {8, 15, 8, 0}, {15, 16, 1, 1},
		{3, 2, 0, 0}, {0, 8, 0, 0}, {5, -5, 0, 0},
	} {
		first, second := rb.Slots(tc.lo, tc.hi)
		if len(first) != tc.first || len(second) != tc.second {
			t.Errorf("Slots(%d, %d): %d + %d entries, want %d + %d", tc.lo, tc.hi, len(first), len(second), tc.first, tc.second)
			continue
		}
		// The slices are the ring's slots, in sequence order, and capped so
		// that an append cannot spill into the next slot.
		seq := tc.lo
		for _, part := range [][]item{first, second} {
			if cap(part) != len(part) {
				t.Errorf("Slots(%d, %d): a part has cap %d for len %d", tc.lo, tc.hi, cap(part), len(part))
			}
			for i := range part {
				part[i].n = seq * 10
				if got := rb.Get(seq).n; got != seq*10 {
					t.Errorf("Slots(%d, %d): slot of %d reads %d through Get", tc.lo, tc.hi, seq, got)
				}
				seq++
			}
		}
	}
}

// badIndex is a BatchHandler that always fails, naming index handled.
type badIndex struct{ handled int }

func (h *badIndex) OnEvent(*item, int64, bool) error { return errors.New("OnEvent called") }

func (h *badIndex) OnBatch([]item, int64, bool) (int, error) {
	return h.handled, errors.New("batch failure")
}
