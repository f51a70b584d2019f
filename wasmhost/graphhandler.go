package wasmhost

import (
	"context"
	"errors"
	"sync"

	"github.com/badbatch/badbatch/disruptor"
)

// GraphHandler is one disruptor consumer that runs every module of a
// Registry on each ring batch, layer by layer in the order of their after
// lists (Registry.Graph): a module runs on an event only after the modules
// it names have. Because the set of modules is read from the Registry at
// each batch, modules dropped in, replaced or removed at run time take part
// from the next batch on without rewiring the ring, and each batch is
// processed by exactly one version of each module.
//
// Errors of one module (a halted module, a removed stage) are reported to
// onErr and do not stop the others; OnEvent fails only when ctx ends.
type GraphHandler[T any] struct {
	ctx      context.Context
	reg      *Registry
	view     func(e *T, seq int64, ev *Event)
	emit     func(Output)
	onErr    func(module string, err error)
	max      int
	parallel bool

	batch   []Event
	next    int64
	gen     uint64
	layers  [][]*Stage
	mu      sync.Mutex        // serialises emit and lastErr when layers run in parallel
	lastErr map[string]string // last error reported per module, to report changes only
}

var _ disruptor.EventHandler[struct{}] = (*GraphHandler[struct{}])(nil)

// GraphOptions tunes a GraphHandler.
type GraphOptions struct {
	// MaxBatch bounds the events per Process call (<= 0: 256).
	MaxBatch int
	// Parallel runs the modules of one layer on their own goroutines (emit
	// calls are still serialised). Default: one after the other.
	Parallel bool
	// OnError receives per-module errors (default: logged by the Registry's
	// logger).
	OnError func(module string, err error)
}

// NewGraphHandler returns a handler running reg's modules. view fills ev
// from the ring slot e (zero-copy; Seq defaults to the ring sequence); emit
// receives every output of every module (Output.Module says which) and must
// copy emitted Data it keeps.
func NewGraphHandler[T any](ctx context.Context, reg *Registry, view func(e *T, seq int64, ev *Event), emit func(Output), opt GraphOptions) *GraphHandler[T] {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 256
	}
	if opt.OnError == nil {
		log := reg.log
		opt.OnError = func(module string, err error) {
			log.Warn("module stage failed", "module", module, "err", err)
		}
	}
	return &GraphHandler[T]{ctx: ctx, reg: reg, view: view, emit: emit, onErr: opt.OnError,
		max: opt.MaxBatch, parallel: opt.Parallel, batch: make([]Event, 0, opt.MaxBatch), next: -1,
		gen: ^uint64(0), lastErr: map[string]string{}}
}

// OnEvent implements disruptor.EventHandler.
func (h *GraphHandler[T]) OnEvent(e *T, seq int64, endOfBatch bool) error {
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
	err := h.run(h.batch)
	clear(h.batch)
	h.batch = h.batch[:0]
	return err
}

// Process runs every module over batch, as OnEvent does for a ring batch.
func (h *GraphHandler[T]) Process(batch []Event) error { return h.run(batch) }

func (h *GraphHandler[T]) refresh() {
	g := h.reg.Generation()
	if g == h.gen {
		return
	}
	h.gen = g
	h.layers = h.layers[:0]
	names, err := h.reg.Graph()
	if err != nil {
		// A module naming a missing or cyclic dependency: run everything
		// one after the other rather than nothing, and say why.
		h.onErr("", err)
		var all []*Stage
		for _, s := range h.reg.Stages() {
			all = append(all, s)
		}
		h.layers = append(h.layers, all)
		return
	}
	for _, layer := range names {
		var stages []*Stage
		for _, n := range layer {
			if s, ok := h.reg.Stage(n); ok {
				stages = append(stages, s)
			}
		}
		h.layers = append(h.layers, stages)
	}
}

func (h *GraphHandler[T]) run(batch []Event) error {
	h.refresh()
	for _, layer := range h.layers {
		if !h.parallel || len(layer) == 1 {
			for _, s := range layer {
				if err := h.one(s, batch, h.emit); err != nil {
					return err
				}
			}
			continue
		}
		var wg sync.WaitGroup
		errs := make([]error, len(layer))
		emit := func(o Output) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.emit(o)
		}
		for i, s := range layer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = h.one(s, batch, emit)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// one runs a stage; only the handler's own cancellation is returned.
func (h *GraphHandler[T]) one(s *Stage, batch []Event, emit func(Output)) error {
	err := s.Process(h.ctx, batch, emit)
	switch {
	case err == nil, errors.Is(err, ErrClosed):
		return nil
	case h.ctx.Err() != nil:
		return err
	}
	// A halted module fails every batch the same way: report changes only.
	h.mu.Lock()
	changed := h.lastErr[s.Name()] != err.Error()
	h.lastErr[s.Name()] = err.Error()
	h.mu.Unlock()
	if changed {
		h.onErr(s.Name(), err)
	}
	return nil
}
