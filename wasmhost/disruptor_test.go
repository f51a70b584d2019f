package wasmhost

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/badbatch/badbatch/disruptor"
)

type ringSlot struct {
	seq  int64
	data []byte
}

// TestBatchHandlerOnRing runs a module behind a real disruptor ring: every
// published event is forwarded exactly once, in order, in batched calls.
func TestBatchHandlerOnRing(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "fw"`)
	st := &Stage{name: "fw", cur: m}

	const n = 5000
	var mu sync.Mutex
	var got []uint64
	h := NewBatchHandler(context.Background(), st, func(e *ringSlot, seq int64, ev *Event) {
		ev.Seq, ev.Data = uint64(e.seq), e.data
	}, func(o Output) {
		if o.Kind == OutputForward && string(o.Data) == fmt.Sprintf("e%d", o.Event.Seq) {
			mu.Lock()
			got = append(got, o.Event.Seq)
			mu.Unlock()
		}
	}, 64)
	d, err := disruptor.New(func() ringSlot { return ringSlot{data: make([]byte, 0, 16)} }, 1024)
	if err != nil {
		t.Fatal(err)
	}
	d.HandleEventsWith(h)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
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
	if len(got) != n {
		t.Fatalf("%d of %d events forwarded", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, s)
		}
	}
	if st := m.Stats(); st.Calls >= n || st.Calls < n/64 {
		t.Errorf("%d calls for %d events: not batched", st.Calls, n)
	}
}
