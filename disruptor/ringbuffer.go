package disruptor

import (
	"context"
	"fmt"
	"sync/atomic"
)

// RingBuffer owns size preallocated entries of T and the sequencer that
// coordinates producers with the consumers gating them. Entries are reused:
// a producer claims a sequence, fills the entry in place, then publishes.
type RingBuffer[T any] struct {
	_        [CacheLinePad]byte
	entries  []T
	mask     int64
	seqr     sequencer
	sp       *singleProducerSequencer // exactly one of sp and mp is set:
	mp       *multiProducerSequencer  // the hot paths branch instead of an interface call
	core     *sequencerCore
	producer ProducerType
	closed   atomic.Bool
	halted   atomic.Bool
	_        [CacheLinePad]byte
}

// NewRingBuffer returns a ring of size entries, each built once by factory
// (nil factory: zero values). size must be a power of two.
func NewRingBuffer[T any](size int, factory func() T, producer ProducerType, ws WaitStrategy) (*RingBuffer[T], error) {
	if size < 1 || size&(size-1) != 0 {
		return nil, fmt.Errorf("disruptor: buffer size %d is not a power of two (try %d)", size, nextPowerOfTwo(size))
	}
	if size > 1<<30 {
		return nil, fmt.Errorf("disruptor: buffer size %d exceeds the maximum of %d", size, 1<<30)
	}
	if ws == nil {
		ws = NewBlockingWaitStrategy()
	}
	r := &RingBuffer[T]{entries: make([]T, size), mask: int64(size - 1), producer: producer}
	if factory != nil {
		for i := range r.entries {
			r.entries[i] = factory()
		}
	}
	room := &parker{}
	room.init()
	core := sequencerCore{room: room, bufferSize: int64(size), ws: ws, cursor: NewSequence(InitialSequence), gating: &gating{}, closed: &r.closed, halted: &r.halted, relaxed: isRelaxed(ws)}
	switch producer {
	case SingleProducer:
		sp := &singleProducerSequencer{sequencerCore: core, nextValue: InitialSequence, cachedValue: InitialSequence, pending: NewSequence(InitialSequence)}
		r.seqr, r.sp, r.core = sp, sp, &sp.sequencerCore
	case MultiProducer:
		mp := newMultiProducerSequencer(core)
		r.seqr, r.mp, r.core = mp, mp, &mp.sequencerCore
	default:
		return nil, fmt.Errorf("disruptor: unknown producer type %d", producer)
	}
	return r, nil
}

func nextPowerOfTwo(n int) int {
	p := 1
	for p < n && p < 1<<30 {
		p <<= 1
	}
	return p
}

// Get returns the entry for seq. The pointer stays valid for the life of the
// ring; the entry is only stable while seq is claimed (producer) or between
// a barrier releasing it and the consumer's sequence passing it (consumer).
func (r *RingBuffer[T]) Get(seq int64) *T { return &r.entries[seq&r.mask] }

// Slots returns the entries of sequences lo..hi as one slice, or as two when
// the range wraps around the end of the ring (first, then second), so that
// a claimed batch can be filled, or a batch read, with plain loops over
// slices rather than a Get per event. The slices are the ring's own slots:
// fill them only between claiming lo..hi and publishing it. It returns nil
// slices when hi < lo or the range is longer than the ring.
func (r *RingBuffer[T]) Slots(lo, hi int64) (first, second []T) {
	n, size := hi-lo+1, int64(len(r.entries))
	if n < 1 || n > size {
		return nil, nil
	}
	i := lo & r.mask
	if end := i + n; end <= size {
		return r.entries[i:end:end], nil
	}
	rest := i + n - size
	return r.entries[i:size:size], r.entries[:rest:rest]
}

// Next claims the next slot, waiting while the ring is full. It returns
// ErrHalted once the ring is halted.
func (r *RingBuffer[T]) Next() (int64, error) { return r.next(1) }

func (r *RingBuffer[T]) next(n int64) (int64, error) {
	if sp := r.sp; sp != nil {
		if hi, ok := sp.claim(n); ok {
			return hi, nil
		}
		return sp.next(n)
	}
	return r.mp.next(n)
}

func (r *RingBuffer[T]) publish(lo, hi int64) {
	if sp := r.sp; sp != nil {
		// sp.publish's non-parking case, here so that it costs one call
		// (the release store) instead of two.
		if sp.relaxed {
			sp.cursor.SetRelease(hi)
			return
		}
		sp.publish(lo, hi)
		return
	}
	r.mp.publish(lo, hi)
}

// NextN claims n consecutive slots and returns the highest; the lowest is
// hi-n+1. It waits while the ring is full and returns ErrHalted once halted.
func (r *RingBuffer[T]) NextN(n int64) (int64, error) { return r.next(n) }

// NextCtx claims n slots, waiting while the ring is full until ctx is done
// (the context error is wrapped) or the ring is halted. It never claims a
// slot it then gives up, so a cancelled claim leaves no gap.
func (r *RingBuffer[T]) NextCtx(ctx context.Context, n int64) (int64, error) {
	return nextCtx(ctx, r.seqr, r.core, n)
}

// TryNext claims one slot or returns ErrInsufficientCapacity at once.
func (r *RingBuffer[T]) TryNext() (int64, error) { return r.seqr.tryNext(1) }

// TryNextN claims n slots or returns ErrInsufficientCapacity at once.
func (r *RingBuffer[T]) TryNextN(n int64) (int64, error) { return r.seqr.tryNext(n) }

// Publish makes the claimed seq visible to consumers.
func (r *RingBuffer[T]) Publish(seq int64) { r.publish(seq, seq) }

// PublishRange makes the claimed sequences lo..hi visible to consumers.
func (r *RingBuffer[T]) PublishRange(lo, hi int64) { r.publish(lo, hi) }

// PublishEvent claims a slot, lets fill write the entry, and publishes it.
func (r *RingBuffer[T]) PublishEvent(fill func(e *T, seq int64)) error {
	seq, err := r.next(1)
	if err != nil {
		return err
	}
	r.translateAndPublish(seq, seq, fill)
	return nil
}

// PublishEvents claims n slots, calls fill for each in order, and publishes
// them together.
func (r *RingBuffer[T]) PublishEvents(n int64, fill func(e *T, seq int64)) error {
	hi, err := r.next(n)
	if err != nil {
		return err
	}
	r.translateAndPublish(hi-n+1, hi, fill)
	return nil
}

// TryPublishEvent is PublishEvent that fails with ErrInsufficientCapacity
// instead of waiting.
func (r *RingBuffer[T]) TryPublishEvent(fill func(e *T, seq int64)) error {
	seq, err := r.seqr.tryNext(1)
	if err != nil {
		return err
	}
	r.translateAndPublish(seq, seq, fill)
	return nil
}

// TryPublishEvents is PublishEvents that fails with ErrInsufficientCapacity
// instead of waiting.
func (r *RingBuffer[T]) TryPublishEvents(n int64, fill func(e *T, seq int64)) error {
	hi, err := r.seqr.tryNext(n)
	if err != nil {
		return err
	}
	r.translateAndPublish(hi-n+1, hi, fill)
	return nil
}

// translateAndPublish publishes even if fill panics, so that consumers never
// wait forever on a claimed slot; the panic then continues.
func (r *RingBuffer[T]) translateAndPublish(lo, hi int64, fill func(e *T, seq int64)) {
	defer r.publish(lo, hi)
	for seq := lo; seq <= hi; seq++ {
		fill(&r.entries[seq&r.mask], seq)
	}
}

// IsAvailable reports whether seq has been published and not yet wrapped.
func (r *RingBuffer[T]) IsAvailable(seq int64) bool { return r.seqr.isAvailable(seq) }

// drainTarget is the highest sequence a drain must wait for: the cursor,
// or for a single producer blocked on a full ring, its pending claim.
func (r *RingBuffer[T]) drainTarget() int64 {
	c := r.core.cursor.Get()
	if r.sp != nil {
		if p := r.sp.pending.Get(); p > c {
			return p
		}
	}
	return c
}

// Cursor returns the producer cursor: the highest published sequence for a
// single-producer ring, the highest claimed one for a multi-producer ring.
func (r *RingBuffer[T]) Cursor() int64 { return r.core.cursor.Get() }

// CursorSequence returns the cursor itself, for barriers and waits.
func (r *RingBuffer[T]) CursorSequence() *Sequence { return r.core.cursor }

// RemainingCapacity returns how many slots can be claimed without waiting.
func (r *RingBuffer[T]) RemainingCapacity() int64 { return r.seqr.remainingCapacity() }

// BufferSize returns the number of entries.
func (r *RingBuffer[T]) BufferSize() int64 { return r.core.bufferSize }

// ProducerType returns the sequencer kind.
func (r *RingBuffer[T]) ProducerType() ProducerType { return r.producer }

// WaitStrategy returns the strategy consumers of this ring use.
func (r *RingBuffer[T]) WaitStrategy() WaitStrategy { return r.core.ws }

// AddGatingSequences adds consumer sequences the producers must not pass.
// Each is first set to the current cursor, so a late consumer starts at the
// next published event.
func (r *RingBuffer[T]) AddGatingSequences(seqs ...*Sequence) {
	r.core.gating.add(r.core.cursor.Get(), seqs...)
}

// RemoveGatingSequence stops s from gating the producers.
func (r *RingBuffer[T]) RemoveGatingSequence(s *Sequence) bool { return r.core.gating.remove(s) }

// MinimumGatingSequence returns the slowest gating sequence (the cursor if
// there is none).
func (r *RingBuffer[T]) MinimumGatingSequence() int64 {
	return r.core.gating.min(r.core.cursor.Get())
}

// NewBarrier returns a barrier that waits for the cursor and for every
// sequence in deps (consumers this one must stay behind).
func (r *RingBuffer[T]) NewBarrier(deps ...*Sequence) *SequenceBarrier {
	b := &SequenceBarrier{ws: r.core.ws, cursor: r.core.cursor, mp: r.mp}
	if len(deps) == 0 {
		b.deps = SequenceGroup{r.core.cursor}
		b.direct = r.mp != nil
		b.sw, _ = r.core.ws.(slotWaiter)
	} else {
		b.deps = append(SequenceGroup(nil), deps...)
	}
	return b
}

// Halt makes every current and future blocking claim return ErrHalted and
// wakes blocked waiters. It is permanent.
func (r *RingBuffer[T]) Halt() {
	r.closed.Store(true)
	r.halted.Store(true)
	r.signalProgress()
}

// signalProgress wakes parked consumers and producers parked for capacity.
func (r *RingBuffer[T]) signalProgress() {
	r.core.ws.SignalAllWhenBlocking()
	r.core.room.signal()
}

// Close refuses new claims (they return ErrHalted) while claims already
// made still complete. Shutdown closes the ring before it drains.
func (r *RingBuffer[T]) Close() { r.closed.Store(true) }

// Closed reports whether the ring refuses new claims (Close or Halt).
func (r *RingBuffer[T]) Closed() bool { return r.closed.Load() }

// Halted reports whether Halt was called.
func (r *RingBuffer[T]) Halted() bool { return r.halted.Load() }

// SequenceBarrier is what a consumer waits on: the ring's cursor and the
// sequences of the consumers it depends on.
type SequenceBarrier struct {
	ws     WaitStrategy
	cursor *Sequence
	deps   SequenceGroup
	mp     *multiProducerSequencer // nil for a single producer: everything up to the cursor is published
	// direct is set for a barrier on a multi-producer ring that waits on
	// the cursor alone: a published slot is then enough to go on.
	direct  bool
	sw      slotWaiter // the strategy's wait on a slot, if it has one
	alerted atomic.Bool
}

// WaitFor waits until seq is available and returns the highest sequence that
// can be consumed now (at least seq unless an error is returned). A result
// below seq means a producer has claimed but not yet published seq.
func (b *SequenceBarrier) WaitFor(seq int64) (int64, error) {
	published, _, err := b.waitFor(seq, maxSequence)
	return published, err
}

// maxSequence is the largest sequence: no limit.
const maxSequence = int64(^uint64(0) >> 1)

// waitFor is WaitFor for a consumer that takes at most the events up to
// limit (>= seq): on a multi-producer ring it scans the per-slot
// availability no further than limit, so a consumer with a maximum batch
// size does not rescan the whole ring for every batch. It returns the
// highest published sequence (at most limit) and the value the dependents
// reached, which may be higher.
func (b *SequenceBarrier) waitFor(seq, limit int64) (published, available int64, err error) {
	if err := b.CheckAlert(); err != nil {
		return 0, 0, err
	}
	if b.direct {
		// Wait on the slot rather than on the cursor, whose cache line the
		// producers' claims keep contending for. Nothing past
		// seq+bufferSize-1 can be published before this consumer moves
		// on, so that bounds the scan.
		if !b.mp.isAvailable(seq) && b.sw != nil {
			if err := b.sw.waitSlot(b.mp, seq, b); err != nil {
				return 0, 0, err
			}
		}
		if b.mp.isAvailable(seq) {
			published = b.mp.highestPublished(seq, min(seq+b.mp.bufferSize-1, limit))
			return published, published, nil
		}
	}
	available, err = b.ws.WaitFor(seq, b.cursor, b.deps, b)
	if err != nil {
		return 0, 0, err
	}
	if available < seq || b.mp == nil {
		return min(available, limit), available, nil
	}
	return b.mp.highestPublished(seq, min(available, limit)), available, nil
}

// Cursor returns the minimum of the sequences this barrier waits on.
func (b *SequenceBarrier) Cursor() int64 { return b.deps.Get() }

// Alert wakes waiters with ErrAlerted until ClearAlert.
func (b *SequenceBarrier) Alert() {
	b.alerted.Store(true)
	b.ws.SignalAllWhenBlocking()
}

// ClearAlert clears a previous Alert.
func (b *SequenceBarrier) ClearAlert() { b.alerted.Store(false) }

// IsAlerted reports whether the barrier is alerted.
func (b *SequenceBarrier) IsAlerted() bool { return b.alerted.Load() }

// CheckAlert returns ErrAlerted if the barrier is alerted.
func (b *SequenceBarrier) CheckAlert() error {
	if b.alerted.Load() {
		return ErrAlerted
	}
	return nil
}
