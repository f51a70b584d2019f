// Package sinks ships the appliance's streams upstream, store-and-forward:
// each sink reads one source (the input journal or an output stream) in
// sequence order from disk, sends it in batches to NATS JetStream or to an
// HTTP receiver such as another BadBatch, and keeps a durable checkpoint of
// what the upstream acknowledged. Arrival upstream is exactly once: every
// event carries an idempotency id the upstream deduplicates (Nats-Msg-Id,
// or producer + sequence for a BadBatch hub), and after a start or a
// reconnect the sink asks the upstream where it stands and resumes after
// the higher of that and its checkpoint. See docs/sinks.md.
//
// A sink is a reader of files, never a consumer of the ring: a down or slow
// upstream only makes it fall behind, and the journal's retention keeps
// what it has not shipped (journal.Hold) up to the disk cap.
package sinks

import (
	"context"
	"errors"
)

// Event is one record of a source, as shipped.
type Event struct {
	Sequence       int64
	Timestamp      int64 // Unix nanoseconds
	Producer       []byte
	ProducerSeq    int64
	HasProducerSeq bool
	Key            []byte
	Data           []byte
}

// size is the payload bytes of e, for rates and lag estimates.
func (e *Event) size() int { return len(e.Key) + len(e.Data) + len(e.Producer) }

// Source is an ordered, durable log a sink reads: the input journal or an
// output stream, adapted by the appliance.
type Source interface {
	// Read appends to dst the durable events with from <= Sequence, in
	// order, at most limit of them, and returns dst. A from below Earliest
	// returns an error wrapping ErrEvicted.
	Read(from int64, limit int, dst []Event) ([]Event, error)
	// Durable is the highest readable sequence, -1 when none.
	Durable() int64
	// Earliest is the oldest retained sequence.
	Earliest() int64
	// WaitDurable returns once seq is durable, or with ctx's error.
	WaitDurable(ctx context.Context, seq int64) error
}

// ErrEvicted is wrapped by Source.Read when from is below Earliest.
var ErrEvicted = errors.New("sinks: sequence evicted from the source")
