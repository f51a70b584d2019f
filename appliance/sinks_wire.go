package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/sinks"
	"github.com/badbatch/badbatch/appliance/streams"
	"github.com/badbatch/badbatch/config"
)

// newSinks builds the node's sink manager (sinks start in Run).
func (a *Appliance) newSinks(cfg config.Config) *sinks.Manager {
	return sinks.New(sinks.Options{
		NodeID:      cfg.Node.ID,
		Checkpoints: a.journal,
		Source:      a.sinkSource,
		DeadLetter:  a.sinkDeadLetter,
		Logger:      a.log.With("component", "sinks"),
	})
}

// sinkHolds is the input journal's retention hold: what the sinks reading
// "events" have not shipped yet.
func (a *Appliance) sinkHolds() []journal.Hold {
	if m := a.sinks.Load(); m != nil {
		return m.Holds(config.SinkSourceEvents)
	}
	return nil
}

func (a *Appliance) sinkDropped(h journal.Hold, first, last int64) {
	if m := a.sinks.Load(); m != nil {
		m.Dropped(h, first, last)
	}
}

// sinkSource adapts the input journal or an output stream.
func (a *Appliance) sinkSource(name string) (sinks.Source, error) {
	if name == config.SinkSourceEvents {
		if a.journal == nil {
			return nil, fmt.Errorf("the journal is disabled")
		}
		return journalSource{a.journal}, nil
	}
	if a.wasm == nil || a.wasm.streams == nil {
		return nil, fmt.Errorf("output streams are not available on this node")
	}
	return &streamSource{set: a.wasm.streams, name: name}, nil
}

func (a *Appliance) sinkDeadLetter(stream string, ev *sinks.Event, sink, reason string) error {
	if a.wasm == nil || a.wasm.streams == nil {
		return fmt.Errorf("no output streams to dead-letter into")
	}
	_, err := a.wasm.streams.Append(stream, &streams.Output{
		Kind: streams.KindDeadLetter, Module: "sink-" + sink, Source: ev.Sequence,
		Timestamp: ev.Timestamp, Key: ev.Key, Data: ev.Data, Err: reason,
	})
	if err != nil {
		return err
	}
	return a.wasm.streams.Commit()
}

// journalSource reads the input journal.
type journalSource struct{ j *journal.Journal }

func (s journalSource) Read(from int64, limit int, dst []sinks.Event) ([]sinks.Event, error) {
	err := s.j.ReplayN(from, limit, func(r journal.Record) error {
		dst = append(dst, sinks.Event{
			Sequence: r.Sequence, Timestamp: r.Timestamp, ProducerSeq: r.ProducerSeq, HasProducerSeq: r.HasProducerSeq,
			Producer: clone(r.Producer), Key: clone(r.Key), Data: clone(r.Data),
		})
		return nil
	})
	if errors.Is(err, journal.ErrEvicted) {
		return dst, fmt.Errorf("%w: %w", sinks.ErrEvicted, err)
	}
	return dst, err
}

func (s journalSource) Durable() int64  { return s.j.Durable() }
func (s journalSource) Earliest() int64 { return s.j.Earliest() }
func (s journalSource) WaitDurable(ctx context.Context, seq int64) error {
	return s.j.WaitDurable(ctx, seq)
}

// streamSource reads an output stream, which may not exist yet.
type streamSource struct {
	set  *streams.Set
	name string
}

func (s *streamSource) get() *streams.Stream {
	st, _ := s.set.Get(s.name)
	return st
}

func (s *streamSource) Read(from int64, limit int, dst []sinks.Event) ([]sinks.Event, error) {
	st := s.get()
	if st == nil {
		return dst, nil
	}
	if from < st.Earliest() {
		return dst, fmt.Errorf("%w: stream %s starts at %d", sinks.ErrEvicted, s.name, st.Earliest())
	}
	_, err := st.Read(from, 1<<62, limit, func(r *streams.Record) error {
		dst = append(dst, sinks.Event{Sequence: r.Sequence, Timestamp: r.Timestamp, Producer: []byte(r.Module), Key: clone(r.Key), Data: clone(r.Data)})
		return nil
	})
	return dst, err
}

func (s *streamSource) Durable() int64 {
	if st := s.get(); st != nil {
		return st.Durable()
	}
	return -1
}

func (s *streamSource) Earliest() int64 {
	if st := s.get(); st != nil {
		return st.Earliest()
	}
	return 0
}

func (s *streamSource) WaitDurable(ctx context.Context, seq int64) error {
	for {
		if st := s.get(); st != nil {
			return st.WaitDurable(ctx, seq)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sinksAPI adapts the manager for the API (nil without a journal).
func (a *Appliance) sinksAPI() api.SinksAPI {
	m := a.sinks.Load()
	if m == nil {
		return nil
	}
	return sinksAPI{m}
}

type sinksAPI struct{ m *sinks.Manager }

func (s sinksAPI) List() any { return s.m.Status() }
func (s sinksAPI) Get(name string) (any, bool) {
	st, err := s.m.Get(name)
	return st, err == nil
}
func (s sinksAPI) Pause(name string) error            { return s.m.Pause(name) }
func (s sinksAPI) Resume(name string) error           { return s.m.Resume(name) }
func (s sinksAPI) DeleteCheckpoint(name string) error { return s.m.DeleteCheckpoint(name) }
func (s sinksAPI) IsNotFound(err error) bool          { return errors.Is(err, sinks.ErrNoSink) }
func (s sinksAPI) IsConflict(err error) bool          { return errors.Is(err, sinks.ErrConfigured) }

// backlogFull names the sink that keeps the input journal at its cap.
func (a *Appliance) backlogFull() string {
	if a.journal == nil {
		return ""
	}
	return a.journal.Full()
}
