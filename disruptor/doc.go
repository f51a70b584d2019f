// Package disruptor is a generic, allocation-free implementation of the LMAX
// Disruptor for Go: a preallocated ring buffer shared by producers and a graph
// of consumers that coordinate through sequences instead of locks.
//
// The moving parts follow LMAX Disruptor 4.x:
//
//   - [Sequence] is a cache-line padded atomic counter. Every producer cursor
//     and consumer progress marker is one.
//   - [RingBuffer] owns the preallocated entries (built once by a factory) and a
//     sequencer: single-producer ([SingleProducer]) or multi-producer
//     ([MultiProducer]; one atomic add per claim, availability tracked per slot
//     with lap numbers).
//   - [SequenceBarrier] lets a consumer wait for the cursor and for the
//     consumers it depends on, using a [WaitStrategy].
//   - [BatchEventProcessor] runs an [EventHandler] over every available event
//     in batches ([DefaultMaxBatch] bounds them; [WithMaxBatchSize] changes
//     it), with panics recovered and routed to an [ExceptionHandler].
//   - [Disruptor] is the builder for handler graphs: pipelines, fan-out and
//     diamonds, with Start, Halt and a draining Shutdown.
//   - [EventPoller] is the pull-based alternative to processors.
//
// Claiming and publishing never allocate; neither does consuming. A claim that
// cannot be satisfied because the ring is full waits (Next, NextN), fails fast
// (TryNext, TryNextN with [ErrInsufficientCapacity]) or waits with a context
// (NextCtx). After Halt or Shutdown every blocking claim returns [ErrHalted].
package disruptor
