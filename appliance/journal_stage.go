package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"syscall"
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
func openJournal(cfg config.Config, dataDir string, log *slog.Logger, opener journal.Opener, holds func() []journal.Hold, onDrop func(journal.Hold, int64, int64)) (*journal.Journal, error) {
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
		Holds:          holds,
		OnDrop:         onDrop,
	})
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return j, nil
}

// journalCollectors exports the journal's progress, health and I/O.
func (a *Appliance) journalCollectors() []prometheus.Collector {
	if a.journal == nil {
		return nil
	}
	return []prometheus.Collector{newJournalCollector(a.journal)}
}

// journalCollector reads one journal.Stats snapshot per scrape.
type journalCollector struct {
	j *journal.Journal

	durable, last, earliest, healthy, diskFull  *prometheus.Desc
	segments, retained, recovery, truncated     *prometheus.Desc
	records, commits, bytes, fsyncs, fsyncLat   *prometheus.Desc
	writeErrs, fsyncErrs, segCreated, segDelete *prometheus.Desc
}

func newJournalCollector(j *journal.Journal) *journalCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "journal", name), help, nil, nil)
	}
	return &journalCollector{
		j:          j,
		durable:    d("durable_sequence", "Highest sequence on stable storage (what ack=durable waits for)."),
		last:       d("last_sequence", "Highest sequence appended to the journal."),
		earliest:   d("earliest_sequence", "Oldest sequence retained in the journal (reads below it answer 410)."),
		healthy:    d("healthy", "1 while journal writes and fsyncs succeed, 0 while failing (ack=durable is refused with 503/507)."),
		diskFull:   d("disk_full", "1 while the journal's current failure is ENOSPC (ack=durable answers 507)."),
		segments:   d("segments", "Segment files on disk."),
		retained:   d("retained_bytes", "Bytes of records retained on disk."),
		recovery:   d("recovery_seconds", "Time the journal took to open and recover at start."),
		truncated:  d("truncated_bytes", "Bytes of torn or corrupt tail dropped at start (never acknowledged)."),
		records:    d("records_appended_total", "Records appended since start."),
		commits:    d("commits_total", "Group commits (one write, and under fsync=batch one fsync, per ring batch)."),
		bytes:      d("bytes_written_total", "Bytes written to segment files (including rewrites after failures)."),
		fsyncs:     d("fsyncs_total", "fsync calls on segments and the directory."),
		fsyncLat:   d("fsync_duration_seconds", "fsync latency."),
		writeErrs:  d("write_errors_total", "Failed segment writes."),
		fsyncErrs:  d("fsync_errors_total", "Failed fsyncs."),
		segCreated: d("segments_created_total", "Segments created since start."),
		segDelete:  d("segments_deleted_total", "Segments deleted by retention since start."),
	}
}

// Describe implements prometheus.Collector.
func (c *journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.durable, c.last, c.earliest, c.healthy, c.diskFull, c.segments, c.retained,
		c.recovery, c.truncated, c.records, c.commits, c.bytes, c.fsyncs, c.fsyncLat, c.writeErrs, c.fsyncErrs, c.segCreated, c.segDelete} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *journalCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.j.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(c.durable, float64(st.Durable))
	gauge(c.last, float64(st.LastSequence))
	gauge(c.earliest, float64(st.Earliest))
	gauge(c.healthy, b2f(st.Healthy))
	gauge(c.diskFull, b2f(errors.Is(c.j.Err(), syscall.ENOSPC)))
	gauge(c.segments, float64(st.Segments))
	gauge(c.retained, float64(st.RetainedBytes))
	gauge(c.recovery, st.RecoveryTime.Seconds())
	gauge(c.truncated, float64(st.TruncatedBytes))
	counter(c.records, st.RecordsAppended)
	counter(c.commits, st.Commits)
	counter(c.bytes, st.BytesWritten)
	counter(c.fsyncs, st.Fsyncs)
	counter(c.writeErrs, st.WriteErrors)
	counter(c.fsyncErrs, st.FsyncErrors)
	counter(c.segCreated, st.SegmentsCreated)
	counter(c.segDelete, st.SegmentsDeleted)
	h := st.FsyncLatency
	ch <- prometheus.MustNewConstHistogram(c.fsyncLat, h.Count, h.Sum.Seconds(), h.Cumulative())
}

// journalErr reports the journal's current I/O failure for the API, which
// refuses ack=durable publishes while there is one (nil without a journal).
func journalErr(j *journal.Journal) func() error {
	if j == nil {
		return nil
	}
	return j.Err
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
