package disruptor

import (
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
)

// ProducerType selects the sequencer a ring buffer uses.
type ProducerType int

const (
	// SingleProducer is for rings published to by one goroutine at a time.
	// It claims without atomic read-modify-write instructions.
	SingleProducer ProducerType = iota
	// MultiProducer is safe for any number of concurrent publishers: one
	// atomic add per claim, availability tracked per slot by lap number.
	MultiProducer
)

// String returns "single" or "multi".
func (p ProducerType) String() string {
	if p == MultiProducer {
		return "multi"
	}
	return "single"
}

// sequencer is the claim/publish protocol shared by both producer types.
type sequencer interface {
	next(n int64) (int64, error)
	tryNext(n int64) (int64, error)
	publish(lo, hi int64)
	isAvailable(seq int64) bool
	highestPublished(lo, available int64) int64
	remainingCapacity() int64
	// claimedCursor is the highest sequence claimed so far (for a single
	// producer, only its own goroutine may ask).
	claimedCursor() int64
}

// gating holds the consumer sequences that the producers must not overtake.
// The set may change at run time (copy on write).
type gating struct {
	seqs atomic.Pointer[[]*Sequence]
}

func (g *gating) min(def int64) int64 {
	p := g.seqs.Load()
	if p == nil {
		return def
	}
	return minimumSequence(*p, def)
}

func (g *gating) add(cursor int64, ss ...*Sequence) {
	for {
		old := g.seqs.Load()
		var cur []*Sequence
		if old != nil {
			cur = *old
		}
		next := make([]*Sequence, 0, len(cur)+len(ss))
		next = append(next, cur...)
		for _, s := range ss {
			s.Set(cursor)
			next = append(next, s)
		}
		if g.seqs.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (g *gating) remove(s *Sequence) bool {
	for {
		old := g.seqs.Load()
		if old == nil {
			return false
		}
		next := make([]*Sequence, 0, len(*old))
		found := false
		for _, x := range *old {
			if x == s {
				found = true
				continue
			}
			next = append(next, x)
		}
		if !found {
			return false
		}
		if g.seqs.CompareAndSwap(old, &next) {
			return true
		}
	}
}

// sequencerCore holds what both sequencers share.
type sequencerCore struct {
	bufferSize int64
	ws         WaitStrategy
	cursor     *Sequence
	gating     *gating
	// closed refuses new claims (Shutdown); halted also aborts claims
	// that are waiting for capacity (Halt).
	closed *atomic.Bool
	halted *atomic.Bool
	// relaxed is true when the wait strategy never parks, so publishing
	// needs no signal and the cursor may be stored with release semantics
	// only (see Sequence.SetRelease). Parking strategies need the
	// sequentially consistent store: their no-lost-wake-up argument is a
	// store followed by a load on each side.
	relaxed bool
	// room is where producers wait for a full ring to drain, whatever the
	// wait strategy: every consumer signals it after each batch (a load
	// of one flag when nobody waits). It replaced a 20 µs sleep, which
	// the Go runtime rounds up to about 1 ms when the P has nothing else
	// to run: producers slept that long while holding claimed slots,
	// and the consumers stopped at those slots.
	room *parker
}

// nonParking is implemented by the built-in strategies that never park a
// waiter, so their SignalAllWhenBlocking does nothing.
type nonParking interface{ neverParks() }

func isRelaxed(ws WaitStrategy) bool {
	_, ok := ws.(nonParking)
	return ok
}

// backoff is the producer-side wait used while the ring is full: spin, then
// yield, then sleep in short steps. It returns ErrHalted once the ring is
// halted.
type backoff struct{ n int }

// step spins for the first 63 rounds and yields for the next 64; after
// that it reports that the caller should park.
func (b *backoff) step() (park bool) {
	b.n++
	switch {
	case b.n < 64:
		spinPause()
	case b.n < 128:
		runtime.Gosched()
	default:
		return true
	}
	return false
}

// waitCapacity is one round of a producer's wait for wrapPoint to be
// consumed: spin, then yield, then park on the ring's room parker, which
// consumers signal after each batch.
func (b *backoff) waitCapacity(c *sequencerCore, def, wrapPoint int64) error {
	if c.halted.Load() {
		return ErrHalted
	}
	if b.step() {
		c.room.parkForCapacity(c.gating, def, wrapPoint, c.halted)
	}
	return nil
}

// singleProducerSequencer is not safe for concurrent claims. Its fields are
// padded away from the cursor because only the producer touches them.
type singleProducerSequencer struct {
	sequencerCore
	_           [CacheLinePad]byte
	nextValue   int64
	cachedValue int64
	_           [CacheLinePad - 16]byte
	// pending is the highest sequence claimed through the slow path (ring
	// full); Shutdown drains up to it as well as to the cursor.
	pending *Sequence
}

// claim is next's common case, small enough for the compiler to inline
// into the ring's claim path: n is in range, the ring is open and the
// cached gating sequence already shows room. ok is false when next must
// decide (and report a bad n, a closed ring or a full one).
func (s *singleProducerSequencer) claim(n int64) (hi int64, ok bool) {
	hi = s.nextValue + n
	if n < 1 || n > s.bufferSize || hi-s.bufferSize > s.cachedValue || s.cachedValue > s.nextValue || s.closed.Load() {
		return 0, false
	}
	s.nextValue = hi
	return hi, true
}

func (s *singleProducerSequencer) next(n int64) (int64, error) {
	if n < 1 || n > s.bufferSize {
		return 0, fmt.Errorf("disruptor: claim of %d slots outside 1..%d", n, s.bufferSize)
	}
	if s.closed.Load() {
		return 0, ErrHalted
	}
	nextValue := s.nextValue
	nextSeq := nextValue + n
	wrapPoint := nextSeq - s.bufferSize
	if cached := s.cachedValue; wrapPoint > cached || cached > nextValue {
		// Slow path: the ring looks full. Announce the claim so that a
		// concurrent Shutdown drains up to it, then re-check closed: the
		// store and the load here pair with Close's store and Shutdown's
		// load of pending (both sequentially consistent), so either this
		// claim is refused or Shutdown waits for it.
		if s.pending.Get() < nextSeq {
			s.pending.Set(nextSeq)
		}
		if s.closed.Load() {
			return 0, ErrHalted
		}
		var b backoff
		var minSeq int64
		for {
			minSeq = s.gating.min(nextValue)
			if wrapPoint <= minSeq {
				break
			}
			if err := b.waitCapacity(&s.sequencerCore, nextValue, wrapPoint); err != nil {
				return 0, err
			}
		}
		s.cachedValue = minSeq
	}
	s.nextValue = nextSeq
	return nextSeq, nil
}

func (s *singleProducerSequencer) hasCapacity(n int64) bool {
	nextValue := s.nextValue
	wrapPoint := nextValue + n - s.bufferSize
	if cached := s.cachedValue; wrapPoint > cached || cached > nextValue {
		minSeq := s.gating.min(nextValue)
		s.cachedValue = minSeq
		if wrapPoint > minSeq {
			return false
		}
	}
	return true
}

func (s *singleProducerSequencer) tryNext(n int64) (int64, error) {
	if n < 1 || n > s.bufferSize {
		return 0, fmt.Errorf("disruptor: claim of %d slots outside 1..%d", n, s.bufferSize)
	}
	if s.closed.Load() {
		return 0, ErrHalted
	}
	if !s.hasCapacity(n) {
		return 0, ErrInsufficientCapacity
	}
	s.nextValue += n
	return s.nextValue, nil
}

func (s *singleProducerSequencer) publish(_, hi int64) {
	if s.relaxed {
		s.cursor.SetRelease(hi)
		return
	}
	s.cursor.Set(hi)
	s.ws.SignalAllWhenBlocking()
}

func (s *singleProducerSequencer) isAvailable(seq int64) bool {
	cur := s.cursor.Get()
	return seq <= cur && seq > cur-s.bufferSize
}

func (s *singleProducerSequencer) highestPublished(_, available int64) int64 { return available }

// remainingCapacity is computed from the published cursor, not the
// producer-private claim counter, so any goroutine may call it.
func (s *singleProducerSequencer) claimedCursor() int64 { return s.nextValue }

func (s *singleProducerSequencer) remainingCapacity() int64 {
	produced := s.cursor.Get()
	consumed := s.gating.min(produced)
	return s.bufferSize - (produced - consumed)
}

// multiProducerSequencer lets any number of goroutines claim and publish.
// The cursor is the highest claimed sequence; availableBuffer[i] holds the
// lap number (seq >> indexShift) of the last publish into slot i.
type multiProducerSequencer struct {
	sequencerCore
	gatingCache     *Sequence
	availableBuffer []atomic.Int32
	indexMask       int64
	indexShift      uint
}

func newMultiProducerSequencer(core sequencerCore) *multiProducerSequencer {
	m := &multiProducerSequencer{
		sequencerCore:   core,
		gatingCache:     NewSequence(InitialSequence),
		availableBuffer: make([]atomic.Int32, core.bufferSize),
		indexMask:       core.bufferSize - 1,
		indexShift:      uint(bits.TrailingZeros64(uint64(core.bufferSize))),
	}
	for i := range m.availableBuffer {
		m.availableBuffer[i].Store(-1)
	}
	return m
}

func (m *multiProducerSequencer) next(n int64) (int64, error) {
	if n < 1 || n > m.bufferSize {
		return 0, fmt.Errorf("disruptor: claim of %d slots outside 1..%d", n, m.bufferSize)
	}
	if m.closed.Load() {
		return 0, ErrHalted
	}
	current := m.cursor.Add(n) - n
	nextSeq := current + n
	wrapPoint := nextSeq - m.bufferSize
	if cached := m.gatingCache.Get(); wrapPoint > cached || cached > current {
		var b backoff
		var gatingSeq int64
		for {
			gatingSeq = m.gating.min(current)
			if wrapPoint <= gatingSeq {
				break
			}
			// The claim is made; giving up leaves a hole, which is only
			// acceptable because a halted ring is never consumed again.
			// Shutdown only closes the ring, so claims already made get
			// their capacity as the consumers drain.
			if err := b.waitCapacity(&m.sequencerCore, current, wrapPoint); err != nil {
				return 0, err
			}
		}
		m.gatingCache.Set(gatingSeq)
	}
	return nextSeq, nil
}

func (m *multiProducerSequencer) hasCapacity(n, cursorValue int64) bool {
	wrapPoint := cursorValue + n - m.bufferSize
	if cached := m.gatingCache.Get(); wrapPoint > cached || cached > cursorValue {
		minSeq := m.gating.min(cursorValue)
		m.gatingCache.Set(minSeq)
		if wrapPoint > minSeq {
			return false
		}
	}
	return true
}

func (m *multiProducerSequencer) tryNext(n int64) (int64, error) {
	if n < 1 || n > m.bufferSize {
		return 0, fmt.Errorf("disruptor: claim of %d slots outside 1..%d", n, m.bufferSize)
	}
	for {
		if m.closed.Load() {
			return 0, ErrHalted
		}
		current := m.cursor.Get()
		if !m.hasCapacity(n, current) {
			return 0, ErrInsufficientCapacity
		}
		if m.cursor.CompareAndSet(current, current+n) {
			return current + n, nil
		}
	}
}

func (m *multiProducerSequencer) publish(lo, hi int64) {
	// Release stores suffice for the slots: consumers only park on the
	// cursor, which next() advanced with a sequentially consistent add
	// before this publish, so the wake-up handshake does not depend on
	// the order of these stores.
	for seq := lo; seq <= hi; seq++ {
		setAvailable(&m.availableBuffer[seq&m.indexMask], int32(seq>>m.indexShift))
	}
	if !m.relaxed {
		m.ws.SignalAllWhenBlocking()
	}
}

func (m *multiProducerSequencer) isAvailable(seq int64) bool {
	return m.availableBuffer[seq&m.indexMask].Load() == int32(seq>>m.indexShift)
}

// holeSpins is how many times a consumer facing a slot that is claimed but
// not yet published re-checks it, with a PAUSE hint in between, before it
// yields. A producer that is running publishes within nanoseconds of its
// claim; one that was descheduled between claim and publish needs the
// consumer to yield. (3P1C on the 2-vCPU development VM, blocking strategy:
// 64 spins gave 2.2x the channel's rate, yielding at once 1.7x.)
const holeSpins = 64

// spinUntilPublished waits a little for seq to be published and reports
// whether it was.
func (m *multiProducerSequencer) spinUntilPublished(seq int64) bool {
	for i := 0; i < holeSpins; i++ {
		spinPause()
		if m.isAvailable(seq) {
			return true
		}
	}
	return false
}

func (m *multiProducerSequencer) highestPublished(lo, available int64) int64 {
	for seq := lo; seq <= available; seq++ {
		if !m.isAvailable(seq) {
			return seq - 1
		}
	}
	return available
}

func (m *multiProducerSequencer) claimedCursor() int64 { return m.cursor.Get() }

func (m *multiProducerSequencer) remainingCapacity() int64 {
	produced := m.cursor.Get()
	consumed := m.gating.min(produced)
	return m.bufferSize - (produced - consumed)
}

// nextCtx claims n slots, waiting while the ring is full until ctx ends.
// It never leaves a hole: it only claims once the capacity is there. It
// waits like a blocked claim (spin, yield, then park on the ring's room
// parker, which consumers signal after each batch), parking one round at a
// time so that it sees ctx end within the parker's tick (1 ms).
func nextCtx(ctx context.Context, s sequencer, c *sequencerCore, n int64) (int64, error) {
	var b backoff
	for {
		hi, err := s.tryNext(n)
		if err != ErrInsufficientCapacity {
			return hi, err
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("disruptor: waiting for %d free slots: %w", n, err)
		}
		if c.halted.Load() {
			return 0, ErrHalted
		}
		if b.step() {
			claimed := s.claimedCursor()
			c.room.parkOnce(c.gating, claimed, claimed+n-c.bufferSize, c.halted)
		}
	}
}
