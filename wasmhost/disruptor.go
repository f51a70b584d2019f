package wasmhost

import (
	"context"

	"github.com/badbatch/badbatch/disruptor"
)

// BatchHandler runs a Stage as a disruptor.EventHandler: it gathers the
// events a BatchEventProcessor hands over and calls Stage.Process once per
// ring batch (at endOfBatch, or every maxBatch events). The ring's slots stay
// valid until the processor's sequence moves past the batch, so view may
// return zero-copy slices into the slot.
type BatchHandler[T any] struct {
	ctx   context.Context
	stage *Stage
	view  func(e *T, seq int64, ev *Event)
	emit  func(Output)
	max   int
	batch []Event
	next  int64 // sequence expected next; a gap discards a stale partial batch
}

var _ disruptor.EventHandler[struct{}] = (*BatchHandler[struct{}])(nil)

// NewBatchHandler returns a handler that feeds s. view fills ev from the
// ring's slot e (Seq is set from the ring sequence if view leaves it 0);
// emit receives every output (see Module.Process) and must copy emitted
// Data it keeps. maxBatch bounds a call (<= 0: 256). ctx bounds the calls;
// cancel it to stop waiting for a busy instance during shutdown.
func NewBatchHandler[T any](ctx context.Context, s *Stage, view func(e *T, seq int64, ev *Event), emit func(Output), maxBatch int) *BatchHandler[T] {
	if maxBatch <= 0 {
		maxBatch = 256
	}
	return &BatchHandler[T]{ctx: ctx, stage: s, view: view, emit: emit, max: maxBatch,
		batch: make([]Event, 0, maxBatch), next: -1}
}

// OnEvent implements disruptor.EventHandler. An error (the module halted,
// ctx ended, the stage was removed) is reported for the sequence that ended
// the batch.
func (h *BatchHandler[T]) OnEvent(e *T, seq int64, endOfBatch bool) error {
	if seq != h.next {
		clear(h.batch)
		h.batch = h.batch[:0]
	}
	h.next = seq + 1
	h.batch = append(h.batch, Event{})
	ev := &h.batch[len(h.batch)-1]
	h.view(e, seq, ev)
	if ev.Seq == 0 {
		ev.Seq = uint64(seq)
	}
	if !endOfBatch && len(h.batch) < h.max {
		return nil
	}
	err := h.stage.Process(h.ctx, h.batch, h.emit)
	clear(h.batch) // drop references to slot memory
	h.batch = h.batch[:0]
	return err
}
