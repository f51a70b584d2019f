package disruptor

import (
	"log/slog"
)

// EventHandler consumes events. endOfBatch is true for the last event of the
// batch the processor is handing over, which is the moment to flush
// buffered work. A non-nil error goes to the processor's ExceptionHandler.
type EventHandler[T any] interface {
	OnEvent(e *T, seq int64, endOfBatch bool) error
}

// HandlerFunc adapts a function to EventHandler. Builder methods find
// handlers by identity, so pass a *HandlerFunc (or wrap it with Handler)
// when you need After or SequenceOf for it.
type HandlerFunc[T any] func(e *T, seq int64, endOfBatch bool) error

// OnEvent implements EventHandler.
func (f HandlerFunc[T]) OnEvent(e *T, seq int64, endOfBatch bool) error { return f(e, seq, endOfBatch) }

// Handler returns fn as a comparable EventHandler (a pointer), usable as a
// key in After and SequenceOf.
func Handler[T any](fn func(e *T, seq int64, endOfBatch bool) error) EventHandler[T] {
	h := HandlerFunc[T](fn)
	return &h
}

// BatchHandler is an optional interface of an EventHandler. A processor
// whose handler implements it calls OnBatch once per run of consecutive
// slots instead of OnEvent once per event, so that the handler's loop over
// the events is plain Go code that the compiler can optimise: no dynamic
// call per event, and state such as a running sum stays in registers. (A
// summing handler given batches of 1024 costs 0.26 ns per event through
// OnBatch against 1.47 through OnEvent on the development VM; see
// BenchmarkHandlerDispatch.)
//
// events holds the events of sequences lo, lo+1, ...: it is the ring's own
// slots, valid only during the call. A batch that wraps around the end of
// the ring is handed over in two calls, and endOfBatch is true on the call
// that ends the batch. On success OnBatch returns (len(events), nil). On
// failure it returns the index of the failing event and the error: events
// before it count as handled, and the ExceptionHandler receives the error
// for that event's sequence, as if OnEvent had returned it (an index below
// zero counts as the first event, one past the end as the last). A panic
// counts as a failure of the call's first event, so with LogAndContinue the
// rest of that call's events are delivered again.
type BatchHandler[T any] interface {
	OnBatch(events []T, lo int64, endOfBatch bool) (handled int, err error)
}

// BatchStartAware handlers learn each batch's size and the queue depth
// (events available to this processor, including the batch) before it starts.
type BatchStartAware interface {
	OnBatchStart(batchSize, queueDepth int64)
}

// StartAware handlers are called once on the processor goroutine before the
// first event.
type StartAware interface{ OnStart() error }

// ShutdownAware handlers are called once on the processor goroutine after
// the last event.
type ShutdownAware interface{ OnShutdown() error }

// TimeoutAware handlers are called when a timeout wait strategy times out
// with no new event; seq is the last sequence processed.
type TimeoutAware interface{ OnTimeout(seq int64) error }

// SequenceReporting handlers receive the processor's sequence before start
// and may Set it mid-batch to release events early (for example after they
// were handed to another goroutine that completes them).
type SequenceReporting interface{ SetSequenceCallback(s *Sequence) }

// ExceptionHandler decides what happens when a handler fails.
type ExceptionHandler[T any] interface {
	// HandleEventException receives an error (or a *PanicError) from
	// OnEvent for seq. Returning nil continues with the next event;
	// returning an error stops the processor without consuming seq.
	HandleEventException(err error, seq int64, e *T) error
	// HandleOnStartException receives an error from OnStart.
	HandleOnStartException(err error)
	// HandleOnShutdownException receives an error from OnShutdown.
	HandleOnShutdownException(err error)
}

// LogAndContinue is an ExceptionHandler that logs the failure and goes on
// with the next event.
type LogAndContinue[T any] struct {
	// Logger receives the failures; nil means slog.Default().
	Logger *slog.Logger
	// Name identifies the handler in log lines.
	Name string
}

func (l LogAndContinue[T]) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.Default()
	}
	return l.Logger
}

// HandleEventException logs and returns nil.
func (l LogAndContinue[T]) HandleEventException(err error, seq int64, _ *T) error {
	l.logger().Error("event handler failed; continuing", "handler", l.Name, "sequence", seq, "error", err)
	return nil
}

// HandleOnStartException logs the error.
func (l LogAndContinue[T]) HandleOnStartException(err error) {
	l.logger().Error("handler start failed", "handler", l.Name, "error", err)
}

// HandleOnShutdownException logs the error.
func (l LogAndContinue[T]) HandleOnShutdownException(err error) {
	l.logger().Error("handler shutdown failed", "handler", l.Name, "error", err)
}

// FatalStop is an ExceptionHandler that logs the failure and stops the
// processor at the failing event (which is not consumed). Producers then
// stall once the ring is full behind it, which is the point: nothing after a
// failed event is processed out of order.
type FatalStop[T any] struct {
	// Logger receives the failures; nil means slog.Default().
	Logger *slog.Logger
	// Name identifies the handler in log lines.
	Name string
}

// HandleEventException logs and returns err, which stops the processor.
func (f FatalStop[T]) HandleEventException(err error, seq int64, _ *T) error {
	LogAndContinue[T](f).logger().Error("event handler failed; stopping processor", "handler", f.Name, "sequence", seq, "error", err)
	return err
}

// HandleOnStartException logs the error.
func (f FatalStop[T]) HandleOnStartException(err error) {
	LogAndContinue[T](f).HandleOnStartException(err)
}

// HandleOnShutdownException logs the error.
func (f FatalStop[T]) HandleOnShutdownException(err error) {
	LogAndContinue[T](f).HandleOnShutdownException(err)
}
