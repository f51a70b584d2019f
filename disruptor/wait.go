package disruptor

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Alerter is what a wait strategy polls to learn that it must stop waiting.
// [SequenceBarrier] implements it.
type Alerter interface {
	// CheckAlert returns [ErrAlerted] once the barrier was alerted.
	CheckAlert() error
}

// WaitStrategy decides how a consumer waits for a sequence to become
// available. Implementations must be safe for concurrent use.
type WaitStrategy interface {
	// WaitFor waits until dependents.Get() >= seq and returns that value,
	// which may be larger than seq. cursor is the ring's cursor, which the
	// dependents never exceed. It returns ErrAlerted when alert fires, or
	// ErrTimeout for strategies with a timeout.
	WaitFor(seq int64, cursor *Sequence, dependents SequenceGroup, alert Alerter) (int64, error)
	// SignalAllWhenBlocking wakes waiters parked by a blocking strategy. It
	// is called after every publish and after every consumer batch, so it
	// must be cheap when nobody waits.
	SignalAllWhenBlocking()
}

// ParseWaitStrategy returns a fresh strategy by its configuration name:
// "blocking", "yielding", "busy-spin", "sleeping" (the seed's four), and
// "lite-blocking", "timeout-blocking" (1 ms) and "phased-backoff"
// (spin 10 µs, yield 100 µs, then lite-blocking).
func ParseWaitStrategy(name string) (WaitStrategy, error) {
	switch name {
	case "blocking":
		return NewBlockingWaitStrategy(), nil
	case "yielding":
		return NewYieldingWaitStrategy(), nil
	case "busy-spin":
		return NewBusySpinWaitStrategy(), nil
	case "sleeping":
		return NewSleepingWaitStrategy(), nil
	case "lite-blocking":
		return NewLiteBlockingWaitStrategy(), nil
	case "timeout-blocking":
		return NewTimeoutBlockingWaitStrategy(time.Millisecond), nil
	case "phased-backoff":
		return NewPhasedBackoffWaitStrategy(10*time.Microsecond, 100*time.Microsecond, NewLiteBlockingWaitStrategy()), nil
	}
	return nil, fmt.Errorf("disruptor: unknown wait strategy %q (want blocking, yielding, busy-spin, sleeping, lite-blocking, timeout-blocking or phased-backoff)", name)
}

// WaitStrategyNames lists the names ParseWaitStrategy accepts.
func WaitStrategyNames() []string {
	return []string{"blocking", "yielding", "busy-spin", "sleeping", "lite-blocking", "timeout-blocking", "phased-backoff"}
}

// busySpinPauses is how many PAUSE hints a busy-spin waiter issues between
// two reads of the sequence it waits on: fewer reads of the cursor's cache
// line leave the producer more time to write it, but every PAUSE (about
// 10 ns on the development VM's EPYC) delays noticing a publish. Measured
// on that 2-vCPU VM, 12 alternating rounds: 2 beat 4 for 1P1C busy-spin
// throughput (7.0 vs 7.6 ns/event single publish, 2.0 vs 2.5 batch-16)
// at the same one-hop p50 when the vCPUs share a cache (61-79 ns); when
// they do not, one-hop p50 was 266-275 ns with 0-2 pauses, 306 with 4 and
// 345 with 8.
const busySpinPauses = 2

// BusySpinWaitStrategy spins on the dependents. Lowest latency; burns a core
// per waiting consumer, so use it only with fewer consumers than cores.
type BusySpinWaitStrategy struct{}

// NewBusySpinWaitStrategy returns the busy-spin strategy.
func NewBusySpinWaitStrategy() *BusySpinWaitStrategy { return &BusySpinWaitStrategy{} }

// WaitFor implements WaitStrategy.
func (*BusySpinWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	for {
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		for i := 0; i < busySpinPauses; i++ {
			spinPause()
		}
	}
}

// SignalAllWhenBlocking implements WaitStrategy; it does nothing.
func (*BusySpinWaitStrategy) SignalAllWhenBlocking() {}

func (*BusySpinWaitStrategy) neverParks() {}

// YieldingWaitStrategy spins briefly, then yields the processor to other
// goroutines between checks. Low latency, but keeps a core busy at idle.
type YieldingWaitStrategy struct{ spinTries int }

// NewYieldingWaitStrategy returns the yielding strategy (100 spins, then
// runtime.Gosched).
func NewYieldingWaitStrategy() *YieldingWaitStrategy { return &YieldingWaitStrategy{spinTries: 100} }

// WaitFor implements WaitStrategy.
func (y *YieldingWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	counter := y.spinTries
	for {
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		if counter > 0 {
			counter--
			spinPause()
		} else {
			runtime.Gosched()
		}
	}
}

// SignalAllWhenBlocking implements WaitStrategy; it does nothing.
func (*YieldingWaitStrategy) SignalAllWhenBlocking() {}

func (y *YieldingWaitStrategy) waitSlot(mp *multiProducerSequencer, seq int64, alert Alerter) error {
	counter := y.spinTries
	for !mp.isAvailable(seq) {
		if err := alert.CheckAlert(); err != nil {
			return err
		}
		if counter > 0 {
			counter--
			spinPause()
		} else {
			runtime.Gosched()
		}
	}
	return nil
}

func (*YieldingWaitStrategy) neverParks() {}

// SleepingWaitStrategy spins, then yields, then sleeps for short periods. A
// compromise between latency and idle CPU.
type SleepingWaitStrategy struct {
	retries int
	sleep   time.Duration
}

// NewSleepingWaitStrategy returns the sleeping strategy (200 tries: 100
// spins, 100 yields, then 100 µs sleeps).
func NewSleepingWaitStrategy() *SleepingWaitStrategy {
	return &SleepingWaitStrategy{retries: 200, sleep: 100 * time.Microsecond}
}

// WaitFor implements WaitStrategy.
func (s *SleepingWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	counter := s.retries
	for {
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		counter = s.pause(counter)
	}
}

// pause is one round of the sleeping back-off: spin while counter > 100,
// yield while it is positive, then sleep. It returns the next counter.
func (s *SleepingWaitStrategy) pause(counter int) int {
	switch {
	case counter > 100:
		return counter - 1
	case counter > 0:
		runtime.Gosched()
		return counter - 1
	}
	time.Sleep(s.sleep)
	return 0
}

// SignalAllWhenBlocking implements WaitStrategy; it does nothing.
func (*SleepingWaitStrategy) SignalAllWhenBlocking() {}

func (s *SleepingWaitStrategy) waitSlot(mp *multiProducerSequencer, seq int64, alert Alerter) error {
	counter := s.retries
	for !mp.isAvailable(seq) {
		if err := alert.CheckAlert(); err != nil {
			return err
		}
		counter = s.pause(counter)
	}
	return nil
}

func (*SleepingWaitStrategy) neverParks() {}

// parker is the shared mutex/condition machinery of the blocking strategies.
// signalNeeded is raised by a waiter before each final check of its
// condition and lowered by the first signaller that sees it, so a producer
// publishing into a busy ring pays one atomic load, and a burst of publishes
// while a consumer wakes up pays for one broadcast, not one per publish.
// No wake-up is lost: the waiter raises the flag and then checks the
// condition under the lock; the signaller makes the condition true and then
// swaps the flag. Both are sequentially consistent atomics, so either the
// waiter sees the condition or the signaller sees the flag and broadcasts,
// under the lock, after the waiter has started waiting.
type parker struct {
	signalNeeded atomic.Bool
	mu           sync.Mutex
	cond         sync.Cond
	// tick re-checks parked producers now and then, for gating sequences
	// that are advanced by hand (AddGatingSequences) rather than by a
	// processor or poller, which signal, and for the race described at
	// parkForCapacity.
	tick *time.Timer
}

func (p *parker) init() {
	p.cond.L = &p.mu
	p.tick = time.AfterFunc(time.Hour, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	p.tick.Stop()
}

// parkForCapacity parks a producer until the slowest gating sequence
// reaches wrapPoint or the ring is halted. Consumers signal after each
// batch, so the producer wakes as soon as there is room; the tick bounds
// the wait when no consumer signals. Consumers of the non-parking
// strategies publish their progress with a release store only, which the
// CPU may order after their load of signalNeeded: in that rare race the
// wake-up is lost and the tick (1 ms) wakes the producer instead.
func (p *parker) parkForCapacity(g *gating, def, wrapPoint int64, halted *atomic.Bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		p.signalNeeded.Store(true)
		if halted.Load() || g.min(def) >= wrapPoint {
			return
		}
		p.tick.Reset(time.Millisecond)
		p.cond.Wait()
	}
}

// parkOnce is one round of parkForCapacity: it returns after one wake-up
// (a consumer's signal, Halt, or the tick), so that the caller can check
// a context between rounds.
func (p *parker) parkOnce(g *gating, def, wrapPoint int64, halted *atomic.Bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signalNeeded.Store(true)
	if halted.Load() || g.min(def) >= wrapPoint {
		return
	}
	p.tick.Reset(time.Millisecond)
	p.cond.Wait()
}

func (p *parker) signal() {
	if p.signalNeeded.Load() && p.signalNeeded.Swap(false) {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// park waits under the lock until deps reach seq, an alert fires, or
// deadline passes (zero deadline: no timeout).
func (p *parker) park(seq int64, deps SequenceGroup, alert Alerter, deadline time.Time) (int64, error) {
	var timer *time.Timer
	if !deadline.IsZero() {
		timer = time.AfterFunc(time.Until(deadline), func() {
			p.mu.Lock()
			p.cond.Broadcast()
			p.mu.Unlock()
		})
		defer timer.Stop()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		p.signalNeeded.Store(true)
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, ErrTimeout
		}
		p.cond.Wait()
	}
}

// slotWaiter is implemented by the strategies that poll without parking:
// a consumer of a multi-producer ring that depends on nothing but the
// cursor waits for its next slot to be published by polling that slot
// (written once per publish) instead of the cursor (written by every
// claim). A slot claimed but not yet published is waited for the same way,
// yielding to the producer that holds it. Parking strategies keep waiting
// on the cursor: their wake-up handshake needs its sequentially consistent
// update.
type slotWaiter interface {
	waitSlot(mp *multiProducerSequencer, seq int64, alert Alerter) error
}

// BlockingWaitStrategy parks waiting consumers on a condition variable and
// wakes them on publish and on consumer progress. CPU use at idle is zero;
// wake-up latency is that of the Go scheduler (microseconds).
type BlockingWaitStrategy struct {
	p parker
}

// NewBlockingWaitStrategy returns the blocking strategy.
func NewBlockingWaitStrategy() *BlockingWaitStrategy {
	b := &BlockingWaitStrategy{}
	b.p.init()
	return b
}

// WaitFor implements WaitStrategy.
func (b *BlockingWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	if v := deps.Get(); v >= seq {
		return v, nil
	}
	return b.p.park(seq, deps, alert, time.Time{})
}

// SignalAllWhenBlocking implements WaitStrategy.
func (b *BlockingWaitStrategy) SignalAllWhenBlocking() { b.p.signal() }

// LiteBlockingWaitStrategy spins briefly before parking, which saves the
// park/wake round trip when events arrive back to back.
type LiteBlockingWaitStrategy struct {
	p     parker
	spins int
}

// NewLiteBlockingWaitStrategy returns the lite-blocking strategy (64 spins
// with a yield each, then park).
func NewLiteBlockingWaitStrategy() *LiteBlockingWaitStrategy {
	l := &LiteBlockingWaitStrategy{spins: 64}
	l.p.init()
	return l
}

// WaitFor implements WaitStrategy.
func (l *LiteBlockingWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	for i := 0; i < l.spins; i++ {
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		runtime.Gosched()
	}
	return l.p.park(seq, deps, alert, time.Time{})
}

// SignalAllWhenBlocking implements WaitStrategy.
func (l *LiteBlockingWaitStrategy) SignalAllWhenBlocking() { l.p.signal() }

// TimeoutBlockingWaitStrategy parks like the blocking strategy but returns
// ErrTimeout after the timeout, so that processors can call OnTimeout
// (for example to flush a partial window).
type TimeoutBlockingWaitStrategy struct {
	p       parker
	timeout time.Duration
}

// NewTimeoutBlockingWaitStrategy returns a blocking strategy with a timeout.
func NewTimeoutBlockingWaitStrategy(timeout time.Duration) *TimeoutBlockingWaitStrategy {
	t := &TimeoutBlockingWaitStrategy{timeout: timeout}
	t.p.init()
	return t
}

// WaitFor implements WaitStrategy.
func (t *TimeoutBlockingWaitStrategy) WaitFor(seq int64, _ *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	if v := deps.Get(); v >= seq {
		return v, nil
	}
	return t.p.park(seq, deps, alert, time.Now().Add(t.timeout))
}

// SignalAllWhenBlocking implements WaitStrategy.
func (t *TimeoutBlockingWaitStrategy) SignalAllWhenBlocking() { t.p.signal() }

// PhasedBackoffWaitStrategy spins for spinFor, yields until yieldFor has
// passed, then hands over to a fallback strategy (usually a blocking one).
type PhasedBackoffWaitStrategy struct {
	spinFor, yieldFor time.Duration
	fallback          WaitStrategy
}

// NewPhasedBackoffWaitStrategy returns a phased back-off strategy.
func NewPhasedBackoffWaitStrategy(spinFor, yieldFor time.Duration, fallback WaitStrategy) *PhasedBackoffWaitStrategy {
	return &PhasedBackoffWaitStrategy{spinFor: spinFor, yieldFor: yieldFor, fallback: fallback}
}

// WaitFor implements WaitStrategy.
func (p *PhasedBackoffWaitStrategy) WaitFor(seq int64, cursor *Sequence, deps SequenceGroup, alert Alerter) (int64, error) {
	var start time.Time
	for counter := 0; ; counter++ {
		if v := deps.Get(); v >= seq {
			return v, nil
		}
		if err := alert.CheckAlert(); err != nil {
			return 0, err
		}
		if counter%64 != 63 {
			continue
		}
		if start.IsZero() {
			start = time.Now()
			continue
		}
		elapsed := time.Since(start)
		switch {
		case elapsed > p.yieldFor:
			return p.fallback.WaitFor(seq, cursor, deps, alert)
		case elapsed > p.spinFor:
			runtime.Gosched()
		}
	}
}

// SignalAllWhenBlocking implements WaitStrategy.
func (p *PhasedBackoffWaitStrategy) SignalAllWhenBlocking() { p.fallback.SignalAllWhenBlocking() }
