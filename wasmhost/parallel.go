package wasmhost

import (
	"context"
	"runtime"
	"sync/atomic"
)

// Data-parallel batches.
//
// A module whose manifest sets instances > 1 declares that its instances
// may run at once, each with its own state (ABI.md §3: an aggregator keeps
// one partial state per instance). Process then splits a large batch into
// parts of at least minPart events, one per instance it can run at once
// (at most GOMAXPROCS), and processes them concurrently: the caller's
// goroutine takes the first part and helper goroutines the others; whoever
// is free claims the next unclaimed part, so a helper the scheduler starts
// late costs nothing (the caller takes its part) and the call is never
// slower than one instance by more than the split's bookkeeping. Outputs
// are collected per part and emitted in input order once every part is
// done, exactly as a serial call would emit them.

// minPart is the smallest part worth a goroutine hand-off (~1 µs of
// scheduling against ~25 µs of guest work for 256 Go-guest events).
const minPart = 64

// part is one slice of a parallel batch.
type part struct {
	lo, hi  int
	claimed atomic.Bool
	outs    []Output
	emits   []emitCopy // where the emit outputs' key and data lie in arena
	arena   []byte
	err     error
}

// emitCopy locates the copied key and data of outs[i] in the part's arena.
type emitCopy struct{ i, keyOff, keyLen, dataOff, dataLen int }

// collect keeps o for emission after the part is done. Forwards and dead
// letters point at the batch's events (stable for the call); an emit
// points into the instance's output buffer, which a retry or the next part
// reuses, so its key and data are copied.
func (p *part) collect(o Output) {
	if o.Kind == OutputEmit {
		c := emitCopy{i: len(p.outs), keyOff: len(p.arena), keyLen: len(o.Key)}
		p.arena = append(p.arena, o.Key...)
		c.dataOff, c.dataLen = len(p.arena), len(o.Data)
		p.arena = append(p.arena, o.Data...)
		p.emits = append(p.emits, c)
		o.Key, o.Data = nil, nil
	}
	p.outs = append(p.outs, o)
}

// finish points the emit outputs at their copies.
func (p *part) finish() {
	for _, c := range p.emits {
		o := &p.outs[c.i]
		o.Key = p.arena[c.keyOff : c.keyOff+c.keyLen : c.keyOff+c.keyLen]
		o.Data = p.arena[c.dataOff : c.dataOff+c.dataLen : c.dataOff+c.dataLen]
	}
}

// parallelParts is how many parts Process splits a batch of n events into
// (1: process it serially).
func (m *Module) parallelParts(n int) int {
	k := min(m.man.Instances, runtime.GOMAXPROCS(0), n/minPart)
	return max(k, 1)
}

// parallelBatch is the reusable state of one parallel Process call.
type parallelBatch struct {
	parts     []part
	remaining atomic.Int32  // parts not processed yet
	done      chan struct{} // closed when remaining reaches 0
}

// helperTicket is a helper goroutine's claim on a parallel call: the
// caller cancels the helpers the scheduler has not started by the time it
// is done, so they never look at the call's (reused) state.
type helperTicket struct{ state atomic.Int32 }

const (
	helperPending int32 = iota
	helperRunning
	helperCancelled
	helperDone
)

// processParallel processes batch in k parts at once (see above).
func (m *Module) processParallel(ctx context.Context, batch []Event, k int, emit func(Output)) error {
	pb, _ := m.parallel.Get().(*parallelBatch)
	if pb == nil {
		pb = &parallelBatch{}
	}
	if cap(pb.parts) < k {
		pb.parts = make([]part, k)
	}
	pb.parts = pb.parts[:k]
	parts := pb.parts
	for i := range parts {
		p := &parts[i]
		p.lo, p.hi, p.err = len(batch)*i/k, len(batch)*(i+1)/k, nil
		p.outs, p.emits, p.arena = p.outs[:0], p.emits[:0], p.arena[:0]
		p.claimed.Store(false)
	}
	pb.remaining.Store(int32(k))
	pb.done = make(chan struct{})
	// work processes unclaimed parts on slot s.
	work := func(s *slot) {
		for i := range parts {
			p := &parts[i]
			if !p.claimed.CompareAndSwap(false, true) {
				continue
			}
			if m.closed.Load() {
				p.err = ErrClosed
			} else {
				p.err = m.processSlot(ctx, s, batch, p.lo, p.hi, p.collect)
			}
			if pb.remaining.Add(-1) == 0 {
				close(pb.done)
			}
		}
	}
	s, err := m.acquire(ctx)
	if err != nil {
		m.parallel.Put(pb)
		return err
	}
	m.eventsIn.Add(uint64(len(batch)))
	tickets := make([]helperTicket, k-1)
	for i := range tickets {
		t := &tickets[i]
		m.helpers.Add(1)
		go func() {
			defer m.helpers.Done()
			if !t.state.CompareAndSwap(helperPending, helperRunning) {
				return // cancelled: the caller did the work
			}
			// A helper never waits for an instance: if none is free, the
			// caller (or another helper) takes its part.
			if hs, ok := m.tryAcquire(); ok {
				work(hs)
				m.release(hs)
			}
			t.state.Store(helperDone)
		}()
	}
	work(s)
	m.release(s)
	<-pb.done
	for i := range tickets {
		t := &tickets[i]
		if t.state.CompareAndSwap(helperPending, helperCancelled) {
			continue
		}
		for t.state.Load() != helperDone {
			runtime.Gosched() // its parts are done; it is only releasing its instance
		}
	}
	var err2 error
	for i := range parts {
		p := &parts[i]
		p.finish()
		for _, o := range p.outs {
			emit(o)
		}
		clear(p.outs) // drop the references to the batch's events
		if p.err != nil {
			err2 = p.err
			break
		}
	}
	m.parallel.Put(pb) // no helper looks at it any more
	return err2
}
