package journal_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/badbatch/badbatch/appliance/journal"
)

// commitWithRetry is how a journal consumer should treat a failed Commit:
// keep the batch (the journal already buffers it) and retry, which holds
// the ring back (publishers see 429/503) instead of dropping anything.
func commitWithRetry(ctx context.Context, j *journal.Journal) error {
	backoff := 10 * time.Millisecond
	for {
		err := j.Commit()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("giving up on commit: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// The journal as the first disruptor consumer: Append each event of a
// batch, Commit at the end of the batch, and let API handlers wait for
// durability before acknowledging.
func Example() {
	dir, err := os.MkdirTemp("", "journal-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	j, err := journal.Open(journal.Options{Dir: dir, Fsync: journal.FsyncBatch, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer j.Close()
	ctx := context.Background()

	// The ring must continue numbering after what the journal holds.
	next := j.LastSequence() + 1

	// One disruptor batch (OnEvent ... endOfBatch).
	for i, payload := range []string{`{"t":21.5}`, `{"t":21.7}`, `{"t":21.6}`} {
		err := j.Append(journal.Record{Sequence: next + int64(i), Producer: []byte("sensor-7"), Data: []byte(payload)})
		if err != nil {
			panic(err)
		}
	}
	if err := commitWithRetry(ctx, j); err != nil {
		panic(err)
	}

	// An API handler answering ?ack=durable for the last event.
	if err := j.WaitDurable(ctx, next+2); err != nil {
		panic(err) // ErrUnavailable: answer 503/507 instead
	}
	recs, err := j.ReadRange(j.Earliest(), math.MaxInt64, 10)
	if err != nil {
		panic(err)
	}
	for _, r := range recs {
		fmt.Println(r.Sequence, string(r.Producer), string(r.Data))
	}
	// A stage records its progress; after a restart it replays from here.
	if err := j.SaveCheckpoint("wasm.filter", next+1); err != nil {
		panic(err)
	}
	_ = j.Replay(j.Checkpoint("wasm.filter")+1, func(r journal.Record) error {
		fmt.Println("replay", r.Sequence)
		return nil
	})
	// Output:
	// 0 sensor-7 {"t":21.5}
	// 1 sensor-7 {"t":21.7}
	// 2 sensor-7 {"t":21.6}
	// replay 2
}
