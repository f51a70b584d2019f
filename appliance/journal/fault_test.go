package journal

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDisk reopens dir without faults and checks it holds exactly 0..last.
func checkDisk(t *testing.T, dir string, last int64) {
	t.Helper()
	j := openT(t, Options{Dir: dir, SegmentSize: 1024})
	defer j.Close()
	got := readAll(t, j)
	if int64(len(got)) != last+1 || j.Stats().TruncatedBytes != 0 {
		t.Fatalf("on disk: %v (truncated %d), want 0..%d", seqs(got), j.Stats().TruncatedBytes, last)
	}
	for i, r := range got {
		if r.Sequence != int64(i) {
			t.Fatalf("on disk: record %d has sequence %d", i, r.Sequence)
		}
		checkRec(t, r)
	}
}

func TestFaultInjection(t *testing.T) {
	type step struct {
		name   string
		inject func(*faults)
	}
	for _, tc := range []struct {
		name   string
		policy FsyncPolicy
		inject func(*faults)
	}{
		{"write error", FsyncBatch, func(f *faults) { f.writeErr = errInjected }},
		{"partial write", FsyncBatch, func(f *faults) { f.writeErr, f.partial = errInjected, true }},
		{"fsync error", FsyncBatch, func(f *faults) { f.syncErr = errInjected }},
		{"create error", FsyncBatch, func(f *faults) { f.createErr = errInjected }},
		{"partial write never", FsyncNever, func(f *faults) { f.writeErr, f.partial = errInjected, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fl := &faults{}
			// A huge retry interval: this test drives recovery with Commit.
			j := openT(t, Options{Dir: dir, Fsync: tc.policy, SegmentSize: 1024, Opener: fl.open, RetryInterval: time.Hour})
			defer j.Close()
			seq := int64(0)
			batch := func() error {
				for i := 0; i < 5; i++ {
					appendAll(t, j, rec(seq, 60))
					seq++
				}
				return j.Commit()
			}
			for i := 0; i < 3; i++ {
				if err := batch(); err != nil {
					t.Fatal(err)
				}
			}
			good := j.Durable()
			fl.set(tc.inject)
			// Keep committing until the failure hits (create errors only
			// show at the next roll).
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				good = j.Durable()
				err = batch()
			}
			if !errors.Is(err, errInjected) {
				t.Fatalf("Commit under fault: %v", err)
			}
			if j.Durable() != good {
				t.Fatalf("durable advanced to %d past %d under a fault", j.Durable(), good)
			}
			if j.Err() == nil || j.Stats().Healthy {
				t.Fatal("Err/Stats do not report the fault")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := j.WaitDurable(ctx, seq-1); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errInjected) {
				t.Fatalf("WaitDurable under fault: %v", err)
			}
			// Reads keep working and return only durable records.
			got, rerr := j.ReadRange(0, math.MaxInt64, 1000)
			if rerr != nil || int64(len(got)) != good+1 {
				t.Fatalf("reads under fault: %d records, %v (durable %d)", len(got), rerr, good)
			}
			// Still failing: more appends are buffered, nothing acknowledged.
			if err := batch(); err == nil || j.Durable() != good {
				t.Fatalf("second commit under fault: %v, durable %d", err, j.Durable())
			}
			fl.set(clearFaults)
			if err := j.Commit(); err != nil {
				t.Fatalf("Commit after the fault cleared: %v", err)
			}
			if j.Durable() != seq-1 || j.Err() != nil {
				t.Fatalf("after recovery: durable %d (want %d), err %v", j.Durable(), seq-1, j.Err())
			}
			if err := batch(); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			checkDisk(t, dir, seq-1)
		})
	}
}

// The background retry recovers without another Commit, for every policy
// (under interval the failing fsync is the background one).
func TestFaultBackgroundRecovery(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncInterval, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			dir := t.TempDir()
			fl := &faults{}
			j := openT(t, Options{Dir: dir, Fsync: policy, FsyncInterval: 2 * time.Millisecond, RetryInterval: 5 * time.Millisecond, Opener: fl.open})
			defer j.Close()
			appendAll(t, j, rec(0, 10), rec(1, 10))
			if err := j.Commit(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "first records durable", func() bool { return j.Durable() == 1 })
			if policy == FsyncNever {
				fl.set(func(f *faults) { f.writeErr, f.partial = errInjected, true })
			} else {
				fl.set(func(f *faults) { f.syncErr = errInjected })
			}
			appendAll(t, j, rec(2, 10), rec(3, 10))
			err := j.Commit()
			if policy != FsyncInterval && !errors.Is(err, errInjected) {
				t.Fatalf("Commit: %v", err)
			}
			waitFor(t, "error reported", func() bool { return j.Err() != nil })
			time.Sleep(20 * time.Millisecond) // several failed retries
			if j.Durable() != 1 {
				t.Fatalf("durable %d under fault", j.Durable())
			}
			fl.set(clearFaults)
			waitFor(t, "background recovery", func() bool { return j.Durable() == 3 && j.Err() == nil })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := j.WaitDurable(ctx, 3); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			checkDisk(t, dir, 3)
		})
	}
}

// A failing checkpoint save keeps the previous checkpoint on disk.
func TestCheckpointFault(t *testing.T) {
	dir := t.TempDir()
	fl := &faults{}
	j := openT(t, Options{Dir: dir, Opener: fl.open})
	if err := j.SaveCheckpoint("s", 5); err != nil {
		t.Fatal(err)
	}
	fl.set(func(f *faults) { f.syncErr = errInjected })
	if err := j.SaveCheckpoint("s", 9); !errors.Is(err, errInjected) {
		t.Fatalf("save under fsync fault: %v", err)
	}
	fl.set(clearFaults)
	if j.Checkpoint("s") != 5 {
		t.Fatalf("failed save changed the checkpoint to %d", j.Checkpoint("s"))
	}
	j.Close()
	if _, err := os.Stat(filepath.Join(dir, "s"+checkpointExt+tmpExt)); !os.IsNotExist(err) {
		t.Fatalf("temporary checkpoint left behind: %v", err)
	}
	j = openT(t, Options{Dir: dir})
	defer j.Close()
	if j.Checkpoint("s") != 5 {
		t.Fatalf("checkpoint after reopen %d", j.Checkpoint("s"))
	}
}

// While the disk fails, Append stops buffering at MaxBuffered instead of
// growing without bound, and resumes once a Commit succeeds.
func TestBufferBoundUnderFault(t *testing.T) {
	dir := t.TempDir()
	fl := &faults{}
	j := openT(t, Options{Dir: dir, Opener: fl.open, MaxRecordSize: 1024, MaxBuffered: 4096, RetryInterval: time.Hour})
	defer j.Close()
	fl.set(func(f *faults) { f.writeErr = errInjected })
	seq := int64(0)
	var err error
	for ; seq < 1000; seq++ {
		if err = j.Append(rec(seq, 100)); err != nil {
			break
		}
		j.Commit()
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errInjected) || seq == 0 || seq > 4096/100 {
		t.Fatalf("after %d appends: %v", seq, err)
	}
	fl.set(clearFaults)
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	appendAll(t, j, rec(seq, 100))
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	checkDisk(t, dir, seq)
}

// A healthy journal commits early instead of failing when one batch
// exceeds MaxBuffered.
func TestHugeBatchCommitsInChunks(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, Options{Dir: dir, MaxRecordSize: 1024, MaxBuffered: 4096})
	for s := int64(0); s < 500; s++ {
		appendAll(t, j, rec(s, 100))
	}
	if d := j.Durable(); d < 400 {
		t.Fatalf("durable %d: no early commits", d)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	checkDisk(t, dir, 499)
}
