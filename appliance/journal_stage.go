package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/metrics"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/config"
)

// journalStage is the ring's first consumer (the LMAX journaller): it
// appends each event to the journal and commits (group commit, one fsync
// under fsync = "batch") at the end of every batch. A failing journal is
// retried, which holds the ring (backpressure: publishers get 429) rather
// than dropping anything; only an abort at the end of a timed-out shutdown
// makes it give up.
type journalStage struct {
	j     *journal.Journal
	log   *slog.Logger
	retry time.Duration

	abortOnce sync.Once
	aborted   chan struct{}
	failing   bool
}

func newJournalStage(j *journal.Journal, log *slog.Logger) *journalStage {
	return &journalStage{j: j, log: log, retry: 50 * time.Millisecond, aborted: make(chan struct{})}
}

// abort makes a retrying stage give up (shutdown deadline reached).
func (s *journalStage) abort() { s.abortOnce.Do(func() { close(s.aborted) }) }

// OnEvent implements disruptor.EventHandler.
func (s *journalStage) OnEvent(e *event.Slot, _ int64, endOfBatch bool) error {
	rec := journal.Record{Sequence: e.Seq, Timestamp: e.Timestamp, Producer: e.Producer, Key: e.Key, Data: e.Data,
		ProducerSeq: e.ProducerSeq, HasProducerSeq: e.HasProducerSeq}
	for {
		err := s.j.Append(rec)
		if err == nil {
			break
		}
		if !errors.Is(err, journal.ErrUnavailable) {
			return fmt.Errorf("journal append %d: %w", e.Seq, err)
		}
		// Buffer full while failing: commit (retrying) and append again.
		if err := s.commit(); err != nil {
			return err
		}
	}
	if endOfBatch {
		return s.commit()
	}
	return nil
}

// commit retries Commit until it succeeds or the stage is aborted.
func (s *journalStage) commit() error {
	for {
		err := s.j.Commit()
		if err == nil {
			if s.failing {
				s.failing = false
				s.log.Info("journal recovered; commits succeed again")
			}
			return nil
		}
		if errors.Is(err, journal.ErrClosed) {
			return fmt.Errorf("journal commit: %w", err)
		}
		if !s.failing {
			s.failing = true
			s.log.Error("journal commit failed; holding the ring and retrying (publishers will see 429 when it fills)", "err", err)
		}
		select {
		case <-s.aborted:
			return fmt.Errorf("journal commit abandoned at shutdown: %w", err)
		case <-time.After(s.retry):
		}
	}
}

// journalArchive serves reads older than the ring from the journal.
type journalArchive struct{ j *journal.Journal }

func (a journalArchive) Earliest() int64 { return a.j.Earliest() }

func (a journalArchive) Read(from, to int64, limit int, buf *event.Copy, fn func(*event.Copy) error) (int64, error) {
	if to < from {
		return from, nil
	}
	recs, err := a.j.ReadRange(from, to, limit)
	if err != nil {
		var ev *journal.EvictedError
		if errors.As(err, &ev) {
			return from, &pipeline.GoneError{From: from, Earliest: a.j.Earliest()}
		}
		return from, fmt.Errorf("journal read: %w", err)
	}
	next := from
	for i := range recs {
		r := &recs[i]
		*buf = event.Copy{Seq: r.Sequence, Timestamp: r.Timestamp, Producer: r.Producer, Key: r.Key, Data: r.Data,
			ProducerSeq: r.ProducerSeq, HasProducerSeq: r.HasProducerSeq}
		if err := fn(buf); err != nil {
			return next, err
		}
		next = r.Sequence + 1
	}
	return next, nil
}

// maxIdempotencyScan bounds how many journal records restoreIdempotency
// reads at start.
const maxIdempotencyScan = 1 << 20

// idempotencyScan is how many of the journal's newest records are read at
// start to rebuild the idempotency windows: enough for every tracked
// producer's full window when they interleave evenly, at most
// maxIdempotencyScan.
func idempotencyScan(window, maxProducers int) int64 {
	return min(int64(window)*int64(maxProducers), maxIdempotencyScan)
}

// restoreIdempotency rebuilds the per-producer idempotency windows from the
// newest records of the journal (at most scan of them, read forward in
// journal order, as the live path saw them), so that a retry of an event
// acknowledged before a restart is answered as a duplicate instead of being
// stored again. It must run before the pipeline starts. A read failure is
// logged, not fatal: the node still starts, only without that protection.
func restoreIdempotency(j *journal.Journal, p *pipeline.Pipeline, scan int64, log *slog.Logger) {
	start := time.Now()
	last := j.Durable()
	if last < 0 || scan <= 0 {
		return
	}
	from := max(j.Earliest(), last-scan+1)
	var read, remembered int64
	err := j.Replay(from, func(r journal.Record) error {
		if r.Sequence > last {
			return errStopReplay
		}
		read++
		if r.HasProducerSeq && p.RestoreIdempotency(r.Producer, r.ProducerSeq, r.Sequence) {
			remembered++
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopReplay) {
		log.Error("could not rebuild the idempotency windows from the journal; retries of events acknowledged before this start may be stored again",
			"err", err, "from", from, "read", read)
		return
	}
	log.Info("idempotency windows rebuilt from the journal", "from", from, "to", last, "records_read", read,
		"remembered", remembered, "producers", p.Status().Producers, "took", time.Since(start))
}

var errStopReplay = errors.New("stop replay")

// openJournal opens <data_dir>/journal with the configured policy.
func openJournal(cfg config.Config, dataDir string, log *slog.Logger, opener journal.Opener) (*journal.Journal, error) {
	policy, err := journal.ParseFsyncPolicy(cfg.Journal.Fsync)
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(journal.Options{
		Dir:            filepath.Join(dataDir, "journal"),
		Fsync:          policy,
		FsyncInterval:  cfg.Journal.FsyncInterval.Duration,
		SegmentSize:    int64(cfg.Journal.SegmentSize),
		RetentionBytes: int64(cfg.Journal.RetentionBytes),
		RetentionAge:   cfg.Journal.RetentionAge.Duration,
		MaxRecordSize:  int(min(int64(cfg.Ring.MaxEventSize)+2*event.MaxIDLen+64, math.MaxInt32)),
		Logger:         log.With("component", "journal"),
		Opener:         opener,
		RetryInterval:  50 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return j, nil
}

// journalCollectors exports the journal's progress and health.
func (a *Appliance) journalCollectors() []prometheus.Collector {
	j := a.journal
	if j == nil {
		return nil
	}
	ns := metrics.Namespace
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "journal_durable_sequence", Help: "Highest sequence on stable storage (what ack=durable waits for)."},
			func() float64 { return float64(j.Durable()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "journal_last_sequence", Help: "Highest sequence appended to the journal."},
			func() float64 { return float64(j.LastSequence()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "journal_earliest_sequence", Help: "Oldest sequence retained in the journal."},
			func() float64 { return float64(j.Earliest()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "journal_healthy", Help: "1 while journal writes and fsyncs succeed, 0 while failing (acks are withheld)."},
			func() float64 {
				if j.Err() != nil {
					return 0
				}
				return 1
			}),
	}
}

// durableWaiter adapts the journal to the API's ack=durable wait.
func durableWaiter(j *journal.Journal) func(ctx context.Context, seq int64) error {
	return func(ctx context.Context, seq int64) error {
		if err := j.WaitDurable(ctx, seq); err != nil {
			return fmt.Errorf("waiting for sequence %d to be durable: %w", seq, err)
		}
		return nil
	}
}
