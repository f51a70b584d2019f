package wasmhost

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// TestSoakHotSwaps swaps a module back and forth many times while four
// producers push batches with poison events mixed in. Run with
// BADBATCH_SOAK=1 (it takes tens of seconds).
func TestSoakHotSwaps(t *testing.T) {
	if os.Getenv("BADBATCH_SOAK") == "" {
		t.Skip("set BADBATCH_SOAK=1")
	}
	dir := t.TempDir()
	hostile := mustRead(t, hostileWasm)
	counter := mustRead(t, "../modules/wat-counter.wasm")
	atomicWrite(t, dir, "hot.wasm", hostile)
	atomicWrite(t, dir, "hot.toml", []byte("name = \"hot\"\nversion = \"0\"\ninstances = 4\ntimeout = \"200ms\"\n"))
	ch := newChanges()
	r, stop := startRegistry(t, dir, ch)
	defer stop()
	ch.wait(t, "hot", ChangeAdded)
	s, _ := r.Stage("hot")

	var mu sync.Mutex
	seen := map[uint64]int{}
	var produced, poisons uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := uint64(p) << 40
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				evs := make([]Event, 32)
				for j := range evs {
					seq++
					d := fmt.Sprintf("e%d", seq)
					if (i+j)%97 == 0 {
						d = "T" + d // traps in the hostile version, forwarded by the counter
						mu.Lock()
						poisons++
						mu.Unlock()
					}
					evs[j] = Event{Seq: seq, Data: []byte(d)}
				}
				if err := s.Process(context.Background(), evs, func(o Output) {
					mu.Lock()
					seen[o.Event.Seq]++
					mu.Unlock()
				}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				produced += uint64(len(evs))
				mu.Unlock()
			}
		}()
	}
	for v := 1; v <= 30; v++ {
		if v%2 == 1 {
			atomicWrite(t, dir, "hot.wasm", counter)
			atomicWrite(t, dir, "hot.toml", []byte(fmt.Sprintf("name = \"hot\"\nversion = \"%d\"\ninstances = 4\ncapabilities = [\"metrics\"]\n", v)))
		} else {
			atomicWrite(t, dir, "hot.wasm", hostile)
			atomicWrite(t, dir, "hot.toml", []byte(fmt.Sprintf("name = \"hot\"\nversion = \"%d\"\ninstances = 4\ntimeout = \"200ms\"\n", v)))
		}
		ch.wait(t, "hot", ChangeReplaced)
		time.Sleep(100 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if uint64(len(seen)) != produced {
		t.Errorf("%d of %d events had an output", len(seen), produced)
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("seq %d had %d outputs", seq, n)
		}
	}
	t.Logf("%d events (%d poison) through 30 swaps; final stats %+v", produced, poisons, s.Stats())
}
