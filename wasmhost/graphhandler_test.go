package wasmhost

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/badbatch/badbatch/disruptor"
)

// TestGraphHandlerOnRing runs a registry's modules as one consumer of a
// real ring: "b" runs after "a" on every event, and a module installed
// while events flow joins (after "b") from a batch boundary on.
func TestGraphHandlerOnRing(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			dir := t.TempDir()
			atomicWrite(t, dir, "a.wasm", mustRead(t, hostileWasm))
			atomicWrite(t, dir, "a.toml", []byte(`name = "a"`))
			atomicWrite(t, dir, "b.wasm", mustRead(t, "../modules/wat-counter.wasm"))
			atomicWrite(t, dir, "b.toml", []byte("name = \"b\"\nafter = [\"a\"]\ncapabilities = [\"metrics\"]\n"))
			atomicWrite(t, dir, "p.wasm", mustRead(t, hostileWasm))
			atomicWrite(t, dir, "p.toml", []byte(`name = "p"`)) // parallel to a
			r, err := NewRegistry(RegistryConfig{Dir: dir, Host: testHost(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			if err := r.LoadAll(context.Background()); err != nil {
				t.Fatal(err)
			}

			var mu sync.Mutex
			seen := map[string]map[uint64]int{"a": {}, "b": {}, "c": {}, "p": {}}
			order := map[uint64][]string{}
			h := NewGraphHandler(context.Background(), r, func(e *ringSlot, seq int64, ev *Event) {
				ev.Seq, ev.Data = uint64(e.seq), e.data
			}, func(o Output) {
				mu.Lock()
				defer mu.Unlock()
				if o.Kind != OutputForward || string(o.Data) != fmt.Sprintf("e%d", o.Event.Seq) {
					t.Errorf("unexpected output %+v", o)
					return
				}
				seen[o.Module][o.Event.Seq]++
				order[o.Event.Seq] = append(order[o.Event.Seq], o.Module)
			}, GraphOptions{MaxBatch: 32, Parallel: parallel, OnError: func(m string, err error) { t.Errorf("%s: %v", m, err) }})
			d, err := disruptor.New(func() ringSlot { return ringSlot{data: make([]byte, 0, 16)} }, 256)
			if err != nil {
				t.Fatal(err)
			}
			d.HandleEventsWith(h)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			const n = 3000
			var installedAt uint64
			for i := 1; i <= n; i++ {
				if i == n/2 {
					if err := r.Install(context.Background(), "c", []byte("name = \"c\"\nafter = [\"b\"]\n"), mustRead(t, hostileWasm)); err != nil {
						t.Fatal(err)
					}
					installedAt = uint64(i)
				}
				if err := d.RingBuffer().PublishEvent(func(e *ringSlot, seq int64) {
					e.seq = int64(i)
					e.data = fmt.Appendf(e.data[:0], "e%d", i)
				}); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := d.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{"a", "b", "p"} {
				if len(seen[m]) != n {
					t.Errorf("module %s saw %d of %d events", m, len(seen[m]), n)
				}
			}
			firstC := uint64(0)
			for seq := uint64(1); seq <= n; seq++ {
				for _, m := range []string{"a", "b", "p", "c"} {
					if seen[m][seq] > 1 {
						t.Fatalf("module %s processed seq %d twice", m, seq)
					}
				}
				o := order[seq]
				ia, ib, ic := -1, -1, -1
				for i, m := range o {
					switch m {
					case "a":
						ia = i
					case "b":
						ib = i
					case "c":
						ic = i
					}
				}
				if ib < ia {
					t.Fatalf("seq %d: b ran before a: %v", seq, o)
				}
				if ic >= 0 {
					if ic < ib {
						t.Fatalf("seq %d: c ran before b: %v", seq, o)
					}
					if firstC == 0 {
						firstC = seq
					}
				} else if firstC != 0 {
					t.Fatalf("seq %d missed c although an earlier event got it", seq)
				}
			}
			if firstC == 0 || firstC > installedAt+256 {
				t.Errorf("installed module first ran at seq %d (installed before %d)", firstC, installedAt)
			}
		})
	}
}
