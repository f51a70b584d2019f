package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// FsyncPolicy says when the journal calls fsync.
type FsyncPolicy string

// Fsync policies. The zero value means FsyncBatch.
const (
	// FsyncBatch fsyncs once per Commit (group commit): Durable advances only
	// after the batch is on stable storage.
	FsyncBatch FsyncPolicy = "batch"
	// FsyncInterval writes on Commit and fsyncs every Options.FsyncInterval
	// from a background goroutine; Durable advances after that fsync. The
	// fsync holds the writer lock, so an Append or Commit arriving during
	// it waits for it.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever writes on Commit and leaves flushing to the operating
	// system; Durable advances as soon as the write returns.
	FsyncNever FsyncPolicy = "never"
)

// ParseFsyncPolicy parses "batch", "interval" or "never" ("" means batch).
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch p := FsyncPolicy(s); p {
	case "":
		return FsyncBatch, nil
	case FsyncBatch, FsyncInterval, FsyncNever:
		return p, nil
	}
	return "", fmt.Errorf("journal: unknown fsync policy %q (want batch, interval or never)", s)
}

// Defaults for zero-valued Options fields.
const (
	DefaultSegmentSize            = 64 << 20
	DefaultFsyncInterval          = 10 * time.Millisecond
	DefaultIndexInterval          = 4 << 10
	DefaultRetentionCheckInterval = time.Minute
	DefaultRetryInterval          = 100 * time.Millisecond
	DefaultMaxBuffered            = 64 << 20
	DefaultMaxRecordSize          = 16 << 20
	minSegmentSize                = 1 << 10
)

// Options configures a Journal. Only Dir is required.
type Options struct {
	// Dir is the journal directory (created if missing). It holds the
	// segment files (NNNNNNNNNNNNNNNNNNNN.seg), their persisted indexes
	// (.idx), stage checkpoints (.ckpt) and a LOCK file.
	Dir string
	// Fsync is the fsync policy; zero means FsyncBatch.
	Fsync FsyncPolicy
	// FsyncInterval is the period of FsyncInterval; zero means 10ms.
	FsyncInterval time.Duration
	// SegmentSize is the size at which the active segment is rolled (a
	// segment may exceed it by one Commit's batch); zero means 64 MiB,
	// minimum 1 KiB.
	SegmentSize int64
	// RetentionBytes bounds the total size of all segments; the oldest
	// whole segments (never the active one) are deleted to stay under it.
	// Zero means unlimited.
	RetentionBytes int64
	// RetentionAge deletes whole segments whose newest record's timestamp
	// is older than this (never the active one). Zero means unlimited.
	RetentionAge time.Duration
	// RetentionCheckInterval is how often retention runs in the background
	// (it also runs after every segment roll); zero means one minute.
	RetentionCheckInterval time.Duration
	// RetryInterval is how often a failed journal retries the write and
	// fsync of its unsynced records in the background; zero means 100ms.
	RetryInterval time.Duration
	// IndexInterval is the spacing in bytes of the sparse index; zero
	// means 4 KiB.
	IndexInterval int64
	// MaxRecordSize bounds one record's encoded body; zero means 16 MiB.
	MaxRecordSize int
	// MaxBuffered bounds the bytes Append may hold that are not yet
	// durable (normally one batch; more while writes or fsyncs fail).
	// Beyond it a healthy journal commits early, and a failing one makes
	// Append fail with ErrUnavailable until a Commit succeeds, which pushes
	// back on the ring instead of growing without bound. Zero means 64 MiB;
	// it is raised to at least 2*MaxRecordSize.
	MaxBuffered int
	// RepairCorrupt makes Open truncate a sealed (non-final) segment at a
	// corrupt record instead of failing. Records after the damage in that
	// segment are lost; later segments are kept. A torn or corrupt tail of
	// the final segment is always truncated: it can only hold records that
	// were never reported durable.
	RepairCorrupt bool
	// Holds, when set, names the readers that still need records (sinks
	// that have not shipped them yet); retention consults it before every
	// deletion. See Hold and EnforceRetention.
	Holds func() []Hold
	// OnDrop, when set, is called (outside the journal's locks) for every
	// hold whose unread records a full journal deleted anyway because the
	// hold allowed it (Hold.DropWhenFull).
	OnDrop func(h Hold, first, last int64)
	// Logger receives recovery, retention and I/O error reports; nil means
	// slog.Default().
	Logger *slog.Logger
	// Opener opens every file the journal touches; nil means OSOpener.
	// Tests inject failures through it.
	Opener Opener
	// Now is the clock for timestamps and retention; nil means time.Now.
	Now func() time.Time
}

// Hold is a reader that still needs the records from Sequence From on: a
// sink whose checkpoint is From-1.
type Hold struct {
	// Name identifies the reader in logs, in OnDrop and in Full.
	Name string
	// From is the first sequence the reader has not consumed yet.
	From int64
	// DropWhenFull lets retention delete the reader's unread records when
	// the journal is over RetentionBytes; otherwise the journal keeps them
	// and reports itself Full until the reader catches up.
	DropWhenFull bool
}

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	p, err := ParseFsyncPolicy(string(o.Fsync))
	if err != nil {
		errs = append(errs, err)
	}
	o.Fsync = p
	if o.FsyncInterval == 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	if o.FsyncInterval < 0 {
		errs = append(errs, fmt.Errorf("fsync interval %v is negative", o.FsyncInterval))
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SegmentSize < minSegmentSize {
		errs = append(errs, fmt.Errorf("segment size %d is below the minimum %d", o.SegmentSize, minSegmentSize))
	}
	if o.RetentionBytes < 0 {
		errs = append(errs, fmt.Errorf("retention bytes %d is negative", o.RetentionBytes))
	}
	if o.RetentionAge < 0 {
		errs = append(errs, fmt.Errorf("retention age %v is negative", o.RetentionAge))
	}
	if o.RetentionCheckInterval == 0 {
		o.RetentionCheckInterval = DefaultRetentionCheckInterval
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.RetentionCheckInterval < 0 || o.RetryInterval < 0 {
		errs = append(errs, errors.New("retention check and retry intervals must be positive"))
	}
	if o.IndexInterval == 0 {
		o.IndexInterval = DefaultIndexInterval
	}
	if o.IndexInterval < 0 {
		errs = append(errs, fmt.Errorf("index interval %d is negative", o.IndexInterval))
	}
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = DefaultMaxRecordSize
	}
	if o.MaxRecordSize < bodyFixedSize || o.MaxRecordSize > 1<<30 {
		errs = append(errs, fmt.Errorf("max record size %d out of range [%d, 1GiB]", o.MaxRecordSize, bodyFixedSize))
	}
	if o.MaxBuffered == 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	if o.MaxBuffered < 0 {
		errs = append(errs, fmt.Errorf("max buffered %d is negative", o.MaxBuffered))
	}
	o.MaxBuffered = max(o.MaxBuffered, 2*o.MaxRecordSize)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Opener == nil {
		o.Opener = OSOpener
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("journal: invalid options: %w", errors.Join(errs...))
	}
	return o, nil
}
