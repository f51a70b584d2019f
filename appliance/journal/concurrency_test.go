package journal

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// One writer appends and commits random-sized batches while readers read
// random ranges, a replayer replays, retention deletes segments and waiters
// wait for random sequences. Run with -race.
func TestConcurrentAppendReadWait(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncBatch, FsyncInterval, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			total := int64(4000)
			if testing.Short() {
				total = 1500
			}
			j := openT(t, Options{
				Dir: t.TempDir(), Fsync: policy, FsyncInterval: time.Millisecond,
				SegmentSize: 16 << 10, IndexInterval: 512, RetentionBytes: 128 << 10,
				RetentionCheckInterval: 3 * time.Millisecond,
			})
			defer j.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			report := func(err error) {
				select {
				case errs <- err:
				default:
				}
			}
			wg.Add(1)
			go func() { // writer
				defer wg.Done()
				rng := rand.New(rand.NewPCG(1, 2))
				for s := int64(0); s < total; {
					n := 1 + rng.Int64N(64)
					for i := int64(0); i < n && s < total; i++ {
						if err := j.Append(rec(s, rng.IntN(200))); err != nil {
							report(err)
							return
						}
						s++
					}
					if err := j.Commit(); err != nil {
						report(err)
						return
					}
				}
			}()
			for r := 0; r < 2; r++ {
				wg.Add(1)
				go func(seed uint64) { // readers
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, 9))
					for j.Durable() < total-1 && ctx.Err() == nil {
						d := j.Durable()
						if d < 0 {
							time.Sleep(time.Millisecond)
							continue
						}
						from := rng.Int64N(d + 1)
						got, err := j.ReadRange(from, from+100, 50)
						if errors.Is(err, ErrEvicted) {
							continue
						}
						if err != nil {
							report(err)
							return
						}
						for i, rc := range got {
							if rc.Sequence != from+int64(i) || rc.Sequence > j.Durable() {
								report(errors.New("read out of order or beyond durable"))
								return
							}
							if !sameRecord(rc, rec(rc.Sequence, len(rc.Data))) {
								report(errors.New("read corrupted content"))
								return
							}
						}
						if len(got) == 0 && from <= d {
							report(errors.New("empty read of a durable range"))
							return
						}
					}
				}(uint64(r))
			}
			wg.Add(1)
			go func() { // replayer
				defer wg.Done()
				for j.Durable() < total-1 && ctx.Err() == nil {
					prev := int64(-1)
					err := j.Replay(0, func(r Record) error {
						if prev >= 0 && r.Sequence != prev+1 {
							return errors.New("replay skipped a sequence")
						}
						prev = r.Sequence
						return nil
					})
					if err != nil && !errors.Is(err, ErrEvicted) {
						report(err)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(seed uint64) { // waiters
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, 7))
					for i := 0; i < 50; i++ {
						want := rng.Int64N(total)
						if err := j.WaitDurable(ctx, want); err != nil {
							report(err)
							return
						}
						if j.Durable() < want {
							report(errors.New("WaitDurable returned early"))
							return
						}
					}
				}(uint64(w))
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := j.WaitDurable(ctx, total-1); err != nil {
				t.Fatal(err)
			}
			st := j.Stats()
			if st.SegmentsDeleted == 0 || st.RecordsAppended != uint64(total) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
