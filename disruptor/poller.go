package disruptor

// PollState is the outcome of one EventPoller.Poll.
type PollState int

const (
	// PollProcessing means at least one event was handed to the callback.
	PollProcessing PollState = iota
	// PollGating means events are published but a dependency has not yet
	// finished with them.
	PollGating
	// PollIdle means nothing new is published.
	PollIdle
)

// String names the state.
func (s PollState) String() string {
	switch s {
	case PollProcessing:
		return "processing"
	case PollGating:
		return "gating"
	default:
		return "idle"
	}
}

// EventPoller is a pull-based consumer: the caller decides when to look for
// events, on its own goroutine, instead of running a processor.
type EventPoller[T any] struct {
	ring   *RingBuffer[T]
	seq    *Sequence
	deps   SequenceGroup
	cursor *Sequence
}

// NewPoller returns a poller that follows deps (the cursor if none) and
// gates the producers from now on. Call Close to stop gating.
func (r *RingBuffer[T]) NewPoller(deps ...*Sequence) *EventPoller[T] {
	p := &EventPoller[T]{ring: r, seq: NewSequence(InitialSequence), cursor: r.core.cursor}
	if len(deps) == 0 {
		p.deps = SequenceGroup{r.core.cursor}
	} else {
		p.deps = append(SequenceGroup(nil), deps...)
	}
	r.AddGatingSequences(p.seq)
	return p
}

// Sequence returns the poller's progress.
func (p *EventPoller[T]) Sequence() *Sequence { return p.seq }

// Poll hands every event available now to fn, in order. fn returns whether
// to go on; returning false or an error stops the poll after that event
// (which counts as consumed). The error of fn is returned.
func (p *EventPoller[T]) Poll(fn func(e *T, seq int64, endOfBatch bool) (bool, error)) (PollState, error) {
	current := p.seq.Get()
	next := current + 1
	available := p.ring.seqr.highestPublished(next, p.deps.Get())
	if next > available {
		if p.cursor.Get() >= next {
			return PollGating, nil
		}
		return PollIdle, nil
	}
	processed := current
	defer func() {
		p.seq.Set(processed)
		p.ring.signalProgress()
	}()
	for seq := next; seq <= available; seq++ {
		more, err := fn(p.ring.Get(seq), seq, seq == available)
		processed = seq
		if err != nil {
			return PollProcessing, err
		}
		if !more {
			break
		}
	}
	return PollProcessing, nil
}

// Close stops the poller from gating the producers.
func (p *EventPoller[T]) Close() { p.ring.RemoveGatingSequence(p.seq) }
